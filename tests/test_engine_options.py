"""Each dialect's engine is configured as docs/patterns.md describes, read back from the live connection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool

import dbcore
from dbcore.dialects import MARIADB_SQL_MODE
from dbcore.testing import TestServers, isolated_database
from tests.conftest import server_url


def test_server_pools_are_sized_40_with_unbounded_overflow(engine: Engine, dialect: str) -> None:
    if dialect == "sqlite":
        assert not isinstance(engine.pool, QueuePool) or engine.pool.size() == 5, "SQLite keeps SQLAlchemy's own pool"
        return
    assert isinstance(engine.pool, QueuePool)
    assert engine.pool.size() == 40
    assert engine.pool._max_overflow == -1
    assert engine.pool._pre_ping is True


@pytest.fixture
def sqlite_file_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = dbcore.create_engine(dbcore.Settings(database_url=f"sqlite:///{tmp_path / 'pragmas.sqlite3'}"))
    yield engine
    engine.dispose()


@pytest.fixture
def mariadb_engine(servers: TestServers) -> Iterator[Engine]:
    with isolated_database(server_url(servers, "mariadb")) as url:
        engine = dbcore.create_engine(dbcore.Settings(database_url=url.render_as_string(hide_password=False)))
        yield engine
        engine.dispose()


@pytest.mark.sqlite
def test_sqlite_file_pragmas(sqlite_file_engine: Engine) -> None:
    with sqlite_file_engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 5000


@pytest.mark.sqlite
def test_sqlite_memory_has_foreign_keys_and_regexp(memory_engine: Engine) -> None:
    with memory_engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert connection.exec_driver_sql("SELECT 'agent-1' REGEXP '^agent-[0-9]$'").scalar_one() == 1


@pytest.mark.sqlite
def test_sqlite_memory_is_one_database_across_checkouts(memory_engine: Engine) -> None:
    with memory_engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    with memory_engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 0


def test_sqlite_savepoints_roll_back_inner_work_only(engine: Engine, dialect: str) -> None:
    metadata = sa.MetaData()
    table = sa.Table("sp", metadata, sa.Column("x", sa.Integer, primary_key=True, autoincrement=False))
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(table.insert().values(x=1))
        nested = connection.begin_nested()
        connection.execute(table.insert().values(x=2))
        nested.rollback()
    with engine.connect() as connection:
        assert list(connection.execute(sa.select(table.c.x)).scalars()) == [1]


@pytest.mark.mariadb
def test_mariadb_is_strict_and_utf8mb4(mariadb_engine: Engine) -> None:
    engine = mariadb_engine
    with engine.connect() as connection:
        mode = connection.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar_one()
        assert "STRICT_ALL_TABLES" in mode
        assert set(MARIADB_SQL_MODE.split(",")) <= set(mode.split(","))
        assert connection.exec_driver_sql("SELECT @@character_set_connection").scalar_one() == "utf8mb4"
    metadata = sa.MetaData()
    table = sa.Table("emoji", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("text", sa.String(20)))
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(table.insert().values(id=1, text="agent \N{ROBOT FACE}"))
    with engine.connect() as connection:
        assert connection.execute(sa.select(table.c.text)).scalar_one() == "agent \N{ROBOT FACE}"


@pytest.mark.compile_only
def test_mssql_engine_uses_fast_executemany_and_the_big_pool() -> None:
    settings = dbcore.Settings(
        database_url="mssql+pyodbc://sa:pw@127.0.0.1:1433/dbcore?driver=ODBC+Driver+18+for+SQL+Server&TrustServerCertificate=yes"
    )
    engine = dbcore.create_engine(settings)  # no connection is made
    try:
        assert engine.dialect.fast_executemany is True
        assert isinstance(engine.pool, QueuePool) and engine.pool.size() == 40 and engine.pool._max_overflow == -1
    finally:
        engine.dispose()


def test_importing_dbcore_loads_no_vector_store_sdk() -> None:
    import subprocess
    import sys

    code = "import dbcore, sys; print(sorted(m for m in ('chromadb', 'pinecone') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
