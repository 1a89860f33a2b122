"""Column types that mean the same thing on every dialect.

Each type picks its storage in ``load_dialect_impl(dialect)`` when a statement
is first compiled for a dialect, so one set of models serves SQLite,
PostgreSQL (with or without pgvector), MariaDB/MySQL and SQL Server in the
same process. Values are checked in Python before any SQL is sent; a refused
value raises :class:`~dbcore.errors.ValidationError` naming the column.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
import struct
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import mssql, mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine, UserDefinedType

from dbcore.config import VECTOR_MAX_DIM
from dbcore.errors import DimensionMismatchError, ValidationError

__all__ = [
    "GUID",
    "PK_TYPE",
    "new_uuid",
    "SqlEnum",
    "Vector",
    "VECTOR_MAX_DIM",
    "vector_values",
    "UTCDateTime",
    "utcnow",
    "JSON",
    "String",
    "Text",
    "Unicode",
    "UnicodeText",
    "Boolean",
    "SmallInteger",
    "Integer",
    "BigInteger",
    "PLAIN_DDL_TYPES",
    "value_check",
    "has_pgvector",
    "set_pgvector",
]

# Set on a PostgreSQL dialect when its engine's first connection has told whether pgvector exists.
_PGVECTOR_ATTRIBUTE = "dbcore_pgvector"


def has_pgvector(dialect: Dialect) -> bool:
    """Whether Vector columns on this PostgreSQL dialect use pgvector (True until a connection says otherwise)."""
    return bool(getattr(dialect, _PGVECTOR_ATTRIBUTE, True))


def set_pgvector(dialect: Dialect, available: bool) -> None:
    """Record what a connection of this dialect's engine said about pgvector."""
    setattr(dialect, _PGVECTOR_ATTRIBUTE, available)


def _shown(value: Any) -> str:
    """A short repr for error messages: values may be huge embeddings."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _ColumnAware:
    """Remembers the Column a type instance belongs to, so errors can name ``table.column``.

    SQLAlchemy calls ``_set_parent`` on a TypeDecorator when a Column takes it.
    Copies (per dialect, or of a mixin's Column) keep the reference; a copy
    attached to another Column is re-copied for it below.
    """

    _column: sa.Column[Any] | None = None

    def _set_parent(self, parent: Any, outer: bool = False, **kw: Any) -> None:
        super()._set_parent(parent, outer=outer, **kw)  # type: ignore[misc]
        if not isinstance(parent, sa.Column):
            return
        if self._column is not None and self._column is not parent:
            # One instance shared by two columns would name the wrong one: give the newcomer its own copy.
            twin = self.copy()  # type: ignore[attr-defined]
            twin._column = parent
            parent.type = twin
            return
        self._column = parent

    @property
    def column_label(self) -> str:
        """``table.column`` when known, else the column name, else ``<unbound>``."""
        column = self._column
        if column is None:
            return "<unbound>"
        table = getattr(column, "table", None)
        name = getattr(table, "name", None)
        return f"{name}.{column.name}" if name else str(column.name)

    def check_value(self, value: Any) -> None:
        """Raise the error binding ``value`` would raise (``None`` passes); it changes nothing.

        Lets the ORM refuse a value on the line that sets it (:mod:`dbcore.hooks`)
        instead of at the flush, where SQLAlchemy may wrap the error.
        """


def value_check(type_: TypeEngine[Any]) -> Callable[[Any], None] | None:
    """The check a dbcore column type runs on a value before binding it; None for other types."""
    return type_.check_value if isinstance(type_, _ColumnAware) else None


# --- UUID primary keys ------------------------------------------------------

_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def new_uuid() -> uuid.UUID:
    """A new primary key value: UUIDv7 where Python has it (3.14+), else UUIDv4.

    UUIDv7 starts with a timestamp, so new keys land at the right-hand end of a
    B-tree index instead of at random pages; UUIDv4 is random but still unique.
    """
    maker = getattr(uuid, "uuid7", None)
    return maker() if maker is not None else uuid.uuid4()


class _MariaDBNativeUUID(UserDefinedType[str]):
    """MariaDB's 16-byte ``UUID`` column (10.7+); values travel as canonical strings."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "UUID"


def _mariadb_has_uuid(dialect: Dialect) -> bool:
    if not getattr(dialect, "is_mariadb", False):
        return False
    version = getattr(dialect, "server_version_info", None)
    # Offline (no connection yet) we assume the supported MariaDB, 10.11.
    return version is None or tuple(version[:2]) >= (10, 7)


class GUID(_ColumnAware, TypeDecorator[uuid.UUID]):
    """A UUID column; Python always gets :class:`uuid.UUID`.

    Storage: ``UUID`` on PostgreSQL and MariaDB 10.7+, ``UNIQUEIDENTIFIER`` on
    SQL Server, ``CHAR(36)`` on MySQL and older MariaDB, and ``TEXT`` holding the
    lowercase hyphenated form on SQLite. Accepts a :class:`uuid.UUID` or a
    36-character hyphenated string in any case; anything else is refused.
    """

    impl = sa.Uuid
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("postgresql", "mssql"):
            return dialect.type_descriptor(sa.Uuid(as_uuid=True, native_uuid=True))
        if dialect.name in ("mysql", "mariadb"):
            if _mariadb_has_uuid(dialect):
                return dialect.type_descriptor(_MariaDBNativeUUID())
            return dialect.type_descriptor(sa.CHAR(36))
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.Text())
        return dialect.type_descriptor(sa.CHAR(36))

    def _coerce(self, value: Any) -> uuid.UUID:
        if isinstance(value, uuid.UUID):
            return value
        if isinstance(value, str) and _CANONICAL_UUID.fullmatch(value):
            return uuid.UUID(value)
        raise ValidationError(
            f"{self.column_label} expects a uuid.UUID or a 36-character hyphenated UUID string, "
            f"got {type(value).__name__} {_shown(value)}; pass uuid.UUID(...) or dbcore.types.new_uuid()"
        )

    def check_value(self, value: Any) -> None:
        if value is not None:
            self._coerce(value)

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        checked = self._coerce(value)
        if dialect.name in ("postgresql", "mssql"):
            return checked
        return str(checked)

    def process_result_value(self, value: Any, dialect: Dialect) -> uuid.UUID | None:
        if value is None or isinstance(value, uuid.UUID):
            return value
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("ascii", "replace")
        try:
            return uuid.UUID(str(value))
        except ValueError:
            raise ValidationError(
                f"{self.column_label} holds {_shown(value)}, which is not a UUID; the stored data is corrupt"
            ) from None

    @property
    def python_type(self) -> type[uuid.UUID]:
        return uuid.UUID


