"""Memories: create (with duplicate detection), read, list with keyset pagination, update, delete, count, search."""

from __future__ import annotations

import datetime
import difflib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from dbcore.adapter.context import Context, Page, as_uuid, as_uuids, check_limit, json_object, keyset_page, where_ids
from dbcore.adapter.operation import bind, reads
from dbcore.DB_Entities import Room
from dbcore.DB_Memories import EMBEDDING_DIMS, Memory, MemoryEmbedding, MemoryKind
from dbcore.errors import ValidationError
from dbcore.memories import add_memories, as_memory_kind, content_hash, delete_memories
from dbcore.types import vector_values
from dbcore.vectorstores import F, Filter, Match

__all__ = ["MemoryMethods", "MemoryMatch", "CachedEmbedding"]

_LOADABLE = {"entity": Memory.entity, "room": Memory.room, "world": Memory.world, "embedding": Memory.memory_embeddings}


@dataclass(frozen=True)
class MemoryMatch:
    """A search hit: the memory and its cosine similarity to the query (higher is closer)."""

    memory: Memory
    score: float


@dataclass(frozen=True)
class CachedEmbedding:
    """A stored embedding whose memory's text is close to the text asked about."""

    memory_id: uuid.UUID
    embedding: np.ndarray
    #: 0 for the same text, up to 1 for nothing in common (1 - difflib's ratio).
    distance: float


def _memories(cx: Context) -> sa.Select[Memory]:
    return cx.confine(sa.select(Memory), Memory.agent_id)


# --- writing ---------------------------------------------------------------------------


def _store_filter(room_id: uuid.UUID) -> Filter:
    return F("room_id") == room_id


def _near_duplicate(cx: Context, room_id: uuid.UUID, vector: np.ndarray) -> bool:
    """True when the store holds a memory of the room at or above the duplicate threshold."""
    store = cx.store()
    threshold = cx.options.duplicate_threshold
    hits = cx.wait(
        lambda: store.query(vector, k=1, filter=_store_filter(room_id), min_score=threshold, include_metadata=False),
        lambda: store.aquery(vector, k=1, filter=_store_filter(room_id), min_score=threshold, include_metadata=False),
    )
    return bool(hits)


def _mark_unique(cx: Context, rows: list[dict[str, Any]], vectors: np.ndarray | None) -> None:
    """Set each row's is_unique: no equal content (hash) in its room, then no near vector."""
    hashes = [row["content_hash"] for row in rows]
    rooms = {row["room_id"] for row in rows}
    known: set[tuple[Any, Any]] = set(
        cx.session.execute(
            sa.select(Memory.room_id, Memory.content_hash).where(
                Memory.room_id.in_(rooms), Memory.content_hash.in_(hashes)
            )
        )
    )
    for position, row in enumerate(rows):
        key = (row["room_id"], row["content_hash"])
        duplicate = key in known
        if not duplicate and vectors is not None:
            duplicate = _near_duplicate(cx, row["room_id"], vectors[position])
        row["is_unique"] = not duplicate
        known.add(key)


_FIELDS = (
    "entity_id",
    "room_id",
    "content",
    "kind",
    "agent_id",
    "world_id",
    "parent_id",
    "metadata",
    "id",
    "created_at",
    "embedding",
)


def _row(cx: Context, item: Any, position: int) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise ValidationError(f"memory #{position} must be a dict, got {type(item).__name__}")
    unknown = sorted(set(item) - set(_FIELDS))
    if unknown:
        raise ValidationError(f"memory #{position} has unknown keys {', '.join(unknown)}")
    row = {key: item[key] for key in _FIELDS if item.get(key) is not None and key != "embedding"}
    row["agent_id"] = cx.owner(item.get("agent_id"))
    row["content"] = json_object(item.get("content", {}), f"memory #{position} content")
    row["metadata"] = json_object(item.get("metadata") or {}, f"memory #{position} metadata")
    row["kind"] = as_memory_kind(item.get("kind", "message"))
    row["id"] = as_uuid(item["id"]) if item.get("id") is not None else uuid.uuid4()
    row["content_hash"] = content_hash(row["content"])
    for key in ("entity_id", "room_id"):
        if item.get(key) is None:
            raise ValidationError(f"memory #{position} lacks {key}")
    if cx.scope is not None:  # unconfined, the foreign key refuses a missing room (ForeignKeyViolation)
        cx.one(Room, row["room_id"], cx.confine_rooms(sa.select(Room), Room.id))
    return row


