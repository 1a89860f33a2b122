"""dbcore's pytest plugin: real databases, as cheap to use in a test as a mock.

Installed with dbcore (the ``pytest11`` entry point ``dbcore``): a project that
depends on dbcore gets these fixtures with no conftest code.

- ``dbcore_settings``: :class:`~dbcore.Settings` of the test database: migrated
  (dbcore, registered plugins, and the project's alembic.ini when given) and seeded
  once per test session, per pytest-xdist worker;
- ``dbcore_engine``: an engine on it (one per session and dialect);
- ``dbcore_connection``: a connection whose transaction is rolled back after the test;
- ``dbcore_session``: a dbcore session inside that transaction; its ``commit()`` ends a
  SAVEPOINT (:func:`dbcore.session_on`), so what a test writes, committed or not, is
  gone for the next test;
- ``dbcore_adapter`` / ``dbcore_async_adapter``: the agent runtime's API on that
  session (each call in a savepoint of it);
- ``dbcore_vector_store``: the configured store for that database (the integrated
  store searches the test's transaction); emptied after each test;
- ``dbcore_make``: rows with valid references and sensible defaults
  (``dbcore_make.memory()`` makes the agent, entity and room it needs).

The database: ``--dbcore-url`` or ``DBCORE_TEST_URL`` names a server (a fresh
database is created on it per session and worker, and dropped after), else
``--dbcore-dialect`` (``sqlite``, ``embedded-postgres``, or a name of
:class:`dbcore.testing.TestServers`), else a temporary SQLite file.
``@pytest.mark.dbcore_dialects("sqlite", "embedded-postgres")`` runs a test once per
dialect. See docs/testing.md.

Nothing here imports a driver, chromadb or pinecone until a fixture needs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.orm import Session

    from dbcore.adapter import AsyncDatabaseAdapter, DatabaseAdapter
    from dbcore.config import Settings
    from dbcore.DB_Agents import Agent
    from dbcore.DB_Entities import Entity, Room, World
    from dbcore.DB_Memories import Memory
    from dbcore.vectorstores import VectorStore

__all__ = ["URL_VARIABLE", "DIALECTS", "MARKER", "RowMaker"]

#: The variable naming the server tests run on (``--dbcore-url`` wins).
URL_VARIABLE = "DBCORE_TEST_URL"
#: What ``--dbcore-dialect`` and the marker accept: ``embedded-postgres`` always starts
#: the embedded PostgreSQL with pgvector; the others are :class:`dbcore.testing.TestServers`'
#: (``postgresql`` is ``DBCORE_TEST_POSTGRES_URL`` else the embedded one, ``mariadb``
#: ``DBCORE_TEST_MARIADB_URL``, ``mssql`` ``DBCORE_TEST_MSSQL_URL``...).
DIALECTS = ("sqlite", "embedded-postgres", "postgresql", "postgresql_novector", "mariadb", "mssql")
MARKER = "dbcore_dialects"
#: ``dbcore_dialect``'s value when the database comes from ``--dbcore-url`` / ``DBCORE_TEST_URL``.
URL_CHOICE = "url"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dbcore", "dbcore: real, isolated databases for tests")
    group.addoption(
        "--dbcore-url",
        dest="dbcore_url",
        metavar="URL",
        default=None,
        help=f"server the test database is created on (default ${URL_VARIABLE}; else a temporary SQLite file)",
    )
    group.addoption(
        "--dbcore-dialect",
        dest="dbcore_dialect",
        choices=DIALECTS,
        default=None,
        help="dialect of the test database when no URL is given (default sqlite)",
    )
    group.addoption(
        "--dbcore-alembic-ini",
        dest="dbcore_alembic_ini",
        metavar="PATH",
        default=None,
        help="the project's alembic.ini: its branch is migrated beside dbcore's (default: the ini option)",
    )
    parser.addini("dbcore_alembic_ini", "the project's alembic.ini, migrated beside dbcore's", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*names): run the test's dbcore fixtures once on each named dialect ({', '.join(DIALECTS)})",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is None or "dbcore_dialect" not in metafunc.fixturenames:
        return
    names = list(marker.args)
    unknown = [name for name in names if name not in DIALECTS]
    if not names or unknown:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: @pytest.mark.{MARKER} takes dialect names from {', '.join(DIALECTS)}; "
            f"got {', '.join(map(repr, unknown)) or 'none'}"
        )
    metafunc.parametrize("dbcore_dialect", names, indirect=True, ids=names)


def configured_dialect(config: pytest.Config) -> str:
    """The dialect the options choose: ``"url"`` for a URL, else ``--dbcore-dialect``, else ``"sqlite"``."""
    if config.getoption("dbcore_url") or _url_from_env():
        return URL_CHOICE
    return str(config.getoption("dbcore_dialect") or "sqlite")


def _url_from_env() -> str:
    from dbcore.config import LiveTestSettings

    return LiveTestSettings.from_env().test_url


class _Databases:
    """This session's (this worker's) test databases, one per dialect, migrated and seeded once."""

    def __init__(self, config: pytest.Config, tmp: pytest.TempPathFactory) -> None:
        self._config, self._tmp = config, tmp
        self._settings: dict[str, Settings] = {}
        self._engines: dict[str, Engine] = {}
        self._stores: dict[str, VectorStore] = {}
        self._failed: dict[str, str] = {}
        self._stack = ExitStack()
        self._servers: Any = None

    def settings(self, dialect: str) -> Settings:
        __tracebackhide__ = True
        if dialect in self._failed:
            _refuse(dialect, self._failed[dialect])
        if dialect not in self._settings:
            from dbcore.errors import DbcoreError
            from dbcore.testing import DialectUnavailable

            try:
                self._settings[dialect] = self._make(dialect)
            except DialectUnavailable as exc:
                self._failed[dialect] = str(exc)
            except DbcoreError as exc:
                self._failed[dialect] = f"could not prepare the test database: {type(exc).__name__}: {exc}"
            except Exception as exc:  # noqa: BLE001 - a driver's error while creating the database
                self._failed[dialect] = f"could not create the test database: {_one_line(exc)}"
            if dialect in self._failed:  # remembered: the session's next tests fail or skip at once
                _refuse(dialect, self._failed[dialect])
        return self._settings[dialect]

    def engine(self, dialect: str) -> Engine:
        if dialect not in self._engines:
            from dbcore.engine import create_engine

            self._engines[dialect] = create_engine(self.settings(dialect))
        return self._engines[dialect]

    def store(self, dialect: str) -> VectorStore:
        """The vector store of ``dialect``'s database; the integrated one searches a caller's transaction."""
        if dialect not in self._stores:
            from dbcore.vectorstores import get_vector_store

            settings = self.settings(dialect)
            extra: dict[str, Any] = {"cache": False} if settings.vector_backend == "integrated" else {}
            self._stores[dialect] = get_vector_store(settings, **extra)
        return self._stores[dialect]

    def _make(self, dialect: str) -> Settings:
        from dbcore.adapter.lifecycle import init
        from dbcore.config import Settings

        url = self._url(dialect)
        base = Settings.from_env()
        # A Chroma folder of this session's own; a Chroma server or Pinecone index is the caller's.
        chroma = base.chroma if base.chroma.host else replace(base.chroma, path=str(self._tmp.mktemp("chroma")))
        settings = base.replace(database_url=url, chroma=chroma)
        ini = self._config.getoption("dbcore_alembic_ini") or self._config.getini("dbcore_alembic_ini") or None
        init(settings, ini=Path(str(self._config.rootpath), ini) if ini else None)
        return settings

    def _url(self, dialect: str) -> str:
        from sqlalchemy.engine import make_url

        from dbcore.testing import EmbeddedPostgres, TestServers, isolated_database

        if dialect == URL_CHOICE:
            given = make_url(self._config.getoption("dbcore_url") or _url_from_env())
            server = None if given.get_backend_name() == "sqlite" else given
        elif dialect == "embedded-postgres":
            embedded = EmbeddedPostgres()
            self._stack.callback(embedded.cleanup)
            server = embedded.url
        elif dialect == "sqlite":
            server = None
        else:
            if self._servers is None:
                self._servers = TestServers()
                self._stack.callback(self._servers.close)
            server = self._servers.url(dialect)
        if server is None:  # SQLite: a file of this session's (worker's) own
            return f"sqlite:///{self._tmp.mktemp('dbcore') / 'test.sqlite3'}"
        database = self._stack.enter_context(isolated_database(server))
        return str(database.render_as_string(hide_password=False))

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        for engine in self._engines.values():
            engine.dispose()
        from dbcore.engine import dispose_engines

        dispose_engines()
        self._stack.close()


def _one_line(exc: BaseException) -> str:
    """``Type: first line`` of a driver's error (SQLAlchemy's wrapper unwrapped); drivers do not print passwords."""
    inner = getattr(exc, "orig", None) or exc
    first = (str(inner).strip().splitlines() or [""])[0]
    return f"{type(inner).__name__}: {first}"


def _refuse(dialect: str, reason: str) -> None:
    """Skip a test whose dialect has no server, or fail it when DBCORE_REQUIRE_DIALECTS names the dialect."""
    __tracebackhide__ = True
    from dbcore.testing import required_dialects

    if dialect in ("sqlite", URL_CHOICE, "embedded-postgres") or dialect in required_dialects():
        pytest.fail(f"dbcore: no {dialect} test database: {reason}", pytrace=False)
    pytest.skip(f"dbcore: {dialect} unavailable: {reason}")


@pytest.fixture(scope="session")
def _dbcore_databases(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Databases]:
    databases = _Databases(request.config, tmp_path_factory)
    yield databases
    databases.close()


@pytest.fixture
def dbcore_dialect(request: pytest.FixtureRequest) -> str:
    """The dialect of this test's database: the marker's parameter, else the options' choice (``"url"`` for a URL)."""
    return str(getattr(request, "param", None) or configured_dialect(request.config))