#: The primary key type of every model: ``Column(PK_TYPE)`` / ``mapped_column(PK_TYPE)``.
PK_TYPE = GUID


# --- integer enums ----------------------------------------------------------

_INT_RANGES: tuple[tuple[int, int, str], ...] = (
    (-(2**7), 2**7 - 1, "tinyint"),
    (0, 2**8 - 1, "tinyint_unsigned"),
    (-(2**15), 2**15 - 1, "smallint"),
    (0, 2**16 - 1, "smallint_unsigned"),
    (-(2**31), 2**31 - 1, "integer"),
    (0, 2**32 - 1, "integer_unsigned"),
    (-(2**63), 2**63 - 1, "bigint"),
)

_MYSQL_INTS: dict[str, TypeEngine[int]] = {
    "tinyint": mysql.TINYINT(),
    "tinyint_unsigned": mysql.TINYINT(unsigned=True),
    "smallint": mysql.SMALLINT(),
    "smallint_unsigned": mysql.SMALLINT(unsigned=True),
    "integer": mysql.INTEGER(),
    "integer_unsigned": mysql.INTEGER(unsigned=True),
    "bigint": mysql.BIGINT(),
}


class SqlEnum(_ColumnAware, TypeDecorator[Any]):
    """An integer :class:`enum.Enum` (usually ``IntEnum``) stored as the smallest integer column that holds it.

    Storage: ``TINYINT`` (signed or unsigned) and the other MariaDB/MySQL sizes
    where they fit; ``TINYINT`` (0..255) on SQL Server; PostgreSQL starts at
    ``SMALLINT``; SQLite renders ``SMALLINT``/``INTEGER``/``BIGINT`` but stores
    every integer in a variable-width field anyway. Writes accept a member of
    the enum or its integer value; names and other strings, bools and members of
    other enums are refused. Reads return the member; an unknown stored value
    raises ValidationError.
    """

    impl = sa.SmallInteger
    cache_ok = True
    #: Lets model checkers recognise integer enum columns.
    is_integer_enum = True

    def __init__(self, enum_class: type[enum.Enum]) -> None:
        if not (isinstance(enum_class, type) and issubclass(enum_class, enum.Enum)):
            raise ValidationError(f"SqlEnum expects an Enum class such as an IntEnum, got {_shown(enum_class)}")
        values = [member.value for member in enum_class]
        if not values:
            raise ValidationError(f"SqlEnum({enum_class.__name__}) has no members; add at least one")
        bad = [m.name for m in enum_class if not isinstance(m.value, int) or isinstance(m.value, bool)]
        if bad:
            raise ValidationError(
                f"SqlEnum({enum_class.__name__}) needs integer values, but {', '.join(bad)} are not; use IntEnum"
            )
        low, high = min(values), max(values)
        size = next((name for lo, hi, name in _INT_RANGES if lo <= low and high <= hi), None)
        if size is None:
            raise ValidationError(f"SqlEnum({enum_class.__name__}) has values outside the 64-bit integer range")
        super().__init__()
        self.enum_class = enum_class
        self._low, self._high, self._size = low, high, size

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(_MYSQL_INTS[self._size])
        if dialect.name == "mssql" and 0 <= self._low and self._high <= 255:
            return dialect.type_descriptor(mssql.TINYINT())
        if -(2**15) <= self._low and self._high < 2**15:
            return dialect.type_descriptor(sa.SmallInteger())
        if -(2**31) <= self._low and self._high < 2**31:
            return dialect.type_descriptor(sa.Integer())
        return dialect.type_descriptor(sa.BigInteger())

    def _allowed(self) -> str:
        return ", ".join(f"{m.name}={m.value}" for m in self.enum_class)

    def check_value(self, value: Any) -> None:
        if value is not None:
            self._stored_int(value)

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else self._stored_int(value)

    def _stored_int(self, value: Any) -> int:
        name = self.enum_class.__name__
        if isinstance(value, self.enum_class):
            return int(value.value)
        if isinstance(value, int) and not isinstance(value, (bool, enum.Enum)):
            try:
                return int(self.enum_class(value).value)
            except ValueError:
                pass
        raise ValidationError(
            f"{self.column_label} expects a {name} member or its integer value, got "
            f"{type(value).__name__} {_shown(value)}; allowed: {self._allowed()}"
        )

    def process_result_value(self, value: Any, dialect: Dialect) -> enum.Enum | None:
        if value is None:
            return None
        try:
            return self.enum_class(int(value))
        except (ValueError, TypeError):
            raise ValidationError(
                f"{self.column_label} holds {_shown(value)}, which is not a {self.enum_class.__name__} value "
                f"(allowed: {self._allowed()}); fix the row or add the member"
            ) from None

    @property
    def python_type(self) -> type[enum.Enum]:
        return self.enum_class


