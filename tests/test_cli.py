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
from alembic import command as alembic_command
from alembic.config import Config
from sqlalchemy.engine import URL

import dbcore
from dbcore import cli, commands
from dbcore.testing import TestServers
from tests.conftest import server_url
from tests.schema import table_names

DBCORE = Path(sys.executable).parent / "dbcore"
SECRET = "pw1234secret"
UNREACHABLE = f"postgresql://u:{SECRET}@127.0.0.1:1/x"
DOWNSTREAM_INI = Path(__file__).parent / "downstream_example" / "alembic.ini"
INJECTION = "x'; DROP TABLE memories; --"


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


def error_lines(stderr: str) -> list[str]:
    """stderr without argparse's usage block: the lines that explain a failure."""
    lines, in_usage = [], False
    for line in stderr.splitlines():
        in_usage = line.startswith("usage:") or (in_usage and line.startswith(" "))
        if not in_usage and line.strip():
            lines.append(line)
    return lines


def one_error_line(code: int, out: str, err: str, expected_code: int) -> str:
    """The failure's one stderr line, after checking the exit code and that no traceback or SQL leaked."""
    assert code == expected_code, f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    lines = error_lines(err)
    assert len(lines) == 1, lines
    for fragment in ("Traceback", "[SQL:", "[parameters:", "SELECT ", "INSERT INTO"):
        assert fragment not in out + err
    return lines[0]


def url_of(settings: dbcore.Settings) -> str:
    return settings.url.render_as_string(hide_password=False)


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
    assert "tables: 21" in out
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
    assert "healthy" in doctor.stdout and "none pending" in doctor.stdout

    monkeypatch.chdir(tmp_path)
    code, out, err = in_process(["migrate"], monkeypatch, capsys)
    assert code == 0, err
    assert "is at revision 0003" in out and "dbcore.sqlite3" in out
    code, out, err = in_process(["seed"], monkeypatch, capsys)
    assert code == 0, err
    assert "dbcore seed: 0 inserted, 0 updated, 3 unchanged" in out
    code, out, err = in_process(["check-models"], monkeypatch, capsys)
    assert code == 0, err
    assert "21 tables, 0 problems" in out


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


