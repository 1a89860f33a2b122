"""Sessions: ``get_session()``, a generator for dependency injection, and retried units of work.

The async API (``get_async_session()``, ``async_session_dependency()``,
``run_in_transaction_async()``) is the same code on an async engine: an
``AsyncSession`` drives a sync ``Session`` (the same class, or ``ReadOnlySession``)
through SQLAlchemy's greenlet bridge, so dbcore's session and engine listeners run for
it exactly as for a sync one. What differs is only how a unit ends (awaited COMMIT,
ROLLBACK and close) and how a retry waits (``AsyncRetrying`` with the same policy).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base

from dbcore import events, hooks, vector_push
from dbcore.config import Settings
from dbcore.dialects import WRITE_LOCK_OPTION, read_only_options
from dbcore.engine import get_async_engine, get_engine
from dbcore.errors import ConnectionFailed, DbcoreError, PermissionDenied, SchemaMissing, TransactionOutcomeUnknown
from dbcore.security import SYSTEM_INFO_KEY, remember_api_key

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

__all__ = [
    "get_session",
    "session_dependency",
    "get_sessionmaker",
    "run_in_transaction",
    "system_session",
    "ReadOnlySession",
    "get_async_session",
    "async_session_dependency",
    "get_async_sessionmaker",
    "run_in_transaction_async",
    "session_on",
]

log = logging.getLogger("dbcore.session")
T = TypeVar("T")

# Per database URL: the engine the factories were made for, and its two factories (one for
# sessions that may write, one for read-only sessions). Keyed by URL, not weakly by engine:
# a factory holds its engine, so a weak key would never be released; here an engine dropped
# by dispose_engines() is replaced on the next call.
_sessionmakers: dict[str, tuple[Engine, dict[bool, sessionmaker[Session]]]] = {}
_sessionmakers_lock = threading.Lock()
# The async factories of each async engine (one per URL and event loop, see engine.get_async_engine).
# Weak: the factories hold engines made by execution_options(), not the cached one.
_async_sessionmakers: weakref.WeakKeyDictionary[AsyncEngine, dict[bool, async_sessionmaker[AsyncSession]]] = (
    weakref.WeakKeyDictionary()
)
# The database URLs whose SQLite file was seen to exist (or that name no file): checked once each.
_database_files_seen: set[str] = set()


class ReadOnlySession(Session):
    """A session from ``get_session(read_only=True)``: it reads, and refuses to flush changes.

    On SQLite it runs in a deferred transaction, so it reads alongside a writer
    instead of queueing for the write lock; on PostgreSQL the server enforces it too
    (a READ ONLY transaction).
    """

    def flush(self, objects: Sequence[Any] | None = None) -> None:
        changed = [obj for obj in self.dirty if self.is_modified(obj)]
        if self.new or self.deleted or changed:
            raise PermissionDenied(_refusal(self, changed))
        super().flush(objects)


def _refusal(session: Session, changed: list[Any]) -> str:
    tables = sorted({_table_name(obj) for obj in [*session.new, *changed, *session.deleted]})
    return (
        f"this session is read-only and cannot write {', '.join(tables)} "
        f"({len(session.new)} new, {len(changed)} changed, {len(session.deleted)} deleted); "
        "open it without read_only=True to write"
    )


def _table_name(obj: Any) -> str:
    return str(getattr(type(obj), "__tablename__", type(obj).__name__))


_E = TypeVar("_E", "Engine", "AsyncEngine")


def _bound_engines(engine: _E) -> dict[bool, _E]:
    """The engine a factory binds, by read_only: both share ``engine``'s pool and listeners
    (hooks know them by their pool). Sessions that may write take SQLite's write lock at
    BEGIN (see dialects.begin_sqlite)."""
    return {
        False: engine.execution_options(**{WRITE_LOCK_OPTION: True}),
        True: engine.execution_options(**read_only_options(engine.dialect.name)),
    }


def _factories(engine: Engine) -> dict[bool, sessionmaker[Session]]:
    bound = _bound_engines(engine)
    return {
        False: sessionmaker(bind=bound[False], expire_on_commit=False),
        True: sessionmaker(bind=bound[True], class_=ReadOnlySession, expire_on_commit=False),
    }


def _async_factories(engine: AsyncEngine) -> dict[bool, async_sessionmaker[AsyncSession]]:
    # The async session drives a sync Session of the same class as get_session()'s.
    from sqlalchemy.ext.asyncio import async_sessionmaker

    bound = _bound_engines(engine)
    return {
        False: async_sessionmaker(bind=bound[False], expire_on_commit=False),
        True: async_sessionmaker(bind=bound[True], sync_session_class=ReadOnlySession, expire_on_commit=False),
    }


def get_sessionmaker(settings: Settings | None = None, *, read_only: bool = False) -> sessionmaker[Session]:
    """The cached ``sessionmaker`` bound to the engine of ``settings`` (its read-only one with ``read_only``)."""
    settings = settings or Settings.from_env()
    engine = get_engine(settings)
    cached = _sessionmakers.get(settings.database_url)
    if cached is None or cached[0] is not engine:
        with _sessionmakers_lock:
            cached = _sessionmakers.get(settings.database_url)
            if cached is None or cached[0] is not engine:
                cached = (engine, _factories(engine))
                _sessionmakers[settings.database_url] = cached
    factories = cached[1]
    return factories[read_only]


def get_async_sessionmaker(
    settings: Settings | None = None, *, read_only: bool = False
) -> async_sessionmaker[AsyncSession]:
    """The cached ``async_sessionmaker`` on the async engine of ``settings`` for the running event loop."""
    settings = settings or Settings.from_env()
    engine = get_async_engine(settings)
    factories = _async_sessionmakers.get(engine)
    if factories is None:
        with _sessionmakers_lock:
            factories = _async_sessionmakers.get(engine)
            if factories is None:
                factories = _async_factories(engine)
                _async_sessionmakers[engine] = factories
    return factories[read_only]


def _sqlite_file(settings: Settings) -> Path | None:
    """The file an SQLite URL names; None for other dialects, in-memory databases and ``file:`` URIs.

    A ``file:`` URI is left to SQLite: its ``mode=`` says whether a missing file is created.
    """
    if not settings.is_sqlite:
        return None
    database = settings.url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def _require_database_file(settings: Settings) -> None:
    """Refuse an SQLite file that does not exist yet: connecting would create it empty, and every
    query would then fail on a missing table. ``dbcore init`` (through the engine) creates it."""
    if settings.database_url in _database_files_seen:
        return
    path = _sqlite_file(settings)
    if path is not None and not path.exists():
        raise SchemaMissing(
            f"the SQLite database file {path} does not exist; run `dbcore init` (or `dbcore migrate`) "
            "to create it with dbcore's schema",
            dialect="sqlite",
        )
    _database_files_seen.add(settings.database_url)


def _prepare(session: Session, settings: Settings, api_key: str | None) -> Session:
    session.info["dbcore.settings"] = settings
    remember_api_key(session, api_key)
    return session


def session_on(connection: Connection, settings: Settings, *, api_key: str | None = None) -> Session:
    """A dbcore session inside ``connection``'s open transaction, which it never ends.

    Its ``commit()`` and ``rollback()`` end a SAVEPOINT (SQLAlchemy's
    ``join_transaction_mode="create_savepoint"``), so whoever began the connection's
    transaction decides its fate: the pytest plugin's ``dbcore_session`` rolls it back
    after each test. Listeners, the system-table guard and ``api_key`` act as in
    :func:`get_session`. The caller closes the session.
    """
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    return _prepare(session, settings, api_key)


def _open(settings: Settings, api_key: str | None, read_only: bool) -> Session:
    _require_database_file(settings)
    return _prepare(get_sessionmaker(settings, read_only=read_only)(), settings, api_key)


def _open_async(settings: Settings, api_key: str | None, read_only: bool) -> AsyncSession:
    _require_database_file(settings)
    session = get_async_sessionmaker(settings, read_only=read_only)()
    _prepare(session.sync_session, settings, api_key)
    return session


_OUTCOME_UNKNOWN = "the connection dropped during COMMIT; the transaction may or may not have been applied"


def _commit(session: Session) -> None:
    try:
        session.commit()
    except ConnectionFailed as exc:
        raise TransactionOutcomeUnknown(_OUTCOME_UNKNOWN) from exc


async def _commit_async(session: AsyncSession) -> None:
    with hooks.deferring_after_commit(session.sync_session) as owed:
        try:
            await session.commit()
        except ConnectionFailed as exc:
            raise TransactionOutcomeUnknown(_OUTCOME_UNKNOWN) from exc
    for work in owed:
        for push in work.pushes:
            await _push_after_commit_async(push)
        events.run_hooks(work.hooks)


async def _push_after_commit_async(push: vector_push.CommittedPush) -> None:
    """:func:`dbcore.vector_push.push_after_commit` for an async engine, without blocking the loop.

    The same steps: the database ones on the async connection (``run_sync``), the
    store's (its sync client, and building it the first time) on a worker thread.
    """
    from sqlalchemy.ext.asyncio import AsyncEngine

    engine = AsyncEngine(push.engine)
    try:
        async with engine.connect() as conn:
            markers = await conn.run_sync(vector_push.read_markers, push.marker_ids)
            if not markers:
                return
            records = await conn.run_sync(vector_push.read_records, markers)
        store = await asyncio.to_thread(vector_push.commit_store, push.settings)
        await asyncio.to_thread(vector_push.write_store, store, markers, records)
        async with engine.begin() as conn:
            await conn.run_sync(vector_push.clear_markers, markers, records)
    except Exception as exc:  # noqa: BLE001 - the commit happened; the markers stay for sync
        vector_push.report_failed_push(push, exc)


async def _abandon_async(session: AsyncSession, exc: BaseException) -> None:
    """Roll back after ``exc``; a unit cancelled mid-statement loses its connection instead.

    A task cancelled while a statement was on the wire leaves the driver connection in
    an unknown state, so it is invalidated (closed; the server rolls back) rather than
    reused. The pool slot is returned either way.
    """
    if isinstance(exc, asyncio.CancelledError):
        await session.invalidate()
    else:
        await session.rollback()


@contextmanager
def get_session(
    settings: Settings | None = None, *, api_key: str | None = None, read_only: bool = False
) -> Iterator[Session]:
    """Open a session: commit on success, roll back on any exception, always close.

    ``with get_session() as session: ...``. Pass ``api_key`` to open a session
    allowed to write system tables (see :mod:`dbcore.security`). On SQLite a session
    takes the write lock when it begins, so a read-then-write unit cannot fail with
    "database is locked"; pass ``read_only=True`` for a session that only reads: it
    reads alongside writers and refuses to flush changes (:class:`ReadOnlySession`).
    An SQLite database file that does not exist yet is refused with
    :class:`~dbcore.SchemaMissing` rather than created empty: run ``dbcore init``.
    """
    session = _open(settings or Settings.from_env(), api_key, read_only)
    try:
        yield session
        _commit(session)
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def system_session(settings: Settings | None = None) -> Iterator[Session]:
    """A session allowed to write system tables without a key: for bootstrapping (``dbcore init``)."""
    with get_session(settings) as session:
        session.info[SYSTEM_INFO_KEY] = True
        yield session


def session_dependency(
    settings: Settings | None = None, *, api_key: str | None = None, read_only: bool = False
) -> Iterator[Session]:
    """Generator for dependency injection (FastAPI ``Depends``), same semantics as ``get_session``.

    The exception raised inside the request handler is thrown into the
    generator, so the transaction is rolled back exactly as with ``get_session``.
    """
    with get_session(settings, api_key=api_key, read_only=read_only) as session:
        yield session


@asynccontextmanager
async def get_async_session(
    settings: Settings | None = None, *, api_key: str | None = None, read_only: bool = False
) -> AsyncIterator[AsyncSession]:
    """``async with get_async_session() as session:``: :func:`get_session` for asyncio code.

    An :class:`~sqlalchemy.ext.asyncio.AsyncSession` on :func:`~dbcore.get_async_engine`:
    COMMIT when the block ends, ROLLBACK on any exception, always closed. A task
    cancelled inside the block rolls back and gives its connection back to the pool
    (one cancelled while a statement was running has that connection closed instead).
    ``api_key`` and ``read_only`` mean what they mean for :func:`get_session`.
    """
    session = _open_async(settings or Settings.from_env(), api_key, read_only)
    try:
        try:
            yield session
            await _commit_async(session)
        except BaseException as exc:
            await asyncio.shield(_abandon_async(session, exc))
            raise
    finally:
        await asyncio.shield(session.close())


async def async_session_dependency(
    settings: Settings | None = None, *, api_key: str | None = None, read_only: bool = False
) -> AsyncIterator[AsyncSession]:
    """Async generator for FastAPI ``Depends``, same semantics as :func:`get_async_session`."""
    async with get_async_session(settings, api_key=api_key, read_only=read_only) as session:
        yield session


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, DbcoreError) and exc.transient


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning(
        "transient %s (attempt %d, %.1fs in); retrying the unit of work in %.2fs",
        type(exc).__name__,
        state.attempt_number,
        state.seconds_since_start or 0.0,
        wait,
    )


# Backoff from 0.1 s, doubling up to 2 s between attempts, plus up to 0.25 s of jitter so the
# clients of one server do not all return at once. Time, not a count, bounds the retries by
# default: a server restart (5-10 s) is outlasted, while at most ~2 s is lost after it is back.
_BACKOFF = wait_exponential(multiplier=0.1, max=2.0) + wait_random(0, 0.25)


def _retry_policy(settings: Settings, attempts: int | None, max_seconds: float | None) -> dict[str, Any]:
    """Tenacity's arguments for a unit of work, the same for ``Retrying`` and ``AsyncRetrying``."""
    overrides = {"retry_attempts": attempts, "retry_max_seconds": max_seconds}
    given = {name: value for name, value in overrides.items() if value is not None}
    limits = settings.replace(**given) if given else settings  # replace() checks them like any setting
    stop: stop_base = stop_after_delay(limits.retry_max_seconds)
    if limits.retry_attempts is not None:
        stop = stop | stop_after_attempt(limits.retry_attempts)
    return {
        "stop": stop,
        "wait": _BACKOFF,
        "retry": retry_if_exception(_is_transient),
        "before_sleep": _log_retry,
        "reraise": True,
    }


