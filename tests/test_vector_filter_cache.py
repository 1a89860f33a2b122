"""The integrated store's numpy path answers structured filters from its cached matrix.

On every live dialect (the numpy path; ``search="numpy"`` on PostgreSQL with pgvector):

- results equal an independent oracle: ``Filter.matches`` over every memory's metadata
  and an exact float64 search, for equality filters on agent, room, entity, world (NULL
  included) and kind, nested ``$and``/``$or``, and operands that occur nowhere;
- such a filter sends no SQL but the version read (on the driver's cursor), once the
  first filtered query has read the columns; a filter the columns cannot answer
  (``created_at``) still selects its ids in SQL, with the same results as the oracle;
- the cache stays exact when a memory moves room or is deleted, from this process and
  from another one (the version counter moves with UPDATE and DELETE of ``memories``).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import dbcore
from dbcore.DB_Entities import Entity, Room, RoomKind, World
from dbcore.DB_Memories import EMBEDDING_DIMS, Memory, MemoryEmbedding
from dbcore.memories import add_memories, memory_metadata
from dbcore.vectorstores import F, Filter
from dbcore.vectorstores.integrated import IntegratedVectorStore, clear_matrix_cache

K = 8


@pytest.fixture
def scene(migrated: dbcore.Settings) -> Iterator[dict[str, Any]]:
    """Two agents, three entities, two worlds, four rooms (one without a world), 120 memories of mixed kinds."""
    engine = dbcore.create_engine(migrated)
    rng = np.random.default_rng(11)
    with Session(engine) as session:
        agents = [dbcore.Agent(name=f"a{i}") for i in range(2)]
        session.add_all(agents)
        session.flush()
        entities = [Entity(agent_id=agents[i % 2].id) for i in range(3)]
        worlds = [World(agent_id=agents[i].id, name=f"w{i}") for i in range(2)]
        session.add_all([*entities, *worlds])
        session.flush()
        rooms = [Room(kind=RoomKind.GROUP, world_id=worlds[i].id if i < 2 else None) for i in range(4)]
        session.add_all(rooms)
        session.flush()
        items = []
        for i in range(120):
            entity, room = entities[i % 3], rooms[(i // 3) % 4]
            items.append(
                {
                    "agent_id": entity.agent_id,
                    "entity_id": entity.id,
                    "room_id": room.id,
                    "world_id": room.world_id,
                    "kind": ("message", "document", "fragment")[i % 3],
                }
            )
        vectors = rng.normal(size=(120, EMBEDDING_DIMS)).astype(np.float32)
        ids = add_memories(session, items, vectors)
        session.commit()
        made = {
            "agents": [a.id for a in agents],
            "entities": [e.id for e in entities],
            "worlds": [w.id for w in worlds],
            "rooms": [r.id for r in rooms],
        }
    clear_matrix_cache()
    yield {"settings": migrated, "engine": engine, "ids": ids, "vectors": vectors, **made}
    engine.dispose()


def metadata_of(m: Memory) -> dict[str, Any]:
    return memory_metadata(m.agent_id, m.entity_id, m.room_id, m.world_id, m.kind, m.created_at, m.meta)


def oracle(engine: Engine, flt: Filter, query: np.ndarray, k: int = K) -> list[uuid.UUID]:
    """Filter.matches over every memory with an embedding, then an exact float64 search."""
    with Session(engine) as session:
        rows = session.execute(sa.select(Memory, MemoryEmbedding.embedding).join(MemoryEmbedding)).all()
    kept = [(m.id, np.asarray(v, dtype=np.float64)) for m, v in rows if flt.matches(metadata_of(m))]
    if not kept:
        return []
    matrix = np.stack([v / np.linalg.norm(v) for _, v in kept])
    scores = matrix @ (query / np.linalg.norm(query))
    return [kept[i][0] for i in np.argsort(-scores, kind="stable")[:k]]


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split()).lower())

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def filters(scene: dict[str, Any]) -> list[Filter]:
    agents, entities, worlds, rooms = scene["agents"], scene["entities"], scene["worlds"], scene["rooms"]
    nowhere = str(uuid.uuid4())
    return [
        F("room_id") == str(rooms[1]),
        F("agent_id") == str(agents[0]),
        F("entity_id") == str(entities[2]),
        F("world_id") == str(worlds[1]),
        F("world_id") != str(worlds[0]),  # NULL worlds match $ne, as in SQL
        F("world_id").nin([str(worlds[0]), str(worlds[1])]),  # only the room without a world
        F("room_id").in_([str(rooms[0]), str(rooms[3]), nowhere]),
        F("room_id") == nowhere,
        F("room_id") != nowhere,
        F("kind") == "document",
        F("kind").nin(["message", "fragment"]),
        (F("room_id") == str(rooms[2])) & (F("kind") == "message"),
        (F("entity_id") == str(entities[0])) | (F("room_id") == str(rooms[3])),
        (F("agent_id") == str(agents[1])) & ((F("kind") == "fragment") | (F("world_id") != str(worlds[1]))),
    ]


def test_filtered_results_equal_the_oracle(scene: dict[str, Any]) -> None:
    engine, vectors = scene["engine"], scene["vectors"]
    store = IntegratedVectorStore(engine, search="numpy")
    for number, flt in enumerate(filters(scene)):
        query = vectors[(number * 7) % len(vectors)] + 0.1
        got = [m.id for m in store.query(query, k=K, filter=flt, include_metadata=False)]
        assert got == oracle(engine, flt, query), flt


def test_equality_filters_send_no_sql_once_the_columns_are_read(scene: dict[str, Any]) -> None:
    engine, vectors = scene["engine"], scene["vectors"]
    store = IntegratedVectorStore(engine, search="numpy")
    store.query(vectors[0], k=K)  # loads the matrix
    with statements(engine) as first:
        store.query(vectors[0], k=K, filter=F("kind") == "message", include_metadata=False)
    assert sum("from memories" in s for s in first) == 1, first  # the columns, read once
    for flt in filters(scene):
        with statements(engine) as seen:
            store.query(vectors[1], k=K, filter=flt, include_metadata=False)
        # The version is read on the driver's cursor (not seen here); nothing else is read.
        assert [s for s in seen if s.startswith("select")] == [], (flt, seen)


def test_other_filters_keep_the_sql_step_and_its_results(scene: dict[str, Any]) -> None:
    engine, vectors = scene["engine"], scene["vectors"]
    store = IntegratedVectorStore(engine, search="numpy")
    flt = (F("room_id") == str(scene["rooms"][0])) & (F("created_at") > 0)
    store.query(vectors[0], k=K)
    with statements(engine) as seen:
        got = [m.id for m in store.query(vectors[2], k=K, filter=flt, include_metadata=False)]
    assert any("from memories" in s for s in seen), seen
    assert got == oracle(engine, flt, vectors[2])


def test_a_moved_memory_is_seen_from_this_process(scene: dict[str, Any]) -> None:
    engine, vectors, ids, rooms = scene["engine"], scene["vectors"], scene["ids"], scene["rooms"]
    store = IntegratedVectorStore(engine, search="numpy")
    target = F("room_id") == str(rooms[3])
    before = {m.id for m in store.query(vectors[0], k=200, filter=target, include_metadata=False)}
    moved = next(i for i in ids if i not in before)
    with dbcore.get_session(scene["settings"]) as session:
        session.get(Memory, moved).room_id = rooms[3]  # type: ignore[union-attr]
    after = {m.id for m in store.query(vectors[0], k=200, filter=target, include_metadata=False)}
    assert after == before | {moved}


def test_moves_and_deletes_from_another_process_are_seen(scene: dict[str, Any]) -> None:
    engine, vectors, ids, rooms = scene["engine"], scene["vectors"], scene["ids"], scene["rooms"]
    store = IntegratedVectorStore(engine, search="numpy")
    target = F("room_id") == str(rooms[0])
    before = [m.id for m in store.query(vectors[5], k=200, filter=target, include_metadata=False)]
    leaving, deleted = before[0], before[1]
    script = textwrap.dedent(
        """
        import sys, uuid
        import sqlalchemy as sa
        import dbcore
        from dbcore.DB_Memories import Memory, MemoryEmbedding
        engine = dbcore.create_engine(dbcore.Settings(database_url=sys.argv[1]))
        memories, embeddings = Memory.__table__, MemoryEmbedding.__table__
        with engine.begin() as conn:
            conn.execute(sa.update(memories).where(memories.c.id == uuid.UUID(sys.argv[2])).values(room_id=uuid.UUID(sys.argv[4])))
            conn.execute(sa.delete(embeddings).where(embeddings.c.memory_id == uuid.UUID(sys.argv[3])))
            conn.execute(sa.delete(memories).where(memories.c.id == uuid.UUID(sys.argv[3])))
        """
    )
    url = scene["settings"].url.render_as_string(hide_password=False)
    subprocess.run(
        [sys.executable, "-c", script, url, str(leaving), str(deleted), str(rooms[1])], check=True, timeout=120
    )
    after = [m.id for m in store.query(vectors[5], k=200, filter=target, include_metadata=False)]
    assert after == [i for i in before if i not in (leaving, deleted)]
    moved_to = {
        m.id for m in store.query(vectors[5], k=200, filter=F("room_id") == str(rooms[1]), include_metadata=False)
    }
    assert leaving in moved_to and deleted not in moved_to
    assert len(ids) == 120


def test_an_update_of_a_memory_bumps_the_version(scene: dict[str, Any]) -> None:
    from dbcore.vector_changes import embedding_version

    engine = scene["engine"]
    with engine.connect() as conn:
        before = embedding_version(conn)
    with dbcore.get_session(scene["settings"]) as session:
        session.get(Memory, scene["ids"][0]).content = {"text": "edited"}  # type: ignore[union-attr]
    with engine.connect() as conn:
        assert embedding_version(conn) == before + 1
