"""Which async driver each dialect gets, what a missing one says, and SQL Server on aioodbc without a server.

``Settings.async_url`` swaps the URL's sync driver for its async counterpart;
``dbcore.create_async_engine`` builds the engine on it without connecting, so the
driver choice, the pool options and dbcore's listeners are checked here for every
dialect, including those without a server on this machine. A missing driver is a
real import failure (``sys.modules[name] = None`` makes ``import name`` raise
ImportError), not a stand-in for a database.

SQL Server has no server here: its async dialect (mssql+aioodbc) is checked by
compiling dbcore's DDL and statements on it, and by running a select through
``get_async_session`` up to the point where a connection would be needed. The live
suite runs the same engine against a server when ``DBCORE_TEST_MSSQL_URL`` is set
(the ``api`` fixture's async mode).
"""

from __future__ import annotations

import functools
import sys
import traceback
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql.psycopg import PGDialectAsync_psycopg
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.schema import CreateIndex, CreateTable

import dbcore
from dbcore import ConfigurationError, Settings, dialects, hooks
from dbcore.base import Base
from dbcore.DB_Agents import Agent
from dbcore.DB_Memories import Memory, MemoryEmbedding, MemoryKind
from dbcore.Mixins import INCLUDE_DELETED
from tests.api_modes import LoopRunner

SECRET = "Async-S3cret-pw"
MSSQL_URL = f"mssql+pyodbc://u:{SECRET}@h/db?driver=ODBC+Driver+18+for+SQL+Server"

# sync URL -> (the async URL's drivername, the async dialect's driver name)
DRIVERS = {
    "sqlite:///{tmp}/x.sqlite3": ("sqlite+aiosqlite", "aiosqlite"),
    f"postgresql+psycopg://u:{SECRET}@h/db": ("postgresql+psycopg", None),
    f"postgresql+psycopg2://u:{SECRET}@h/db": ("postgresql+psycopg", None),
    f"postgresql://u:{SECRET}@h/db": ("postgresql+psycopg", None),
    f"mysql+pymysql://u:{SECRET}@h/db": ("mysql+asyncmy", "asyncmy"),
    f"mariadb+pymysql://u:{SECRET}@h/db": ("mariadb+asyncmy", "asyncmy"),
    MSSQL_URL: ("mssql+aioodbc", "aioodbc"),
}

# sync URL -> (the async driver's module, the extra that installs it)
MISSING = {
    "sqlite:///{tmp}/x.sqlite3": ("aiosqlite", "asyncio"),
    f"postgresql+psycopg2://u:{SECRET}@h/db": ("psycopg", "postgres"),
    f"mysql+pymysql://u:{SECRET}@h/db": ("asyncmy", "mariadb"),
    f"mariadb+pymysql://u:{SECRET}@h/db": ("asyncmy", "mariadb"),
    MSSQL_URL: ("aioodbc", "mssql"),
}


def _settings(template: str, tmp: Any) -> Settings:
    return Settings(database_url=template.replace("{tmp}", str(tmp)))


def _ids(urls: dict[str, Any]) -> list[str]:
    return [sa.engine.make_url(url.replace("{tmp}", "")).drivername for url in urls]


@pytest.fixture
def built() -> Iterator[list[AsyncEngine]]:
    """Engines a test built (never connected): their pools are dropped at the end."""
    engines: list[AsyncEngine] = []
    yield engines
    for engine in engines:
        engine.sync_engine.dispose(close=False)


# --- driver selection ----------------------------------------------------------------------


@pytest.mark.compile_only
@pytest.mark.parametrize("template", DRIVERS, ids=_ids(DRIVERS))
def test_each_dialect_gets_its_async_driver(template: str, tmp_path: Any, built: list[AsyncEngine]) -> None:
    drivername, driver = DRIVERS[template]
    settings = _settings(template, tmp_path)
    url = settings.async_url
    assert url.drivername == drivername
    # Only the driver changes: credentials, host, database and query stay as given.
    assert url.set(drivername=settings.url.drivername) == settings.url

    engine = dbcore.create_async_engine(settings)  # builds the pool, connects nowhere
    built.append(engine)
    assert engine.url == url
    assert engine.dialect.is_async
    assert engine.dialect.name == settings.url.get_backend_name()
    if driver is None:  # psycopg 3 is both: its async dialect class tells them apart
        assert isinstance(engine.dialect, PGDialectAsync_psycopg)
    else:
        assert engine.dialect.driver == driver
    assert hooks.is_dbcore_engine(engine.sync_engine)
    assert engine.sync_engine.pool.checkedout() == 0