@pytest.fixture
def dbcore_settings(_dbcore_databases: _Databases, dbcore_dialect: str) -> Settings:
    """Settings of the test database (migrated and seeded once per session and worker)."""
    return _dbcore_databases.settings(dbcore_dialect)


@pytest.fixture
def dbcore_engine(_dbcore_databases: _Databases, dbcore_dialect: str, dbcore_settings: Settings) -> Engine:
    """A dbcore engine on the test database, shared by the session's tests."""
    return _dbcore_databases.engine(dbcore_dialect)


@pytest.fixture
def dbcore_connection(dbcore_engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that is rolled back when the test ends, whatever the test did."""
    connection = dbcore_engine.connect()
    transaction = connection.begin()
    try:
        yield connection
    finally:
        if transaction.is_active:
            transaction.rollback()
        connection.close()


@pytest.fixture
def dbcore_session(dbcore_connection: Connection, dbcore_settings: Settings) -> Iterator[Session]:
    """A dbcore session in the test's transaction: ``commit()`` ends a savepoint, the test's end rolls all back."""
    from dbcore.session import session_on

    session = session_on(dbcore_connection, dbcore_settings)
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def dbcore_vector_store(_dbcore_databases: _Databases, dbcore_dialect: str) -> Iterator[VectorStore]:
    """The configured vector store of the test database, emptied after the test.

    The integrated store's search in the adapter runs in the test's transaction; the
    store's own writes (``upsert``) commit, as they do in production, and are deleted
    when the test ends.
    """
    store = _dbcore_databases.store(dbcore_dialect)
    try:
        yield store
    finally:
        left = list(store.ids())
        if left:
            store.delete(left)


@pytest.fixture
def dbcore_adapter(
    dbcore_session: Session, dbcore_settings: Settings, dbcore_vector_store: VectorStore
) -> DatabaseAdapter:
    """A :class:`~dbcore.DatabaseAdapter` whose every call runs in a savepoint of ``dbcore_session``."""
    from dbcore.adapter import DatabaseAdapter

    return DatabaseAdapter(dbcore_settings, vector_store=dbcore_vector_store, session=dbcore_session)


@pytest.fixture
def dbcore_async_adapter(
    dbcore_session: Session, dbcore_settings: Settings, dbcore_vector_store: VectorStore
) -> AsyncDatabaseAdapter:
    """An :class:`~dbcore.AsyncDatabaseAdapter` on ``dbcore_session`` (awaitable; its SQL runs on the sync driver).

    The test's rollback needs no event loop, so any loop (pytest-asyncio, anyio,
    ``asyncio.run``) may await it.
    """
    from dbcore.adapter import AsyncDatabaseAdapter

    return AsyncDatabaseAdapter(dbcore_settings, vector_store=dbcore_vector_store, session=dbcore_session)


@pytest.fixture
def dbcore_make(dbcore_session: Session) -> RowMaker:
    """Rows with valid references: ``dbcore_make.agent()``, ``.entity()``, ``.world()``, ``.room()``, ``.memory()``."""
    return RowMaker(dbcore_session)


class RowMaker:
    """Makes rows in ``session`` with sensible defaults; a missing reference is made too. Each call flushes."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._count = 0

    def _next(self) -> int:
        self._count += 1
        return self._count

    def _add(self, row: Any) -> Any:
        self.session.add(row)
        self.session.flush()
        return row

    def agent(self, **fields: Any) -> Agent:
        """An agent (name ``agent-N`` unless given)."""
        from dbcore.DB_Agents import Agent

        fields.setdefault("name", f"agent-{self._next()}")
        return self._add(Agent(**fields))  # type: ignore[no-any-return]

    def entity(self, agent: Agent | None = None, **fields: Any) -> Entity:
        """An entity of ``agent`` (a new agent when not given), named ``entity-N``."""
        from dbcore.DB_Entities import Entity

        owner = agent if agent is not None else self.agent()
        fields.setdefault("names", [f"entity-{self._next()}"])
        return self._add(Entity(agent_id=owner.id, **fields))  # type: ignore[no-any-return]

    def world(self, agent: Agent | None = None, **fields: Any) -> World:
        """A world of ``agent`` (a new agent when not given)."""
        from dbcore.DB_Entities import World

        owner = agent if agent is not None else self.agent()
        fields.setdefault("name", f"world-{self._next()}")
        return self._add(World(agent_id=owner.id, **fields))  # type: ignore[no-any-return]

    def room(self, world: World | None = None, **fields: Any) -> Room:
        """A room (a group room in ``world`` when given), named ``room-N``."""
        from dbcore.DB_Entities import Room, RoomKind

        fields.setdefault("name", f"room-{self._next()}")
        fields.setdefault("kind", RoomKind.GROUP)
        return self._add(Room(world_id=world.id if world is not None else None, **fields))  # type: ignore[no-any-return]

    def memory(
        self,
        text: str = "hello",
        *,
        entity: Entity | None = None,
        room: Room | None = None,
        embedding: Any = None,
        **fields: Any,
    ) -> Memory:
        """A message memory ``{"text": text}`` by ``entity`` in ``room`` (both made when not given).

        ``embedding`` (a vector of the configured dimension) is stored with it, as
        :func:`dbcore.memories.add_memories` does.
        """
        from dbcore.DB_Memories import Memory, MemoryKind
        from dbcore.memories import add_memories

        author = entity if entity is not None else self.entity()
        place = room if room is not None else self.room()
        item: dict[str, Any] = {
            "agent_id": author.agent_id,
            "entity_id": author.id,
            "room_id": place.id,
            "world_id": place.world_id,
            "kind": MemoryKind.MESSAGE,
            "content": {"text": text},
            **fields,
        }
        if embedding is not None:
            item["embedding"] = embedding
        (memory_id,) = add_memories(self.session, [item])
        made = self.session.get(Memory, memory_id)
        assert made is not None
        return made
