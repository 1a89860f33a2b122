"""Structured filters answered in memory, beside the integrated store's cached matrix.

On the first filtered query the integrated store reads, for each matrix row, the
memory's agent, room, entity and world (as small integer codes) and its kind, and keeps
them with the matrix. A filter made only of ``eq``/``ne``/``in``/``nin`` conditions on
those fields, joined by ``$and``/``$or`` (:meth:`FilterColumns.answers`), becomes a
boolean mask over the rows in numpy: no SQL, no id lookups. Any other filter
(``created_at`` ranges, metadata keys, ordering operators) keeps the SQL step.

The semantics are :class:`~dbcore.vectorstores.sql_filters.SqlFilterCompiler`'s:
``ne``/``nin`` match rows whose column is NULL (a memory without a world), an operand
of the wrong type never equals, and a kind name outside the memory kinds never matches.
The cache stays exact because the embedding version counter moves with every write to
``memory_embeddings`` and every UPDATE or DELETE of ``memories``
(:func:`dbcore.vector_changes.moves_search_rows`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from dbcore.DB_Memories import MemoryKind
from dbcore.vectorstores.filters import And, Condition, Filter, Or

__all__ = ["FilterColumns", "COLUMN_NAMES"]

#: The ``memories`` columns kept per matrix row, in the order the load query reads them.
UUID_COLUMNS = ("agent_id", "room_id", "entity_id", "world_id")
COLUMN_NAMES = (*UUID_COLUMNS, "kind")
_KINDS = {kind.name.lower(): int(kind.value) for kind in MemoryKind}
_EQUALITY = frozenset({"eq", "ne", "in", "nin"})
_NULL = -1


class FilterColumns:
    """The filter columns of one matrix's rows: codes per UUID column, the kind as stored."""

    def __init__(
        self, arrays: dict[str, np.ndarray], codes: dict[str, dict[Any, int]], to_uuid: Callable[[Any], uuid.UUID]
    ) -> None:
        self._arrays = arrays
        self._codes = codes
        self._to_uuid = to_uuid
        self._by_uuid: dict[str, dict[uuid.UUID, int]] = {}

    @classmethod
    def load(
        cls,
        lookup: Callable[[Sequence[Any]], np.ndarray],
        size: int,
        batches: Iterable[Sequence[Sequence[Any]]],
        to_uuid: Callable[[Any], uuid.UUID],
    ) -> FilterColumns:
        """Columns for ``size`` rows from batches of ``(id, agent_id, room_id, entity_id, world_id, kind)``.

        Raw driver values; ``lookup`` gives each id's row (-1: none). A memory without a
        row (no embedding) is skipped, a row without a memory keeps NULL codes.
        """
        arrays = {name: np.full(size, _NULL, dtype=np.int32) for name in COLUMN_NAMES}
        codes: dict[str, dict[Any, int]] = {name: {} for name in UUID_COLUMNS}
        for rows in batches:
            found = lookup([row[0] for row in rows])
            kept_at = np.flatnonzero(found >= 0)
            if not kept_at.size:
                continue
            positions = found[kept_at]
            kept = [rows[i] for i in kept_at.tolist()]
            for offset, name in enumerate(UUID_COLUMNS, start=1):
                seen = codes[name]
                arrays[name][positions] = np.fromiter(
                    (_NULL if row[offset] is None else seen.setdefault(row[offset], len(seen)) for row in kept),
                    dtype=np.int32,
                    count=len(kept),
                )
            arrays["kind"][positions] = np.fromiter((int(row[5]) for row in kept), dtype=np.int32, count=len(kept))
        return cls(arrays, codes, to_uuid)

    @staticmethod
    def answers(node: Filter) -> bool:
        """Whether every condition of ``node`` is an equality test on a kept column."""
        return all(c.op in _EQUALITY and c.field in COLUMN_NAMES for c in node.conditions()) and _plain(node)

    def mask(self, node: Filter) -> np.ndarray:
        """The rows ``node`` selects (``answers(node)`` must hold)."""
        if isinstance(node, (And, Or)):
            combine = np.logical_and if isinstance(node, And) else np.logical_or
            return combine.reduce([self.mask(child) for child in node.children])  # type: ignore[no-any-return]
        assert isinstance(node, Condition)
        values = node.value if node.op in ("in", "nin") else (node.value,)
        wanted = self._wanted(node.field, values)
        if wanted is None:  # no operand of the column's type: equals nothing, so every row differs
            return np.full(len(self._arrays[node.field]), node.op in ("ne", "nin"))
        matched = np.isin(self._arrays[node.field], wanted)
        return matched if node.op in ("eq", "in") else ~matched

    def _wanted(self, field: str, values: Iterable[Any]) -> np.ndarray | None:
        """The codes of ``values`` (the ones that occur; None when no value has the column's type)."""
        if field == "kind":
            kinds = [_KINDS[v] for v in values if isinstance(v, str) and v in _KINDS]
            return np.array(kinds, dtype=np.int32) if kinds else None
        usable = [uuid.UUID(v) for v in values if isinstance(v, str)]
        if not usable:
            return None
        by_uuid = self._uuid_codes(field)
        return np.array([by_uuid[u] for u in usable if u in by_uuid], dtype=np.int32)

    def _uuid_codes(self, field: str) -> dict[uuid.UUID, int]:
        """Code by UUID, made on first use from the (few) distinct raw values of ``field``."""
        found = self._by_uuid.get(field)
        if found is None:
            found = {self._to_uuid(raw): code for raw, code in self._codes[field].items()}
            self._by_uuid[field] = found
        return found


def _plain(node: Filter) -> bool:
    """Only ``$and``, ``$or`` and conditions (no node type this module does not know)."""
    if isinstance(node, (And, Or)):
        return all(_plain(child) for child in node.children)
    return isinstance(node, Condition)
