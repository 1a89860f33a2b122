"""Concurrent units of work on one SQLite file through ``get_session()`` with default settings.

Under WAL a deferred ``BEGIN`` reads a snapshot; when another process commits before
the unit writes, the upgrade to a write lock fails at once with SQLITE_BUSY_SNAPSHOT
(the busy timeout cannot help), so read-then-write units used to fail with
``ConcurrencyError`` (529-629 of 800 with 4 processes x 200 units). Sessions that may
write now take the write lock at ``BEGIN IMMEDIATE``; read-only sessions keep the
deferred ``BEGIN`` and read alongside a writer. Real OS processes (spawn), one file.
The last tests check read-only sessions on every dialect.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from multiprocessing.pool import Pool
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import QueuePool

import dbcore

PROCESSES = 4
UNITS = 50
THREADS = 16
THREAD_UNITS = 10


class _Base(DeclarativeBase):
    pass


class Tally(_Base):
    """One row per unit of work; ``seen`` is the count the unit read before writing."""

    __tablename__ = "tallies"
    id: Mapped[int] = mapped_column(primary_key=True)
    worker: Mapped[int]
    seen: Mapped[int]


def _count(session: sa.orm.Session) -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(Tally)) or 0)


def read_then_write(url: str, worker: int, units: int) -> int:
    """``units`` sessions that read the count, then add a row; returns how many failed."""
    failures = 0
    for _ in range(units):
        try:
            with dbcore.get_session(dbcore.Settings(database_url=url)) as session:
                seen = _count(session)
                time.sleep(0.001)  # the work between reading and writing
                session.add(Tally(worker=worker, seen=seen))
        except dbcore.ConcurrencyError:
            failures += 1
    return failures


def write_only(url: str, worker: int, units: int) -> int:
    failures = 0
    for _ in range(units):
        try:
            with dbcore.get_session(dbcore.Settings(database_url=url)) as session:
                session.add(Tally(worker=worker, seen=-1))
        except dbcore.ConcurrencyError:
            failures += 1
    return failures


def read_only(url: str, worker: int, units: int) -> int:
    """``units`` read-only sessions reading the count twice; returns how many failed or saw it shrink."""
    failures = 0
    for _ in range(units):
        try:
            with dbcore.get_session(dbcore.Settings(database_url=url), read_only=True) as session:
                first = _count(session)
                time.sleep(0.001)
                if _count(session) != first:  # one snapshot for the whole transaction
                    failures += 1
        except dbcore.ConcurrencyError:
            failures += 1
    return failures


@pytest.fixture(scope="module")
def processes() -> Iterator[Pool]:
    """Started once: spawning four interpreters that import dbcore costs seconds on two cores."""
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as pool:
        yield pool


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite file holding the tallies table."""
    url = f"sqlite:///{tmp_path / 'units.sqlite3'}"
    engine = dbcore.create_engine(dbcore.Settings(database_url=url))
    _Base.metadata.create_all(engine)
    engine.dispose()
    return url


def rows(url: str) -> int:
    engine = dbcore.create_engine(dbcore.Settings(database_url=url))
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(Tally)).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.sqlite
def test_read_then_write_units_in_four_processes_all_commit(processes: Pool, url: str) -> None:
    failures = processes.starmap(read_then_write, [(url, w, UNITS) for w in range(PROCESSES)])
    assert sum(failures) == 0
    assert rows(url) == PROCESSES * UNITS


@pytest.mark.sqlite
def test_read_then_write_units_see_every_earlier_commit(processes: Pool, url: str) -> None:
    """With the write lock taken at BEGIN no two units read the same count: ``seen`` runs 0..n-1."""
    processes.starmap(read_then_write, [(url, w, UNITS) for w in range(PROCESSES)])
    engine = dbcore.create_engine(dbcore.Settings(database_url=url))
    try:
        with engine.connect() as connection:
            seen = sorted(connection.execute(sa.select(Tally.seen)).scalars())
    finally:
        engine.dispose()
    assert seen == list(range(PROCESSES * UNITS))


@pytest.mark.sqlite
def test_write_only_units_in_four_processes_all_commit(processes: Pool, url: str) -> None:
    failures = processes.starmap(write_only, [(url, w, UNITS) for w in range(PROCESSES)])
    assert sum(failures) == 0
    assert rows(url) == PROCESSES * UNITS


@pytest.mark.sqlite
def test_read_only_sessions_run_alongside_writers(processes: Pool, url: str) -> None:
    jobs = [(read_then_write, (url, 0, UNITS)), (write_only, (url, 1, UNITS))]
    jobs += [(read_only, (url, w, UNITS)) for w in (2, 3)]
    pending = [processes.apply_async(fn, args) for fn, args in jobs]
    assert [job.get(timeout=60) for job in pending] == [0, 0, 0, 0]
    assert rows(url) == 2 * UNITS


