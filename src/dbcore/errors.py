"""The dbcore error hierarchy and the classification of DBAPI errors into it.

Every error dbcore raises derives from :class:`DbcoreError`. Errors that come
from the database driver are classified per dialect (SQLSTATE on PostgreSQL,
error numbers on MariaDB/MySQL and SQL Server, extended result codes or
messages on SQLite) and chain the original exception.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "DbcoreError",
    "ConfigurationError",
    "ValidationError",
    "DimensionMismatchError",
    "PermissionDenied",
    "NotFound",
    "DatabaseError",
    "ConnectionFailed",
    "DatabaseNotFound",
    "AuthenticationFailed",
    "SchemaMissing",
    "QueryTimeout",
    "ConcurrencyError",
    "IntegrityViolation",
    "DuplicateKeyError",
    "ForeignKeyViolation",
    "NotNullViolation",
    "CheckViolation",
    "DataError",
    "TransactionOutcomeUnknown",
    "MigrationError",
    "StatementTarget",
    "classify_dbapi_error",
    "describe_dbapi_error",
]


class DbcoreError(Exception):
    """Base class of every error dbcore raises."""

    #: True when repeating the whole unit of work may succeed.
    transient: ClassVar[bool] = False


class ConfigurationError(DbcoreError):
    """A setting is missing, malformed or names something not installed."""


class ValidationError(DbcoreError, ValueError):
    """A value was refused before any SQL was sent."""


class DimensionMismatchError(ValidationError):
    """An embedding has a different number of values than its column or store."""


class PermissionDenied(DbcoreError):
    """The session may not write what it tried to write."""


class NotFound(DbcoreError, LookupError):
    """No row has the id (or key) a call named: raised by the get-or-fail, update and delete calls."""


class TransactionOutcomeUnknown(DbcoreError):
    """The connection dropped while COMMIT was in flight.

    The server may or may not have committed, so the unit of work is not
    retried automatically: repeating it could apply it twice.
    """


class MigrationError(DbcoreError):
    """dbcore's migrations cannot resolve a revision: the one asked for, or one the database records."""


class DatabaseError(DbcoreError):
    """An error reported by the database server or its driver."""

    def __init__(self, message: str, *, orig: BaseException | None = None, dialect: str | None = None) -> None:
        super().__init__(message)
        self.orig = orig
        self.dialect = dialect


class ConnectionFailed(DatabaseError):
    """The server could not be reached, refused us, or dropped the connection."""

    transient = True


class DatabaseNotFound(ConnectionFailed):
    """The server answered but has no database of the URL's name: waiting will not create it."""

    transient = False


class AuthenticationFailed(ConnectionFailed):
    """The server refused the URL's user, password or right to connect: retrying cannot change its mind."""

    transient = False


class SchemaMissing(DatabaseError):
    """A table a query uses, or the SQLite database file, does not exist: the database was never migrated.

    The message says what creates it: ``dbcore init`` for dbcore's own tables, the
    project's own migrations for any other table.
    """


class QueryTimeout(DatabaseError):
    """A statement was cancelled because it ran past its time limit."""


class ConcurrencyError(DatabaseError):
    """A deadlock, serialization failure or lock timeout; the transaction was rolled back."""

    transient = True


class IntegrityViolation(DatabaseError):
    """A constraint refused the write."""


class DuplicateKeyError(IntegrityViolation):
    """A unique or primary key constraint refused a duplicate value."""


class ForeignKeyViolation(IntegrityViolation):
    """A foreign key refused a reference to a missing row, or a delete of a referenced row."""


class NotNullViolation(IntegrityViolation):
    """A required column was given no value."""


class CheckViolation(IntegrityViolation):
    """A CHECK constraint refused the row."""


class DataError(DatabaseError):
    """The server refused a value: out of range, too long, wrong type, invalid pattern."""


# --- classification -------------------------------------------------------

