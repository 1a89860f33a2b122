"""Adapter memories: writes with duplicate detection, pages, updates, deletes, counts, search; no N+1; views."""

from __future__ import annotations

import datetime
import uuid

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy import event

import dbcore
from dbcore.DB_Memories import Memory, MemoryEmbedding
from dbcore.memories import content_hash
from dbcore.types import has_pgvector
from tests.adapter_scene import count, scene, vector
from tests.api_modes import AdapterView


def say(adapter: AdapterView, s: object, text: str, **extra: object) -> dbcore.Memory:
    return adapter.create_memory(agent_id=s.agent, entity_id=s.user, room_id=s.room, content={"text": text}, **extra)  # type: ignore[attr-defined]


def test_create_and_read(adapter: AdapterView) -> None:
    s = scene(adapter)
    memory = say(adapter, s, "hello", embedding=vector(1), metadata={"source": "chat"}, kind="document")
    assert memory.content_hash == content_hash({"text": "hello"}) and memory.is_unique is False  # not checked
    assert adapter.get_memory(memory.id, load=("embedding",)).memory_embeddings[0].embedding.shape == vector(1).shape
    assert adapter.require_memory(memory.id).meta == {"source": "chat"} and adapter.get_memory(uuid.uuid4()) is None
    ids = adapter.create_memories(
        [{"entity_id": s.user, "room_id": s.room, "content": {"text": str(i)}, "agent_id": s.agent} for i in range(3)],
        embeddings=np.stack([vector(i + 10) for i in range(3)]),
    )
    assert [m.id for m in adapter.get_memories_by_ids([ids[2], uuid.uuid4(), ids[0]])] == [ids[2], ids[0]]
    assert count(adapter, MemoryEmbedding, memory_id=ids[1]) == 1


def test_duplicates_by_content_and_by_vector(adapter: AdapterView) -> None:
    s = scene(adapter)
    first = say(adapter, s, "Grace bakes", embedding=vector(1), unique=True)
    same_text = say(adapter, s, "Grace bakes", embedding=vector(2), unique=True)
    near = say(adapter, s, "other words", embedding=vector(1) + 0.01, unique=True)
    far = say(adapter, s, "else", embedding=vector(3), unique=True)
    assert (first.is_unique, same_text.is_unique, near.is_unique, far.is_unique) == (True, False, False, True)
    assert {m.id for m in adapter.get_memories(room_id=s.room, unique_only=True)} == {first.id, far.id}
    assert adapter.count_memories(room_id=s.room, unique_only=True) == 2
    # in one batch, the second of two equal contents is the duplicate
    a, b = adapter.create_memories(
        [{"entity_id": s.user, "room_id": s.room, "content": {"text": "twice"}, "agent_id": s.agent}] * 2, unique=True
    )
    assert adapter.get_memory(a).is_unique and not adapter.get_memory(b).is_unique


