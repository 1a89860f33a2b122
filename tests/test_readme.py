"""The README's example is examples/quickstart.py, and it and the README's ``dbcore init`` output are true on every dialect.

Both run as a reader runs them: the ``dbcore`` console script, then ``python
examples/quickstart.py``, in subprocesses without DBCORE_* settings (DATABASE_URL names the
dialect's fresh database; on SQLite it is unset, so the default file is used).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import URL

from tests.test_cli import base_env, explain, run

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
QUICKSTART = ROOT / "examples" / "quickstart.py"
ASYNC_QUICKSTART = ROOT / "examples" / "async_quickstart.py"
ADAPTER_QUICKSTART = ROOT / "examples" / "adapter_quickstart.py"
# What varies between runs of `dbcore init`: the database's path and the random system key.
_INIT_PATH = re.compile(r"^(dbcore init: sqlite at sqlite\+pysqlite:///)/\S+(/dbcore\.sqlite3)$")
_SYSTEM_KEY = re.compile(r"^(    dbk_)[A-Za-z0-9_-]{43}$")


#: What examples/adapter_quickstart.py prints; the README says it in words under the example.
ADAPTER_PRINTS = [
    "unique: True, then False",
    "Grace bakes on Sundays (score 1.00)",
    "{'text': 'Hi Grace'} 1 log entry",
]


def fenced_blocks(language: str) -> list[str]:
    """The README's fenced blocks opened by ```` ```language ```` (``""``: no language), each with its final newline."""
    blocks: list[str] = []
    opened: str | None = None  # the info string of the block being read
    for line in README.splitlines(keepends=True):
        if opened is None and line.startswith("```"):
            opened = line[3:].strip()
            blocks.append("")
        elif opened is not None and line.rstrip("\n") == "```":
            if opened != language:
                blocks.pop()
            opened = None
        elif opened is not None:
            blocks[-1] += line
    assert opened is None, "the README has a fenced block that is never closed"
    return blocks


def readme_init_output() -> list[str]:
    """The lines of the README's sample ``dbcore init`` output (the unlabelled block that starts with it)."""
    blocks = [block for block in fenced_blocks("") if block.startswith("dbcore init: ")]
    assert len(blocks) == 1, blocks
    return blocks[0].splitlines()


def normalised(lines: list[str]) -> list[str]:
    """``lines`` without the parts that differ from run to run."""
    lines = [_INIT_PATH.sub(r"\1/<folder>\2", line) for line in lines]
    return [_SYSTEM_KEY.sub(r"\1<key>", line) for line in lines]


def reader_env(database_url: str | None) -> dict[str, str]:
    """A reader's environment: no DBCORE_* settings but DATABASE_URL, so the defaults apply."""
    env = {name: value for name, value in base_env().items() if not name.startswith("DBCORE_")}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return env


def test_readme_python_blocks_are_the_quickstart_files() -> None:
    assert fenced_blocks("python") == [
        QUICKSTART.read_text(encoding="utf-8"),
        ASYNC_QUICKSTART.read_text(encoding="utf-8"),
        ADAPTER_QUICKSTART.read_text(encoding="utf-8"),
    ]


def test_readme_init_output_block_has_a_path_and_a_key_to_normalise() -> None:
    # normalised() must find both, or the comparison below would pass over a stale path or key line.
    lines = readme_init_output()
    assert sum(line != new for line, new in zip(lines, normalised(lines), strict=True)) == 2


def test_init_then_the_quickstart_print_what_the_readme_says(dialect: str, database_url: URL, tmp_path: Path) -> None:
    # SQLite as the README runs it: no DATABASE_URL, the default file in the working folder.
    server = None if dialect == "sqlite" else database_url.render_as_string(hide_password=False)
    env = reader_env(server)

    init = run(["init"], tmp_path, env)
    assert init.returncode == 0, explain(init)
    printed = init.stdout.splitlines()
    readme = readme_init_output()
    if dialect == "sqlite":
        assert normalised(printed) == normalised(readme), explain(init)
    else:  # the first line names the server; the schema and what init did are the same everywhere
        assert normalised(printed)[1:] == normalised(readme)[1:], explain(init)

    for script in (QUICKSTART, ASYNC_QUICKSTART):
        example = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
        )
        assert example.returncode == 0, explain(example)
        assert example.stderr == ""
        assert example.stdout.count("\n") == 1, explain(example)
        assert f"It prints `{example.stdout.strip()}`." in README

    adapter = subprocess.run(
        [sys.executable, str(ADAPTER_QUICKSTART)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert adapter.returncode == 0 and adapter.stderr == "", explain(adapter)
    assert adapter.stdout.splitlines() == ADAPTER_PRINTS, explain(adapter)
