"""The real ``dbcore`` console script, run as a subprocess in a scratch directory.

Each run imports dbcore afresh (a few seconds), so independent runs go in parallel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from dbcore import cli

DBCORE = Path(sys.executable).parent / "dbcore"
SECRET = "pw1234secret"
UNREACHABLE = f"postgresql://u:{SECRET}@127.0.0.1:1/x"


def base_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "POSTGRES_URL", "DBCORE_SYSTEM_API_KEY") and not k.startswith("DBCORE_TEST_")
    }
    env["DBCORE_RETRY_MAX_SECONDS"] = "5"
    env.update(extra)
    return env


def run_all(
    runs: Sequence[tuple[Sequence[str], Path, Mapping[str, str]]],
) -> list[subprocess.CompletedProcess[str]]:
    """Start every run at once, wait for all; results in the same order."""
    procs = [
        subprocess.Popen(
            [str(DBCORE), *args], cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for args, cwd, env in runs
    ]
    results = []
    for proc, (args, _, _) in zip(procs, runs, strict=True):
        out, err = proc.communicate(timeout=240)
        results.append(subprocess.CompletedProcess([str(DBCORE), *args], proc.returncode, out, err))
    return results


def run(args: Sequence[str], cwd: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return run_all([(args, cwd, env)])[0]


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.args} -> {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def in_process(
    args: Sequence[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **env: str
) -> tuple[int, str, str]:
    """``dbcore.cli.main`` in this process: the same code as the console script, without its import cost."""
    with monkeypatch.context() as patch:
        for name in ("DATABASE_URL", "POSTGRES_URL", "DBCORE_SYSTEM_API_KEY"):
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        capsys.readouterr()
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # argparse: --help and usage errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.sqlite
def test_sqlite_default_lifecycle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = base_env()

    first = run(["init"], tmp_path, env)
    assert first.returncode == 0, explain(first)
    assert (tmp_path / "dbcore.sqlite3").is_file()
    out = first.stdout
    assert "dbcore init: sqlite at sqlite+pysqlite:///" in out and "dbcore.sqlite3" in out
    assert "tables: 20" in out
    assert "seed rows: 3 inserted" in out
    assert "migrated from an empty database" in out
    assert "recorded vector space 'memories'" in out
    assert "system API key (shown once" in out
    assert "dbk_" in out

    second, doctor = run_all([(["init"], tmp_path, env), (["doctor"], tmp_path, env)])
    for result in (second, doctor):
        assert result.returncode == 0, explain(result)
    assert "already current" in second.stdout
    assert "0 inserted" in second.stdout
    assert "dbk_" not in second.stdout  # the key is shown once only
    assert "healthy" in doctor.stdout and "pending 0" in doctor.stdout

    monkeypatch.chdir(tmp_path)
    code, out, err = in_process(["migrate"], monkeypatch, capsys)
    assert code == 0, err
    assert "is at revision 0002" in out and "dbcore.sqlite3" in out
    code, out, err = in_process(["seed"], monkeypatch, capsys)
    assert code == 0, err
    assert "dbcore seed: 0 inserted, 0 updated, 3 unchanged" in out
    code, out, err = in_process(["check-models"], monkeypatch, capsys)
    assert code == 0, err
    assert "20 tables, 0 problems" in out


def test_failures_and_system_key_from_env(tmp_path: Path) -> None:
    given_key = "dbk_given-system-key-for-the-cli-test-0123456789abc"
    doctor_down, no_driver, with_key = run_all(
        [
            (["doctor"], tmp_path, base_env(DATABASE_URL=UNREACHABLE)),
            (["doctor"], tmp_path, base_env(DATABASE_URL="mysql+mysqldb://u@h/db")),
            (["init"], tmp_path, base_env(DBCORE_SYSTEM_API_KEY=given_key)),
        ]
    )
    assert doctor_down.returncode == 3, explain(doctor_down)
    assert "connected:       NO" in doctor_down.stdout
    assert SECRET not in doctor_down.stdout + doctor_down.stderr
    assert "u:***@127.0.0.1:1" in doctor_down.stdout
    assert no_driver.returncode == 2, explain(no_driver)
    assert "dbcore[mariadb]" in no_driver.stderr
    assert with_key.returncode == 0, explain(with_key)
    assert "stored the hash of DBCORE_SYSTEM_API_KEY" in with_key.stdout
    assert given_key not in with_key.stdout + with_key.stderr
    assert "dbk_" not in with_key.stdout


def test_unreachable_init_and_bad_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = in_process(["init"], monkeypatch, capsys, DATABASE_URL=UNREACHABLE, DBCORE_RETRY_MAX_SECONDS="5")
    assert code == 3, out + err
    assert "cannot reach the database" in err
    assert SECRET not in out + err
    code, out, err = in_process(["init"], monkeypatch, capsys, DATABASE_URL="oracle://x/y")
    assert code == 2, out + err
    assert "configuration error" in err and "oracle" in err
    assert not (tmp_path / "dbcore.sqlite3").exists()


def test_help(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    top = run(["--help"], tmp_path, base_env())
    assert top.returncode == 0, explain(top)
    for command in ("init", "migrate", "seed", "doctor", "check-models"):
        assert command in top.stdout
        code, out, _ = in_process([command, "--help"], monkeypatch, capsys)
        assert code == 0
        assert f"usage: dbcore {command}" in out


@pytest.mark.parametrize(
    "dialect",
    [
        pytest.param("postgresql", marks=pytest.mark.postgresql, id="postgresql"),
        pytest.param("mariadb", marks=pytest.mark.mariadb, id="mariadb"),
    ],
)
def test_init_twice_on_a_server(
    database_url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = database_url.render_as_string(hide_password=False)
    first = run(["init"], tmp_path, base_env(DATABASE_URL=url))
    assert first.returncode == 0, explain(first)
    assert "migrated from an empty database" in first.stdout
    assert "system API key (shown once" in first.stdout
    monkeypatch.chdir(tmp_path)
    code, out, err = in_process(["init"], monkeypatch, capsys, DATABASE_URL=url)
    assert code == 0, err
    assert "already current" in out and "0 inserted" in out
    assert not (tmp_path / "dbcore.sqlite3").exists()
