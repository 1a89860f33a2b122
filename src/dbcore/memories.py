"""Writing memories with their embeddings in bulk, in one savepoint of the caller's session.

:func:`add_memories` validates every memory and vector first and writes nothing
when one is wrong; then it inserts the memories and their embeddings with two
executemany statements. The embedding version counter is bumped in the same
transaction, and outbox markers are written when an external vector store is
configured (see :mod:`dbcore.vector_changes`), so every backend sees the new rows.
"""

from __future__ import annotations

import enum
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dbcore.bulk_load import Progress, bulk_insert
from dbcore.DB_Memories import Memory, MemoryEmbedding, MemoryKind
from dbcore.errors import ValidationError
from dbcore.types import new_uuid, utcnow, vector_values
from dbcore.vector_changes import (
    MEMORY_METADATA_COLUMNS,
    memory_metadata,
    memory_records,
    note_markers,
    outbox_enabled,
    record_outbox,
)

__all__ = [
    "add_memories",
    "delete_memories",
    "content_hash",
    "as_memory_kind",
    "memory_metadata",
    "memory_records",
    "MEMORY_METADATA_COLUMNS",
]

_MEM: sa.Table = Memory.__table__  # type: ignore[assignment]
_ME: sa.Table = MemoryEmbedding.__table__  # type: ignore[assignment]
_REQUIRED = ("agent_id", "entity_id", "room_id", "kind")
_OPTIONAL = (
    "id",
    "world_id",
    "parent_id",
    "content",
    "metadata",
    "created_at",
    "is_unique",
    "embedding",
    "content_hash",
)
_KNOWN = frozenset(_REQUIRED + _OPTIONAL)
#: The default content and metadata of every row, never changed: one object, so the bulk path converts it once.
_EMPTY: dict[str, Any] = {}
_CHUNK = 500
_EMBEDDING_COLUMN = "memory_embeddings.embedding"


def as_memory_kind(value: Any) -> MemoryKind:
    """A MemoryKind from a member, its int value or its lowercase name.

    Members of other enums (``RoomKind.DM`` is an int too) and bools are refused,
    as the ``memories.kind`` column's SqlEnum refuses them: silently taking their
    integer would store another kind.
    """
    if isinstance(value, MemoryKind):
        return value
    if isinstance(value, str) and value.upper() in MemoryKind.__members__ and value == value.lower():
        return MemoryKind[value.upper()]
    if isinstance(value, int) and not isinstance(value, (bool, enum.Enum)):
        try:
            return MemoryKind(value)
        except ValueError:
            pass
    names = ", ".join(k.name.lower() for k in MemoryKind)
    raise ValidationError(f"kind={value!r} is not a memory kind; use one of {names}")


