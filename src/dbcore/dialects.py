"""What each dialect's connections need, as plain functions: dbcore's engines call them from
the listeners in :mod:`dbcore.hooks`.

- SQLite: transaction control taken from pysqlite (so SAVEPOINT and BEGIN work as on
  servers), foreign keys on, a busy timeout, WAL for files, a REGEXP function so
  regex filters work as on the servers, and ``BEGIN IMMEDIATE`` for the sessions of
  :func:`dbcore.get_session` (:data:`WRITE_LOCK_OPTION`).
- MariaDB/MySQL: strict ``sql_mode`` (no silent truncation) and utf8mb4.
- PostgreSQL: whether the server has pgvector, recorded on the dialect for the types.
- Every dialect: driver errors translated to dbcore's typed errors.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import re
import sqlite3
import threading
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.util import await_only

from dbcore.errors import DataError, DbcoreError, StatementTarget, classify_dbapi_error
from dbcore.types import set_pgvector

__all__ = [
    "MARIADB_SQL_MODE",
    "READ_ONLY_OPTION",
    "WRITE_LOCK_OPTION",
    "STATEMENT_TARGET",
    "table_target",
    "read_only_options",
    "prepare_sqlite_connection",
    "begin_sqlite",
    "interrupt_cancelled_sqlite",
    "prepare_mysql_connection",
    "detect_pgvector",
    "translate_error",
]

#: The sql_mode every MariaDB/MySQL connection runs with: strict, no silent truncation.
MARIADB_SQL_MODE = (
    "STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ZERO_DATE,NO_ZERO_IN_DATE,"
    "NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO"
)

#: Execution option naming a read-only engine or connection: ``engine.execution_options(dbcore_read_only=True)``.
READ_ONLY_OPTION = "dbcore_read_only"
#: Execution option asking SQLite for ``BEGIN IMMEDIATE``: set on the engine of get_session()'s sessions.
WRITE_LOCK_OPTION = "dbcore_write_lock"
#: Execution option of driver SQL naming what it writes (a :class:`StatementTarget`), for error messages.
STATEMENT_TARGET = "dbcore_statement_target"

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


def prepare_sqlite_connection(dbapi_connection: sqlite3.Connection, *, busy_timeout_ms: int, in_memory: bool) -> None:
    """Set up a new SQLite connection (see the module docstring)."""
    # Take transaction control from pysqlite so SAVEPOINT and BEGIN work as on servers.
    dbapi_connection.isolation_level = None
    dbapi_connection.create_function("regexp", 2, _sqlite_regexp, deterministic=True)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    if not in_memory:
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def begin_sqlite(connection: sa.Connection) -> None:
    """Open the transaction explicitly (pysqlite no longer does, see above).

    A deferred ``BEGIN`` under WAL reads a snapshot; if another connection commits
    before this one writes, the write fails at once with SQLITE_BUSY_SNAPSHOT and the
    busy timeout cannot help (4 processes x 200 read-then-write units: 529-629 of 800
    failed). ``BEGIN IMMEDIATE`` takes the write lock up front, waiting up to the busy
    timeout, so such units queue instead of failing. dbcore's sessions ask for it
    (:data:`WRITE_LOCK_OPTION`, set by :func:`dbcore.get_session` unless
    ``read_only=True``). Other connections (Core ``engine.connect()``, a hand-made
    ``Session(engine)``, the vector stores' and health checks' reads) keep the deferred
    ``BEGIN``: WAL lets them read while a writer holds the lock, and a read opened
    inside a session does not wait for the lock its own thread holds.
    """
    options = connection.get_execution_options()
    immediate = options.get(WRITE_LOCK_OPTION, False) and not options.get(READ_ONLY_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def interrupt_cancelled_sqlite(dbapi_connection: Any, _record: Any, exception: BaseException | None) -> None:
    """Pool ``invalidate`` listener of aiosqlite engines: end the transaction of a cancelled task now.

    aiosqlite runs statements in a thread of its own, which a cancelled task cannot
    stop: the statement would run to its end, and the connection SQLAlchemy then
    closes would keep its transaction, and the write lock, until the garbage collector
    finalized the interrupted statement. So the statement is interrupted at once
    (``sqlite3_interrupt``, safe from any thread) and the transaction rolled back,
    before SQLAlchemy closes the connection. Best effort: the close follows either way.
    """
    driver = getattr(dbapi_connection, "driver_connection", None)
    if not isinstance(exception, asyncio.CancelledError) or driver is None:
        return
    try:
        await_only(driver.interrupt())  # runs on the loop at once, not queued behind the statement
        dbapi_connection.rollback()  # queued behind it, ahead of the close
    except Exception:  # noqa: BLE001, S110 - outside a greenlet (garbage collection) or already closed
        pass


def read_only_options(dialect_name: str) -> dict[str, Any]:
    """Execution options for an engine whose transactions only read: ``engine.execution_options(**...)``.

    SQLite keeps the deferred ``BEGIN`` even where :data:`WRITE_LOCK_OPTION` is set (see
    :func:`begin_sqlite`); on PostgreSQL
    psycopg sends ``BEGIN READ ONLY`` instead of ``BEGIN`` (no extra round trip), so the
    server refuses writes too. MariaDB has no such option in SQLAlchemy.
    """
    options: dict[str, Any] = {READ_ONLY_OPTION: True}
    if dialect_name == "postgresql":
        options["postgresql_readonly"] = True
    return options


def prepare_mysql_connection(dbapi_connection: Any) -> None:
    """Strict sql_mode and utf8mb4 on a new MariaDB/MySQL connection."""
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION sql_mode = %s", (MARIADB_SQL_MODE,))
    cursor.execute("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci")
    cursor.close()


def detect_pgvector(dialect: sa.Dialect, dbapi_connection: Any) -> None:
    """Record on ``dialect`` whether the server offers pgvector (Vector columns use bytea without it)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'")
    row = cursor.fetchone()
    cursor.close()
    set_pgvector(dialect, bool(row and row[0]))