def test_keyset_pages_and_filters(adapter: AdapterView) -> None:
    s = scene(adapter)
    base = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    made = [say(adapter, s, str(i), created_at=base + datetime.timedelta(minutes=i // 2)).id for i in range(7)]
    seen, cursor = [], None
    while True:
        page = adapter.get_memories(room_id=s.room, limit=3, after=cursor)
        seen += [m.id for m in page]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted(made) and len(seen) == 7, "every memory once, across equal timestamps"
    oldest = adapter.get_memories(room_id=s.room, order="asc", limit=1)[0]
    assert oldest.created_at == base
    window = adapter.get_memories(
        room_ids=[s.room], start=base + datetime.timedelta(minutes=1), end=base + datetime.timedelta(minutes=2)
    )
    assert len(window) == 2
    assert (
        adapter.get_memories(entity_id=s.friend).items == []
        and len(adapter.get_memories_by_room_ids([s.room], limit=5)) == 5
    )
    assert adapter.count_memories(room_id=s.room) == 7 and adapter.get_memories(world_id=uuid.uuid4()).items == []
    with pytest.raises(dbcore.ValidationError, match="is not a cursor"):
        adapter.get_memories(room_id=s.room, after="garbage")


def test_update_and_delete(adapter: AdapterView) -> None:
    s = scene(adapter)
    memory = say(adapter, s, "draft")
    updated = adapter.update_memory(
        memory.id, content={"text": "final"}, metadata={"v": 2}, embedding=vector(5), model="m"
    )
    assert updated.content_hash == content_hash({"text": "final"}) and updated.meta == {"v": 2}
    assert [hit.memory.id for hit in adapter.search_memories(vector(5), k=1, room_id=s.room)] == [memory.id]
    adapter.update_memory(memory.id, embedding=vector(6))
    assert [hit.memory.id for hit in adapter.search_memories(vector(6), k=1, room_id=s.room)] == [memory.id]
    child = say(adapter, s, "child", parent_id=memory.id)
    assert adapter.delete_memory(memory.id) is True and adapter.delete_memory(memory.id) is False
    assert adapter.get_memory(child.id).parent_id is None
    more = [say(adapter, s, str(i), kind="fragment").id for i in range(3)]
    assert adapter.delete_many_memories([more[0], uuid.uuid4()]) == 1
    assert adapter.delete_all_memories(s.room, kind="fragment") == 2 and adapter.count_memories(room_id=s.room) == 1
    assert adapter.delete_all_memories(s.room) == 1 and count(adapter, Memory, room_id=s.room) == 0
    with pytest.raises(dbcore.NotFound):
        adapter.update_memory(memory.id, content={})


def test_bad_input_writes_nothing(adapter: AdapterView) -> None:
    s = scene(adapter)
    before = (count(adapter, Memory), count(adapter, MemoryEmbedding))
    good = {"agent_id": s.agent, "entity_id": s.user, "room_id": s.room, "content": {"text": "ok"}}
    for bad, error in (
        ({**good, "kind": "dm"}, "kind='dm'"),
        ({**good, "content": "text"}, "content must be a dict"),
        ({**good, "nosuch": 1}, "unknown keys nosuch"),
        ({**good, "embedding": [1.0, 2.0]}, "memory_embeddings.embedding"),
        ({**good, "room_id": uuid.uuid4()}, "room_id"),
    ):
        with pytest.raises((dbcore.ValidationError, dbcore.ForeignKeyViolation), match=error):
            first = {**good, "embedding": vector(1)} if "embedding" in bad else good
            adapter.create_memories([first, bad])
    with pytest.raises(dbcore.ForeignKeyViolation):
        adapter.create_memory(agent_id=s.agent, entity_id=uuid.uuid4(), room_id=s.room, content={})
    with pytest.raises(dbcore.ValidationError):
        adapter.update_memory(say(adapter, s, "x").id, embedding=np.zeros(3))
    assert (count(adapter, Memory) - 1, count(adapter, MemoryEmbedding)) == before


def test_search_filters_and_scores(adapter: AdapterView) -> None:
    s = scene(adapter)
    other_room = adapter.create_room(kind="dm", world_id=s.world, participants=[s.user]).id
    here = say(adapter, s, "here", embedding=vector(1))
    there = adapter.create_memory(
        agent_id=s.agent, entity_id=s.user, room_id=other_room, content={"text": "t"}, embedding=vector(1)
    )
    hits = adapter.search_memories(vector(1), k=5, agent_id=s.agent)
    assert {h.memory.id for h in hits} == {here.id, there.id} and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.memory.id for h in adapter.search_memories(vector(1), k=5, room_id=other_room)] == [there.id]
    assert adapter.search_memories(vector(1), k=5, room_ids=[s.room], kind="document") == []
    assert adapter.search_memories(-vector(1), k=5, agent_id=s.agent, min_score=0.5) == []
    with pytest.raises(dbcore.ValidationError):
        adapter.search_memories(vector(1)[:3], k=5)


def test_search_in_the_database_joins_the_calls_transaction(adapter: AdapterView) -> None:
    s = scene(adapter)
    store = adapter.vector_store()
    engine = dbcore.get_engine(adapter.settings)
    in_database = engine.dialect.name == "postgresql" and store.backend_name == "integrated"
    with engine.connect() as connection:
        asked = store.query_in(connection, vector(5), k=1)
        in_database = in_database and has_pgvector(connection.dialect)
    assert (asked is not None) == in_database  # pgvector searches in the database; numpy and others do not
    if not in_database:
        return
    with adapter.transaction():
        mine = say(adapter, s, "not committed yet", embedding=vector(5))
        # The store searches on the transaction's own connection, so it sees the uncommitted memory.
        [hit] = adapter.search_memories(vector(5), k=1, room_id=s.room)
        assert hit.memory.id == mine.id


def test_cached_embeddings(adapter: AdapterView) -> None:
    s = scene(adapter)
    say(adapter, s, "what is the weather today", embedding=vector(1))
    say(adapter, s, "something else entirely", embedding=vector(2))
    [hit] = adapter.get_cached_embeddings("what is the weather today?", room_id=s.room)
    assert hit.distance < 0.05 and np.allclose(hit.embedding, vector(1), atol=1e-6)
    assert adapter.get_cached_embeddings("zzzz", room_id=s.room) == []


def test_listing_a_room_with_entity_and_room_is_constant_in_statements(adapter: AdapterView) -> None:
    s = scene(adapter)
    adapter.create_memories(
        [{"agent_id": s.agent, "entity_id": s.user, "room_id": s.room, "content": {"n": i}} for i in range(100)]
    )
    statements: list[str] = []
    engine = dbcore.get_engine(adapter.settings)
    if adapter.mode == "async":
        engine = adapter._loop.run(_async_sync_engine(adapter.settings))  # type: ignore[union-attr]
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    page = adapter.get_memories(room_id=s.room, limit=100, load=("entity", "room"))
    selects = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]
    assert len(page) == 100 and len(selects) <= 3, selects  # memories, then one each for entities and rooms
    assert {m.entity.names[0] for m in page} == {"user"} and {m.room.name for m in page} == {"room"}


async def _async_sync_engine(settings: dbcore.Settings) -> sa.Engine:
    return dbcore.get_async_engine(settings).sync_engine


def test_a_view_reads_and_writes_only_its_agents_memories(adapter: AdapterView) -> None:
    mine, theirs = scene(adapter, "mine"), scene(adapter, "theirs")
    secret = say(adapter, theirs, "secret", embedding=vector(9))
    view = adapter.for_agent(mine.agent)
    assert view.get_memory(secret.id) is None and view.get_memories_by_ids([secret.id]) == []
    assert view.get_memories(room_id=theirs.room).items == [] and view.count_memories(room_id=theirs.room) == 0
    assert view.search_memories(vector(9), k=5) == [] and view.get_cached_embeddings("secret") == []
    assert view.delete_memory(secret.id) is False and view.delete_all_memories(theirs.room) == 0
    with pytest.raises(dbcore.NotFound):
        view.update_memory(secret.id, content={"text": "mine now"})
    with pytest.raises(dbcore.PermissionDenied):
        view.create_memory(agent_id=theirs.agent, entity_id=mine.user, room_id=mine.room, content={})
    with pytest.raises(dbcore.NotFound):
        view.create_memory(entity_id=mine.user, room_id=theirs.room, content={})
    assert adapter.get_memory(secret.id).content == {"text": "secret"}
    assert view.create_memory(entity_id=mine.user, room_id=mine.room, content={"text": "ok"}).agent_id == mine.agent