# --- vectors ------------------------------------------------------------------


class _VectorDistance(FunctionElement[float]):
    """A pgvector distance operator; refuses to compile where SQL has no vector distance."""

    type = sa.Float()
    inherit_cache = True
    operator = ""


class _L2Distance(_VectorDistance):
    inherit_cache = True
    operator = "<->"


class _CosineDistance(_VectorDistance):
    inherit_cache = True
    operator = "<=>"


class _NegativeInnerProduct(_VectorDistance):
    inherit_cache = True
    operator = "<#>"


class _L1Distance(_VectorDistance):
    inherit_cache = True
    operator = "<+>"


def _compile_distance(element: _VectorDistance, compiler: SQLCompiler, **kw: Any) -> str:
    dialect = compiler.dialect
    if dialect.name != "postgresql" or not has_pgvector(dialect):
        # On MariaDB "<=>" is NULL-safe equality: rendering it would return wrong rows silently.
        raise sa.exc.CompileError(
            f"vector distances in SQL need PostgreSQL with pgvector, not {dialect.name}; "
            "search with a dbcore vector store instead"
        )
    left, right = element.clauses
    return f"({compiler.process(left, **kw)} {element.operator} {compiler.process(right, **kw)})"


for _distance in (_L2Distance, _CosineDistance, _NegativeInnerProduct, _L1Distance):
    compiles(_distance)(_compile_distance)


