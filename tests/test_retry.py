"""A unit of work survives a real server outage: retried whole, applied exactly once, bounded by time.

The embedded PostgreSQL is stopped and restarted for real; servers shared with other
tests (the local PostgreSQL 15, MariaDB) are cut off behind a TCP proxy. Each test of
the retry rules takes the ``api`` fixture: ``run_in_transaction`` and
``run_in_transaction_async`` must keep the same ones.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

import dbcore
from dbcore.testing import EmbeddedPostgres, TestServers, isolated_database
from tests.api_modes import Api, LoopRunner
from tests.conftest import server_url
from tests.tcp_proxy import TcpProxy, proxied

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
    settings = dbcore.Settings(database_url=server.url.render_as_string(hide_password=False))  # default retries
    metadata.create_all(dbcore.get_engine(settings))
    return settings


def items(settings: dbcore.Settings) -> list[int]:
    with dbcore.get_engine(settings).connect() as connection:
        return list(connection.execute(sa.select(ledger.c.item).order_by(ledger.c.item)).scalars())


@pytest.mark.postgresql
def test_server_stopped_mid_unit_is_retried_once_whole(
    api: Api, server: EmbeddedPostgres, settings: dbcore.Settings
) -> None:
    attempts: list[int] = []

    def work(session: Session) -> str:
        attempts.append(len(attempts) + 1)
        session.execute(ledger.insert().values(item=1))
        if len(attempts) == 1:
            server.stop()  # the server goes away with half the unit done
            threading.Timer(1.0, server.start).start()
        session.execute(ledger.insert().values(item=2))
        return "done"

    assert api.run_in_transaction(work, settings) == "done"
    assert attempts[0] == 1 and len(attempts) >= 2
    assert items(settings) == [1, 2], "no duplicate and no loss"


@pytest.mark.postgresql
def test_server_down_before_unit_starts(api: Api, server: EmbeddedPostgres, settings: dbcore.Settings) -> None:
    server.stop()
    threading.Timer(1.0, server.start).start()

    def work(session: Session) -> str:
        session.execute(ledger.insert().values(item=7))
        return "inserted"

    assert api.run_in_transaction(work, settings) == "inserted"
    assert items(settings) == [7]


@pytest.mark.postgresql
def test_retry_gives_up_within_bounds(api: Api, server: EmbeddedPostgres) -> None:
    settings = dbcore.Settings(
        database_url=server.url.render_as_string(hide_password=False),
        connect_timeout=1,
        retry_attempts=3,
        retry_max_seconds=10,
    )
    server.stop()
    calls: list[int] = []

    def work(session: Session) -> None:
        calls.append(1)
        session.execute(sa.text("SELECT 1"))

    with pytest.raises(dbcore.ConnectionFailed):
        api.run_in_transaction(work, settings)
    assert len(calls) == 3


def test_default_retries_are_bounded_by_time_not_count(api: Api) -> None:
    # Nothing listens on port 1: every attempt is refused at once, as while a server restarts.
    settings = dbcore.Settings(database_url="postgresql+psycopg://u@127.0.0.1:1/x", retry_max_seconds=3)
    calls: list[float] = []

    def work(session: Session) -> None:
        calls.append(time.monotonic())
        session.execute(sa.text("SELECT 1"))

    started = time.monotonic()
    with pytest.raises(dbcore.ConnectionFailed):
        api.run_in_transaction(work, settings)
    elapsed = time.monotonic() - started
    assert len(calls) > 5, "no count cap by default (it was 5 attempts, ~2 s)"
    # No retry after 3 s; one already waiting may start up to one backoff (2 s + 0.25 s jitter) later.
    assert calls[-1] - started >= 2.5 and elapsed < 3 + 2.25 + 1, "retried until the time bound, no longer"
    assert max(b - a for a, b in zip(calls, calls[1:], strict=False)) < 2.5, "backoff is capped at 2 s (+ jitter)"


def test_explicit_limits_are_checked_like_settings(api: Api) -> None:
    settings = dbcore.Settings(database_url="sqlite:///:memory:")
    for limits in ({"attempts": 0}, {"max_seconds": -1.0}, {"max_seconds": float("inf")}):
        with pytest.raises(dbcore.ConfigurationError):
            api.run_in_transaction(lambda session: None, settings, **limits)


# Servers shared with other tests are cut off behind a proxy, not stopped.
@pytest.fixture(
    params=[
        pytest.param("postgresql_novector", marks=pytest.mark.postgresql, id="postgresql"),
        pytest.param("mariadb", marks=pytest.mark.mariadb, id="mariadb"),
    ]
)
def behind_proxy(
    request: pytest.FixtureRequest, servers: TestServers
) -> Iterator[tuple[TcpProxy, dbcore.Settings, URL]]:
    """A proxy, default settings for a fresh database through it, and that database's direct URL."""
    with isolated_database(server_url(servers, request.param)) as direct, proxied(direct) as (proxy, through):
        direct_engine = sa.create_engine(direct, poolclass=sa.pool.NullPool)
        metadata.create_all(direct_engine)
        direct_engine.dispose()
        yield proxy, dbcore.Settings(database_url=through.render_as_string(hide_password=False)), direct
        dbcore.dispose_engines()


