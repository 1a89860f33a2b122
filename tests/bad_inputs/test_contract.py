"""The bad-input contract of docs/errors.md, case by case.

Database cases run on every live dialect against one migrated database per dialect
for the module; Settings, URL and command-line cases need no database.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import dbcore
from dbcore import cli
from dbcore.testing import TestServers

from .database_cases import DATABASE_CASES
from .harness import DIALECT_PARAMS, FORBIDDEN, SECRET, Case, Ctx, build_ctx, check_message, params, run_database_case
from .plain_cases import CLI_CASES, ENV_CASES, SETTINGS_CASES, URL_CASES, CliCase

PLAIN_CASES = SETTINGS_CASES + ENV_CASES + URL_CASES
CASE_COUNT = len(DATABASE_CASES) + len(PLAIN_CASES) + len(CLI_CASES)


@pytest.fixture(autouse=True)
def _forget_cached_engines() -> Iterator[None]:
    """Keep conftest's per-test engine disposal off here: the cases share one engine per database (ctx disposes it)."""
    yield


@pytest.fixture(scope="module", params=DIALECT_PARAMS)
def ctx(
    request: pytest.FixtureRequest, servers: TestServers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ctx]:
    yield from build_ctx(str(request.param), servers, tmp_path_factory.mktemp("bad_inputs"))


@pytest.mark.parametrize("case", params(DATABASE_CASES))
def test_database_input_is_refused_and_changes_nothing(case: Case, ctx: Ctx) -> None:
    run_database_case(case, ctx)


@pytest.mark.parametrize("case", params(PLAIN_CASES))
def test_configuration_input_is_refused(case: Case) -> None:
    with pytest.raises(case.error) as caught:
        case.act()
    check_message(caught.value, case.names, SECRET)


def _error_lines(stderr: str) -> list[str]:
    """stderr without argparse's usage block: the lines that explain the failure."""
    lines = []
    in_usage = False
    for line in stderr.splitlines():
        if line.startswith("usage:"):
            in_usage = True
            continue
        if in_usage and line.startswith(" "):
            continue
        in_usage = False
        if line.strip():
            lines.append(line)
    return lines


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CLI_CASES])
def test_command_line_input_is_refused_in_one_line(
    case: CliCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "POSTGRES_URL", "DBCORE_SYSTEM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DBCORE_RETRY_MAX_SECONDS", "5")
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    try:
        code = cli.main(list(case.argv))
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # noqa: BLE001 - the contract is that nothing escapes as a traceback
        pytest.fail(f"dbcore {' '.join(case.argv)} raised {type(exc).__name__}: {exc}", pytrace=False)
    out, err = capsys.readouterr()
    dbcore.dispose_engines()
    assert code != 0, f"exit code 0 for bad input; stdout: {out!r}"
    lines = _error_lines(err)
    assert len(lines) == 1, f"expected one line saying what is wrong, got {lines!r}"
    assert re.search(case.names, lines[0]), f"{lines[0]!r} does not name {case.names!r}"
    for fragment in FORBIDDEN:
        assert fragment not in out + err
    assert SECRET not in out + err


def _count_cases() -> None:
    """The contract asks for at least 150 distinct bad inputs; the number is in this test's name."""
    ids = [c.id for c in DATABASE_CASES + PLAIN_CASES] + [c.id for c in CLI_CASES]
    assert len(set(ids)) == len(ids) == CASE_COUNT
    assert CASE_COUNT >= 150


globals()[f"test_case_count_is_{CASE_COUNT}"] = _count_cases