# PostgreSQL SQLSTATE codes (exact codes first, then two-character classes).
_PG_CODES: dict[str, type[DatabaseError]] = {
    "23505": DuplicateKeyError,
    "23503": ForeignKeyViolation,
    "23502": NotNullViolation,
    "23514": CheckViolation,
    "40001": ConcurrencyError,
    "40P01": ConcurrencyError,
    "55P03": ConcurrencyError,
    "57014": QueryTimeout,
    "3D000": DatabaseNotFound,
    "28P01": AuthenticationFailed,
    "28000": AuthenticationFailed,
    "42P01": SchemaMissing,
    "57P01": ConnectionFailed,
    "57P02": ConnectionFailed,
    "57P03": ConnectionFailed,
}
_PG_CLASSES: dict[str, type[DatabaseError]] = {
    "08": ConnectionFailed,
    "22": DataError,
    "23": IntegrityViolation,
    "40": ConcurrencyError,
}

# MariaDB / MySQL server and client error numbers.
_MYSQL_CODES: dict[int, type[DatabaseError]] = {
    1062: DuplicateKeyError,
    1586: DuplicateKeyError,
    1216: ForeignKeyViolation,
    1217: ForeignKeyViolation,
    1451: ForeignKeyViolation,
    1452: ForeignKeyViolation,
    1048: NotNullViolation,
    1364: NotNullViolation,
    3819: CheckViolation,
    4025: CheckViolation,
    1139: DataError,  # invalid regular expression
    1264: DataError,
    1265: DataError,
    1292: DataError,
    1366: DataError,
    1406: DataError,
    1411: DataError,
    3140: DataError,
    4038: DataError,
    1205: ConcurrencyError,
    1213: ConcurrencyError,
    1049: DatabaseNotFound,  # unknown database
    1044: AuthenticationFailed,  # access denied to a database
    1045: AuthenticationFailed,  # access denied (user or password)
    1927: ConnectionFailed,
    2002: ConnectionFailed,
    2003: ConnectionFailed,
    2006: ConnectionFailed,
    2013: ConnectionFailed,
    2055: ConnectionFailed,
    1040: ConnectionFailed,  # too many connections
    1053: ConnectionFailed,  # server shutdown in progress
    1146: SchemaMissing,
    1969: QueryTimeout,
    3024: QueryTimeout,
}

# SQL Server error numbers (the number is the last parenthesised integer of a pyodbc message).
_MSSQL_CODES: dict[int, type[DatabaseError]] = {
    2627: DuplicateKeyError,
    2601: DuplicateKeyError,
    547: ForeignKeyViolation,  # also CHECK violations; told apart by message below
    515: NotNullViolation,
    8152: DataError,
    2628: DataError,
    245: DataError,
    8114: DataError,
    8115: DataError,
    220: DataError,
    1205: ConcurrencyError,
    1222: ConcurrencyError,
    208: SchemaMissing,
    -2: QueryTimeout,
    4060: DatabaseNotFound,  # cannot open the database the login asked for
    18456: AuthenticationFailed,  # login failed
    10054: ConnectionFailed,
    10060: ConnectionFailed,
    10061: ConnectionFailed,
}
_MSSQL_NUMBER = re.compile(r"\((-?\d+)\)\s*(?:\(SQL\w+\))?\s*$")

# SQLite extended result codes (Python 3.11+ exposes them as ``sqlite_errorcode``).
_SQLITE_CODES: dict[int, type[DatabaseError]] = {
    2067: DuplicateKeyError,  # SQLITE_CONSTRAINT_UNIQUE
    1555: DuplicateKeyError,  # SQLITE_CONSTRAINT_PRIMARYKEY
    787: ForeignKeyViolation,  # SQLITE_CONSTRAINT_FOREIGNKEY
    1299: NotNullViolation,  # SQLITE_CONSTRAINT_NOTNULL
    275: CheckViolation,  # SQLITE_CONSTRAINT_CHECK
    5: ConcurrencyError,  # SQLITE_BUSY
    6: ConcurrencyError,  # SQLITE_LOCKED
    14: ConnectionFailed,  # SQLITE_CANTOPEN
}
_SQLITE_MESSAGES: tuple[tuple[str, type[DatabaseError]], ...] = (
    ("unique constraint failed", DuplicateKeyError),
    ("primary key must be unique", DuplicateKeyError),
    ("foreign key constraint failed", ForeignKeyViolation),
    ("not null constraint failed", NotNullViolation),
    ("check constraint failed", CheckViolation),
    ("database is locked", ConcurrencyError),
    ("unable to open database file", ConnectionFailed),
    ("no such table", SchemaMissing),
)