class Vector(_ColumnAware, TypeDecorator[np.ndarray]):
    """An embedding of ``dim`` float32 values; Python gets a 1-D ``numpy.float32`` array.

    Storage: pgvector ``VECTOR(dim)`` on PostgreSQL when the server has the
    extension, else little-endian float32 bytes (exactly ``4 * dim``, no header)
    in ``bytea``, SQLite ``BLOB``, MariaDB ``LONGBLOB`` or SQL Server
    ``VARBINARY(max)``. Writes accept lists, tuples and arrays of any shape with
    ``dim`` finite real numbers. The comparator's ``l2_distance``,
    ``cosine_distance``, ``max_inner_product`` and ``l1_distance`` compile only
    for pgvector; byte storage has no distance in SQL.
    """

    impl = sa.LargeBinary
    cache_ok = True

    class Comparator(TypeDecorator.Comparator[np.ndarray]):
        """Distance operators (pgvector only)."""

        def _operand(self, other: Any) -> Any:
            if isinstance(other, sa.sql.ClauseElement):
                return other
            return sa.bindparam(None, other, type_=self.type)

        def l2_distance(self, other: Any) -> sa.ColumnElement[float]:
            return _L2Distance(self.expr, self._operand(other))

        def cosine_distance(self, other: Any) -> sa.ColumnElement[float]:
            return _CosineDistance(self.expr, self._operand(other))

        def max_inner_product(self, other: Any) -> sa.ColumnElement[float]:
            """pgvector's ``<#>``: the negative inner product, so smaller is closer."""
            return _NegativeInnerProduct(self.expr, self._operand(other))

        def l1_distance(self, other: Any) -> sa.ColumnElement[float]:
            return _L1Distance(self.expr, self._operand(other))

    comparator_factory = Comparator

    def __init__(self, dim: int) -> None:
        if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= VECTOR_MAX_DIM:
            raise ValidationError(
                f"Vector dimension must be an integer from 1 to {VECTOR_MAX_DIM}, got {_shown(dim)}; "
                "check DBCORE_VECTOR_DIMS"
            )
        super().__init__()
        self.dim = dim

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            if has_pgvector(dialect):
                from pgvector.sqlalchemy import VECTOR

                return dialect.type_descriptor(VECTOR(self.dim))
            return dialect.type_descriptor(sa.LargeBinary())
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.LONGBLOB())
        if dialect.name == "mssql":
            return dialect.type_descriptor(mssql.VARBINARY("max"))
        return dialect.type_descriptor(sa.LargeBinary())

    def _uses_pgvector(self, dialect: Dialect) -> bool:
        return dialect.name == "postgresql" and has_pgvector(dialect)

    def to_float32(self, value: Any) -> np.ndarray:
        """Check ``value`` and return it as a flat float32 array of ``dim`` values."""
        return vector_values(value, self.dim, where=self.column_label)

    def check_value(self, value: Any) -> None:
        if value is not None:
            self.to_float32(value)

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        converted = self.to_float32(value)
        if self._uses_pgvector(dialect):
            return converted.astype(np.float32, copy=False)
        return converted.tobytes()

    def copy_binary_rows(self, matrix: np.ndarray, dialect: Dialect) -> list[bytes]:
        """Each row of a checked ``(n, dim)`` matrix as the column's value in PostgreSQL's binary COPY.

        pgvector's binary form (dimension and an unused short, then big-endian float32)
        or, for ``bytea`` storage, the little-endian float32 bytes the column stores.
        Built for all rows at once: the bulk loader's per-row cost is one slice.
        """
        if not self._uses_pgvector(dialect):
            return self.stored_bytes(matrix)
        framed = np.empty((len(matrix), 4 + 4 * self.dim), dtype=np.uint8)
        framed[:, :4] = np.frombuffer(struct.pack(">HH", self.dim, 0), dtype=np.uint8)
        framed[:, 4:] = np.ascontiguousarray(matrix, dtype=">f4").view(np.uint8).reshape(len(matrix), -1)
        return [row.tobytes() for row in framed]

    def stored_bytes(self, matrix: np.ndarray) -> list[bytes]:
        """Each row of a checked ``(n, dim)`` matrix as byte storage holds it (little-endian float32)."""
        data = np.ascontiguousarray(matrix, dtype="<f4")
        return [row.tobytes() for row in data]

    def bind_rows(self, matrix: np.ndarray, dialect: Dialect) -> list[Any]:
        """What the driver gets for each row of a checked ``(n, dim)`` matrix: the bind processor's
        values, without checking every row again."""
        if self._uses_pgvector(dialect):
            values: list[Any] = list(np.asarray(matrix, dtype=np.float32))
        else:
            values = self.stored_bytes(matrix)
        process = self.load_dialect_impl(dialect).bind_processor(dialect)
        return values if process is None else [process(value) for value in values]

    def process_result_value(self, value: Any, dialect: Dialect) -> np.ndarray | None:
        if value is None:
            return None
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if len(raw) != 4 * self.dim:
                raise ValidationError(
                    f"{self.column_label} holds {len(raw)} bytes, not the {4 * self.dim} of Vector({self.dim}); "
                    "the stored data is corrupt or was written for another dimension"
                )
            return np.frombuffer(raw, dtype="<f4").astype(np.float32)
        # pgvector hands back a list of floats (or a numpy array with its own adapters).
        result = np.array(value, dtype=np.float32).reshape(-1)
        if result.size != self.dim:
            raise ValidationError(
                f"{self.column_label} holds {result.size} values, not the {self.dim} of Vector({self.dim}); "
                "the column was created for another dimension"
            )
        return result

    def compare_values(self, x: Any, y: Any) -> bool:
        # The ORM compares old and new values to detect changes; arrays need array_equal, not ==.
        if x is None or y is None:
            return x is y
        return bool(np.array_equal(np.asarray(x), np.asarray(y)))

    @property
    def python_type(self) -> type[np.ndarray]:
        return np.ndarray


