"""Engines for every supported dialect, configured as the patterns document asks.

One engine per database URL is cached for the process; :func:`dispose_engines`
closes them (tests, and after ``fork()``).
"""

from __future__ import annotations

import copy
import functools
import re
import sqlite3
import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, ExceptionContext
from sqlalchemy.pool import NullPool, StaticPool

from dbcore.config import Settings
from dbcore.errors import DataError, DbcoreError, classify_dbapi_error
from dbcore.vector_changes import enable_outbox, install_embedding_hooks

__all__ = ["create_engine", "get_engine", "dispose_engines", "has_pgvector", "MARIADB_SQL_MODE"]

#: The sql_mode every MariaDB/MySQL connection runs with: strict, no silent truncation.
MARIADB_SQL_MODE = (
    "STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ZERO_DATE,NO_ZERO_IN_DATE,"
    "NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO"
)

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()

# The last regular-expression error per thread: SQLite reports an exception
# raised inside a user function only as "user-defined function raised
# exception", so the REGEXP function leaves the real reason here.
_regexp_failure = threading.local()


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _sqlite_regexp(pattern: str | None, value: Any) -> bool | None:
    """REGEXP for SQLite: ``value REGEXP pattern`` with Python's ``re.search``."""
    if pattern is None or value is None:
        return None
    try:
        compiled = _compiled(pattern)
    except re.error as exc:
        _regexp_failure.error = f"invalid regular expression {pattern!r}: {exc}"
        raise
    return compiled.search(value if isinstance(value, str) else str(value)) is not None


def _configure_sqlite(engine: Engine, settings: Settings) -> None:
    database = engine.url.database or ""
    in_memory = database in ("", ":memory:") or "mode=memory" in database

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control from pysqlite so SAVEPOINT and BEGIN work as on servers.
        dbapi_connection.isolation_level = None
        dbapi_connection.create_function("regexp", 2, _sqlite_regexp, deterministic=True)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {int(settings.sqlite_busy_timeout_ms)}")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN")


def _configure_mysql(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET SESSION sql_mode = %s", (MARIADB_SQL_MODE,))
        cursor.execute("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci")
        cursor.close()


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "first_connect")
    def _detect_pgvector(dbapi_connection: Any, _record: Any) -> None:
        # Vector columns use pgvector when the server can provide it, bytea otherwise.
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'")
        row = cursor.fetchone()
        cursor.close()
        engine.dialect.dbcore_pgvector = bool(row and row[0])  # type: ignore[attr-defined]


def has_pgvector(dialect: sa.Dialect) -> bool:
    """Whether Vector columns on this PostgreSQL dialect use pgvector (True until a connection says otherwise)."""
    return bool(getattr(dialect, "dbcore_pgvector", True))


def _translate_errors(engine: Engine) -> None:
    dialect_name = engine.dialect.name

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        # Pre-ping failures must reach SQLAlchemy untouched: it reconnects on them.
        if context.is_pre_ping:
            return
        orig = context.original_exception
        if isinstance(orig, DbcoreError):
            # Raised by dbcore's own types while binding parameters: nothing reached the server.
            # A copy, because SQLAlchemy chains the raised error to the original.
            raise copy.copy(orig)
        if dialect_name == "sqlite":
            reason = getattr(_regexp_failure, "error", None)
            if reason and "user-defined function raised exception" in str(orig):
                _regexp_failure.error = None
                raise DataError(f"DataError on sqlite: {reason}", orig=orig, dialect="sqlite") from orig
        # No connection yet means the failure happened while connecting.
        connecting = context.connection is None and context.statement is None
        error = classify_dbapi_error(dialect_name, orig, is_disconnect=context.is_disconnect or connecting)
        if error is not None:
            raise error from orig


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
    if dialect == "sqlite":
        _configure_sqlite(engine, settings)
    elif dialect in ("mysql", "mariadb"):
        _configure_mysql(engine)
    elif dialect == "postgresql":
        _configure_postgresql(engine)
    _translate_errors(engine)
    install_embedding_hooks(engine)
    if settings.vector_backend != "integrated":
        enable_outbox(engine)
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
    """Dispose every cached engine and forget it (and the sessionmakers built on them)."""
    from dbcore.session import _forget_sessionmakers

    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    _forget_sessionmakers()
    for engine in engines:
        engine.dispose()
