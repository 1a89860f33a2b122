"""The two adapter classes: what runs an operation, and the calls that are not operations.

Both inherit every operation from the domain mixins (:mod:`dbcore.adapter.agents` and
its neighbours); they differ only in how an operation runs:

- outside :meth:`transaction`, each call is its own unit of work, retried as a whole
  on transient faults (:func:`~dbcore.run_in_transaction`), read-only when the
  operation only reads;
- inside it, each call joins the open session, and nothing is retried: the caller's
  block is the unit of work;
- built with ``session=`` (an open sync session, e.g. the pytest plugin's
  ``dbcore_session``), each call runs in a SAVEPOINT of that session and nothing
  commits: the session's owner ends the transaction.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from dbcore import health
from dbcore import session as sessions
from dbcore.adapter import lifecycle
from dbcore.adapter.agents import AgentMethods
from dbcore.adapter.cache import CacheMethods
from dbcore.adapter.context import AdapterOptions, Context, as_uuid
from dbcore.adapter.entities import EntityMethods
from dbcore.adapter.lifecycle import LifecycleMethods
from dbcore.adapter.logs import LogMethods
from dbcore.adapter.memories import MemoryMethods
from dbcore.adapter.operation import Operation
from dbcore.adapter.rooms import RoomMethods
from dbcore.adapter.tasks import TaskMethods
from dbcore.config import Settings
from dbcore.engine import dispose_async_engine_of, dispose_engine_of
from dbcore.errors import ConfigurationError
from dbcore.vectorstores import VectorStore, get_vector_store

if TYPE_CHECKING:
    from typing_extensions import Self


__all__ = ["DatabaseAdapter", "AsyncDatabaseAdapter"]

log = logging.getLogger("dbcore.adapter")
T = TypeVar("T")


def _settings_of(target: Settings | str | None) -> Settings:
    if target is None:
        return Settings.from_env()
    if isinstance(target, Settings):
        return target
    if isinstance(target, str):
        return Settings.from_env().replace(database_url=target)
    raise ConfigurationError(
        f"an adapter is built from Settings, a database URL or nothing, not {type(target).__name__}"
    )


class _StoreSlot:
    """The vector store of an adapter and of all its views: the one given, or one built on first use."""

    def __init__(self, given: VectorStore | None) -> None:
        self._store, self._built = given, False
        self._lock = threading.Lock()

    def get(self, settings: Settings) -> VectorStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store, self._built = get_vector_store(settings), True
        return self._store

    def release(self) -> VectorStore | None:
        """The store to close, when the adapter built it (a given store is the caller's to close)."""
        with self._lock:
            built = self._store if self._built else None
            if self._built:
                self._store, self._built = None, False
        return built


class _AdapterBase:
    """Settings, options, agent scope and vector store, shared by both adapters and their views."""

    def __init__(
        self,
        target: Settings | str | None = None,
        *,
        duplicate_threshold: float = 0.95,
        vector_store: VectorStore | None = None,
        session: Session | None = None,
    ) -> None:
        if session is not None and not isinstance(session, Session):
            raise ConfigurationError(
                f"session= takes an open sync Session (dbcore.session_on), not {type(session).__name__}"
            )
        self._settings = _settings_of(target)
        # Every call runs in a savepoint of this session instead of a unit of work of its own.
        self._joined = session
        self._options = lifecycle.options(duplicate_threshold)
        self._scope: Any = None
        self._store = _StoreSlot(vector_store)
        # The open transaction() of this adapter in the current thread or task (views share it).
        self._current: ContextVar[Any] = ContextVar(f"dbcore.adapter.{id(self)}", default=None)

    def __repr__(self) -> str:
        scope = f", agent={self._scope}" if self._scope else ""
        return f"{type(self).__name__}({self._settings.masked_url!r}{scope})"

    @property
    def settings(self) -> Settings:
        """The settings this adapter runs with."""
        return self._settings

    @property
    def options(self) -> AdapterOptions:
        return self._options

    @property
    def agent_id(self) -> Any:
        """The agent this view is confined to (:meth:`for_agent`), else None."""
        return self._scope

    def for_agent(self, agent_id: Any) -> Self:
        """A view of this adapter whose every read and write is confined to ``agent_id``'s rows.

        The view shares the adapter's engine, store and open :meth:`transaction`.
        """
        view = copy.copy(self)
        view._scope = as_uuid(agent_id, "agent_id")
        return view

    def vector_store(self) -> VectorStore:
        """The vector store ``search_memories`` queries: the one given, else the configured one."""
        return self._store.get(self._settings)

    def _context(self, session: Session, is_async: bool) -> Context:
        return Context(session, self._settings, self._options, self._scope, self.vector_store, is_async)

    def _bind(self, op: Operation[Any, Any]) -> Callable[..., Any]:
        raise NotImplementedError

    @contextmanager
    def _as_current(self, session: Session | AsyncSession) -> Iterator[None]:
        """Make ``session`` the open transaction() of this adapter (and its views) in this task."""
        token = self._current.set(session)
        try:
            yield
        finally:
            self._current.reset(token)

    def _in_savepoint(self, op: Operation[Any, Any], args: Any, kwargs: Any) -> Any:
        """``op`` in a savepoint of the joined session: a refused call leaves it as it was."""
        assert self._joined is not None
        with self._joined.begin_nested():
            return op.function(self._context(self._joined, False), *args, **kwargs)


class _Operations(
    AgentMethods,
    EntityMethods,
    RoomMethods,
    MemoryMethods,
    CacheMethods,
    LogMethods,
    TaskMethods,
    LifecycleMethods,
    _AdapterBase,
):
    """Every operation of both adapters, one mixin per domain module."""


class DatabaseAdapter(_Operations):
    """The agent runtime's API on a sync engine: ``DatabaseAdapter()`` reads the environment.

    ``adapter.init()`` once (migrate, seed, record the vector space), then call its
    methods; each is a unit of work of its own unless called inside
    ``with adapter.transaction():``. See docs/adapter.md.
    """

    def _bind(self, op: Operation[Any, Any]) -> Callable[..., Any]:
        def method(*args: Any, **kwargs: Any) -> Any:
            open_session = self._current.get()
            if open_session is not None:
                return op.function(self._context(open_session, False), *args, **kwargs)
            if self._joined is not None:
                return self._in_savepoint(op, args, kwargs)
            return sessions.run_in_transaction(
                lambda session: op.function(self._context(session, False), *args, **kwargs),
                self._settings,
                read_only=not op.writes,
            )

        return _named(method, op)

    def init(self) -> lifecycle.InitReport:
        """Migrate (dbcore, then registered plugins), seed, record the vector space. Idempotent."""
        return lifecycle.init(self._settings)

    def close(self) -> None:
        """Close the vector store this adapter built and dispose its engine's pool."""
        built = self._store.release()
        if built is not None:
            built.close()
        dispose_engine_of(self._settings)

    def is_connected(self) -> bool:
        """True when the database answers."""
        return health.is_connected(self._settings)

    def connection_info(self) -> health.ConnectionInfo:
        """Dialect, server version and pool figures; logs a warning past 80% of the pool."""
        return lifecycle.warn_when_busy(health.connection_info(self._settings))

    @contextmanager
    def transaction(self) -> Iterator[Self]:
        """``with adapter.transaction():`` every call inside joins one unit of work.

        An exception rolls all of it back; nested use is a savepoint. Nothing inside is
        retried: a transient fault reaches the caller, whose block is the unit to repeat.
        """
        open_session: Session | None = self._current.get()
        if open_session is None:
            open_session = self._joined
        if open_session is not None:
            with open_session.begin_nested(), self._as_current(open_session):
                yield self
            return
        with sessions.get_session(self._settings) as session, self._as_current(session):
            yield self

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncDatabaseAdapter(_Operations):
    """:class:`DatabaseAdapter` for asyncio: the same operations, awaited (``await adapter.get_agent(id)``).

    Each runs through ``AsyncSession.run_sync`` on the async driver, so the SQL is the
    sync adapter's, statement for statement. Built with ``session=`` (a sync session),
    the coroutines run their SQL on that session directly, in savepoints, on its sync
    driver: what the pytest plugin's ``dbcore_async_adapter`` does so that a test's
    rollback needs no event loop.
    """

    def _bind(self, op: Operation[Any, Any]) -> Callable[..., Any]:
        async def method(*args: Any, **kwargs: Any) -> Any:
            def run(session: Session) -> Any:
                return op.function(self._context(session, True), *args, **kwargs)

            open_session: AsyncSession | Session | None = self._current.get()
            if isinstance(open_session, Session):  # the joined sync session, in transaction()
                return op.function(self._context(open_session, False), *args, **kwargs)
            if open_session is not None:
                return await open_session.run_sync(run)
            if self._joined is not None:
                return self._in_savepoint(op, args, kwargs)

            async def work(session: AsyncSession) -> Any:
                return await session.run_sync(run)

            return await sessions.run_in_transaction_async(work, self._settings, read_only=not op.writes)

        return _named(method, op)

    async def init(self) -> lifecycle.InitReport:
        """:meth:`DatabaseAdapter.init` (alembic is sync: it runs on a worker thread)."""
        return await asyncio.to_thread(lifecycle.init, self._settings)

    async def close(self) -> None:
        """Close the vector store this adapter built and the async engine's pool for this loop."""
        built = self._store.release()
        if built is not None:
            await built.aclose()
        await dispose_async_engine_of(self._settings)

    async def is_connected(self) -> bool:
        return await health.is_connected_async(self._settings)

    async def connection_info(self) -> health.ConnectionInfo:
        return lifecycle.warn_when_busy(await health.connection_info_async(self._settings))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Self]:
        """``async with adapter.transaction():``, as :meth:`DatabaseAdapter.transaction`."""
        open_session: AsyncSession | None = self._current.get()
        if isinstance(open_session, AsyncSession):
            async with open_session.begin_nested():
                yield self
            return
        joined = open_session if open_session is not None else self._joined
        if joined is not None:  # a sync session: see the class docstring
            with joined.begin_nested(), self._as_current(joined):
                yield self
            return
        async with sessions.get_async_session(self._settings) as session:
            with self._as_current(session):
                yield self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _named(method: Callable[..., T], op: Operation[Any, Any]) -> Callable[..., T]:
    method.__name__ = op.name
    method.__qualname__ = op.name
    method.__doc__ = op.function.__doc__
    method.__wrapped__ = op.function  # type: ignore[attr-defined]
    return method
