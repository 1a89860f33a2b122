"""One filter model for every vector store: a small AST, a Mongo-style dict form, an evaluator.

Build filters with Python operators on :class:`F`::

    (F("room_id") == room) & F("kind").in_(["message", "fact"]) & (F("created_at") >= since)

or parse the dict form that Chroma and Pinecone users already know::

    Filter.parse({"room_id": {"$eq": room}, "kind": {"$in": ["message", "fact"]}})

Operators: ``$eq $ne $gt $gte $lt $lte $in $nin`` on a field, ``$and $or`` over filters.
A bare value means ``$eq``; several keys in one dict are joined with ``$and``.

Values are normalised once, when a condition is built, to what external stores hold:
``uuid.UUID`` (and strings on the UUID fields ``agent_id``, ``entity_id``, ``room_id``,
``world_id``) become canonical lowercase strings; ``datetime`` becomes epoch seconds
as a float (a naive datetime is taken as UTC); a ``MemoryKind`` on ``kind`` becomes its
lowercase name. ``None`` and empty ``$in``/``$nin`` lists are refused.

A store checks a filter with :meth:`Filter.parse` given its fields: besides unknown
field names, it refuses a ``kind`` operand that is no memory kind's lowercase name,
since no stored memory can have it.

:meth:`Filter.matches` evaluates a filter in Python over a metadata dict (raw or as
stored). Its semantics are the reference every backend follows: a record missing the
field fails ``$eq``/``$in``/comparisons and passes ``$ne``/``$nin``; booleans, numbers
and strings never equal one another; against a list of strings, ``$eq``/``$in`` match
when any element matches (Pinecone's rule).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from dbcore.DB_Memories import MemoryKind
from dbcore.errors import ValidationError

__all__ = [
    "F",
    "Filter",
    "Condition",
    "And",
    "Or",
    "FilterLike",
    "UnsupportedFilter",
    "MEMORY_FIELDS",
    "UUID_FIELDS",
    "DATETIME_FIELDS",
    "COMPARISON_OPS",
    "KIND_NAMES",
    "normalize_value",
    "short_repr",
]

UUID_FIELDS = frozenset({"agent_id", "entity_id", "room_id", "world_id"})
DATETIME_FIELDS = frozenset({"created_at"})
#: The memory fields every store can filter on; stores add their declared metadata keys.
MEMORY_FIELDS = frozenset(UUID_FIELDS | DATETIME_FIELDS | {"kind"})
#: What ``kind`` holds in every store: the memory kinds' lowercase names (dbcore.memories.memory_metadata).
KIND_NAMES = tuple(kind.name.lower() for kind in MemoryKind)

COMPARISON_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin")
_ORDERING_OPS = frozenset({"gt", "gte", "lt", "lte"})
_LIST_OPS = frozenset({"in", "nin"})


def is_number(value: object) -> bool:
    """An int or float, not a bool: what the numeric comparison operators accept."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class UnsupportedFilter(ValidationError):
    """A backend cannot express this filter; nothing was queried, written or deleted."""


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error names a bad value without echoing all of it."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _epoch(value: datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def normalize_value(field: str, value: Any) -> Any:
    """Return ``value`` as external stores hold it for ``field`` (see the module docstring).

    Used both for filter operands and for stored metadata, so the two always compare alike.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if field == "kind" and isinstance(value, MemoryKind):
        return value.name.lower()
    if isinstance(value, datetime):
        return _epoch(value)
    if field in UUID_FIELDS and isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValidationError(f"{field}={value!r} is not a UUID; pass a uuid.UUID or its text form") from None
    return value


def _check_operand(field: str, op: str, value: Any) -> Any:
    if value is None:
        raise ValidationError(f"filter on {field!r}: ${op} None is not supported; stores drop null metadata")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"filter on {field!r}: ${op} {value!r} is not a finite number")
    value = normalize_value(field, value)
    if not isinstance(value, (str, int, float, bool)):
        raise ValidationError(
            f"filter on {field!r}: ${op} takes a string, number, bool, UUID or datetime, got {type(value).__name__}"
        )
    return value


class Filter:
    """Base class of filter nodes. Combine with ``&`` and ``|``."""

    def __and__(self, other: Filter) -> And:
        return And(self, other)

    def __or__(self, other: Filter) -> Or:
        return Or(self, other)

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        """Evaluate this filter over one record's metadata (raw values or as stored)."""
        raise NotImplementedError

    def fields(self) -> frozenset[str]:
        """Every field name this filter mentions."""
        raise NotImplementedError

    def conditions(self) -> Iterator[Condition]:
        """Every condition in this filter, depth first."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The Mongo-style dict form (values already normalised)."""
        raise NotImplementedError

    def validate_fields(self, allowed: Iterable[str]) -> Filter:
        """Raise ValidationError naming any field not in ``allowed``; return self."""
        known = frozenset(allowed)
        unknown = sorted(self.fields() - known)
        if unknown:
            raise ValidationError(
                f"filter names unknown field(s) {', '.join(unknown)}; filterable fields are "
                f"{', '.join(sorted(known))} (declare extra metadata keys with metadata_keys=...)"
            )
        return self

    def validate_kinds(self) -> Filter:
        """Raise ValidationError naming a ``kind`` operand that is no memory kind name; return self.

        No stored memory has another kind, so such a value would silently match nothing
        (or, under ``$ne``/``$nin``, everything): a typo or injected text, never a query.
        """
        for condition in self.conditions():
            if condition.field != "kind":
                continue
            operands = condition.value if condition.op in _LIST_OPS else (condition.value,)
            for operand in operands:
                if not isinstance(operand, str) or operand not in KIND_NAMES:
                    raise ValidationError(
                        f"filter on 'kind': {short_repr(operand)} is not a memory kind; "
                        f"use one of {', '.join(KIND_NAMES)}"
                    )
        return self

    @classmethod
    def parse(cls, spec: Mapping[str, Any] | Filter, fields: Iterable[str] | None = None) -> Filter:
        """Build a filter from its dict form.

        With ``fields`` (a store's filterable fields) it is checked as a store checks it:
        field names against ``fields``, ``kind`` operands against the memory kind names.
        """
        result = spec if isinstance(spec, Filter) else _parse(spec)
        if fields is not None:
            result.validate_fields(fields).validate_kinds()
        return result