def content_hash(content: Any) -> str:
    """SHA-256 (hex) of ``content``'s canonical JSON: equal for equal content, whatever the key order."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _given_or(item: Mapping[str, Any], key: str, default: Any) -> Any:
    """``item[key]``, or ``default`` when it is missing or None (never when it is merely falsy)."""
    value = item.get(key)
    return default if value is None else value


def add_memories(
    session: Session,
    memories: Sequence[Mapping[str, Any]],
    embeddings: Any = None,
    *,
    model: str = "",
    bulk: bool = False,
    progress: Progress | None = None,
) -> list[uuid.UUID]:
    """Insert ``memories`` (dicts of Memory fields) and, when given, one embedding each.

    Each dict needs agent_id, entity_id, room_id and kind (a MemoryKind, its value or
    lowercase name) and may have id, world_id, parent_id, content, metadata,
    created_at, is_unique, content_hash (default: :func:`content_hash` of content) and
    embedding. ``embeddings`` (an n x dims array) is the
    fast alternative to per-dict ``embedding`` keys. Returns the memory ids.

    ``bulk=True`` is for imports: COPY on PostgreSQL, rebuilding the vector index
    after a load at least as large as the table, and the driver's executemany
    elsewhere (:mod:`dbcore.bulk_load`); ``progress(done, total)`` is called after
    each chunk of rows. Either way all rows land or none do.
    """
    dims = int(_ME.c.embedding.type.dim)  # type: ignore[attr-defined]
    now = utcnow()
    rows: list[dict[str, Any]] = []
    vectors: list[Any] = []
    for position, item in enumerate(memories):
        if not isinstance(item, Mapping):
            raise ValidationError(f"memory #{position} must be a dict, got {type(item).__name__}")
        missing = [key for key in _REQUIRED if item.get(key) is None]
        unknown = sorted(item.keys() - _KNOWN)
        if missing or unknown:
            problem = f"lacks {', '.join(missing)}" if missing else f"has unknown keys {', '.join(unknown)}"
            raise ValidationError(f"memory #{position} {problem}")
        row = {key: item.get(key) for key in ("agent_id", "entity_id", "room_id", "world_id", "parent_id")}
        row.update(
            id=item.get("id") or new_uuid(),
            kind=as_memory_kind(item["kind"]),
            # Passed through as given: memories' column types refuse a wrong type, naming the column.
            content=_given_or(item, "content", _EMPTY),
            content_hash=item.get("content_hash") or content_hash(_given_or(item, "content", _EMPTY)),
            metadata=_given_or(item, "metadata", _EMPTY),
            is_unique=_given_or(item, "is_unique", False),
            created_at=item.get("created_at") or now,
            updated_at=now,
        )
        rows.append(row)
        if "embedding" in item:
            vectors.append(item["embedding"])
    if vectors and embeddings is not None:
        raise ValidationError("pass embeddings either as the embeddings argument or as 'embedding' keys, not both")
    if vectors and len(vectors) != len(rows):
        raise ValidationError("either every memory has an 'embedding' key or none does")
    matrix = (
        vector_values(
            embeddings if embeddings is not None else vectors,
            dims,
            where=_EMBEDDING_COLUMN,
            rows=len(rows),
            nonzero=True,
        )
        if (vectors or embeddings is not None)
        else None
    )
    if not rows:
        return []
    ids = [row["id"] for row in rows]
    with session.begin_nested():
        connection = session.connection()
        if bulk:
            bulk_insert(connection, rows, matrix, model=model, now=now, progress=progress)
        else:
            connection.execute(_MEM.insert(), rows)
            if matrix is not None:
                connection.execute(
                    _ME.insert(),
                    [
                        {"id": new_uuid(), "memory_id": mid, "embedding": matrix[i], "model": model, "created_at": now}
                        for i, mid in enumerate(ids)
                    ],
                )
        if matrix is not None and outbox_enabled(connection):
            note_markers(session, connection, record_outbox(connection, ids, "upsert"))
    return ids


def delete_memories(session: Session, ids: Sequence[uuid.UUID]) -> int:
    """Delete memories and their embeddings (outbox markers when an external store is configured).

    ``ids`` must be a list (or other collection) of UUIDs: a single id string
    would otherwise be read as its characters, and None fails with a bare TypeError.
    """
    if ids is None or isinstance(ids, (str, bytes, uuid.UUID, Mapping)) or not isinstance(ids, Iterable):
        raise ValidationError(
            f"delete_memories: ids must be a list of UUIDs, got {type(ids).__name__}; "
            "wrap a single id in a list: delete_memories(session, [memory_id])"
        )
    memory_ids = list(dict.fromkeys(ids))
    deleted = 0
    with session.begin_nested():
        connection = session.connection()
        for start in range(0, len(memory_ids), _CHUNK):
            part = memory_ids[start : start + _CHUNK]
            connection.execute(_ME.delete().where(_ME.c.memory_id.in_(part)))
            deleted += connection.execute(_MEM.delete().where(_MEM.c.id.in_(part))).rowcount
        if outbox_enabled(connection):
            note_markers(session, connection, record_outbox(connection, memory_ids, "delete"))
    return deleted