@pytest.mark.compile_only
@pytest.mark.parametrize("template", MISSING, ids=_ids(MISSING))
def test_a_missing_async_driver_names_the_extra(template: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    module, extra = MISSING[template]
    settings = _settings(template, tmp_path)  # the sync driver is there: the settings are valid
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(ConfigurationError) as from_url:
        _ = settings.async_url
    with pytest.raises(ConfigurationError) as from_engine:
        dbcore.create_async_engine(settings)
    for caught in (from_url, from_engine):
        message = str(caught.value)
        assert f"pip install 'dbcore[{extra}]'" in message
        assert "not installed" in message
        _assert_secret_hidden(caught.value)


@pytest.mark.compile_only
@pytest.mark.parametrize("template", MISSING, ids=_ids(MISSING))
def test_a_missing_greenlet_names_the_asyncio_extra(
    template: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(template, tmp_path)
    monkeypatch.setitem(sys.modules, "greenlet", None)
    with pytest.raises(ConfigurationError) as caught:
        dbcore.create_async_engine(settings)
    message = str(caught.value)
    assert "pip install 'dbcore[asyncio]'" in message and "greenlet" in message
    _assert_secret_hidden(caught.value)


def _assert_secret_hidden(error: BaseException) -> None:
    shown = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    assert SECRET not in shown and SECRET not in repr(error)


# --- SQL Server on aioodbc, without a server ------------------------------------------------


@pytest.fixture
def mssql_async(built: list[AsyncEngine]) -> AsyncEngine:
    engine = dbcore.create_async_engine(Settings(database_url=MSSQL_URL))
    built.append(engine)
    return engine


@pytest.fixture
def mssql_sync() -> Iterator[sa.Engine]:
    engine = dbcore.create_engine(Settings(database_url=MSSQL_URL))
    yield engine
    engine.dispose()


@pytest.mark.compile_only
def test_mssql_async_engine_has_dbcore_pool_and_listeners(mssql_async: AsyncEngine) -> None:
    engine = mssql_async
    assert engine.url.drivername == "mssql+aioodbc"
    assert engine.url.query["driver"] == "ODBC Driver 18 for SQL Server"
    assert engine.url.password == SECRET  # kept for connecting, masked when shown
    assert SECRET not in repr(engine) and SECRET not in str(engine.url)
    assert engine.dialect.name == "mssql" and engine.dialect.driver == "aioodbc" and engine.dialect.is_async
    assert engine.dialect.fast_executemany is True
    pool = engine.sync_engine.pool
    assert isinstance(pool, sa.pool.AsyncAdaptedQueuePool)
    assert pool.size() == 40 and pool._max_overflow == -1 and pool._pre_ping
    assert hooks.is_dbcore_engine(engine.sync_engine)
    # dbcore's error translation is what the engine runs on a driver error.
    assert any(
        isinstance(fn, functools.partial) and fn.func is dialects.translate_error
        for fn in engine.sync_engine.dialect.dispatch.handle_error
    )
    assert pool.checkedout() == 0 and pool.checkedin() == 0  # nothing was connected


def _all_ddl(dialect: Dialect) -> list[str]:
    return [
        str(element.compile(dialect=dialect)).strip()
        for table in Base.metadata.sorted_tables
        for element in [CreateTable(table), *(CreateIndex(index) for index in table.indexes)]
    ]


@pytest.mark.compile_only
def test_dbcore_ddl_compiles_on_mssql_aioodbc_as_on_pyodbc(mssql_async: AsyncEngine, mssql_sync: sa.Engine) -> None:
    ddl = _all_ddl(mssql_async.dialect)
    assert ddl == _all_ddl(mssql_sync.dialect)
    memories = next(text for text in ddl if text.startswith("CREATE TABLE memories "))
    assert "id UNIQUEIDENTIFIER NOT NULL" in memories
    assert "created_at DATETIME2(6) NOT NULL" in memories
    embeddings = next(text for text in ddl if text.startswith("CREATE TABLE memory_embeddings "))
    assert "embedding VARBINARY(max) NOT NULL" in embeddings
    assert any(text.startswith("CREATE INDEX ix_memories_room_id_created_at ON memories") for text in ddl)


def _driver_values(dialect: Dialect, table: sa.Table, row: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The INSERT that ``table.insert()`` executes for ``row`` on ``dialect``, and the values the driver gets."""
    compiled = table.insert().compile(dialect=dialect, column_keys=list(row))
    values = {}
    for key, value in row.items():
        process = table.c[key].type.dialect_impl(dialect).bind_processor(dialect)
        values[key] = process(value) if process else value
    return str(compiled), values


@pytest.mark.compile_only
def test_memory_insert_with_embedding_compiles_on_mssql_aioodbc(
    mssql_async: AsyncEngine, mssql_sync: sa.Engine
) -> None:
    # The rows dbcore.memories.add_memories executes, for one memory and its embedding.
    now = dbcore.utcnow()
    memory_id = uuid.uuid4()
    memory = {
        "id": memory_id,
        "agent_id": uuid.uuid4(),
        "entity_id": uuid.uuid4(),
        "room_id": uuid.uuid4(),
        "kind": MemoryKind.MESSAGE,
        "content": {"text": "bonjour \N{ROBOT FACE}"},
        "metadata": {"tags": ["greeting"]},
        "is_unique": False,
        "created_at": now,
        "updated_at": now,
    }
    dims = MemoryEmbedding.__table__.c.embedding.type.dim
    vector = np.linspace(-1, 1, dims, dtype=np.float32)
    embedding = {"id": uuid.uuid4(), "memory_id": memory_id, "embedding": vector, "model": "m", "created_at": now}

    dialect = mssql_async.dialect
    sql, values = _driver_values(dialect, Memory.__table__, memory)
    assert sql == (
        "INSERT INTO memories (id, kind, content, metadata, is_unique, agent_id, entity_id, room_id, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    assert values["kind"] == 1
    assert "bonjour" in values["content"]
    sql, values = _driver_values(dialect, MemoryEmbedding.__table__, embedding)
    assert sql == "INSERT INTO memory_embeddings (id, embedding, model, memory_id, created_at) VALUES (?, ?, ?, ?, ?)"
    assert values["embedding"] == vector.astype("<f4").tobytes()
    # aioodbc hands these to pyodbc: the very values the sync engine binds.
    for table, row in ((Memory.__table__, memory), (MemoryEmbedding.__table__, embedding)):
        assert _driver_values(dialect, table, row) == _driver_values(mssql_sync.dialect, table, row)


@pytest.mark.compile_only
def test_async_session_on_mssql_aioodbc_applies_the_soft_delete_filter(
    mssql_async: AsyncEngine, aio: LoopRunner
) -> None:
    """A select through get_async_session gets dbcore's soft-delete filter (a session hook) on
    mssql+aioodbc; the statement is taken after dbcore's hooks ran and answered with no rows,
    so no connection is needed."""
    settings = Settings(database_url=MSSQL_URL)
    sent: list[Any] = []

    def take(state: ORMExecuteState) -> sa.Result[Any]:
        sent.append(state.statement)
        return sa.engine.IteratorResult(sa.engine.result.SimpleResultMetaData([]), iter([]))

    async def select_agents() -> AsyncEngine:
        async with dbcore.get_async_session(settings) as session:
            # Listeners of the session run after the class-level ones, dbcore's among them.
            event.listen(session.sync_session, "do_orm_execute", take)
            assert (await session.execute(sa.select(Agent))).all() == []
            await session.execute(sa.select(Agent).execution_options(**{INCLUDE_DELETED: True}))
        return dbcore.get_async_engine(settings)

    engine = aio.run(select_agents())
    filtered, unfiltered = (str(statement.compile(dialect=engine.dialect)) for statement in sent)
    assert engine.dialect.driver == "aioodbc"
    assert "WHERE agents.deleted_at IS NULL" in filtered
    assert "deleted_at IS NULL" not in unfiltered
    assert engine.sync_engine.pool.checkedout() == 0 and engine.sync_engine.pool.checkedin() == 0
