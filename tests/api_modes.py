"""The sync and the async API behind one interface, so a behavioural test runs both ways.

A test asks for the ``api`` fixture (tests/conftest.py: ``sync`` and ``async``) and
writes its unit of work once, as a function of a sync ``Session``:

    def test_x(api, settings):
        api.unit(settings, lambda session: session.add(...))

``sync`` runs it in ``dbcore.get_session()``. ``async`` runs it in
``dbcore.get_async_session()`` on the async driver (aiosqlite, psycopg async,
asyncmy), through ``AsyncSession.run_sync``: the statements go through the async
engine and its pool, the COMMIT or ROLLBACK is awaited by ``get_async_session``, and an
exception reaches the test as the async caller sees it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

import dbcore
from dbcore.health import connection_error_async

T = TypeVar("T")

MODES = ("sync", "async")


class LoopRunner:
    """One event loop for one test: ``run(coro)``; :meth:`close` disposes its async engines first."""

    def __init__(self) -> None:
        self._runner = asyncio.Runner()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)

    def close(self) -> None:
        try:
            self._runner.run(dbcore.dispose_async_engines())
        finally:
            self._runner.close()


class Api:
    """``get_session`` / ``run_in_transaction`` / bare connections / health, sync or async (see the module docstring)."""

    def __init__(self, mode: str, loop: LoopRunner | None) -> None:
        assert mode in MODES
        self.mode = mode
        self._loop = loop

    def __repr__(self) -> str:
        return f"Api({self.mode})"

    @property
    def is_async(self) -> bool:
        return self.mode == "async"

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None, "the sync api has no event loop"
        return self._loop.run(coro)

    def unit(
        self,
        settings: dbcore.Settings,
        work: Callable[[Session], T],
        *,
        api_key: str | None = None,
        read_only: bool = False,
    ) -> T:
        """Run ``work(session)`` in one session that commits on success and rolls back on error."""
        if not self.is_async:
            with dbcore.get_session(settings, api_key=api_key, read_only=read_only) as session:
                return work(session)

        async def unit() -> T:
            async with dbcore.get_async_session(settings, api_key=api_key, read_only=read_only) as session:
                return await session.run_sync(work)

        return self.run(unit())

    @contextmanager
    def session(
        self, settings: dbcore.Settings, *, api_key: str | None = None, read_only: bool = False
    ) -> Iterator[_Steps]:
        """A session held open across several steps: ``with api.session(s) as steps: steps(work)``.

        Each ``steps(work)`` runs ``work(session)`` in the same session; the block's
        end commits (rolls back on an exception), as ``get_session`` does.
        """
        if not self.is_async:
            with dbcore.get_session(settings, api_key=api_key, read_only=read_only) as session:
                yield _Steps(lambda work: work(session))
            return
        manager = dbcore.get_async_session(settings, api_key=api_key, read_only=read_only)
        async_session: AsyncSession = self.run(manager.__aenter__())
        try:
            yield _Steps(lambda work: self.run(async_session.run_sync(work)))
        except BaseException as exc:
            if not self.run(manager.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            self.run(manager.__aexit__(None, None, None))

    def run_in_transaction(self, work: Callable[[Session], T], settings: dbcore.Settings, **options: Any) -> T:
        """``run_in_transaction(work)``, or ``run_in_transaction_async`` with ``work`` run through ``run_sync``."""
        if not self.is_async:
            return dbcore.run_in_transaction(work, settings, **options)

        async def work_async(session: AsyncSession) -> T:
            return await session.run_sync(work)

        return self.run(dbcore.run_in_transaction_async(work_async, settings, **options))

    def engine(self, settings: dbcore.Settings) -> Engine:
        """The cached engine the sessions above use: its ``sync_engine`` in async mode (pool figures, events)."""
        if not self.is_async:
            return dbcore.get_engine(settings)

        async def current() -> Engine:
            return dbcore.get_async_engine(settings).sync_engine

        return self.run(current())

    def connect(
        self, settings: dbcore.Settings, work: Callable[[Connection], T], *, begin: bool = True, **options: Any
    ) -> T:
        """Run ``work(connection)`` on a bare connection of the cached engine, past any session.

        ``begin`` runs it as ``engine.begin()`` (COMMIT at the end, ROLLBACK on an
        exception); without, as ``engine.connect()`` (autobegun, rolled back at close).
        ``options`` are execution options of the engine the connection comes from. In
        async mode the connection is the async engine's, ``work`` run through
        ``AsyncConnection.run_sync``.
        """
        if not self.is_async:
            engine = dbcore.get_engine(settings)
            engine = engine.execution_options(**options) if options else engine
            with engine.begin() if begin else engine.connect() as connection:
                return work(connection)

        async def connected() -> T:
            engine = dbcore.get_async_engine(settings)
            engine = engine.execution_options(**options) if options else engine
            async with engine.begin() if begin else engine.connect() as connection:
                return await connection.run_sync(work)

        return self.run(connected())

    def dispose_engines(self) -> None:
        """``dispose_engines()``; in async mode the loop's async engines are closed first, on their loop
        (``dispose_engines`` alone would drop their pools unclosed, see its docstring)."""
        if self.is_async:
            self.run(dbcore.dispose_async_engines())
        dbcore.dispose_engines()

    def is_connected(self, settings: dbcore.Settings) -> bool:
        if not self.is_async:
            return dbcore.is_connected(settings)
        return self.run(dbcore.is_connected_async(settings))

    def connection_error(self, settings: dbcore.Settings) -> str | None:
        if not self.is_async:
            return dbcore.connection_error(settings)
        return self.run(connection_error_async(settings))

    def connection_info(self, settings: dbcore.Settings) -> dbcore.ConnectionInfo:
        if not self.is_async:
            return dbcore.connection_info(settings)
        return self.run(dbcore.connection_info_async(settings))


class _Steps:
    def __init__(self, runner: Callable[[Callable[[Session], Any]], Any]) -> None:
        self._runner = runner

    def __call__(self, work: Callable[[Session], T]) -> T:
        return self._runner(work)  # type: ignore[no-any-return]


_STORE_METHODS = ("upsert", "query", "delete", "get", "count", "health")  # close: call aclose()


def drive_async(store: Any, loop: LoopRunner) -> Any:
    """Make ``store``'s sync methods run its async twins on ``loop`` (``store.query(...)`` awaits ``aquery``).

    The store keeps its class (``isinstance`` checks and backend attributes still hold), so a
    suite written against the sync methods runs through ``aupsert``, ``aquery``, ... unchanged.
    """
    for name in _STORE_METHODS:
        twin = getattr(type(store), f"a{name}")

        def through_loop(*args: Any, _twin: Any = twin, **kwargs: Any) -> Any:
            return loop.run(_twin(store, *args, **kwargs))

        setattr(store, name, through_loop)
    return store


class AdapterView:
    """A DatabaseAdapter as it is, or an AsyncDatabaseAdapter whose coroutines run on the test's loop.

    Adapter tests are written once against sync calls (``adapter.create_agent(...)``,
    ``with adapter.transaction():``); for the async adapter each call is awaited on the
    ``aio`` loop, so the same body checks both classes.
    """

    def __init__(self, adapter: Any, loop: LoopRunner | None) -> None:
        self.inner = adapter
        self.mode = "sync" if loop is None else "async"
        self._loop = loop

    def __repr__(self) -> str:
        return f"AdapterView({self.mode})"

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if self._loop is None or not callable(attribute):
            return attribute
        if name == "transaction":
            return lambda: self._transaction(attribute())
        if name == "for_agent":
            return lambda *args: AdapterView(attribute(*args), self._loop)
        if name in ("vector_store",):
            return attribute
        loop = self._loop
        return lambda *args, **kwargs: loop.run(attribute(*args, **kwargs))

    @contextmanager
    def _transaction(self, manager: Any) -> Iterator[AdapterView]:
        assert self._loop is not None
        loop = self._loop
        loop.run(manager.__aenter__())
        try:
            yield self
        except BaseException as exc:
            if not loop.run(manager.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            loop.run(manager.__aexit__(None, None, None))