def vector_values(values: Any, dims: int, *, where: str, rows: int | None = None, nonzero: bool = False) -> np.ndarray:
    """``values`` as finite float32 numbers: one vector of ``dims`` (any shape holding them), or ``rows`` x ``dims``.

    The one check every embedding passes, whether it is written through a Vector column,
    a vector store or the bulk writer: real numbers only (no strings, booleans or
    complex numbers), the right count, finite in float32. ``nonzero`` also refuses
    all-zero vectors, whose cosine similarity is undefined. Raises
    DimensionMismatchError for a wrong count, ValidationError for anything else.
    """
    if values is None or isinstance(values, (str, bytes, bytearray, memoryview, Mapping)):
        raise ValidationError(f"{where} expects {dims} numbers (list, tuple or array), got {type(values).__name__}")
    try:
        array = values if isinstance(values, np.ndarray) else np.asarray(values)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{where} expects a flat or regular array of numbers; {exc}") from None
    if array.dtype.kind not in "iuf" or array.ndim == 0:
        raise ValidationError(
            f"{where} expects real numbers in a list, tuple or array, got {type(values).__name__} "
            f"of dtype {array.dtype} (ragged lists and None inside become 'object')"
        )
    if rows is None:
        array = array.reshape(-1)
        count = array.size
    elif array.ndim != 2 or array.shape[0] != rows:
        raise ValidationError(f"{where} expects one row per item ({rows} x {dims}), got shape {array.shape}")
    else:
        count = array.shape[1]
    if count != dims:
        raise DimensionMismatchError(f"Vector({dims}) got {count} values for {where}; {_dims_hint(where)}")
    with np.errstate(over="ignore", invalid="ignore"):
        converted = array.astype("<f4")
    finite = np.isfinite(converted).all(axis=-1)
    if not finite.all():
        raise ValidationError(
            f"{where}{_row(finite, rows)} got NaN, infinity or a value beyond float32 range; embeddings must be finite"
        )
    if nonzero:
        used = converted.any(axis=-1)
        if not np.all(used):
            raise ValidationError(f"{where}{_row(used, rows)} is all zeros; cosine similarity is undefined for it")
    return converted


#: The column whose dimension DBCORE_VECTOR_DIMS sets; other Vector columns have the dimension they declare.
_EMBEDDINGS_COLUMN = "memory_embeddings.embedding"


def _dims_hint(where: str) -> str:
    if where == _EMBEDDINGS_COLUMN:
        return "embed with a model of that dimension, or set DBCORE_VECTOR_DIMS, migrate and re-embed"
    return "give it as many values as the column or store declares"


def _row(ok: Any, rows: int | None) -> str:
    return "" if rows is None else f" (row {int(np.flatnonzero(~np.asarray(ok))[0])})"