# Refusals at connect time that only a connect can raise. psycopg 3 gives no SQLSTATE for a
# failed connect, so PostgreSQL's refusals are recognised by the server's FATAL text too;
# 42501 is a refusal only while connecting (later it is a missing grant on a table).
_PG_CONNECT_REFUSALS: tuple[tuple[re.Pattern[str], type[ConnectionFailed]], ...] = (
    (re.compile(r'FATAL:\s+database "[^"]*" does not exist'), DatabaseNotFound),
    (
        re.compile(r'FATAL:\s+(?:password authentication failed|role "[^"]*" does not exist|no pg_hba\.conf entry)'),
        AuthenticationFailed,
    ),
    (re.compile(r"FATAL:\s+permission denied for database"), AuthenticationFailed),
)


def _mysql_errno(orig: BaseException) -> int | None:
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def _mssql_number(orig: BaseException) -> int | None:
    for arg in getattr(orig, "args", ()):
        if isinstance(arg, str):
            match = _MSSQL_NUMBER.search(arg)
            if match:
                return int(match.group(1))
    return None


def _pg_sqlstate(orig: BaseException) -> str | None:
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code if isinstance(code, str) else None


def _classify(dialect: str, orig: BaseException) -> type[DatabaseError] | None:
    if dialect == "postgresql":
        state = _pg_sqlstate(orig)
        if state:
            return _PG_CODES.get(state) or _PG_CLASSES.get(state[:2])
        return None
    if dialect in ("mysql", "mariadb"):
        errno = _mysql_errno(orig)
        return _MYSQL_CODES.get(errno) if errno is not None else None
    if dialect == "mssql":
        number = _mssql_number(orig)
        found = _MSSQL_CODES.get(number) if number is not None else None
        if found is ForeignKeyViolation and "CHECK constraint" in str(orig):
            return CheckViolation
        if found is None:
            state = orig.args[0] if getattr(orig, "args", None) else None
            if isinstance(state, str) and state.startswith("08"):
                return ConnectionFailed
            if state == "HYT00":
                return QueryTimeout
        return found
    if dialect == "sqlite":
        code = getattr(orig, "sqlite_errorcode", None)
        if isinstance(code, int) and code in _SQLITE_CODES:
            return _SQLITE_CODES[code]
        text = str(orig).lower()
        for fragment, kind in _SQLITE_MESSAGES:
            if fragment in text:
                return kind
    return None


def _driver_message(dialect: str, orig: BaseException) -> str:
    """The driver's own words: pymysql's ``(1048, "...")`` args without the tuple around them."""
    args = orig.args
    if dialect in ("mysql", "mariadb") and len(args) >= 2 and isinstance(args[1], str):
        text = args[1]
    else:
        text = str(orig)
    return text.strip().splitlines()[0] if text.strip() else type(orig).__name__