def translate_error(context: ExceptionContext, *, dbcore_tables: Collection[str] = ()) -> None:
    """Raise dbcore's typed error for a driver error (SQLAlchemy then raises it instead).

    ``dbcore_tables`` names dbcore's own tables, so a missing one is told to run ``dbcore init``.
    """
    # Pre-ping failures must reach SQLAlchemy untouched: it reconnects on them. A cancelled task
    # or an interrupt is no database error: it propagates as itself (SQLAlchemy invalidates the
    # connection it interrupted).
    if context.is_pre_ping or not isinstance(context.original_exception, Exception) or _asks_for_raw_errors(context):
        return
    orig = context.original_exception
    if isinstance(orig, DbcoreError):
        # Raised by dbcore's own types while binding parameters: nothing reached the server.
        # A copy, because SQLAlchemy chains the raised error to the original.
        raise copy.copy(orig)
    dialect_name = context.dialect.name
    if dialect_name == "sqlite":
        reason = getattr(_regexp_failure, "error", None)
        if reason and "user-defined function raised exception" in str(orig):
            _regexp_failure.error = None
            raise DataError(f"DataError on sqlite: {reason}", orig=orig, dialect="sqlite") from orig
    # No connection yet means the failure happened while connecting.
    connecting = context.connection is None and context.statement is None
    error = classify_dbapi_error(
        dialect_name,
        orig,
        is_disconnect=context.is_disconnect,
        connecting=connecting,
        target=_statement_target(context),
        dbcore_tables=dbcore_tables,
    )
    if error is not None:
        raise error from orig


def _asks_for_raw_errors(context: ExceptionContext) -> bool:
    """SQLAlchemy's own probes expect the driver's error back: MariaDB's ``has_table`` runs
    ``DESCRIBE`` and reads error 1146 as "no such table". It marks such statements with
    ``skip_user_error_events``, which SQLAlchemy honours only when set on the connection."""
    execution = context.execution_context
    return bool(execution is not None and execution.execution_options.get("skip_user_error_events"))


# ON DELETE actions that let a referenced row go, so its deletion cannot fail on them.
_DELETE_ALLOWED = frozenset({"CASCADE", "SET NULL", "SET DEFAULT"})


def _statement_target(context: ExceptionContext) -> StatementTarget | None:
    """The table the failed INSERT, UPDATE or DELETE wrote, and which of its columns it gave values.

    Names only: the values are looked at to leave out columns set to NULL, never copied.
    """
    execution = context.execution_context
    named = execution.execution_options.get(STATEMENT_TARGET) if execution is not None else None
    if isinstance(named, StatementTarget):  # driver SQL that said what it writes (the bulk loader)
        return named
    statement = getattr(getattr(execution, "compiled", None), "statement", None)
    if not isinstance(statement, (sa.Insert, sa.Update, sa.Delete)) or not isinstance(statement.table, sa.Table):
        return None
    verb = "insert" if isinstance(statement, sa.Insert) else "update" if isinstance(statement, sa.Update) else "delete"
    rows = getattr(execution, "compiled_parameters", None) or ()
    keys = {key for row in rows for key, value in row.items() if value is not None}
    return table_target(statement.table, verb, keys)


def table_target(table: sa.Table, verb: str, given: Collection[str]) -> StatementTarget:
    """What an error message may say of a write to ``table``; ``given`` holds the keys of the
    columns the statement set to a value other than NULL."""
    return StatementTarget(
        table=table.name,
        verb=verb,
        columns=tuple(column.name for column in table.columns),
        primary_key=tuple(column.name for column in table.primary_key.columns),
        foreign_keys=tuple(column.name for column in table.columns if column.foreign_keys),
        given=tuple(column.name for column in table.columns if column.key in given),
        referenced_by=_referenced_by(table) if verb != "insert" else (),
    )


def _referenced_by(table: sa.Table) -> tuple[str, ...]:
    """``table.column`` of every foreign key of the metadata that stops a row of ``table`` from going."""
    found = []
    for other in table.metadata.tables.values():
        for key in other.foreign_keys:
            target_table = key.target_fullname.rpartition(".")[0]
            if target_table == table.fullname and (key.ondelete or "").upper() not in _DELETE_ALLOWED:
                found.append(f"{other.name}.{key.parent.name}")
    return tuple(found)