# --- timestamps -------------------------------------------------------------


def utcnow() -> dt.datetime:
    """The current time as an aware UTC datetime (the default for ``*_at`` columns)."""
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(_ColumnAware, TypeDecorator[dt.datetime]):
    """A point in time, stored in UTC; Python always gets an aware UTC datetime.

    Naive datetimes are refused: nothing says which zone they were meant in.
    Aware values are converted to UTC. Storage: ``TIMESTAMP WITH TIME ZONE`` on
    PostgreSQL, ``DATETIME(6)`` on MariaDB/MySQL, ``DATETIME2(6)`` on SQL Server
    and SQLAlchemy's ISO text on SQLite; the last three hold UTC wall time.
    SQL Server uses DATETIME2 rather than DATETIMEOFFSET because the offset
    would always be +00:00: 8 bytes instead of 10, like MariaDB's storage.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        if dialect.name == "mssql":
            return dialect.type_descriptor(mssql.DATETIME2(precision=6))
        if dialect.name == "postgresql":
            return dialect.type_descriptor(sa.DateTime(timezone=True))
        return dialect.type_descriptor(sa.DateTime())

    def check_value(self, value: Any) -> None:
        if value is not None:
            self._in_utc(value)

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        in_utc = self._in_utc(value)
        return in_utc if dialect.name == "postgresql" else in_utc.replace(tzinfo=None)

    def _in_utc(self, value: Any) -> dt.datetime:
        if not isinstance(value, dt.datetime):
            raise ValidationError(
                f"{self.column_label} expects an aware datetime, got {type(value).__name__} {_shown(value)}"
            )
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationError(
                f"{self.column_label} got the naive datetime {value.isoformat()}; "
                "give it a zone, e.g. dbcore.types.utcnow() or value.replace(tzinfo=datetime.timezone.utc)"
            )
        return value.astimezone(dt.timezone.utc)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)  # type: ignore[no-any-return]
        return value.astimezone(dt.timezone.utc)  # type: ignore[no-any-return]

    @property
    def python_type(self) -> type[dt.datetime]:
        return dt.datetime


# --- booleans and integers ------------------------------------------------------


class Boolean(_ColumnAware, TypeDecorator[bool]):
    """``sa.Boolean`` (same DDL) taking only booleans; what ``Mapped[bool]`` means in dbcore's bases.

    Accepts ``True``/``False`` (and ``numpy.bool_``) and the ints 0 and 1, which
    ``sa.Boolean`` accepts too, so code written for SQLAlchemy keeps working.
    Everything else is refused: ``"no"`` is truthy, ``2`` and ``0.5`` would be
    stored as true or refused by a driver with SQL in its message.
    """

    impl = sa.Boolean
    cache_ok = True
    # As for sa.Boolean: ``column.is_(True)`` and ``== True`` compare with the constant
    # (``IS true``), not a bound parameter, which PostgreSQL refuses after IS.
    coerce_to_is_types = (type(None), bool)

    def check_value(self, value: Any) -> None:
        if value is True or value is False or value is None:
            return
        if (type(value) is int and (value == 0 or value == 1)) or isinstance(value, np.bool_):
            return
        raise ValidationError(f"{self.column_label} expects True or False, got {type(value).__name__} {_shown(value)}")

    def process_bind_param(self, value: Any, dialect: Dialect) -> bool | None:
        self.check_value(value)
        return None if value is None else bool(value)

    @property
    def python_type(self) -> type[bool]:
        return bool


class _RangedInteger(_ColumnAware):
    """Refuses what is not an integer (bools, floats, text) or lies outside the column's SQL type.

    SQLite stores any 64-bit integer in every integer column and raises a bare
    OverflowError beyond; PostgreSQL and MariaDB refuse out-of-range values with
    SQL in the message. The range is the declared type's, on every dialect, so
    data stays portable. ``numpy`` integers and ``IntEnum`` members are bound as ints.
    """

    #: The declared SQL type's range.
    low: int
    high: int

    def check_value(self, value: Any) -> None:
        if value is None:
            return
        if type(value) is not int and (not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_))):
            raise ValidationError(f"{self.column_label} expects an int, got {type(value).__name__} {_shown(value)}")
        if not self.low <= value <= self.high:
            raise ValidationError(
                f"{self.column_label} holds integers from {self.low} to {self.high}, got {_shown(value)}"
            )

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        self.check_value(value)
        return value if value is None or type(value) is int else int(value)

    @property
    def python_type(self) -> type[int]:
        return int


class SmallInteger(_RangedInteger, TypeDecorator[int]):
    """``sa.SmallInteger`` (same DDL) taking ints from -2**15 to 2**15 - 1."""

    impl = sa.SmallInteger
    cache_ok = True
    low, high = -(2**15), 2**15 - 1


class Integer(_RangedInteger, TypeDecorator[int]):
    """``sa.Integer`` (same DDL) taking ints from -2**31 to 2**31 - 1; what ``Mapped[int]`` means in dbcore's bases."""

    impl = sa.Integer
    cache_ok = True
    low, high = -(2**31), 2**31 - 1


