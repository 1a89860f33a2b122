"""The dbcore error hierarchy and the classification of DBAPI errors into it.

Every error dbcore raises derives from :class:`DbcoreError`. Errors that come
from the database driver are classified per dialect (SQLSTATE on PostgreSQL,
error numbers on MariaDB/MySQL and SQL Server, extended result codes or
messages on SQLite) and chain the original exception.
"""

from __future__ import annotations

import re
from typing import ClassVar

__all__ = [
    "DbcoreError",
    "ConfigurationError",
    "ValidationError",
    "DimensionMismatchError",
    "PermissionDenied",
    "DatabaseError",
    "ConnectionFailed",
    "QueryTimeout",
    "ConcurrencyError",
    "IntegrityViolation",
    "DuplicateKeyError",
    "ForeignKeyViolation",
    "NotNullViolation",
    "CheckViolation",
    "DataError",
    "TransactionOutcomeUnknown",
    "classify_dbapi_error",
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


class TransactionOutcomeUnknown(DbcoreError):
    """The connection dropped while COMMIT was in flight.

    The server may or may not have committed, so the unit of work is not
    retried automatically: repeating it could apply it twice.
    """


class DatabaseError(DbcoreError):
    """An error reported by the database server or its driver."""

    def __init__(self, message: str, *, orig: BaseException | None = None, dialect: str | None = None) -> None:
        super().__init__(message)
        self.orig = orig
        self.dialect = dialect


class ConnectionFailed(DatabaseError):
    """The server could not be reached, refused us, or dropped the connection."""

    transient = True


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
    1927: ConnectionFailed,
    2002: ConnectionFailed,
    2003: ConnectionFailed,
    2006: ConnectionFailed,
    2013: ConnectionFailed,
    2055: ConnectionFailed,
    1040: ConnectionFailed,  # too many connections
    1053: ConnectionFailed,  # server shutdown in progress
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
    -2: QueryTimeout,
    4060: ConnectionFailed,
    18456: ConnectionFailed,
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


def classify_dbapi_error(dialect: str, orig: BaseException, *, is_disconnect: bool = False) -> DatabaseError | None:
    """Return the dbcore error for a DBAPI exception, or None when it has no category.

    ``is_disconnect`` is SQLAlchemy's own verdict that the connection is gone;
    it wins over the error code because a dropped connection is always transient.
    """
    kind = ConnectionFailed if is_disconnect else _classify(dialect, orig)
    if kind is None:
        return None
    first_line = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return kind(f"{kind.__name__} on {dialect}: {first_line}", orig=orig, dialect=dialect)
