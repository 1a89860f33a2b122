"""Bookkeeping of embedding writes: the version counter and the vector outbox.

**Version counter.** Every INSERT, UPDATE or DELETE statement on
``memory_embeddings`` sent through a dbcore engine bumps the row
``embedding_versions.name = 'memory_embeddings'`` in the same transaction, once
the statement has run (engine ``before_execute``/``after_execute`` hooks in
:mod:`dbcore.hooks`: the row is locked before the write, bumped after it, so ORM
flushes, ORM bulk statements and Core statements are all counted, and a write
refused before it reached the database, e.g. a non-finite vector, is not). The integrated vector store compares the counter
with the one its in-process matrix cache was built at, on every query, so a
write by another process or connection is seen by the next query. A rolled-back
write rolls its bump back too. Raw SQL text bypasses the hook: call
:func:`bump_embedding_version` in the same transaction after such a write.

**Outbox.** With an external vector store (``DBCORE_VECTOR_BACKEND`` chroma,
pinecone or a plugin) a dbcore engine also records, in the same flush as the
change, one ``vector_outbox`` row per memory whose embedding, metadata or
existence changed (session hooks in :mod:`dbcore.hooks` call the functions here). ``dbcore.vectorsync.sync()`` brings the store up to the rows'
current state and clears the markers it handled. Bulk UPDATE/DELETE statements
through a Session are covered too (the affected memory ids are read first).

A session also notes, in its ``info``, the markers it wrote and on which
connection (:func:`note_markers`), so that after its COMMIT
:mod:`dbcore.vector_push` sends those memories to the store at once; the markers
are the fallback for a push that fails or never runs.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from datetime import timezone
from typing import Any, TypeVar

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert, UpdateBase

from dbcore.config import Settings
from dbcore.DB_Memories import EmbeddingVersion, Memory, MemoryEmbedding, MemoryKind, VectorOutbox
from dbcore.types import new_uuid, utcnow

__all__ = [
    "chunked",
    "MEMORY_METADATA_COLUMNS",
    "memory_metadata",
    "memory_records",
    "EMBEDDINGS_TABLE",
    "bump_embedding_version",
    "lock_embedding_version",
    "embedding_version",
    "enable_outbox",
    "any_outbox",
    "outbox_enabled",
    "outbox_settings",
    "record_outbox",
    "note_markers",
    "noted_markers",
    "forget_markers",
    "flush_markers",
    "target_table",
    "moves_search_rows",
    "memory_id_column",
    "matching_ids",
]

EMBEDDINGS_TABLE = "memory_embeddings"
MEMORIES_TABLE = "memories"
T = TypeVar("T")
_VERSIONS: sa.Table = EmbeddingVersion.__table__  # type: ignore[assignment]
_OUTBOX: sa.Table = VectorOutbox.__table__  # type: ignore[assignment]
_NOTED = "dbcore.vector_changes.markers"

# The settings of each engine that records markers. engine.execution_options(...) makes a new
# Engine on the same pool, and engine.dispose() gives an engine a new pool: both are looked up.
_outbox_engines: weakref.WeakKeyDictionary[Engine, Settings] = weakref.WeakKeyDictionary()
_outbox_pools: weakref.WeakKeyDictionary[Any, Settings] = weakref.WeakKeyDictionary()


def enable_outbox(engine: Engine, settings: Settings) -> None:
    """Make writes through ``engine`` record outbox markers for the store ``settings`` configure."""
    _outbox_engines[engine] = settings
    _outbox_pools[engine.pool] = settings


def any_outbox() -> bool:
    """Whether any engine records markers (the session hooks skip their outbox work when none does)."""
    return bool(_outbox_engines)


def outbox_settings(bind: Any) -> Settings | None:
    """The settings of the engine of ``bind`` (an Engine or a Connection) if it records markers, else None."""
    engine = getattr(bind, "engine", None)
    if engine is None:
        return None
    return _outbox_engines.get(engine) or _outbox_pools.get(engine.pool)


def outbox_enabled(bind: Any) -> bool:
    """Whether writes through ``bind`` record outbox markers (an external vector store is configured)."""
    return outbox_settings(bind) is not None


def bump_embedding_version(connection: Connection, name: str = EMBEDDINGS_TABLE) -> None:
    """Add one to the counter of ``name`` in the connection's transaction (creating it at 1)."""
    done = connection.execute(
        _VERSIONS.update().where(_VERSIONS.c.name == name).values(version=_VERSIONS.c.version + 1)
    )
    if done.rowcount == 0:
        connection.execute(_VERSIONS.insert().values(id=new_uuid(), name=name, version=1, created_at=utcnow()))