def test_default_settings_ride_out_a_3s_outage(api: Api, behind_proxy: tuple[TcpProxy, dbcore.Settings, URL]) -> None:
    proxy, settings, direct = behind_proxy
    assert api.is_connected(settings)  # the pool holds a connection that the outage will break
    calls: list[float] = []

    def work(session: Session) -> str:
        calls.append(time.monotonic())
        session.execute(ledger.insert().values(item=len(calls)))
        return "done"

    proxy.stop()
    restart = threading.Timer(3.0, proxy.start)
    restart.start()
    started = time.monotonic()
    try:
        assert api.run_in_transaction(work, settings) == "done"
    finally:
        restart.join()
    elapsed = time.monotonic() - started
    # The old defaults (5 attempts, backoff from 0.1 s) gave up after about 2 s.
    assert 2.9 <= elapsed < 20, elapsed
    assert len(calls) >= 2
    engine = sa.create_engine(direct, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        assert list(connection.execute(sa.select(ledger.c.item)).scalars()) == [len(calls)], "applied once"
    engine.dispose()


def test_connection_lost_during_commit_is_outcome_unknown_and_not_retried(
    api: Api, behind_proxy: tuple[TcpProxy, dbcore.Settings, URL]
) -> None:
    proxy, settings, direct = behind_proxy
    calls: list[int] = []

    def work(session: Session) -> None:
        calls.append(1)
        session.execute(ledger.insert().values(item=len(calls)))

    # The connection is cut as the transaction commits, just before the driver sends COMMIT.
    event.listen(api.engine(settings), "commit", lambda connection: proxy.stop(), once=True)
    with pytest.raises(dbcore.TransactionOutcomeUnknown) as caught:
        api.run_in_transaction(work, settings)
    assert isinstance(caught.value.__cause__, dbcore.ConnectionFailed)
    assert calls == [1], "a unit whose COMMIT may have happened must not run again"
    engine = sa.create_engine(direct, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:  # here the COMMIT never reached the server
        assert list(connection.execute(sa.select(ledger.c.item)).scalars()) == []
    engine.dispose()


def test_async_retry_waits_on_the_event_loop(aio: LoopRunner) -> None:
    """Between attempts run_in_transaction_async sleeps with asyncio: other tasks run meanwhile.

    When the first attempt fails, it starts a task that sleeps 0.05 s, less than the
    first backoff (at least 0.1 s): if the backoff awaits, the event loop wakes that
    task before the second attempt begins; a backoff that blocked the thread would run
    the second attempt first (nothing lets the loop run between the end of the backoff
    and the attempt's work).
    """
    # Nothing listens on port 1: each attempt is refused at once, a transient fault.
    settings = dbcore.Settings(database_url="postgresql+psycopg://u@127.0.0.1:1/x", retry_attempts=2)
    other_task_done: list[bool] = []
    seen_by_attempts: list[bool] = []
    others: list[asyncio.Task[None]] = []

    async def other_task() -> None:
        await asyncio.sleep(0.05)
        other_task_done.append(True)

    async def work(session: AsyncSession) -> None:
        seen_by_attempts.append(bool(other_task_done))
        try:
            await session.execute(sa.text("SELECT 1"))
        finally:
            if not others:
                others.append(asyncio.create_task(other_task()))

    async def retried() -> None:
        with pytest.raises(dbcore.ConnectionFailed):
            await dbcore.run_in_transaction_async(work, settings)
        await asyncio.gather(*others)

    aio.run(retried())
    assert seen_by_attempts == [False, True]


def test_proxy_restarts_on_the_same_port() -> None:
    upstream = socket.create_server(("127.0.0.1", 0))
    proxy = TcpProxy("127.0.0.1", upstream.getsockname()[1])
    try:
        proxy.start()
        port = proxy.port
        time.sleep(0.2)  # the proxy waits for clients
        proxy.stop()
        proxy.start()  # was "Address already in use": the old listener lingered until a client came
        assert proxy.port == port
        with socket.create_connection(("127.0.0.1", port), timeout=2) as client:
            served, _ = upstream.accept()  # forwarded
            client.sendall(b"ping")
            assert served.recv(4) == b"ping"
            served.close()
        proxy.stop()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)  # closed while stopped: refused
        proxy.stop()
    finally:
        proxy.stop()
        upstream.close()


@pytest.mark.postgresql
def test_cleanup_after_stop_succeeds_and_can_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    server = EmbeddedPostgres()
    try:
        server.stop()

        # The stopped postmaster can be reaped at any moment; psutil then raises NoSuchProcess for
        # any signal sent to it, as at the teardown that failed. Make that certain here.
        def gone(self: psutil.Process, *args: object) -> None:
            raise psutil.NoSuchProcess(self.pid)

        for method in ("send_signal", "terminate", "kill"):
            monkeypatch.setattr(psutil.Process, method, gone)
        server.cleanup()
        server.cleanup()
        assert not server.directory.exists()
    finally:
        monkeypatch.undo()
        server.cleanup()


@pytest.mark.postgresql
def test_cleanup_of_a_running_server_stops_and_deletes_it() -> None:
    server = EmbeddedPostgres()
    server.cleanup()
    assert not server.directory.exists()
    server.cleanup()