def classify_dbapi_error(
    dialect: str,
    orig: BaseException,
    *,
    is_disconnect: bool = False,
    connecting: bool = False,
    target: StatementTarget | None = None,
    dbcore_tables: Collection[str] = (),
) -> DatabaseError | None:
    """Return the dbcore error for a DBAPI exception, or None when it has no category.

    ``is_disconnect`` is SQLAlchemy's own verdict that the connection is gone, and
    ``connecting`` says no connection was made yet: both make the error a transient
    :class:`ConnectionFailed`, except when the server refused for good (a missing
    database, a failed login), which retrying cannot change.
    ``target`` names the table the failed statement wrote, for servers whose
    message does not (see :func:`describe_dbapi_error`); ``dbcore_tables`` names
    dbcore's own tables, whose absence ``dbcore init`` cures.
    """
    kind = _classify(dialect, orig)
    if connecting:
        kind = _connect_refusal(dialect, orig) or kind
    if (is_disconnect or connecting) and not _is_refusal(kind):
        kind = ConnectionFailed
    if kind is None:
        return None
    message = describe_dbapi_error(kind, dialect, _driver_message(dialect, orig), target, dbcore_tables)
    return kind(message, orig=orig, dialect=dialect)


def _is_refusal(kind: type[DatabaseError] | None) -> bool:
    return kind is not None and issubclass(kind, ConnectionFailed) and not kind.transient


def _connect_refusal(dialect: str, orig: BaseException) -> type[ConnectionFailed] | None:
    """PostgreSQL's refusals of a new connection, which psycopg 3 reports without a SQLSTATE."""
    if dialect != "postgresql":
        return None
    if _pg_sqlstate(orig) == "42501":
        return AuthenticationFailed
    text = str(orig)
    for pattern, kind in _PG_CONNECT_REFUSALS:
        if pattern.search(text):
            return kind
    return None


# --- messages -------------------------------------------------------------------


@dataclass(frozen=True)
class StatementTarget:
    """The table an INSERT, UPDATE or DELETE wrote, by names only: all an error message may say of it.

    MariaDB names a column without its table and SQLite's foreign-key failure names
    nothing, so the message is completed from the statement, never from its values.
    """

    table: str
    verb: str  # "insert", "update" or "delete"
    columns: tuple[str, ...] = ()
    primary_key: tuple[str, ...] = ()
    #: This table's foreign-key columns.
    foreign_keys: tuple[str, ...] = ()
    #: The columns the statement gave a value other than NULL.
    given: tuple[str, ...] = ()
    #: ``table.column`` of the foreign keys that forbid deleting a row of this table.
    referenced_by: tuple[str, ...] = ()

    def qualified(self, columns: tuple[str, ...]) -> str:
        return ", ".join(f"{self.table}.{column}" for column in columns)


def describe_dbapi_error(
    kind: type[DatabaseError],
    dialect: str,
    driver_message: str,
    target: StatementTarget | None,
    dbcore_tables: Collection[str] = (),
) -> str:
    """``"<Kind> on <dialect>: <detail>"``, the detail naming ``table.column`` where the driver did not.

    A missing table is told to run ``dbcore init`` only when it is in ``dbcore_tables``.
    """
    detail = driver_message
    if issubclass(kind, ConnectionFailed):
        detail = _connection_detail(driver_message)
    elif kind is SchemaMissing:
        detail = _schema_missing_detail(driver_message, dbcore_tables)
    elif dialect in ("mysql", "mariadb"):
        detail = _mysql_detail(driver_message, target)
    elif dialect == "sqlite" and kind is ForeignKeyViolation and target is not None:
        detail = _sqlite_foreign_key_detail(target) or driver_message
    return f"{kind.__name__} on {dialect}: {detail}"


_SERVER_VERDICT = re.compile(r"\bFATAL:\s+")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*):[^@\s]*@")
_DSN_PASSWORD = re.compile(r"(\bpassword\s*=\s*)(?:'[^']*'|\S+)", re.IGNORECASE)


def _connection_detail(message: str) -> str:
    """The server's verdict without libpq's "connection to server at ... failed:" lead, and no password.

    The drivers met so far do not echo the password, but a URL or DSN in a message
    would carry it: masked the way ``Settings.masked_url`` masks it.
    """
    verdict = _SERVER_VERDICT.split(message, maxsplit=1)
    detail = verdict[1] if len(verdict) == 2 else message
    detail = _URL_PASSWORD.sub(r"\1:***@", detail)
    return _DSN_PASSWORD.sub(r"\1***", detail)