def lock_embedding_version(connection: Connection, name: str = EMBEDDINGS_TABLE) -> None:
    """Take the row lock of the counter of ``name`` (``SELECT ... FOR UPDATE``; SQLite locks the whole file anyway)."""
    connection.execute(sa.select(_VERSIONS.c.version).where(_VERSIONS.c.name == name).with_for_update())


def embedding_version(connection: Connection, name: str = EMBEDDINGS_TABLE) -> int:
    """The counter of ``name`` as this transaction sees it (0 before the first write)."""
    value = connection.execute(sa.select(_VERSIONS.c.version).where(_VERSIONS.c.name == name)).scalar()
    return int(value or 0)


def moves_search_rows(statement: Any) -> bool:
    """Whether ``statement`` changes what the integrated store's cached matrix holds.

    Any write to ``memory_embeddings``, and an UPDATE or DELETE of ``memories``: the
    matrix keeps each row's agent, room, entity, world and kind for filtered search.
    An INSERT into ``memories`` is not: a new memory enters the matrix with its embedding.
    """
    table = target_table(statement)
    if table == EMBEDDINGS_TABLE:
        return True
    return table == MEMORIES_TABLE and not isinstance(statement, Insert)


def target_table(statement: Any) -> str | None:
    """The name of the table an INSERT/UPDATE/DELETE writes (None for anything else)."""
    if isinstance(statement, UpdateBase):
        table = getattr(statement, "table", None)
        return getattr(table, "name", None)
    return None


def record_outbox(connection: Connection, memory_ids: Iterable[uuid.UUID], op: str = "upsert") -> list[uuid.UUID]:
    """Insert one outbox marker per distinct memory id; return the markers' ids."""
    now = utcnow()
    marker_ids: dict[uuid.UUID, uuid.UUID] = {memory_id: new_uuid() for memory_id in memory_ids}
    rows = [
        {"id": marker_id, "memory_id": memory_id, "op": op, "created_at": now}
        for memory_id, marker_id in marker_ids.items()
    ]
    if rows:
        connection.execute(_OUTBOX.insert(), rows)
    return list(marker_ids.values())


def note_markers(session: Session, connection: Connection, marker_ids: Iterable[uuid.UUID]) -> None:
    """Remember that ``session`` wrote these markers on ``connection`` (pushed after its COMMIT).

    Markers of a savepoint that rolls back stay noted: the rollback removed their
    rows, and the push sends only markers whose rows are still there.
    """
    noted: dict[Connection, list[uuid.UUID]] = session.info.setdefault(_NOTED, {})
    noted.setdefault(connection, []).extend(marker_ids)


def noted_markers(session: Session) -> dict[Connection, list[uuid.UUID]]:
    """Take the markers ``session`` noted, by connection (they are forgotten)."""
    return session.info.pop(_NOTED, None) or {}


def forget_markers(session: Session) -> None:
    """Forget the noted markers: the transaction ended without a COMMIT that pushes them."""
    session.info.pop(_NOTED, None)


