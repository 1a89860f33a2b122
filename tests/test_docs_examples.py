"""The documentation site's code runs: every Python block of docs/ is executed against SQLite.

Each page's untitled ```python blocks run in order, as one script, in a subprocess on a
fresh SQLite database made by ``dbcore init`` (``DATABASE_URL`` set, as a reader's
shell would have it). A fragment that relies on names the page introduces in prose gets
them from ``GIVEN`` below, which runs before that block; a block with top-level
``await`` runs inside ``asyncio.run``. Blocks titled with a path are files: the ones of
docs/models.md and docs/migrations.md make the project of tests/test_docs_downstream.py,
and docs/pytest-plugin.md's test file runs here through pytest. A block that needs what
the test environment lacks is marked ``{.python .norun}`` in the page and listed in
``NOT_RUN`` with the reason, so nothing is skipped silently.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)

# (page, index of the block among the page's runnable ones) -> code run just before it.
GIVEN = {
    ("adapter.md", 2): ("[user_entity_id] = adapter.create_entities([{'agent_id': agent.id, 'names': ['Grace']}])\n"),
    ("dialects.md", 0): "from sqlalchemy import select\nfrom dbcore import Agent, get_session\n",
    ("patterns.md", 0): (
        "with dbcore_setup.get_session() as s:\n"
        "    agent = dbcore_setup.Agent(name='cache owner')\n"
        "    s.add(agent)\n"
        "agent_id = agent.id\n"
    ),
    ("security.md", 0): (
        "import os\n"
        "from dbcore import ActivityType, get_session\n"
        "with dbcore_setup.system_session() as s:\n"
        "    os.environ['DBCORE_SYSTEM_API_KEY'] = dbcore_setup.security.create_system_key(s)\n"
    ),
    ("security.md", 1): (
        "import sqlalchemy as sa\n"
        "engine = dbcore_setup.get_engine()\n"
        "with engine.begin() as c:  # the row the block before added\n"
        "    c.execution_options(dbcore_system=True)\n"
        "    c.execute(sa.delete(ActivityType.__table__).where(ActivityType.__table__.c.name == 'Sleeping'))\n"
    ),
    ("vectors.md", 0): (
        "import numpy as np\n"
        "with dbcore_setup.get_session() as s:\n"
        "    agent = dbcore_setup.Agent(name='vectors')\n"
        "    s.add(agent)\n"
        "    s.flush()\n"
        "    parents = dbcore_setup.testing.add_memory_parents(s)\n"
        "a, e, r = parents['agent_id'], parents['entity_id'], parents['room_ids'][0]\n"
        "embeddings = np.ones((1, dbcore_setup.Settings.from_env().vector_dims), dtype=np.float32)\n"
        "query_emb = embeddings[0]\n"
    ),
    ("migrations.md", 0): "import os\nos.makedirs('migrations', exist_ok=True)  # the plugin's revisions\n",
    ("models.md", 0): ("from sqlalchemy.orm import Mapped\nfrom dbcore import Base, BaseMixin, ref_mixins\n"),
}
PRELUDE = "import dbcore as dbcore_setup\nimport dbcore.security, dbcore.testing\n"

# (page, index) -> why the block does not run here.
NOT_RUN = {
    ("async.md", 0): "needs FastAPI, which dbcore does not depend on",
}


def blocks(page: Path) -> list[tuple[str, str]]:
    """(info, body) of each fenced block of ``page``, in order."""
    return [(m["info"].strip(), textwrap.dedent(m["body"])) for m in FENCE.finditer(page.read_text(encoding="utf-8"))]


def runnable(page: Path) -> list[str]:
    """The page's untitled Python blocks, ``.norun`` ones included (they are checked against NOT_RUN)."""
    return [
        body
        for info, body in blocks(page)
        if (info == "python" or info.startswith(("python ", "{.python"))) and "title=" not in info
    ]


def script(page: Path) -> str:
    parts = [PRELUDE]
    for index, body in enumerate(runnable(page)):
        if (page.name, index) in NOT_RUN:
            continue
        parts.append(GIVEN.get((page.name, index), ""))
        if _awaits(body):
            body = (
                "import asyncio\n\nasync def _block():\n"
                + textwrap.indent(body, "    ")
                + "\n\nasyncio.run(_block())\n"
            )
        parts.append(body)
    return "\n".join(parts)


def _awaits(body: str) -> bool:
    """Whether ``body`` awaits outside a function (as docs for async code do)."""

    def top_level(node: ast.AST) -> bool:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return False
        return isinstance(node, ast.Await) or any(top_level(child) for child in ast.iter_child_nodes(node))

    return top_level(ast.parse(body))


PAGES = sorted(page.name for page in DOCS.glob("*.md") if runnable(page))


def test_norun_marks_and_the_list_agree() -> None:
    marked = {
        (page.name, index)
        for page in DOCS.glob("*.md")
        for index, (info, _) in enumerate(
            (i, b)
            for i, b in blocks(page)
            if (i == "python" or i.startswith(("python ", "{.python"))) and "title=" not in i
        )
        if ".norun" in info
    }
    assert marked == set(NOT_RUN)


def test_every_page_with_code_is_run() -> None:
    assert {"adapter.md", "getting-started.md", "security.md", "vectors.md", "pytest-plugin.md"} <= set(PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_the_examples_of(page: str, tmp_path: Path) -> None:
    database = tmp_path / "docs.sqlite3"
    env = {"PATH": str(Path(sys.executable).parent), "DATABASE_URL": f"sqlite:///{database}", "HOME": str(tmp_path)}
    init = subprocess.run(
        [sys.executable, "-m", "dbcore.cli", "init"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert init.returncode == 0, init.stderr
    code = script(DOCS / page)
    path = tmp_path / "docs_example.py"
    path.write_text(code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    numbered = "\n".join(f"{n:4} {line}" for n, line in enumerate(code.splitlines(), 1))
    assert result.returncode == 0, f"docs/{page}'s examples failed:\n{result.stderr}\n--- the script run:\n{numbered}"


def test_the_testing_page_runs_under_pytest(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBCORE_TEST_URL", raising=False)
    titled = [body for info, body in blocks(DOCS / "pytest-plugin.md") if 'title="tests/' in info]
    assert len(titled) == 1
    pytester.makepyfile(test_agents=titled[0])
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_the_domains_table_names_every_table() -> None:
    import dbcore.models  # noqa: F401  (every domain mapped)

    text = (DOCS / "domains.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(dbcore\.DB_\w+)` \| (.*) \|$", text, re.M))
    documented = {module: set(re.findall(r"`(\w+)`", cells)) for module, cells in rows.items()}
    actual: dict[str, set[str]] = {}
    for mapper in dbcore.Base.registry.mappers:
        table = getattr(mapper.class_, "__tablename__", None)
        if table:
            actual.setdefault(mapper.class_.__module__, set()).add(table)
    assert documented == actual