class BigInteger(_RangedInteger, TypeDecorator[int]):
    """``sa.BigInteger`` (same DDL) taking ints from -2**63 to 2**63 - 1."""

    impl = sa.BigInteger
    cache_ok = True
    low, high = -(2**63), 2**63 - 1


# --- text ---------------------------------------------------------------------


def _utf16_units(value: str) -> int:
    """The length SQL Server's NVARCHAR(n) counts: characters beyond U+FFFF take two."""
    return len(value) + sum(1 for char in value if ord(char) > 0xFFFF)


class _CheckedText(_ColumnAware):
    """Takes only ``str`` that every dialect stores as given, within the column's length.

    Refused: other types (SQLite would store ``123`` or ``b"raw"`` as they are),
    a NUL byte (PostgreSQL cannot store ``\\x00``, psycopg refuses it with no
    SQLSTATE; SQLite and MariaDB keep it), lone surrogates such as ``"\\ud800"``
    (not encodable as UTF-8, so drivers fail with a bare UnicodeEncodeError), and
    text longer than ``length`` characters, counted as PostgreSQL and MariaDB
    (utf8mb4) count VARCHAR(n), in code points, and as SQL Server counts
    NVARCHAR(n), in UTF-16 units; SQLite would keep it and make the data
    unportable. The DDL is the wrapped SQLAlchemy type's, unchanged.
    """

    def __init__(self, length: int | None = None, collation: str | None = None) -> None:
        super().__init__(length=length, collation=collation)  # type: ignore[call-arg]
        # Kept on the decorator too: read on every check, and part of its cache key.
        self.length = length
        self.collation = collation

    def check_value(self, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, str):
            raise ValidationError(f"{self.column_label} expects text (str), got {type(value).__name__} {_shown(value)}")
        if "\x00" in value:
            raise ValidationError(
                f"{self.column_label} got text with a NUL byte (\\x00) at position {value.index(chr(0))}; "
                "PostgreSQL cannot store it, so dbcore refuses it on every database: remove it or escape it"
            )
        if not value.isascii():
            self._check_encodable(value)
        if self.length is not None and len(value) > self.length:
            self._too_long(len(value), "characters")

    def _check_encodable(self, value: str) -> None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValidationError(
                f"{self.column_label} got text that is not valid Unicode (a lone surrogate "
                f"{value[exc.start]!r} at position {exc.start}); decode the source with errors='replace' or fix it"
            ) from None

    def _too_long(self, count: int, unit: str) -> None:
        raise ValidationError(
            f"{self.column_label} holds at most {self.length} characters, got {count} {unit}; "
            "shorten the text or widen the column"
        )

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        self.check_value(value)
        length = self.length
        if self._counts_utf16(dialect) and length is not None and 2 * len(value) > length:
            units = _utf16_units(value)
            if units > length:
                self._too_long(units, "UTF-16 units (SQL Server's NVARCHAR count)")
        return value

    def _counts_utf16(self, dialect: Dialect) -> bool:
        return False

    @property
    def python_type(self) -> type[str]:
        return str


class _NationalText(_CheckedText):
    def _counts_utf16(self, dialect: Dialect) -> bool:
        return dialect.name == "mssql"


class String(_CheckedText, TypeDecorator[str]):
    """``sa.String`` (same DDL), checked; what ``Mapped[str]`` means in dbcore's bases."""

    impl = sa.String
    cache_ok = True


class Text(_CheckedText, TypeDecorator[str]):
    """``sa.Text`` (same DDL), checked."""

    impl = sa.Text
    cache_ok = True