def create_memories(
    cx: Context,
    memories: Sequence[Mapping[str, Any]],
    *,
    embeddings: Any = None,
    unique: bool = False,
    model: str = "",
) -> list[uuid.UUID]:
    """Store memories (dicts of :meth:`create_memory`'s arguments), each with its embedding.

    ``embeddings`` (n x dims) or per-dict ``embedding`` keys. With ``unique=True`` each
    memory's ``is_unique`` says whether its room held no equal content and no embedding
    at or above the duplicate threshold; without, it is stored False ("not checked").
    """
    rows = [_row(cx, item, position) for position, item in enumerate(memories)]
    given = [item.get("embedding") for item in memories]
    if embeddings is None and any(v is not None for v in given):
        if any(v is None for v in given):
            raise ValidationError("either every memory has an embedding or none does")
        embeddings = given
    vectors = None
    if embeddings is not None:
        where = "memory_embeddings.embedding"
        vectors = vector_values(embeddings, EMBEDDING_DIMS, where=where, rows=len(rows), nonzero=True)
    if unique:
        _mark_unique(cx, rows, vectors)
    return add_memories(cx.session, rows, vectors, model=model)


def create_memory(
    cx: Context,
    *,
    entity_id: uuid.UUID,
    room_id: uuid.UUID,
    content: dict[str, Any],
    kind: MemoryKind | int | str = "message",
    agent_id: uuid.UUID | None = None,
    world_id: uuid.UUID | None = None,
    parent_id: uuid.UUID | None = None,
    metadata: dict[str, Any] | None = None,
    embedding: Any = None,
    unique: bool = False,
    id: uuid.UUID | None = None,  # noqa: A002
    created_at: datetime.datetime | None = None,
    model: str = "",
) -> Memory:
    """Store one memory (and its embedding); see :meth:`create_memories` for ``unique``."""
    item = {"entity_id": entity_id, "room_id": room_id, "content": content, "kind": kind, "agent_id": agent_id}
    item.update(world_id=world_id, parent_id=parent_id, metadata=metadata, id=id, created_at=created_at)
    [memory_id] = create_memories(
        cx, [item], embeddings=None if embedding is None else [embedding], unique=unique, model=model
    )
    return cx.one(Memory, memory_id)


def update_memory(
    cx: Context,
    memory_id: uuid.UUID | str,
    *,
    content: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    embedding: Any = None,
    model: str | None = None,
) -> Memory:
    """Replace a memory's content (its hash follows), metadata (replaced, not merged) and/or embedding."""
    memory = cx.one(Memory, memory_id, _memories(cx))
    if content is not None:
        memory.content = json_object(content, "content")
        memory.content_hash = content_hash(memory.content)
    if metadata is not None:
        memory.meta = json_object(metadata, "metadata")
    if embedding is not None:
        vector = vector_values([embedding], EMBEDDING_DIMS, where="memory_embeddings.embedding", rows=1, nonzero=True)[
            0
        ]
        row = cx.session.scalars(sa.select(MemoryEmbedding).where(MemoryEmbedding.memory_id == memory.id)).first()
        if row is None:
            cx.session.add(MemoryEmbedding(memory_id=memory.id, embedding=vector, model=model or ""))
        else:
            row.embedding = vector
            if model is not None:
                row.model = model
    with cx.session.begin_nested():
        cx.session.flush()
    return memory


def delete_memory(cx: Context, memory_id: uuid.UUID | str) -> bool:
    """Delete a memory and its embedding; False when there is none with that id."""
    return delete_many_memories(cx, [as_uuid(memory_id, "memory_id")]) == 1


def delete_many_memories(cx: Context, memory_ids: Sequence[uuid.UUID]) -> int:
    """Delete memories (a view: only its agent's); returns how many were deleted."""
    ids = as_uuids(memory_ids, "memory_ids")
    visible = (
        list(cx.session.scalars(cx.confine(sa.select(Memory.id), Memory.agent_id).where(Memory.id.in_(ids))))
        if ids
        else []
    )
    if visible:  # children outlive their parent, as ElizaOS keeps fragments of a deleted document
        cx.session.execute(sa.update(Memory).where(Memory.parent_id.in_(visible)).values(parent_id=None))
    return delete_memories(cx.session, visible)


def delete_all_memories(cx: Context, room_id: uuid.UUID | str, *, kind: MemoryKind | int | str | None = None) -> int:
    """Delete every memory of a room (of ``kind`` when given); returns how many."""
    statement = cx.confine(sa.select(Memory.id), Memory.agent_id).where(Memory.room_id == as_uuid(room_id, "room_id"))
    if kind is not None:
        statement = statement.where(Memory.kind == as_memory_kind(kind))
    return delete_many_memories(cx, list(cx.session.scalars(statement)))


# --- reading ---------------------------------------------------------------------------


def _options(load: Sequence[str]) -> list[Any]:
    unknown = sorted(set(load) - set(_LOADABLE))
    if isinstance(load, str) or unknown:
        raise ValidationError(f"load={load!r} may name only {', '.join(sorted(_LOADABLE))}")
    return [selectinload(_LOADABLE[name]) for name in load]


