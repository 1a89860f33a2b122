"""Vector-store filters compiled to SQL over ``memories``: the integrated store's WHERE clauses.

Fields map to real columns (agent_id, entity_id, room_id, world_id, kind,
created_at); declared metadata keys are read from the JSON column with a type
check per dialect: a number condition matches JSON numbers only, a string
condition JSON strings only, a bool condition JSON booleans only (the reference
semantics of :meth:`~dbcore.vectorstores.filters.Filter.matches`).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from dbcore.DB_Memories import Memory, MemoryKind
from dbcore.errors import ValidationError
from dbcore.vectorstores.filters import (
    DATETIME_FIELDS,
    UUID_FIELDS,
    And,
    Condition,
    Filter,
    Or,
    UnsupportedFilter,
    is_number,
)

__all__ = ["SqlFilterCompiler"]

_MEM: sa.Table = Memory.__table__  # type: ignore[assignment]
_KINDS = {kind.name.lower(): kind for kind in MemoryKind}


def _value_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if is_number(value):
        return "number"
    return "str"


class _JsonPaths:
    """Typed reads of one key of ``memories.metadata`` for a dialect: NULL when the type differs."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.column = _MEM.c.metadata

    def typed(self, key: str, kind: str) -> sa.ColumnElement[Any]:
        col = self.column
        if self.dialect == "sqlite":
            path = sa.bindparam(None, f'$."{key}"', type_=sa.String)
            jtype = sa.func.json_type(col, path)
            if kind == "bool":
                return sa.case((jtype.in_(["true", "false"]), jtype))
            wanted = ["integer", "real"] if kind == "number" else ["text"]
            return sa.case((jtype.in_(wanted), sa.func.json_extract(col, path)))
        if self.dialect == "postgresql":
            name = sa.bindparam(None, key, type_=sa.String)
            node = col.op("->")(name)
            text = col.op("->>", return_type=sa.Text)(name)
            jtype = sa.func.json_typeof(node)
            if kind == "number":
                return sa.case((jtype == "number", sa.cast(text, sa.Float)))
            return sa.case((jtype == ("boolean" if kind == "bool" else "string"), text))
        if self.dialect in ("mysql", "mariadb"):
            path = sa.bindparam(None, f'$."{key}"', type_=sa.String)
            raw = sa.func.json_extract(col, path)
            mtype = sa.func.json_type(raw)
            unquoted = sa.func.json_unquote(raw)
            if kind == "number":
                return sa.case((mtype.in_(["INTEGER", "DOUBLE", "DECIMAL"]), unquoted.op("+")(0.0)))
            if kind == "bool":
                return sa.case((mtype == "BOOLEAN", unquoted))
            return sa.case((mtype == "STRING", unquoted.collate("utf8mb4_bin")))
        if self.dialect == "mssql":
            # OPENJSON reports the type: 1 string, 2 number, 3 boolean.
            oj = sa.func.openjson(col).table_valued("key", "value", "type").alias("oj")
            type_code = {"str": 1, "number": 2, "bool": 3}[kind]
            value: Any = oj.c.value
            if kind == "number":
                value = sa.func.try_cast(oj.c.value, sa.Float)  # pragma: no cover - compile-only here
            elif kind == "str":
                value = oj.c.value.collate("Latin1_General_100_BIN2")
            return (
                sa.select(value)
                .where(oj.c.key == sa.bindparam(None, key, type_=sa.String), oj.c.type == type_code)
                .scalar_subquery()
            )
        raise UnsupportedFilter(f"the integrated store cannot filter metadata on the {self.dialect} dialect")

    @staticmethod
    def literal(value: Any) -> Any:
        if isinstance(value, bool):
            return "true" if value else "false"
        return value


def _negate(expr: sa.ColumnElement[bool], nullable: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    return sa.or_(nullable.is_(None), sa.not_(expr))


class SqlFilterCompiler:
    """Turns a :class:`Filter` into a SQL condition on ``memories`` for one dialect."""

    def __init__(self, dialect: str, metadata_keys: frozenset[str]) -> None:
        self._json = _JsonPaths(dialect)
        self._keys = metadata_keys

    def compile(self, node: Filter) -> sa.ColumnElement[bool]:
        if isinstance(node, And):
            return sa.and_(*(self.compile(c) for c in node.children))
        if isinstance(node, Or):
            return sa.or_(*(self.compile(c) for c in node.children))
        if isinstance(node, Condition):
            return self._condition(node)
        raise UnsupportedFilter(f"the integrated store cannot express filter node {type(node).__name__}")

    def _condition(self, cond: Condition) -> sa.ColumnElement[bool]:
        values = list(cond.value) if cond.op in ("in", "nin") else [cond.value]
        if cond.op in ("gt", "gte", "lt", "lte") and not is_number(cond.value):
            raise UnsupportedFilter(
                f"the integrated store compares ${cond.op} on numbers only; "
                f"{cond.field!r} was given {type(cond.value).__name__} {cond.value!r}"
            )
        if cond.field in UUID_FIELDS:
            return self._column(cond, _MEM.c[cond.field], [uuid.UUID(v) for v in values if isinstance(v, str)])
        if cond.field == "kind":
            return self._column(cond, _MEM.c.kind, [_KINDS[v] for v in values if isinstance(v, str) and v in _KINDS])
        if cond.field in DATETIME_FIELDS:
            stamps = [datetime.fromtimestamp(v, tz=timezone.utc) for v in values if is_number(v)]
            return self._column(cond, _MEM.c.created_at, stamps)
        return self._metadata(cond, values)

    @staticmethod
    def _column(cond: Condition, column: sa.ColumnElement[Any], usable: list[Any]) -> sa.ColumnElement[bool]:
        """A condition on a real column; ``usable`` are the operands of the column's type (others never equal)."""
        op = cond.op
        if op in ("gt", "gte", "lt", "lte"):
            if not usable:
                return sa.false()
            bound = usable[0]
            return {"gt": column > bound, "gte": column >= bound, "lt": column < bound, "lte": column <= bound}[op]
        matched = sa.false() if not usable else (column == usable[0] if len(usable) == 1 else column.in_(usable))
        if op in ("eq", "in"):
            return matched
        return sa.true() if not usable else _negate(matched, column)

    def _metadata(self, cond: Condition, values: list[Any]) -> sa.ColumnElement[bool]:
        if cond.field not in self._keys:
            raise ValidationError(f"{cond.field!r} is not a declared metadata key of this store")
        groups: dict[str, list[Any]] = {}
        for value in values:
            groups.setdefault(_value_kind(value), []).append(self._json.literal(value))
        if cond.op in ("gt", "gte", "lt", "lte"):
            typed = self._json.typed(cond.field, "number")
            bound = values[0]
            return {"gt": typed > bound, "gte": typed >= bound, "lt": typed < bound, "lte": typed <= bound}[cond.op]
        parts = []
        for kind, literals in groups.items():
            typed = self._json.typed(cond.field, kind)
            matched = typed == literals[0] if len(literals) == 1 else typed.in_(literals)
            parts.append(matched if cond.op in ("eq", "in") else _negate(matched, typed))
        return sa.or_(*parts) if cond.op in ("eq", "in") else sa.and_(*parts)
