"""A task cancelled inside get_async_session() rolls back and gives its connection back, on every dialect.

Two places a cancellation can land: while the unit awaits something other than the
database (the connection is idle in its transaction), and while a statement is on the
wire. Afterwards nothing the unit wrote is in the database, no connection is checked
out, and the same engine still serves the next unit.
"""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession

import dbcore
from tests.api_modes import LoopRunner

metadata = sa.MetaData()
notes = sa.Table(
    "cancel_notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("body", sa.String(100), nullable=False),
)

# A statement that runs for a while on each dialect (SQLite has no sleep: a counting query).
_SLOW = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) SELECT count(*) FROM c",
    "postgresql": "SELECT pg_sleep(5)",
    "mysql": "SELECT SLEEP(5)",
    "mariadb": "SELECT SLEEP(5)",
    "mssql": "WAITFOR DELAY '00:00:05'",
}


@pytest.fixture
def table(settings: dbcore.Settings) -> Engine:
    engine = dbcore.get_engine(settings)
    metadata.create_all(engine)
    return engine


def _count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(notes)).scalar_one()


async def _cancel_inside_unit(settings: dbcore.Settings, *, mid_statement: bool) -> tuple[int, int]:
    """Cancel a unit after its INSERT; returns (connections checked out before, after)."""
    reached = asyncio.Event()

    async def unit() -> None:
        async with dbcore.get_async_session(settings) as session:
            await session.execute(notes.insert().values(id=1, body="never committed"))
            reached.set()
            if mid_statement:
                await session.execute(sa.text(_SLOW[session.bind.dialect.name]))
            else:
                await asyncio.sleep(30)

    engine = dbcore.get_async_engine(settings)
    task = asyncio.create_task(unit())
    await reached.wait()
    await asyncio.sleep(0.2)  # the slow statement is on the wire (or the sleep has begun)
    during = engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    after = engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]
    # The engine still works: the next unit commits.
    async with dbcore.get_async_session(settings) as session:
        await session.execute(notes.insert().values(id=2, body="next unit"))
    return during, after


@pytest.mark.parametrize("mid_statement", [False, True], ids=["awaiting-other-work", "mid-statement"])
def test_cancelled_unit_rolls_back_and_returns_its_connection(
    aio: LoopRunner, settings: dbcore.Settings, table: Engine, mid_statement: bool
) -> None:
    during, after = aio.run(_cancel_inside_unit(settings, mid_statement=mid_statement))
    assert (during, after) == (1, 0)
    with table.connect() as connection:
        rows = connection.execute(sa.select(notes.c.id).order_by(notes.c.id)).scalars().all()
    assert rows == [2]  # the cancelled unit's row is gone, the next unit's is there


def test_cancelled_run_in_transaction_is_not_retried(aio: LoopRunner, settings: dbcore.Settings, table: Engine) -> None:
    calls: list[int] = []

    async def work(session: AsyncSession) -> None:
        calls.append(1)
        await session.execute(notes.insert().values(id=1, body="x"))
        await asyncio.sleep(30)

    async def scenario() -> int:
        task = asyncio.create_task(dbcore.run_in_transaction_async(work, settings))
        while not calls:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return dbcore.get_async_engine(settings).sync_engine.pool.checkedout()  # type: ignore[attr-defined]

    assert aio.run(scenario()) == 0
    assert calls == [1]
    assert _count(table) == 0