@reads
def get_memory(cx: Context, memory_id: uuid.UUID | str, *, load: Sequence[str] = ()) -> Memory | None:
    """The memory, or None; ``load`` names relationships to load with it (entity, room, world, embedding)."""
    statement = _memories(cx).where(Memory.id == as_uuid(memory_id, "memory_id")).options(*_options(load))
    return cx.session.scalars(statement).first()


@reads
def require_memory(cx: Context, memory_id: uuid.UUID | str, *, load: Sequence[str] = ()) -> Memory:
    """The memory, or :class:`~dbcore.NotFound`."""
    return cx.one(Memory, memory_id, _memories(cx).options(*_options(load)))


@reads
def get_memories_by_ids(cx: Context, memory_ids: Sequence[uuid.UUID], *, load: Sequence[str] = ()) -> list[Memory]:
    """The memories of ``memory_ids`` that exist, in that order."""
    ids = as_uuids(memory_ids, "memory_ids")
    if not ids:
        return []
    found = {m.id: m for m in cx.session.scalars(_memories(cx).where(Memory.id.in_(ids)).options(*_options(load)))}
    return [found[i] for i in ids if i in found]


def _filtered(
    cx: Context,
    statement: sa.Select[Any],
    *,
    agent_id: Any = None,
    room_id: Any = None,
    room_ids: Any = None,
    entity_id: Any = None,
    world_id: Any = None,
    kind: Any = None,
    start: datetime.datetime | None = None,
    end: datetime.datetime | None = None,
    unique_only: bool = False,
) -> sa.Select[Any]:
    conditions: list[sa.ColumnElement[bool]] = []
    if room_ids is not None:
        conditions.append(Memory.room_id.in_(as_uuids(room_ids, "room_ids")))
    if kind is not None:
        conditions.append(Memory.kind == as_memory_kind(kind))
    if start is not None:
        conditions.append(Memory.created_at >= start)
    if end is not None:
        conditions.append(Memory.created_at < end)
    if unique_only:
        conditions.append(Memory.is_unique.is_(True))
    statement = where_ids(
        statement,
        (Memory.agent_id, agent_id, "agent_id"),
        (Memory.room_id, room_id, "room_id"),
        (Memory.entity_id, entity_id, "entity_id"),
        (Memory.world_id, world_id, "world_id"),
    )
    return cx.confine(statement, Memory.agent_id).where(*conditions)


@reads
def get_memories(
    cx: Context,
    *,
    agent_id: uuid.UUID | None = None,
    room_id: uuid.UUID | None = None,
    room_ids: Sequence[uuid.UUID] | None = None,
    entity_id: uuid.UUID | None = None,
    world_id: uuid.UUID | None = None,
    kind: MemoryKind | int | str | None = None,
    start: datetime.datetime | None = None,
    end: datetime.datetime | None = None,
    unique_only: bool = False,
    limit: int = 50,
    after: str | None = None,
    order: str = "desc",
    load: Sequence[str] = (),
) -> Page[Memory]:
    """One page of memories matching every filter given, newest first (``order="asc"``: oldest).

    ``start`` is inclusive, ``end`` exclusive; pass the page's ``next_cursor`` as ``after``.
    """
    statement = _filtered(
        cx,
        sa.select(Memory),
        agent_id=agent_id,
        room_id=room_id,
        room_ids=room_ids,
        entity_id=entity_id,
        world_id=world_id,
        kind=kind,
        start=start,
        end=end,
        unique_only=unique_only,
    )
    return keyset_page(cx.session, statement.options(*_options(load)), Memory, limit=limit, after=after, order=order)  # type: ignore[arg-type]


@reads
def get_memories_by_room_ids(cx: Context, room_ids: Sequence[uuid.UUID], *, limit: int = 50) -> list[Memory]:
    """The newest ``limit`` memories of any of ``room_ids``."""
    return get_memories(cx, room_ids=room_ids, limit=limit).items


@reads
def count_memories(
    cx: Context,
    *,
    room_id: uuid.UUID | None = None,
    agent_id: uuid.UUID | None = None,
    entity_id: uuid.UUID | None = None,
    unique_only: bool = False,
) -> int:
    """How many memories match the filters."""
    statement = _filtered(
        cx,
        sa.select(sa.func.count(Memory.id)),
        room_id=room_id,
        agent_id=agent_id,
        entity_id=entity_id,
        unique_only=unique_only,
    )
    return int(cx.session.scalar(statement) or 0)


# --- search ----------------------------------------------------------------------------