def run_in_transaction(
    work: Callable[[Session], T],
    settings: Settings | None = None,
    *,
    api_key: str | None = None,
    attempts: int | None = None,
    max_seconds: float | None = None,
    read_only: bool = False,
) -> T:
    """Run ``work(session)`` in one transaction, retrying the *whole* unit on transient faults.

    A transient fault (connection refused/reset/timed out, server restart,
    deadlock, serialization failure) rolls the attempt back and runs ``work``
    again in a new session, with capped exponential backoff and jitter. A failed
    attempt is not retried once ``max_seconds`` (default
    ``settings.retry_max_seconds``, 30 s) have passed since the first began, nor
    after ``attempts`` attempts when there is such a cap (default
    ``settings.retry_attempts``: none). A connection lost during COMMIT raises
    :class:`TransactionOutcomeUnknown` and is not retried. ``read_only`` opens the
    sessions as :func:`get_session` does with it.
    """
    settings = settings or Settings.from_env()
    retrying = Retrying(**_retry_policy(settings, attempts, max_seconds))

    def attempt() -> T:
        with get_session(settings, api_key=api_key, read_only=read_only) as session:
            return work(session)

    return retrying(attempt)


async def run_in_transaction_async(
    work: Callable[[AsyncSession], Awaitable[T]],
    settings: Settings | None = None,
    *,
    api_key: str | None = None,
    attempts: int | None = None,
    max_seconds: float | None = None,
    read_only: bool = False,
) -> T:
    """``await run_in_transaction_async(work)``: :func:`run_in_transaction` for a coroutine function.

    ``await work(session)`` runs in one transaction of :func:`get_async_session`; a
    transient fault retries the whole unit with the same limits and backoff (waiting
    with ``asyncio.sleep``), and a connection lost during COMMIT raises
    :class:`TransactionOutcomeUnknown`.
    """
    settings = settings or Settings.from_env()
    retrying = AsyncRetrying(**_retry_policy(settings, attempts, max_seconds))

    async def attempt() -> T:
        async with get_async_session(settings, api_key=api_key, read_only=read_only) as session:
            return await work(session)

    return await retrying(attempt)
