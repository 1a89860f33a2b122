"""A unit of work survives a real PostgreSQL restart: retried whole, applied exactly once."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import dbcore
from dbcore.testing import EmbeddedPostgres

pytestmark = pytest.mark.postgresql

metadata = sa.MetaData()
ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item", sa.Integer, nullable=False),  # no unique constraint: a duplicate would be visible
)


@pytest.fixture
def server() -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres()
    yield pg
    dbcore.dispose_engines()
    pg.cleanup()


@pytest.fixture
def settings(server: EmbeddedPostgres) -> dbcore.Settings:
    settings = dbcore.Settings(
        database_url=server.url.render_as_string(hide_password=False),
        connect_timeout=2,
        retry_attempts=12,
        retry_max_seconds=60,
    )
    metadata.create_all(dbcore.get_engine(settings))
    return settings


def items(settings: dbcore.Settings) -> list[int]:
    with dbcore.get_engine(settings).connect() as connection:
        return list(connection.execute(sa.select(ledger.c.item).order_by(ledger.c.item)).scalars())


def test_server_stopped_mid_unit_is_retried_once_whole(server: EmbeddedPostgres, settings: dbcore.Settings) -> None:
    attempts: list[int] = []

    def work(session: Session) -> str:
        attempts.append(len(attempts) + 1)
        session.execute(ledger.insert().values(item=1))
        if len(attempts) == 1:
            server.stop()  # the server goes away with half the unit done
            threading.Timer(1.0, server.start).start()
        session.execute(ledger.insert().values(item=2))
        return "done"

    assert dbcore.run_in_transaction(work, settings) == "done"
    assert attempts[0] == 1 and len(attempts) >= 2
    assert items(settings) == [1, 2], "no duplicate and no loss"


def test_server_down_before_unit_starts(server: EmbeddedPostgres, settings: dbcore.Settings) -> None:
    server.stop()
    threading.Timer(1.0, server.start).start()
    def work(session: Session) -> str:
        session.execute(ledger.insert().values(item=7))
        return "inserted"

    assert dbcore.run_in_transaction(work, settings) == "inserted"
    assert items(settings) == [7]


def test_retry_gives_up_within_bounds(server: EmbeddedPostgres) -> None:
    settings = dbcore.Settings(
        database_url=server.url.render_as_string(hide_password=False), connect_timeout=1, retry_attempts=3, retry_max_seconds=10
    )
    server.stop()
    calls: list[int] = []

    def work(session: Session) -> None:
        calls.append(1)
        session.execute(sa.text("SELECT 1"))

    with pytest.raises(dbcore.ConnectionFailed):
        dbcore.run_in_transaction(work, settings)
    assert len(calls) == 3