def _search_filter(cx: Context, **given: Any) -> Filter | None:
    parts: list[Filter] = []
    if cx.scope is not None:
        parts.append(F("agent_id") == cx.scope)
    for name in ("agent_id", "room_id", "entity_id", "world_id"):
        if given[name] is not None:
            parts.append(F(name) == as_uuid(given[name], name))
    if given["room_ids"] is not None:
        parts.append(F("room_id").in_(as_uuids(given["room_ids"], "room_ids")))
    if given["kind"] is not None:
        parts.append(F("kind") == as_memory_kind(given["kind"]).name.lower())
    combined: Filter | None = None
    for part in parts:
        combined = part if combined is None else combined & part
    return combined


@reads
def search_memories(
    cx: Context,
    embedding: Any,
    *,
    k: int = 10,
    min_score: float | None = None,
    agent_id: uuid.UUID | None = None,
    room_id: uuid.UUID | None = None,
    room_ids: Sequence[uuid.UUID] | None = None,
    entity_id: uuid.UUID | None = None,
    world_id: uuid.UUID | None = None,
    kind: MemoryKind | int | str | None = None,
    unique_only: bool = False,
) -> list[MemoryMatch]:
    """The ``k`` memories nearest ``embedding`` through the configured vector store, best first.

    The filters go to the store; the memories are then read in one statement. With
    ``unique_only`` the store is asked for 4 x k and near-duplicates are dropped after.
    """
    k = check_limit(k)
    flt = _search_filter(
        cx, agent_id=agent_id, room_id=room_id, room_ids=room_ids, entity_id=entity_id, world_id=world_id, kind=kind
    )
    store, asked = cx.store(), min(k * 4, 1000) if unique_only else k
    # A store that searches in this database does so in the call's transaction (no second connection).
    in_database = store.query_in(
        cx.session.connection(), embedding, k=asked, filter=flt, min_score=min_score, include_metadata=False
    )
    hits: list[Match] = (
        in_database
        if in_database is not None
        else cx.wait(
            lambda: store.query(embedding, k=asked, filter=flt, min_score=min_score, include_metadata=False),
            lambda: store.aquery(embedding, k=asked, filter=flt, min_score=min_score, include_metadata=False),
        )
    )
    ids = [hit.id for hit in hits if isinstance(hit.id, uuid.UUID)]
    statement = _memories(cx).where(Memory.id.in_(ids)) if ids else None
    if statement is not None and unique_only:
        statement = statement.where(Memory.is_unique.is_(True))
    found: dict[Any, Memory] = {m.id: m for m in cx.session.scalars(statement)} if statement is not None else {}
    return [MemoryMatch(found[hit.id], hit.score) for hit in hits if hit.id in found][:k]


@reads
def get_cached_embeddings(
    cx: Context,
    text: str,
    *,
    agent_id: uuid.UUID | None = None,
    room_id: uuid.UUID | None = None,
    max_distance: float = 0.2,
    limit: int = 5,
    candidates: int = 500,
) -> list[CachedEmbedding]:
    """Embeddings of memories whose ``content["text"]`` is within ``max_distance`` of ``text``.

    For skipping a model call: the runtime reuses the embedding of text it has embedded
    before. ElizaOS ranks by Levenshtein distance in SQL; here the newest ``candidates``
    memories with an embedding (of the agent or room) are compared in Python with
    difflib (distance = 1 - similarity ratio), closest first.
    """
    if not isinstance(text, str):
        raise ValidationError(f"text must be a string, got {type(text).__name__}")
    statement = _filtered(
        cx, sa.select(Memory.id, Memory.content, MemoryEmbedding.embedding), agent_id=agent_id, room_id=room_id
    )
    statement = statement.join(MemoryEmbedding, MemoryEmbedding.memory_id == Memory.id)
    rows = cx.session.execute(statement.order_by(Memory.created_at.desc()).limit(check_limit(candidates))).all()
    scored = []
    for memory_id, content, vector in rows:
        other = content.get("text") if isinstance(content, dict) else None
        if isinstance(other, str):
            distance = 1.0 - difflib.SequenceMatcher(None, text, other).ratio()
            if distance <= max_distance:
                scored.append(CachedEmbedding(memory_id, np.asarray(vector, dtype=np.float32), round(distance, 6)))
    scored.sort(key=lambda hit: hit.distance)
    return scored[: check_limit(limit)]


class MemoryMethods:
    """The adapter methods of this module (bound to both adapters by :mod:`dbcore.adapter.facade`)."""

    create_memory = bind(create_memory)
    create_memories = bind(create_memories)
    update_memory = bind(update_memory)
    delete_memory = bind(delete_memory)
    delete_many_memories = bind(delete_many_memories)
    delete_all_memories = bind(delete_all_memories)
    get_memory = bind(get_memory)
    require_memory = bind(require_memory)
    get_memories_by_ids = bind(get_memories_by_ids)
    get_memories = bind(get_memories)
    get_memories_by_room_ids = bind(get_memories_by_room_ids)
    count_memories = bind(count_memories)
    search_memories = bind(search_memories)
    get_cached_embeddings = bind(get_cached_embeddings)
