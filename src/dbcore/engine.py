"""Engines for every supported dialect, configured as docs/patterns.md describes.

One engine per database URL is cached for the process; :func:`dispose_engines`
closes them (tests, and after ``fork()``). :func:`create_engine` hands each new
engine to :func:`dbcore.hooks.attach`, which installs dbcore's listeners on it.
"""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool, StaticPool

from dbcore import hooks, vector_push
from dbcore.config import Settings

__all__ = ["create_engine", "get_engine", "dispose_engines"]

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


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
    url = settings.url
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
    engine = sa.create_engine(url, **options)
    hooks.attach(engine, settings)
    return engine


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


def dispose_engines() -> None:
    """Dispose every cached engine and forget it (the next get_sessionmaker() call makes factories for the new engine).

    The vector stores that commits push to are closed and forgotten too.
    """
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.dispose()
    vector_push.close_stores()