# The missing table as SQLite, PostgreSQL, MariaDB and SQL Server name it, schema prefix dropped.
_MISSING_TABLE = re.compile(
    r"""(?:no such table: |relation "|Table '|Invalid object name ')(?:[^"'\s]*\.)?([^"'\s.]+)"""
)


def _schema_missing_detail(message: str, dbcore_tables: Collection[str]) -> str:
    """Which table is missing and what creates it: dbcore's migrations for its own tables, else the project's."""
    found = _MISSING_TABLE.search(message)
    if found is None:
        return (
            "a table the query uses does not exist; run `dbcore init` (or `dbcore migrate`) if it is one of "
            "dbcore's, else your project's migrations"
        )
    table = found.group(1)
    if table in dbcore_tables:
        return f"table {table} does not exist; run `dbcore init` (or `dbcore migrate`) to create dbcore's schema"
    return f"table {table} does not exist; it is not one of dbcore's tables: run your project's migrations to create it"


_MYSQL_DUPLICATE = re.compile(r"^Duplicate entry '.*' for key '(?:[^']*\.)?([^'.]+)'$", re.DOTALL)
_MYSQL_COLUMN = re.compile(r"\b(?:Column|column|Field) '([^']+)'")
_MYSQL_FOREIGN_KEY = re.compile(
    r"^Cannot (add or update a child|delete or update a parent) row: a foreign key constraint fails "
    r"\((?:`[^`]*`\.)?`([^`]+)`, CONSTRAINT `([^`]+)` FOREIGN KEY \(([^)]*)\) REFERENCES `([^`]+)`"
)


def _mysql_detail(message: str, target: StatementTarget | None) -> str:
    """MariaDB's message with ``table.column`` for a bare column, and no duplicated value."""
    foreign_key = _MYSQL_FOREIGN_KEY.match(message)
    if foreign_key:
        return _mysql_foreign_key_detail(*foreign_key.groups())
    if target is None:
        return message
    duplicate = _MYSQL_DUPLICATE.match(message)
    if duplicate:
        key = duplicate.group(1)
        if key == "PRIMARY":
            return f"duplicate primary key {target.qualified(target.primary_key) or target.table}"
        return f"duplicate value for unique key {key} of {target.table}"

    def qualify(match: re.Match[str]) -> str:
        column = match.group(1)
        return f"{target.table}.{column}" if column in target.columns else match.group(0)

    return _MYSQL_COLUMN.sub(qualify, message, count=1)


def _mysql_foreign_key_detail(side: str, table: str, constraint: str, columns: str, referenced: str) -> str:
    """MariaDB's foreign-key failure without the SQL of the constraint: it names both tables already."""
    names = ", ".join(f"{table}.{column.strip().strip('`')}" for column in columns.split(","))
    if side.startswith("add"):
        return f"{names} refers to a missing {referenced} row (constraint {constraint})"
    return f"a row of {referenced} is still referenced by {names} (constraint {constraint})"


def _sqlite_foreign_key_detail(target: StatementTarget) -> str | None:
    """SQLite says only "FOREIGN KEY constraint failed": name the columns the statement could have broken.

    Which row is missing is not told (finding it would take a query per key); the
    columns left NULL are left out, as they cannot refer to a missing row.
    """
    given = tuple(column for column in target.foreign_keys if column in target.given)
    if target.verb == "insert" and (given or target.foreign_keys):
        return _refers_to_missing(target, given or target.foreign_keys)
    if target.verb == "update" and given:
        return _refers_to_missing(target, given)
    if target.verb in ("update", "delete") and target.referenced_by:
        action = "deleted" if target.verb == "delete" else "changed"
        return f"a {action} row of {target.table} is still referenced by {', '.join(target.referenced_by)}"
    return None


def _refers_to_missing(target: StatementTarget, columns: tuple[str, ...]) -> str:
    subject = target.qualified(columns) if len(columns) == 1 else f"one of {target.qualified(columns)}"
    return f"{subject} refers to a missing row"
