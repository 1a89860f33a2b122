"""Each dialect's engine is configured as docs/patterns.md describes, read back from the live connection.

The checks run both ways (the ``api`` fixture): on ``get_engine`` and on the async engine
``get_async_engine`` makes (its ``sync_engine``, which holds the pool), through sessions
of ``get_session`` and ``get_async_session``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

import dbcore
from dbcore.dialects import MARIADB_SQL_MODE
from dbcore.testing import TestServers, isolated_database
from tests.api_modes import Api
from tests.conftest import server_url


def scalar(sql: str) -> Callable[[Session], Any]:
    """A unit of work reading one value with ``sql`` on the session's connection."""
    return lambda session: session.connection().exec_driver_sql(sql).scalar_one()


def test_server_pools_are_sized_40_with_unbounded_overflow(api: Api, settings: dbcore.Settings, dialect: str) -> None:
    engine = api.engine(settings)
    if dialect == "sqlite":
        assert not isinstance(engine.pool, QueuePool) or engine.pool.size() == 5, "SQLite keeps SQLAlchemy's own pool"
        return
    assert isinstance(engine.pool, QueuePool)
    assert engine.pool.size() == 40
    assert engine.pool._max_overflow == -1
    assert engine.pool._pre_ping is True
    assert engine.pool._timeout == settings.pool_timeout
    assert engine.pool._recycle == settings.pool_recycle


def test_server_connect_args_reach_the_driver(api: Api, settings: dbcore.Settings, dialect: str) -> None:
    """The connect timeout (and PostgreSQL's application name, MariaDB's charset) go to the driver's connect()."""
    if dialect == "sqlite":
        pytest.skip("SQLite has no server to connect to (its pragmas are checked below)")
    engine = api.engine(settings)
    sent: list[dict[str, Any]] = []

    @event.listens_for(engine, "do_connect")
    def record(_dialect: object, _record: object, _cargs: object, cparams: dict[str, Any]) -> None:
        sent.append(dict(cparams))

    api.unit(settings, scalar("SELECT 1"))
    assert sent, "no new connection was made"
    assert sent[0]["connect_timeout"] == int(settings.connect_timeout)
    if dialect.startswith("postgresql"):
        assert sent[0]["application_name"] == "dbcore"
        assert api.unit(settings, scalar("SHOW application_name")) == "dbcore"
    else:
        assert sent[0]["charset"] == "utf8mb4"


@pytest.fixture
def sqlite_file(tmp_path: Path) -> dbcore.Settings:
    """An SQLite database file that no connection has configured yet (pragmas like WAL persist in the file)."""
    path = tmp_path / "pragmas.sqlite3"
    path.touch()  # an empty file is an empty database; get_session refuses a missing one
    return dbcore.Settings(database_url=f"sqlite:///{path}")


@pytest.fixture
def sqlite_memory() -> dbcore.Settings:
    return dbcore.Settings(database_url="sqlite:///:memory:")


@pytest.fixture
def mariadb(servers: TestServers) -> Iterator[dbcore.Settings]:
    with isolated_database(server_url(servers, "mariadb")) as url:
        yield dbcore.Settings(database_url=url.render_as_string(hide_password=False))


@pytest.mark.sqlite
def test_sqlite_file_pragmas(api: Api, sqlite_file: dbcore.Settings) -> None:
    assert api.unit(sqlite_file, scalar("PRAGMA foreign_keys")) == 1
    assert api.unit(sqlite_file, scalar("PRAGMA journal_mode")) == "wal"
    assert api.unit(sqlite_file, scalar("PRAGMA busy_timeout")) == 5000


@pytest.mark.sqlite
def test_sqlite_memory_has_foreign_keys_and_regexp(api: Api, sqlite_memory: dbcore.Settings) -> None:
    assert api.unit(sqlite_memory, scalar("PRAGMA foreign_keys")) == 1
    assert api.unit(sqlite_memory, scalar("SELECT 'agent-1' REGEXP '^agent-[0-9]$'")) == 1


@pytest.mark.sqlite
def test_sqlite_memory_is_one_database_across_checkouts(api: Api, sqlite_memory: dbcore.Settings) -> None:
    api.unit(sqlite_memory, lambda session: session.connection().exec_driver_sql("CREATE TABLE t (x INTEGER)") and None)
    assert api.unit(sqlite_memory, scalar("SELECT count(*) FROM t")) == 0


def test_sqlite_savepoints_roll_back_inner_work_only(
    api: Api, settings: dbcore.Settings, engine: Engine, dialect: str
) -> None:
    metadata = sa.MetaData()
    table = sa.Table("sp", metadata, sa.Column("x", sa.Integer, primary_key=True, autoincrement=False))
    metadata.create_all(engine)

    def work(session: Session) -> None:
        session.execute(table.insert().values(x=1))
        nested = session.begin_nested()
        session.execute(table.insert().values(x=2))
        nested.rollback()

    api.unit(settings, work)
    with engine.connect() as connection:
        assert list(connection.execute(sa.select(table.c.x)).scalars()) == [1]


@pytest.mark.mariadb
def test_mariadb_is_strict_and_utf8mb4(api: Api, mariadb: dbcore.Settings) -> None:
    mode = api.unit(mariadb, scalar("SELECT @@SESSION.sql_mode"))
    assert "STRICT_ALL_TABLES" in mode
    assert set(MARIADB_SQL_MODE.split(",")) <= set(mode.split(","))
    assert api.unit(mariadb, scalar("SELECT @@character_set_connection")) == "utf8mb4"
    metadata = sa.MetaData()
    table = sa.Table("emoji", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("text", sa.String(20)))
    metadata.create_all(dbcore.get_engine(mariadb))
    api.unit(
        mariadb, lambda session: session.execute(table.insert().values(id=1, text="agent \N{ROBOT FACE}")) and None
    )
    assert (
        api.unit(mariadb, lambda session: session.execute(sa.select(table.c.text)).scalar_one())
        == "agent \N{ROBOT FACE}"
    )


@pytest.mark.compile_only
def test_mssql_engine_uses_fast_executemany_and_the_big_pool(api: Api) -> None:
    settings = dbcore.Settings(
        database_url="mssql+pyodbc://sa:pw@127.0.0.1:1433/dbcore?driver=ODBC+Driver+18+for+SQL+Server&TrustServerCertificate=yes"
    )
    engine = api.engine(settings)  # no connection is made
    assert engine.dialect.driver == ("aioodbc" if api.is_async else "pyodbc")
    assert engine.dialect.fast_executemany is True  # type: ignore[attr-defined]
    assert isinstance(engine.pool, QueuePool) and engine.pool.size() == 40 and engine.pool._max_overflow == -1


def test_importing_dbcore_loads_no_vector_store_sdk() -> None:
    import subprocess
    import sys

    code = "import dbcore, sys; print(sorted(m for m in ('chromadb', 'pinecone') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