@pytest.mark.parametrize("action", ["sync", "reindex"])
@pytest.mark.parametrize("size", ["0", "-5"])
def test_batch_size_must_be_a_positive_whole_number(
    action: str, size: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    chroma = {"DBCORE_VECTOR_BACKEND": "chroma", "DBCORE_CHROMA_PATH": str(tmp_path / "chroma")}
    result = in_process(["vectors", action, "--batch-size", size], monkeypatch, capsys, **chroma)
    line = one_error_line(*result, expected_code=2)
    assert "--batch-size" in line and repr(size) in line and "positive" in line
    assert not (tmp_path / "dbcore.sqlite3").exists()  # refused before any database work


@pytest.mark.parametrize(
    ("argv", "revision"),
    [
        (["migrate", "nosuchrev"], "nosuchrev"),
        (["migrate", INJECTION], INJECTION),
        (["migrate", "--sql", "zzz"], "zzz"),
    ],
    ids=["unknown", "injection", "sql-unknown"],
)
def test_migrate_to_an_unknown_revision_is_one_line(
    argv: list[str],
    revision: str,
    settings: dbcore.Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = in_process(argv, monkeypatch, capsys, DATABASE_URL=url_of(settings))
    line = one_error_line(code, out, err, expected_code=2)
    assert line.startswith("dbcore migrate: ")
    assert repr(revision) in line and "0003 (head)" in line and "base" in line
    assert table_names(settings) <= {"alembic_version"}  # nothing migrated
    assert dbcore.migrate.current_revision(settings) is None


def test_migrate_down_needs_a_revision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    line = one_error_line(*in_process(["migrate", "--down"], monkeypatch, capsys), expected_code=2)
    assert "--down" in line and "base" in line and "-1" in line
    assert not (tmp_path / "dbcore.sqlite3").exists()


@pytest.mark.parametrize("argv", [["seed"], ["vectors", "sync"], ["vectors", "verify"], ["vectors", "reindex"]])
def test_a_database_never_migrated_is_one_line(
    argv: list[str],
    settings: dbcore.Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {"DATABASE_URL": url_of(settings), "DBCORE_VECTOR_BACKEND": "chroma", "DBCORE_CHROMA_PATH": str(tmp_path)}
    line = one_error_line(*in_process(argv, monkeypatch, capsys, **env), expected_code=1)
    assert "no dbcore schema" in line and "dbcore init" in line and "dbcore migrate" in line
    assert table_names(settings) == set()


def test_a_database_a_downstream_project_migrated_is_one_line(
    settings: dbcore.Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = Config(str(DOWNSTREAM_INI))
    config.attributes["dbcore_settings"] = settings
    alembic_command.upgrade(config, "heads")
    for argv in (["doctor"], ["init"], ["migrate"], ["migrate", "--down", "0001"], ["migrate", "base"]):
        code, out, err = in_process(argv, monkeypatch, capsys, DATABASE_URL=url_of(settings))
        line = one_error_line(code, out, err, expected_code=2)
        assert line.startswith(f"dbcore {argv[0]}: "), line
        assert "'ds0001'" in line and "--alembic-ini alembic.ini" in line and "docs/migrations.md" in line
    assert "notes" in table_names(settings)  # untouched
    code, out, err = in_process(["seed"], monkeypatch, capsys, DATABASE_URL=url_of(settings))
    assert code == 0, err


def test_the_project_s_alembic_ini_makes_doctor_init_and_migrate_work(
    settings: dbcore.Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ini = ["--alembic-ini", str(DOWNSTREAM_INI)]
    url = url_of(settings)
    code, out, err = in_process(["doctor", *ini], monkeypatch, capsys, DATABASE_URL=url)
    assert code == 1, err
    assert "at base (empty), 4 pending to 0003 and ds0001 (head)" in out
    assert f"run `dbcore migrate --alembic-ini {DOWNSTREAM_INI}`" in out

    code, out, err = in_process(["init", *ini], monkeypatch, capsys, DATABASE_URL=url)
    assert code == 0, err
    assert "schema: revisions 0003 and ds0001 (migrated from an empty database)" in out, out
    assert {"notes", "agents"} <= table_names(settings)

    code, out, err = in_process(["migrate", "--down", "0001", *ini], monkeypatch, capsys, DATABASE_URL=url)
    assert code == 0, err
    assert out.strip().endswith("is at revision ds0001, with dbcore at 0001"), out  # ds0001 depends on 0001
    code, out, err = in_process(["doctor", *ini], monkeypatch, capsys, DATABASE_URL=url)
    assert code == 1 and "2 pending to 0003 and ds0001 (head)" in out, out
    code, out, err = in_process(["migrate", *ini], monkeypatch, capsys, DATABASE_URL=url)
    assert code == 0 and out.strip().endswith("is at revisions 0003 and ds0001"), (out, err)
    code, out, err = in_process(["doctor", *ini], monkeypatch, capsys, DATABASE_URL=url)
    assert code == 0 and "none pending" in out and out.strip().endswith("healthy"), out

    code, out, err = in_process(["migrate", "nosuchrev", *ini], monkeypatch, capsys, DATABASE_URL=url)
    line = one_error_line(code, out, err, expected_code=2)
    assert "no revision 'nosuchrev' in" in line and "0003 (head)" in line and "ds0001 (head)" in line, line

    code, out, err = in_process(["migrate", "--down", "base", *ini], monkeypatch, capsys, DATABASE_URL=url)
    assert code == 0 and out.strip().endswith("is at base (empty)"), (out, err)
    assert table_names(settings) <= {"alembic_version"}


@pytest.mark.sqlite
def test_a_missing_alembic_ini_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
    for argv in (["init"], ["migrate"], ["doctor"], ["seed"], ["check-models"]):
        code, out, err = in_process(
            [*argv, "--alembic-ini", str(tmp_path / "nope.ini")], monkeypatch, capsys, DATABASE_URL=url
        )
        line = one_error_line(code, out, err, expected_code=2)
        assert "no alembic configuration file at" in line and "nope.ini" in line, line


@pytest.mark.sqlite
def test_bad_input_through_the_console_script_prints_no_traceback(tmp_path: Path) -> None:
    chroma = base_env(DBCORE_VECTOR_BACKEND="chroma", DBCORE_CHROMA_PATH=str(tmp_path / "chroma"))
    results = run_all(
        [
            (["migrate", "nosuchrev"], tmp_path, base_env()),
            (["vectors", "reindex", "--batch-size", "0"], tmp_path, chroma),
            (["seed"], tmp_path, chroma),
            (["doctor"], tmp_path, base_env(DBCORE_VECTOR_DIMS="abc")),
            (["init"], tmp_path, base_env(DBCORE_VECTOR_DIMS="20000")),
        ]
    )
    assert cli._EXIT_CONFIG == commands.EXIT_CONFIG
    for result, expected_code in zip(results, (2, 2, 1, 2, 2), strict=True):
        assert result.returncode == expected_code, explain(result)
        assert "Traceback" not in result.stderr, explain(result)
        assert len(error_lines(result.stderr)) == 1, explain(result)


SUBCOMMANDS = [
    ["init"],
    ["migrate"],
    ["seed"],
    ["doctor"],
    ["check-models"],
    ["vectors"],
    ["vectors", "sync"],
    ["vectors", "verify"],
    ["vectors", "reindex"],
]


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=lambda argv: "-".join(argv))
def test_every_subcommand_help_says_what_it_does_with_an_example(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = in_process([*argv, "--help"], monkeypatch, capsys)
    assert code == 0
    usage, _, rest = out.partition("\n\n")
    assert usage.startswith(f"usage: dbcore {argv[0]}")
    description = rest.split("\n\n")[0]
    assert not description.startswith(("positional arguments", "options")), out  # a sentence, not only usage
    assert description.rstrip().endswith("."), out
    examples = [line for line in out.splitlines() if line.lower().startswith("example")]
    assert examples, out
    following = out.split(examples[0], 1)[1]
    assert f"dbcore {' '.join(argv)}" in following, out


def test_top_level_help_has_examples(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = in_process(["--help"], monkeypatch, capsys)
    assert code == 0
    assert "examples:" in out.lower() and "dbcore init" in out and "dbcore doctor" in out


def doctor_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip()]


def assert_worded_for_a_person(out: str) -> None:
    for raw in ("overflow=", "size=", "checked_out=", "None", "none,", "QueuePool", "StaticPool"):
        assert raw not in out, f"{raw!r} in:\n{out}"


def test_doctor_on_a_migrated_database_reads_for_a_person(
    migrated: dbcore.Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = in_process(["doctor"], monkeypatch, capsys, DATABASE_URL=url_of(migrated))
    assert code == 0, out + err
    assert_worded_for_a_person(out)
    pool = next(line for line in doctor_lines(out) if line.startswith("pool:"))
    assert "connections in use" in pool and ("no overflow limit" in pool or "more when busy" in pool), pool
    assert "at revision 0003 (head), none pending" in out
    assert out.rstrip().endswith("healthy")


def test_doctor_before_migrating_says_base_not_none(
    settings: dbcore.Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = in_process(["doctor"], monkeypatch, capsys, DATABASE_URL=url_of(settings))
    assert code == 1, out + err
    assert_worded_for_a_person(out)
    assert "at base (empty), 3 pending to 0003 (head)" in out


@pytest.mark.sqlite
def test_doctor_help_and_doctor_through_the_console_script(tmp_path: Path) -> None:
    env = base_env()
    init = run(["init"], tmp_path, env)
    assert init.returncode == 0, explain(init)
    helped, doctor = run_all([(["doctor", "--help"], tmp_path, env), (["doctor"], tmp_path, env)])
    assert helped.returncode == 0, explain(helped)
    assert "example" in helped.stdout.lower()
    assert "dbcore doctor" in helped.stdout.split("\n", 1)[1]  # past the usage line
    assert doctor.returncode == 0, explain(doctor)
    assert_worded_for_a_person(doctor.stdout)
    assert "0 of 5 connections in use, up to 10 more when busy" in doctor.stdout


@pytest.mark.postgresql
def test_a_missing_database_is_named_in_one_line(servers: TestServers, tmp_path: Path) -> None:
    url = server_url(servers, "postgresql").set(database="nosuchdb16", password=SECRET)
    env = base_env(DATABASE_URL=url.render_as_string(hide_password=False))
    doctor, init = run_all([(["doctor"], tmp_path, env), (["init"], tmp_path, env)])
    reason = 'database "nosuchdb16" does not exist'
    assert doctor.returncode == commands.EXIT_UNREACHABLE, explain(doctor)
    assert f"connected:       NO (DatabaseNotFound on postgresql: {reason})" in doctor.stdout, explain(doctor)
    assert init.returncode == commands.EXIT_UNREACHABLE, explain(init)
    assert len(init.stderr.strip().splitlines()) == 1 and reason in init.stderr, explain(init)
    assert "check that the server runs" not in init.stderr
    for result in (doctor, init):
        assert "Traceback" not in result.stdout + result.stderr
        assert SECRET not in result.stdout + result.stderr


def test_a_closed_output_pipe_is_one_line(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [str(DBCORE), "doctor"], cwd=tmp_path, env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before the command has written anything: it needs a second to start
    error = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert error.strip() == "dbcore doctor: the output was closed before the command finished", error