FilterLike = Filter | Mapping[str, Any]


@dataclass(frozen=True)
class Condition(Filter):
    """``field <op> value``; ``value`` is a tuple for ``in``/``nin``."""

    field: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        if not isinstance(self.field, str) or not self.field:
            raise ValidationError(f"filter field names must be non-empty strings, got {self.field!r}")
        if self.op not in COMPARISON_OPS:
            raise ValidationError(f"unknown filter operator {self.op!r}; use one of {', '.join(COMPARISON_OPS)}")
        if self.op in _LIST_OPS:
            if isinstance(self.value, (str, bytes)) or not isinstance(self.value, Iterable):
                raise ValidationError(f"filter on {self.field!r}: ${self.op} takes a list of values")
            values = tuple(_check_operand(self.field, self.op, v) for v in self.value)
            if not values:
                raise ValidationError(f"filter on {self.field!r}: ${self.op} needs at least one value")
            object.__setattr__(self, "value", values)
        else:
            object.__setattr__(self, "value", _check_operand(self.field, self.op, self.value))

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        present = self.field in metadata and metadata[self.field] is not None
        if not present:
            return self.op in ("ne", "nin")
        stored = normalize_value(self.field, metadata[self.field])
        if self.op == "eq":
            return _equal(stored, self.value)
        if self.op == "ne":
            return not _equal(stored, self.value)
        if self.op == "in":
            return any(_equal(stored, v) for v in self.value)
        if self.op == "nin":
            return not any(_equal(stored, v) for v in self.value)
        return _ordered(stored, self.op, self.value)

    def fields(self) -> frozenset[str]:
        return frozenset({self.field})

    def conditions(self) -> Iterator[Condition]:
        yield self

    def to_dict(self) -> dict[str, Any]:
        value = list(self.value) if self.op in _LIST_OPS else self.value
        return {self.field: {f"${self.op}": value}}