@pytest.mark.sqlite
def test_read_then_write_in_sixteen_threads_on_one_pool(url: str) -> None:
    settings = dbcore.Settings(database_url=url)
    failures: list[int] = []
    threads = [
        threading.Thread(target=lambda w=w: failures.append(read_then_write(url, w, THREAD_UNITS)))
        for w in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == [0] * THREADS
    assert rows(url) == THREADS * THREAD_UNITS
    pool = dbcore.get_engine(settings).pool
    assert isinstance(pool, QueuePool)
    assert pool.checkedout() == 0


@pytest.mark.sqlite
def test_read_only_session_does_not_wait_for_a_writer(url: str) -> None:
    """A writer holds the lock; a read-only session reads the last commit at once, a default one waits."""
    settings = dbcore.Settings(database_url=url, sqlite_busy_timeout_ms=300)
    with dbcore.get_session(settings) as session:
        session.add(Tally(worker=0, seen=0))
    with dbcore.get_session(settings) as writer:
        writer.add(Tally(worker=0, seen=1))
        writer.flush()
        started = time.perf_counter()
        with dbcore.get_session(settings, read_only=True) as reader:
            assert _count(reader) == 1
        assert time.perf_counter() - started < 0.3
        with pytest.raises(dbcore.ConcurrencyError):
            with dbcore.get_session(settings) as blocked:
                _count(blocked)
    assert rows(url) == 2


@pytest.mark.sqlite
def test_session_dependency_read_only(url: str) -> None:
    settings = dbcore.Settings(database_url=url)
    generator = dbcore.session_dependency(settings, read_only=True)
    session = next(generator)
    assert _count(session) == 0
    with pytest.raises(StopIteration):
        next(generator)


@pytest.mark.sqlite
def test_core_connections_and_in_memory_sqlite_still_work(url: str) -> None:
    engine = dbcore.create_engine(dbcore.Settings(database_url="sqlite:///:memory:"))
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE t (x INTEGER)"))
            connection.execute(sa.text("INSERT INTO t VALUES (1)"))
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM t")).scalar_one() == 1
            with connection.begin_nested():
                connection.execute(sa.text("INSERT INTO t VALUES (2)"))
            connection.commit()
        with engine.execution_options(dbcore_read_only=True).connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM t")).scalar_one() == 2
    finally:
        engine.dispose()


# --- read-only sessions on every dialect ---------------------------------------------------


@pytest.fixture
def tallies(settings: dbcore.Settings) -> dbcore.Settings:
    _Base.metadata.create_all(dbcore.get_engine(settings))
    with dbcore.get_session(settings) as session:
        session.add(Tally(id=1, worker=0, seen=0))
    return settings


def test_read_only_session_reads(tallies: dbcore.Settings) -> None:
    with dbcore.get_session(tallies, read_only=True) as session:
        assert session.get(Tally, 1) is not None
        assert _count(session) == 1


@pytest.mark.parametrize("change", ["add", "update", "delete"])
def test_read_only_session_refuses_to_flush_changes(tallies: dbcore.Settings, change: str) -> None:
    with pytest.raises(dbcore.PermissionDenied, match=r"read-only and cannot write tallies .*read_only=True"):
        with dbcore.get_session(tallies, read_only=True) as session:
            tally = session.get(Tally, 1)
            assert tally is not None
            if change == "add":
                session.add(Tally(id=2, worker=1, seen=1))
            elif change == "update":
                tally.seen = 5
            else:
                session.delete(tally)
    with dbcore.get_session(tallies) as session:
        assert [(t.id, t.seen) for t in session.scalars(sa.select(Tally))] == [(1, 0)]


def test_read_only_session_may_touch_an_object_without_changing_it(tallies: dbcore.Settings) -> None:
    with dbcore.get_session(tallies, read_only=True) as session:
        tally = session.get(Tally, 1)
        assert tally is not None
        tally.seen = 0  # dirty, but no net change: nothing to write
        assert _count(session) == 1  # autoflush runs


def test_read_only_transaction_on_postgresql(tallies: dbcore.Settings, dialect: str) -> None:
    """PostgreSQL enforces it too (psycopg sends BEGIN READ ONLY); a pooled connection comes back writable."""
    if not dialect.startswith("postgresql"):
        pytest.skip("a READ ONLY transaction is used on PostgreSQL only")
    with dbcore.get_session(tallies, read_only=True) as session:
        assert session.execute(sa.text("SHOW transaction_read_only")).scalar_one() == "on"
    with dbcore.get_session(tallies) as session:
        assert session.execute(sa.text("SHOW transaction_read_only")).scalar_one() == "off"
        session.add(Tally(id=2, worker=1, seen=1))
    with pytest.raises(sa.exc.SQLAlchemyError, match="read-only transaction"):
        with dbcore.get_session(tallies, read_only=True) as session:
            session.execute(sa.text("DELETE FROM tallies"))
    with dbcore.get_session(tallies, read_only=True) as session:
        assert _count(session) == 2


# --- threads on one pool, every dialect ----------------------------------------------------


def test_forty_threads_on_one_pool_lose_no_unit_and_leak_no_connection(settings: dbcore.Settings) -> None:
    """40 threads x 5 read-then-write units through run_in_transaction: all commit, nothing stays checked out."""
    _Base.metadata.create_all(dbcore.get_engine(settings))
    tallies = settings
    errors: list[BaseException] = []

    def units(worker: int) -> None:
        for _ in range(5):
            try:
                dbcore.run_in_transaction(
                    lambda session: session.add(Tally(worker=worker, seen=_count(session))), tallies
                )
            except BaseException as exc:  # noqa: BLE001 - every failure is reported below
                errors.append(exc)

    threads = [threading.Thread(target=units, args=(worker,)) for worker in range(1, 41)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    with dbcore.get_session(tallies, read_only=True) as session:
        assert _count(session) == 200
    assert dbcore.get_engine(tallies).pool.checkedout() == 0  # type: ignore[attr-defined]
