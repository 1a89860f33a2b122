"""The integrated store's optional ANN index (``ann=True``, faiss HNSW) stays exact to the rows.

On every live dialect (the numpy path; ``search="numpy"`` on PostgreSQL with pgvector),
with ``ann_min_rows=0`` so that a small table is indexed, and an ``ef_search`` above
the row count, at which the HNSW search of a few hundred vectors finds the exact top k:

- results equal an exact float64 search over the rows, unfiltered, with a filter the
  columns answer (scored exactly over the kept rows, or searched in the graph with a
  selector when the exact step is turned off) and with a filter that needs SQL;
- inserts, an embedding updated in place and deletes made by another process are
  seen by the next query: new vectors found, the old vector of the updated one and
  the deleted one never returned, and the index refreshed, not rebuilt;
- the saved index is loaded by a fresh cache and refreshed from there; a save of
  another database is not used;
- below ``ann_min_rows`` no index is built; faiss missing or ``cache=False`` is refused.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import dbcore
from dbcore.DB_Entities import Entity, Room, RoomKind
from dbcore.DB_Memories import EMBEDDING_DIMS, Memory, MemoryEmbedding
from dbcore.errors import ConfigurationError, ValidationError
from dbcore.memories import add_memories, memory_metadata
from dbcore.vectorstores import F, Filter, integrated
from dbcore.vectorstores import ann as ann_module
from dbcore.vectorstores.integrated import IntegratedVectorStore, clear_matrix_cache

K = 8
ROWS = 240


@pytest.fixture
def scene(migrated: dbcore.Settings, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """One agent, two entities, three rooms, ROWS memories with random embeddings."""
    engine = dbcore.create_engine(migrated)
    rng = np.random.default_rng(5)
    with Session(engine) as session:
        agent = dbcore.Agent(name="a")
        session.add(agent)
        session.flush()
        entities = [Entity(agent_id=agent.id) for _ in range(2)]
        rooms = [Room(kind=RoomKind.GROUP) for _ in range(3)]
        session.add_all([*entities, *rooms])
        session.flush()
        items = [
            {"agent_id": agent.id, "entity_id": entities[i % 2].id, "room_id": rooms[i % 3].id, "kind": "message"}
            for i in range(ROWS)
        ]
        vectors = rng.normal(size=(ROWS, EMBEDDING_DIMS)).astype(np.float32)
        ids = add_memories(session, items, vectors)
        session.commit()
        made = {"agent": agent.id, "entities": [e.id for e in entities], "rooms": [r.id for r in rooms]}
    clear_matrix_cache()
    yield {"settings": migrated, "engine": engine, "ids": ids, "vectors": vectors, "dir": tmp_path / "ann", **made}
    clear_matrix_cache()
    engine.dispose()


def ann_store(scene: dict[str, Any], **kwargs: Any) -> IntegratedVectorStore:
    options: dict[str, Any] = {"ann": True, "ann_min_rows": 0, "ann_path": scene["dir"], "ef_search": 1000}
    return IntegratedVectorStore(scene["engine"], search="numpy", **{**options, **kwargs})


def oracle(engine: Engine, query: np.ndarray, flt: Filter | None = None, k: int = K) -> list[uuid.UUID]:
    """Filter.matches over every memory with an embedding, then an exact float64 search."""
    with Session(engine) as session:
        rows = session.execute(sa.select(Memory, MemoryEmbedding.embedding).join(MemoryEmbedding)).all()
    kept = [
        (m.id, np.asarray(v, dtype=np.float64))
        for m, v in rows
        if flt is None
        or flt.matches(memory_metadata(m.agent_id, m.entity_id, m.room_id, m.world_id, m.kind, m.created_at, m.meta))
    ]
    matrix = np.stack([v / np.linalg.norm(v) for _, v in kept])
    scores = matrix @ (query / np.linalg.norm(query))
    return [kept[i][0] for i in np.argsort(-scores, kind="stable")[:k]]


def found(store: IntegratedVectorStore, query: np.ndarray, flt: Filter | None = None, k: int = K) -> list[uuid.UUID]:
    return [m.id for m in store.query(query, k=k, filter=flt, include_metadata=False)]


def the_index(store: IntegratedVectorStore) -> ann_module.AnnIndex:
    (index,) = [a for key, a in integrated._ann_indexes.items() if key[:2] == store._cache_key]
    return index


def test_results_equal_an_exact_search(scene: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    engine, vectors, rooms = scene["engine"], scene["vectors"], scene["rooms"]
    store = ann_store(scene)
    queries = [vectors[i] + 0.05 for i in (0, 17, 99)]
    for query in queries:
        assert found(store, query) == oracle(engine, query)
    assert the_index(store).built and the_index(store).size == ROWS
    room = F("room_id") == str(rooms[1])
    by_sql = (F("entity_id") == str(scene["entities"][0])) & (F("created_at") > 0)
    for flt in (room, by_sql):
        assert found(store, queries[0], flt) == oracle(engine, queries[0], flt), flt
    # A filter keeping more rows than the exact step takes is searched in the graph with a selector.
    monkeypatch.setattr(integrated, "EXACT_ROWS", 0)
    for flt in (room, F("room_id") != str(rooms[1]), by_sql):
        assert found(store, queries[1], flt) == oracle(engine, queries[1], flt), flt
    with_metadata = store.query(queries[2], k=3, filter=room)
    exact = IntegratedVectorStore(engine, search="numpy").query(queries[2], k=3, filter=room)
    assert [(m.id, m.metadata) for m in with_metadata] == [(m.id, m.metadata) for m in exact]
    assert [m.score for m in with_metadata] == pytest.approx([m.score for m in exact], abs=1e-3)  # float16


def test_min_score_and_async_queries_agree(scene: dict[str, Any], aio: Any) -> None:
    engine, vectors = scene["engine"], scene["vectors"]
    store = ann_store(scene)
    query = vectors[3]
    best = store.query(query, k=K)
    assert best[0].id == scene["ids"][3] and best[0].score == pytest.approx(1.0, abs=1e-3)  # float16 storage
    assert [m.id for m in store.query(query, k=K, min_score=0.5)] == [scene["ids"][3]]
    got = aio.run(store.aquery(query, k=K, include_metadata=False))
    assert [m.id for m in got] == oracle(engine, query)


WRITER = textwrap.dedent(
    """
    import json, sys, uuid
    import numpy as np
    import sqlalchemy as sa
    from sqlalchemy.orm import Session
    import dbcore
    from dbcore.DB_Memories import MemoryEmbedding
    from dbcore.memories import add_memories
    url, agent, entity, room, updated, deleted = sys.argv[1:7]
    engine = dbcore.create_engine(dbcore.Settings(database_url=url))
    rng = np.random.default_rng(99)
    new = rng.normal(size=(5, int(sys.argv[7]))).astype(np.float32)
    replacement = rng.normal(size=int(sys.argv[7])).astype(np.float32)
    table = MemoryEmbedding.__table__
    with Session(engine) as session:
        item = {"agent_id": uuid.UUID(agent), "entity_id": uuid.UUID(entity), "room_id": uuid.UUID(room), "kind": "message"}
        ids = add_memories(session, [item] * 5, new)
        session.execute(sa.update(table).where(table.c.memory_id == uuid.UUID(updated)).values(embedding=replacement))
        session.execute(sa.delete(table).where(table.c.memory_id == uuid.UUID(deleted)))
        session.commit()
    print(json.dumps({"ids": [str(i) for i in ids], "new": new.tolist(), "replacement": replacement.tolist()}))
    """
)


def write_elsewhere(scene: dict[str, Any], updated: uuid.UUID, deleted: uuid.UUID) -> dict[str, Any]:
    import json

    url = scene["settings"].url.render_as_string(hide_password=False)
    args = [url, str(scene["agent"]), str(scene["entities"][0]), str(scene["rooms"][0]), str(updated), str(deleted)]
    done = subprocess.run(
        [sys.executable, "-c", WRITER, *args, str(EMBEDDING_DIMS)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_writes_from_another_process_are_seen(scene: dict[str, Any]) -> None:
    engine, vectors, ids = scene["engine"], scene["vectors"], scene["ids"]
    store = ann_store(scene)
    updated, deleted = ids[10], ids[11]
    assert found(store, vectors[10], k=1) == [updated] and found(store, vectors[11], k=1) == [deleted]
    labels_before = the_index(store).live.size
    written = write_elsewhere(scene, updated, deleted)
    for new_id, vector in zip(written["ids"], written["new"], strict=True):
        assert found(store, np.array(vector, dtype=np.float32), k=1) == [uuid.UUID(new_id)]
    assert found(store, np.array(written["replacement"], dtype=np.float32), k=1) == [updated]
    for query in (vectors[10], vectors[11], vectors[12] + 0.1):
        got = found(store, query)
        assert got == oracle(engine, query)
        assert deleted not in got
    index = the_index(store)
    # Refreshed, not rebuilt: the five new vectors and the updated one took new labels.
    assert index.live.size == labels_before + 6 and index.size == ROWS + 5 - 1


def test_the_saved_index_is_loaded_and_refreshed(scene: dict[str, Any]) -> None:
    engine, vectors, ids = scene["engine"], scene["vectors"], scene["ids"]
    store = ann_store(scene)
    found(store, vectors[0])
    assert (scene["dir"] / "stamp.json").exists()
    clear_matrix_cache()  # as a fresh process: the index comes from the save
    write_elsewhere(scene, ids[20], ids[21])
    assert found(store, vectors[22]) == oracle(engine, vectors[22])
    index = the_index(store)
    assert index.live.size == ROWS + 6  # the save's labels, then the changes added
    assert ids[21] not in found(store, vectors[21])


def test_a_save_of_another_database_is_not_used(scene: dict[str, Any], tmp_path: Path) -> None:
    engine, vectors = scene["engine"], scene["vectors"]
    store = ann_store(scene)
    found(store, vectors[0])
    clear_matrix_cache()
    other = dbcore.Settings(database_url=f"sqlite:///{tmp_path / 'other.sqlite3'}")
    from dbcore import migrate

    migrate.upgrade(other, "head")
    other_engine = dbcore.create_engine(other)
    try:
        with other_engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM memory_embeddings")).scalar_one() == 0
        # The other database's store points at this database's save: a different counter row id.
        stranger = IntegratedVectorStore(other_engine, search="numpy", ann=True, ann_min_rows=0, ann_path=scene["dir"])
        assert stranger.query(vectors[0], k=K) == []
    finally:
        other_engine.dispose()
    assert found(store, vectors[1]) == oracle(engine, vectors[1])


def test_below_ann_min_rows_the_search_stays_exact(scene: dict[str, Any]) -> None:
    engine, vectors = scene["engine"], scene["vectors"]
    store = ann_store(scene, ann_min_rows=ROWS + 1)
    assert found(store, vectors[4]) == oracle(engine, vectors[4])
    assert not any(index.built for index in integrated._ann_indexes.values())
    assert not scene["dir"].exists()


def test_many_deletes_rebuild_the_index(scene: dict[str, Any]) -> None:
    engine, vectors, ids = scene["engine"], scene["vectors"], scene["ids"]
    store = ann_store(scene)
    found(store, vectors[0])
    gone = ids[: ROWS // 2]
    table: sa.Table = MemoryEmbedding.__table__  # type: ignore[assignment]
    with engine.begin() as conn:
        conn.execute(sa.delete(table).where(table.c.memory_id.in_(gone)))
    got = found(store, vectors[0], k=K)
    assert got == oracle(engine, vectors[0]) and not set(got) & set(gone)
    index = the_index(store)
    assert index.live.size == index.size == ROWS - len(gone)  # built again: no tombstones


def test_the_setting_turns_it_on(scene: dict[str, Any]) -> None:
    from dbcore.vectorstores import get_vector_store

    settings = dataclasses.replace(scene["settings"], vector_ann=True)
    store = get_vector_store(settings, search="numpy", ann_min_rows=0, ann_path=scene["dir"])
    assert isinstance(store, IntegratedVectorStore)
    found(store, scene["vectors"][0])
    assert the_index(store).built
    # A store that reads the rows on every query (the pytest plugin's) keeps searching exactly.
    uncached = get_vector_store(settings, search="numpy", cache=False)
    assert found(uncached, scene["vectors"][1]) == oracle(scene["engine"], scene["vectors"][1])


def test_a_refresh_that_fails_halfway_is_finished_by_the_next_one(
    scene: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, vectors = scene["engine"], scene["vectors"]
    if engine.dialect.name == "postgresql" and dbcore.types.has_pgvector(engine.dialect):
        pytest.skip("pgvector's vector column cannot hold a corrupt vector")
    store = ann_store(scene)
    found(store, vectors[0])
    monkeypatch.setattr(integrated, "_LOAD_BATCH", 50)  # the refresh reads the rows in several batches
    rng = np.random.default_rng(3)
    more = rng.normal(size=(61, EMBEDDING_DIMS)).astype(np.float32)
    item = {"agent_id": scene["agent"], "entity_id": scene["entities"][0], "room_id": scene["rooms"][0], "kind": 1}
    with Session(engine) as session:
        new_ids = add_memories(session, [item] * 61, more)
        session.commit()
    table: sa.Table = MemoryEmbedding.__table__  # type: ignore[assignment]
    with engine.begin() as conn:  # the last one's stored bytes are cut short: read last, after 60 good rows
        short = sa.type_coerce(b"\x00" * 8, sa.LargeBinary)
        conn.execute(sa.update(table).where(table.c.memory_id == new_ids[-1]).values(embedding=short))
    with pytest.raises(dbcore.errors.DataError, match="holds 8 bytes"):
        found(store, vectors[0])
    with engine.begin() as conn:
        conn.execute(sa.delete(table).where(table.c.memory_id == new_ids[-1]))
    assert found(store, more[3], k=1) == [new_ids[3]]
    assert found(store, vectors[5]) == oracle(engine, vectors[5])
    index = the_index(store)
    assert index.size == index.live.size == ROWS + 60  # what the failed pass added was kept, not added again
    assert len(set(index.keys[index.live].tolist())) == index.size


def test_uuid_keys_read_every_driver_form() -> None:
    ids = [uuid.uuid4() for _ in range(5)]
    expected = np.array([i.bytes for i in ids], dtype="S16")
    for raw in ([str(i) for i in ids], [str(i).upper() for i in ids], ids):
        assert np.array_equal(ann_module.uuid_keys(raw, lambda value: uuid.UUID(str(value))), expected)


def test_refused_settings(memory_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="cache=True"):
        IntegratedVectorStore(memory_engine, ann=True, cache=False)
    with pytest.raises(ValidationError, match="ann_min_rows"):
        IntegratedVectorStore(memory_engine, ann=True, ann_min_rows=-1)
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'dbcore\[ann\]'"):
        IntegratedVectorStore(memory_engine, ann=True)
    IntegratedVectorStore(memory_engine)  # without ann, faiss is not needed