class _Group(Filter):
    op = ""
    children: tuple[Filter, ...]

    def __init__(self, *children: Filter) -> None:
        if len(children) == 1 and not isinstance(children[0], Filter) and isinstance(children[0], Iterable):
            children = tuple(children[0])
        if not children:
            raise ValidationError(f"${self.op} needs at least one filter")
        for child in children:
            if not isinstance(child, Filter):
                raise ValidationError(f"${self.op} takes filters, got {type(child).__name__}")
        self.children = tuple(children)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.children == self.children  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.op, self.children))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.children))})"

    def fields(self) -> frozenset[str]:
        return frozenset().union(*(c.fields() for c in self.children))

    def conditions(self) -> Iterator[Condition]:
        for child in self.children:
            yield from child.conditions()

    def to_dict(self) -> dict[str, Any]:
        return {f"${self.op}": [c.to_dict() for c in self.children]}


class And(_Group):
    """All children match."""

    op = "and"

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        return all(c.matches(metadata) for c in self.children)


class Or(_Group):
    """At least one child matches."""

    op = "or"

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        return any(c.matches(metadata) for c in self.children)


class F:
    """A field reference that builds conditions: ``F("kind") == "fact"``, ``F("room_id").in_(ids)``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"F({self.name!r})"

    def __eq__(self, value: Any) -> Condition:  # type: ignore[override]
        return Condition(self.name, "eq", value)

    def __ne__(self, value: Any) -> Condition:  # type: ignore[override]
        return Condition(self.name, "ne", value)

    def __gt__(self, value: Any) -> Condition:
        return Condition(self.name, "gt", value)

    def __ge__(self, value: Any) -> Condition:
        return Condition(self.name, "gte", value)

    def __lt__(self, value: Any) -> Condition:
        return Condition(self.name, "lt", value)

    def __le__(self, value: Any) -> Condition:
        return Condition(self.name, "lte", value)

    __hash__ = None  # type: ignore[assignment]

    def in_(self, values: Iterable[Any]) -> Condition:
        return Condition(self.name, "in", values)

    def nin(self, values: Iterable[Any]) -> Condition:
        return Condition(self.name, "nin", values)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def _scalar_equal(a: Any, b: Any) -> bool:
    return _kind(a) == _kind(b) and a == b


def _equal(stored: Any, value: Any) -> bool:
    if isinstance(stored, (list, tuple)):
        return any(_scalar_equal(item, value) for item in stored)
    return _scalar_equal(stored, value)


def _ordered(stored: Any, op: str, value: Any) -> bool:
    kind = _kind(value)
    if kind == "bool" or _kind(stored) != kind or kind not in ("number", "str"):
        return False
    if op == "gt":
        return bool(stored > value)
    if op == "gte":
        return bool(stored >= value)
    if op == "lt":
        return bool(stored < value)
    return bool(stored <= value)


def _parse(spec: Any) -> Filter:
    if not isinstance(spec, Mapping):
        raise ValidationError(f"a filter must be a dict or a Filter, got {type(spec).__name__}")
    if not spec:
        raise ValidationError("an empty filter dict is ambiguous; pass filter=None to match everything")
    parts: list[Filter] = []
    for key, body in spec.items():
        if not isinstance(key, str):
            raise ValidationError(f"filter keys must be strings, got {key!r}")
        if key in ("$and", "$or"):
            if not isinstance(body, Sequence) or isinstance(body, (str, bytes)) or not body:
                raise ValidationError(f"{key} takes a non-empty list of filters")
            children = [_parse(child) for child in body]
            parts.append(And(*children) if key == "$and" else Or(*children))
        elif key.startswith("$"):
            raise ValidationError(f"unknown filter operator {key!r} at the top level; use $and or $or")
        else:
            parts.extend(_parse_field(key, body))
    return parts[0] if len(parts) == 1 else And(*parts)


def _parse_field(field: str, body: Any) -> list[Filter]:
    if not isinstance(body, Mapping):
        return [Condition(field, "eq", body)]
    if not body:
        raise ValidationError(f"filter on {field!r} has no operator")
    conditions: list[Filter] = []
    for op, value in body.items():
        if not isinstance(op, str) or not op.startswith("$") or op[1:] not in COMPARISON_OPS:
            raise ValidationError(
                f"filter on {field!r}: unknown operator {op!r}; use one of "
                + ", ".join(f"${o}" for o in COMPARISON_OPS)
            )
        conditions.append(Condition(field, op[1:], value))
    return conditions