class Unicode(_NationalText, TypeDecorator[str]):
    """``sa.Unicode`` (same DDL: VARCHAR, NVARCHAR on SQL Server), checked."""

    impl = sa.Unicode
    cache_ok = True


class UnicodeText(_NationalText, TypeDecorator[str]):
    """``sa.UnicodeText`` (same DDL: TEXT, NVARCHAR(max) on SQL Server), checked."""

    impl = sa.UnicodeText
    cache_ok = True


# --- JSON ---------------------------------------------------------------------

_SHAPE_NAMES: dict[type | None, str] = {dict: "a dict (JSON object)", list: "a list (JSON array)"}
_JSON_SCALARS = frozenset({str, bool, type(None)})
_JSON_SMALL_INT = 2**63  # beyond it json.dumps may refuse an int (Python's digit limit): leave those to it


def _flat_json(value: Any) -> bool:
    """Whether ``value`` is a dict of str keys to str, bool, None or 64-bit int: JSON as it is, no
    encoding needed to tell (the usual memory content and metadata; 6x cheaper than json.dumps)."""
    if type(value) is not dict:
        return False
    for key, item in value.items():
        kind = type(item)
        if type(key) is not str or (
            kind not in _JSON_SCALARS and not (kind is int and -_JSON_SMALL_INT < item < _JSON_SMALL_INT)
        ):
            return False
    return True


class JSON(_ColumnAware, TypeDecorator[Any]):
    """``sa.JSON`` (same DDL and operators) that refuses what strict JSON cannot hold.

    Objects ``json`` cannot encode (sets, bytes, Decimal, datetimes, arbitrary
    objects), circular or too deeply nested structures, and NaN or infinity are
    refused with ValidationError naming the column. Without this, SQLite stores
    NaN as text its own JSON functions then reject ("malformed JSON" on every
    metadata filter), PostgreSQL refuses it, and unencodable values surface as
    SQLAlchemy's StatementError or a bare TypeError depending on the driver.

    ``shape=dict`` or ``shape=list`` (what ``Mapped[dict[...]]`` and
    ``Mapped[list[...]]`` mean) takes only that container, and ``None`` is then
    SQL NULL: a NOT NULL column refuses it, a nullable one stores NULL, which
    ``.is_(None)`` finds. Without a shape any JSON value is taken and ``None``
    is stored as JSON ``null``, as with ``sa.JSON``. ``sa.JSON.NULL`` stores JSON
    ``null`` in either case.
    """

    impl = sa.JSON
    cache_ok = True
    # Mirror sa.JSON: the ORM must send None (as JSON null or SQL NULL) and not hash dict values.
    should_evaluate_none = True
    hashable = False

    class Comparator(TypeDecorator.Comparator[Any], sa.JSON.Comparator[Any]):
        """``column["key"]`` is an element of any JSON type, whatever the column's shape."""

        def _setup_getitem(self, index: Any) -> Any:
            operator, index, _ = super()._setup_getitem(index)
            return operator, index, JSON()

    comparator_factory = Comparator

    def __init__(self, shape: type[dict[Any, Any]] | type[list[Any]] | None = None) -> None:
        if shape not in _SHAPE_NAMES and shape is not None:
            raise ValidationError(f"JSON shape must be dict, list or None, got {_shown(shape)}")
        super().__init__(none_as_null=shape is not None)
        self.shape = shape

    def check_value(self, value: Any) -> None:
        if value is None or value is sa.JSON.NULL:
            return
        shape = self.shape
        if shape is not None and type(value) is not shape and not isinstance(value, shape):
            raise ValidationError(
                f"{self.column_label} expects {_SHAPE_NAMES[shape]}, got {type(value).__name__} {_shown(value)}"
            )
        if _flat_json(value):
            return
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise ValidationError(
                f"{self.column_label} cannot store this {type(value).__name__} as JSON: {reason}; "
                "use dicts, lists, str, int, finite float, bool and None only"
            ) from None

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        self.check_value(value)
        return value

    @property
    def python_type(self) -> type[Any]:
        return self.shape or object


#: dbcore's checked wrappers whose DDL is exactly their wrapped SQLAlchemy type's (migrations render that type).
PLAIN_DDL_TYPES = (String, Text, Unicode, UnicodeText, JSON, Boolean, SmallInteger, Integer, BigInteger)
