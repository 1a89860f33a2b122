"""Engines for every supported dialect, configured as docs/patterns.md describes.

One engine per database URL is cached for the process; :func:`dispose_engines`
closes them (tests, and after ``fork()``). :func:`create_engine` hands each new
engine to :func:`dbcore.hooks.attach`, which installs dbcore's listeners on it.

Async engines (:func:`create_async_engine`, :func:`get_async_engine`) are the same
engines on the URL's async driver (``Settings.async_url``): the same options, and the
same listeners, attached to the ``sync_engine`` SQLAlchemy runs every async
statement through. An async driver's connections belong to the event loop that
opened them, so :func:`get_async_engine` keeps one engine per URL *and event loop*;
:func:`dispose_async_engines` closes the running loop's.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import NullPool, StaticPool

from dbcore import hooks, vector_push
from dbcore.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "create_engine",
    "get_engine",
    "dispose_engines",
    "create_async_engine",
    "get_async_engine",
    "dispose_async_engines",
    "dispose_engine_of",
    "dispose_async_engine_of",
]

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
# Per event loop (None: made outside one), the async engine of each URL. An engine's pooled
# connections can only be used on the loop that opened them.
_async_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AsyncEngine]] = (
    weakref.WeakKeyDictionary()
)
_async_outside_loop: dict[str, AsyncEngine] = {}


def _server_connect_args(settings: Settings, dialect: str) -> dict[str, Any]:
    timeout = max(1, int(round(settings.connect_timeout)))
    if dialect == "postgresql":
        return {"connect_timeout": timeout, "application_name": "dbcore"}
    if dialect in ("mysql", "mariadb"):
        return {"connect_timeout": timeout, "charset": "utf8mb4"}
    if dialect == "mssql":
        return {"timeout": timeout}
    return {}


def create_engine(settings: Settings | None = None, **overrides: Any) -> Engine:
    """Create a new engine for ``settings`` (not cached; see :func:`get_engine`).

    Server databases get ``pool_size`` (40) and ``max_overflow`` (-1: unbounded)
    from the settings, pre-ping, a connect timeout and dbcore's error
    translation. SQLite gets foreign keys, WAL for files, a busy timeout and a
    REGEXP function on every connection.
    """
    settings = settings or Settings.from_env()
    engine = sa.create_engine(settings.url, **engine_options(settings, settings.url, overrides))
    hooks.attach(engine, settings)
    return engine


def engine_options(settings: Settings, url: URL, overrides: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``create_engine`` for ``url`` (sync or async driver), ``overrides`` last."""
    dialect = url.get_backend_name()
    options: dict[str, Any] = {"echo": settings.echo, "pool_pre_ping": True}
    if dialect == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:"):
            # One shared connection, or every checkout would see a new empty database.
            options.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            options.update(connect_args={"check_same_thread": False, "timeout": settings.sqlite_busy_timeout_ms / 1000})
    else:
        options.update(
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_timeout=settings.pool_timeout,
            pool_recycle=settings.pool_recycle,
            connect_args=_server_connect_args(settings, dialect),
        )
        if dialect == "mssql":
            options["fast_executemany"] = True
    options.update(overrides)
    if options.get("poolclass") is NullPool:
        for key in ("pool_size", "max_overflow", "pool_timeout"):
            options.pop(key, None)
    return options


def get_engine(settings: Settings | None = None) -> Engine:
    """The process-wide engine for ``settings.database_url`` (created on first use)."""
    settings = settings or Settings.from_env()
    key = settings.database_url
    engine = _engines.get(key)
    if engine is None:
        with _engines_lock:
            engine = _engines.get(key)
            if engine is None:
                engine = create_engine(settings)
                _engines[key] = engine
    return engine


def create_async_engine(settings: Settings | None = None, **overrides: Any) -> AsyncEngine:
    """Create a new :class:`~sqlalchemy.ext.asyncio.AsyncEngine` for ``settings`` (not cached).

    The URL is ``settings.database_url`` with its async driver (aiosqlite, psycopg's
    async mode, asyncmy, aioodbc); the options and dbcore's listeners are those of
    :func:`create_engine`.
    """
    # Here, not at the top: the asyncio layer (and greenlet) stays off the path of sync users.
    from sqlalchemy.ext.asyncio import create_async_engine as sa_create_async_engine

    settings = settings or Settings.from_env()
    url = settings.async_url
    engine = sa_create_async_engine(url, **engine_options(settings, url, overrides))
    hooks.attach(engine.sync_engine, settings)
    return engine


def get_async_engine(settings: Settings | None = None) -> AsyncEngine:
    """The async engine for ``settings.database_url`` on the running event loop (created on first use).

    Called outside an event loop, it returns one engine per URL for use on the loop
    that later runs it.
    """
    settings = settings or Settings.from_env()
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    engines = _async_outside_loop if loop is None else _async_engines.get(loop, {})
    engine = engines.get(settings.database_url)
    if engine is None:  # checked again under the lock, as get_engine does
        with _engines_lock:
            engines = _async_outside_loop if loop is None else _async_engines.setdefault(loop, {})
            engine = engines.get(settings.database_url)
            if engine is None:
                engine = create_async_engine(settings)
                engines[settings.database_url] = engine
    return engine


def dispose_engines() -> None:
    """Dispose every cached engine and forget it (the next get_sessionmaker() call makes factories for the new engine).

    The vector stores that commits push to are closed and forgotten too. Cached async
    engines are forgotten and their pools dropped without closing the connections,
    which needs their event loop: close those with :func:`dispose_async_engines` first.
    """
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
        async_engines = [e for loop_engines in _async_engines.values() for e in loop_engines.values()]
        async_engines += _async_outside_loop.values()
        _async_engines.clear()
        _async_outside_loop.clear()
    for engine in engines:
        engine.dispose()
    for async_engine in async_engines:
        async_engine.sync_engine.dispose(close=False)
    vector_push.close_stores()


def dispose_engine_of(settings: Settings) -> None:
    """Dispose the cached sync engine of ``settings``'s URL, if any, and forget it."""
    with _engines_lock:
        engine = _engines.pop(settings.database_url, None)
    if engine is not None:
        engine.dispose()


async def dispose_async_engine_of(settings: Settings) -> None:
    """Close the pool of the async engine cached for ``settings``'s URL on the running loop, and forget it."""
    loop = asyncio.get_running_loop()
    with _engines_lock:
        engine = _async_engines.get(loop, {}).pop(settings.database_url, None)
    if engine is not None:
        await engine.dispose()


async def dispose_async_engines() -> None:
    """Close the pools of the async engines cached for the running event loop, and forget them.

    Call it before the loop ends (a FastAPI lifespan's shutdown, the end of ``asyncio.run``).
    """
    loop = asyncio.get_running_loop()
    with _engines_lock:
        engines = list(_async_engines.pop(loop, {}).values())
    for engine in engines:
        await engine.dispose()
