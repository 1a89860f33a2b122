"""Bookkeeping of embedding writes: the version counter and the vector outbox.

**Version counter.** Every INSERT, UPDATE or DELETE statement on
``memory_embeddings`` sent through a dbcore engine first bumps the row
``embedding_versions.name = 'memory_embeddings'`` in the same transaction (an
engine ``before_execute`` hook, so ORM flushes, ORM bulk statements and Core
statements are all counted). The integrated vector store compares the counter
with the one its in-process matrix cache was built at, on every query, so a
write by another process or connection is seen by the next query. A rolled-back
write rolls its bump back too. Raw SQL text bypasses the hook: call
:func:`bump_embedding_version` in the same transaction after such a write.

**Outbox.** With an external vector store (``DBCORE_VECTOR_BACKEND`` chroma,
pinecone or a plugin) a dbcore engine also records, in the same flush as the
change, one ``vector_outbox`` row per memory whose embedding, metadata or
existence changed. ``dbcore.vectorsync.sync()`` brings the store up to the rows'
current state and clears the markers it handled. Bulk UPDATE/DELETE statements
through a Session are covered too (the affected memory ids are read first).
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction
from sqlalchemy.sql.dml import UpdateBase

__all__ = [
    "EMBEDDINGS_TABLE",
    "bump_embedding_version",
    "embedding_version",
    "install_embedding_hooks",
    "enable_outbox",
    "outbox_enabled",
    "record_outbox",
]

EMBEDDINGS_TABLE = "memory_embeddings"
_MEMORIES_TABLE = "memories"

_hooked: weakref.WeakSet[Engine] = weakref.WeakSet()
_outbox: weakref.WeakSet[Engine] = weakref.WeakSet()


def _tables() -> tuple[sa.Table, sa.Table]:
    from dbcore.DB_Memories import EmbeddingVersion, VectorOutbox

    return EmbeddingVersion.__table__, VectorOutbox.__table__  # type: ignore[return-value]


def bump_embedding_version(connection: Connection, name: str = EMBEDDINGS_TABLE) -> None:
    """Add one to the counter of ``name`` in the connection's transaction (creating it at 1)."""
    versions, _ = _tables()
    done = connection.execute(versions.update().where(versions.c.name == name).values(version=versions.c.version + 1))
    if done.rowcount == 0:
        from dbcore.types import new_uuid, utcnow

        connection.execute(versions.insert().values(id=new_uuid(), name=name, version=1, created_at=utcnow()))


def embedding_version(connection: Connection, name: str = EMBEDDINGS_TABLE) -> int:
    """The counter of ``name`` as this transaction sees it (0 before the first write)."""
    versions, _ = _tables()
    value = connection.execute(sa.select(versions.c.version).where(versions.c.name == name)).scalar()
    return int(value or 0)


def _target_table(statement: Any) -> str | None:
    if isinstance(statement, UpdateBase):
        table = getattr(statement, "table", None)
        return getattr(table, "name", None)
    return None


def _before_execute(conn: Connection, clauseelement: Any, multiparams: Any, params: Any, options: Any) -> None:
    if _target_table(clauseelement) == EMBEDDINGS_TABLE:
        bump_embedding_version(conn)


def install_embedding_hooks(engine: Engine) -> None:
    """Make ``engine`` bump the embedding counter before every write to ``memory_embeddings``."""
    if engine in _hooked:
        return
    event.listen(engine, "before_execute", _before_execute)
    _hooked.add(engine)


def enable_outbox(engine: Engine) -> None:
    """Record outbox markers for every memory change made through sessions on ``engine``."""
    install_embedding_hooks(engine)
    _outbox.add(engine)


def outbox_enabled(bind: Any) -> bool:
    engine = getattr(bind, "engine", bind)
    return engine in _outbox


def record_outbox(connection: Connection, memory_ids: Iterable[uuid.UUID], op: str = "upsert") -> int:
    """Insert one outbox marker per distinct memory id; return how many."""
    from dbcore.types import new_uuid, utcnow

    _, outbox = _tables()
    now = utcnow()
    rows = [
        {"id": new_uuid(), "memory_id": memory_id, "op": op, "created_at": now}
        for memory_id in dict.fromkeys(memory_ids)
    ]
    if rows:
        connection.execute(outbox.insert(), rows)
    return len(rows)


# --- outbox markers from ORM flushes and bulk statements -------------------------------


def _flush_markers(session: Session) -> dict[uuid.UUID, str]:
    from dbcore.DB_Memories import Memory, MemoryEmbedding

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


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, flush_context: UOWTransaction) -> None:
    if not _outbox:  # no engine in this process writes markers: nothing to look at
        return
    connection = session.connection()
    if not outbox_enabled(connection):
        return
    by_op: dict[str, list[uuid.UUID]] = {}
    for memory_id, op in _flush_markers(session).items():
        by_op.setdefault(op, []).append(memory_id)
    for op, ids in by_op.items():
        record_outbox(connection, ids, op)


@event.listens_for(Session, "do_orm_execute")
def _bulk_markers(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    table = _target_table(state.statement)
    if not _outbox or table not in (EMBEDDINGS_TABLE, _MEMORIES_TABLE):
        return
    connection = state.session.connection()
    if not outbox_enabled(connection):
        return
    statement: Any = state.statement
    column = statement.table.c.memory_id if table == EMBEDDINGS_TABLE else statement.table.c.id
    query = sa.select(column)
    if statement.whereclause is not None:
        query = query.where(statement.whereclause)
    ids = list(connection.execute(query).scalars())
    record_outbox(connection, ids, "delete" if state.is_delete else "upsert")
