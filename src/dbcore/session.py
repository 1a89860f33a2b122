"""Sessions: ``get_session()``, a generator for dependency injection, and retried units of work."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base

from dbcore.config import Settings
from dbcore.dialects import WRITE_LOCK_OPTION, read_only_options
from dbcore.engine import get_engine
from dbcore.errors import ConnectionFailed, DbcoreError, PermissionDenied, SchemaMissing, TransactionOutcomeUnknown
from dbcore.security import SYSTEM_INFO_KEY, remember_api_key

__all__ = [
    "get_session",
    "session_dependency",
    "get_sessionmaker",
    "run_in_transaction",
    "system_session",
    "ReadOnlySession",
]

log = logging.getLogger("dbcore.session")
T = TypeVar("T")

# Per database URL: the engine the factories were made for, and its two factories (one for
# sessions that may write, one for read-only sessions). Keyed by URL, not weakly by engine:
# a factory holds its engine, so a weak key would never be released; here an engine dropped
# by dispose_engines() is replaced on the next call.
_sessionmakers: dict[str, tuple[Engine, dict[bool, sessionmaker[Session]]]] = {}
_sessionmakers_lock = threading.Lock()
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


def _factories(engine: Engine) -> dict[bool, sessionmaker[Session]]:
    # Both engines share the pool and the listeners; hooks know them by their pool.
    # Sessions that may write take SQLite's write lock at BEGIN (see dialects.begin_sqlite).
    writing_engine = engine.execution_options(**{WRITE_LOCK_OPTION: True})
    read_only_engine = engine.execution_options(**read_only_options(engine.dialect.name))
    return {
        False: sessionmaker(bind=writing_engine, expire_on_commit=False),
        True: sessionmaker(bind=read_only_engine, class_=ReadOnlySession, expire_on_commit=False),
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


def _open(settings: Settings, api_key: str | None, read_only: bool) -> Session:
    _require_database_file(settings)
    session = get_sessionmaker(settings, read_only=read_only)()
    session.info["dbcore.settings"] = settings
    remember_api_key(session, api_key)
    return session


def _commit(session: Session) -> None:
    try:
        session.commit()
    except ConnectionFailed as exc:
        raise TransactionOutcomeUnknown(
            "the connection dropped during COMMIT; the transaction may or may not have been applied"
        ) from exc


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


def run_in_transaction(
    work: Callable[[Session], T],
    settings: Settings | None = None,
    *,
    api_key: str | None = None,
    attempts: int | None = None,
    max_seconds: float | None = None,
) -> T:
    """Run ``work(session)`` in one transaction, retrying the *whole* unit on transient faults.

    A transient fault (connection refused/reset/timed out, server restart,
    deadlock, serialization failure) rolls the attempt back and runs ``work``
    again in a new session, with capped exponential backoff and jitter. A failed
    attempt is not retried once ``max_seconds`` (default
    ``settings.retry_max_seconds``, 30 s) have passed since the first began, nor
    after ``attempts`` attempts when there is such a cap (default
    ``settings.retry_attempts``: none). A connection lost during COMMIT raises
    :class:`TransactionOutcomeUnknown` and is not retried.
    """
    settings = settings or Settings.from_env()
    overrides = {"retry_attempts": attempts, "retry_max_seconds": max_seconds}
    given = {name: value for name, value in overrides.items() if value is not None}
    limits = settings.replace(**given) if given else settings  # replace() checks them like any setting
    stop: stop_base = stop_after_delay(limits.retry_max_seconds)
    if limits.retry_attempts is not None:
        stop = stop | stop_after_attempt(limits.retry_attempts)
    retrying = Retrying(
        stop=stop,
        wait=_BACKOFF,
        retry=retry_if_exception(_is_transient),
        before_sleep=_log_retry,
        reraise=True,
    )

    def attempt() -> T:
        with get_session(settings, api_key=api_key) as session:
            return work(session)

    return retrying(attempt)