def flush_markers(session: Session) -> dict[uuid.UUID, str]:
    """The outbox marker each memory touched by the pending flush needs (``upsert`` or ``delete``)."""
    markers: dict[uuid.UUID, str] = {}
    for obj in list(session.new) + list(session.dirty):
        if isinstance(obj, MemoryEmbedding) and obj.memory_id is not None:
            markers[obj.memory_id] = "upsert"
    for obj in session.dirty:  # a new memory has no vector yet; a changed one may need new metadata
        if isinstance(obj, Memory) and obj.id is not None and session.is_modified(obj):
            markers.setdefault(obj.id, "upsert")
    for obj in session.deleted:
        if isinstance(obj, MemoryEmbedding) and obj.memory_id is not None:
            markers[obj.memory_id] = "delete"
        elif isinstance(obj, Memory) and obj.id is not None:
            markers[obj.id] = "delete"
    return markers


def memory_id_column(statement: Any) -> sa.ColumnElement[Any] | None:
    """The memory-id column of a bulk UPDATE/DELETE on memories or their embeddings (else None)."""
    table = target_table(statement)
    if table == EMBEDDINGS_TABLE:
        return statement.table.c.memory_id  # type: ignore[no-any-return]
    if table == Memory.__tablename__:
        return statement.table.c.id  # type: ignore[no-any-return]
    return None


def matching_ids(connection: Connection, statement: Any, column: sa.ColumnElement[Any]) -> list[Any]:
    """The values of ``column`` in the rows the bulk statement will touch (read before it runs)."""
    query = sa.select(column)
    if statement.whereclause is not None:
        query = query.where(statement.whereclause)
    return list(connection.execute(query).scalars())


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Yield consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- what a vector store holds of a memory (memories, the stores and the push read it) ------------

_MEMORIES: sa.Table = Memory.__table__  # type: ignore[assignment]
_EMBEDDINGS: sa.Table = MemoryEmbedding.__table__  # type: ignore[assignment]
_RECORDS_CHUNK = 500
#: The memories columns every vector store's metadata is made of (see memory_metadata).
MEMORY_METADATA_COLUMNS = (
    _MEMORIES.c.agent_id,
    _MEMORIES.c.entity_id,
    _MEMORIES.c.room_id,
    _MEMORIES.c.world_id,
    _MEMORIES.c.kind,
    _MEMORIES.c.created_at,
    _MEMORIES.c.metadata,
)


def memory_metadata(
    agent_id: Any, entity_id: Any, room_id: Any, world_id: Any, kind: Any, created_at: Any, meta: Any
) -> dict[str, Any]:
    """The metadata a memory carries in every vector store (memory fields win over same-named meta keys)."""
    out: dict[str, Any] = dict(meta) if isinstance(meta, dict) else {}
    fields = {"agent_id": agent_id, "entity_id": entity_id, "room_id": room_id, "world_id": world_id}
    for key, value in fields.items():
        out.pop(key, None)
        if value is not None:
            out[key] = value
    out["kind"] = MemoryKind(kind).name.lower()
    out["created_at"] = created_at if created_at.tzinfo else created_at.replace(tzinfo=timezone.utc)
    return out


def memory_records(conn: Connection, memory_ids: Sequence[uuid.UUID]) -> list[tuple[str, np.ndarray, dict[str, Any]]]:
    """``(id, float32 vector, metadata)`` of those memories that have an embedding, as vector stores hold them."""
    records = []
    for part in chunked(memory_ids, _RECORDS_CHUNK):
        query = (
            sa.select(_EMBEDDINGS.c.memory_id, _EMBEDDINGS.c.embedding, *MEMORY_METADATA_COLUMNS)
            .join(_MEMORIES, _MEMORIES.c.id == _EMBEDDINGS.c.memory_id)
            .where(_EMBEDDINGS.c.memory_id.in_(part))
        )
        for row in conn.execute(query):
            records.append((str(row[0]), np.asarray(row[1], dtype=np.float32), memory_metadata(*row[2:])))
    return records
