"""search_memories and duplicate detection through the external vector stores: embedded Chroma and Pinecone.

Each memory reaches the store through the outbox pushed after COMMIT; the adapter then
searches the store (the async adapter awaits the store's ``aquery``). Pinecone's cloud
is stood in for by the local server of tests/pinecone_local.py, driven by the real SDK.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

import dbcore
from dbcore.adapter.lifecycle import init
from dbcore.config import ChromaSettings, PineconeSettings
from dbcore.DB_Memories import EMBEDDING_DIMS
from tests.adapter_scene import scene, vector
from tests.api_modes import MODES, AdapterView, LoopRunner
from tests.pinecone_local import PineconeLocal, running_index

pytestmark = pytest.mark.sqlite
_namespaces = itertools.count()


@pytest.fixture(scope="module")
def pinecone_server() -> Iterator[PineconeLocal]:
    with running_index(EMBEDDING_DIMS) as server:
        yield server


@pytest.fixture(
    params=[(backend, mode) for backend in ("chroma", "pinecone") for mode in MODES], ids=lambda p: "-".join(p)
)
def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AdapterView]:
    backend, mode = request.param
    settings = dbcore.Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    if backend == "chroma":
        settings = settings.replace(vector_backend="chroma", chroma=ChromaSettings(path=str(tmp_path / "chroma")))
    else:
        server: PineconeLocal = request.getfixturevalue("pinecone_server")
        pinecone = PineconeSettings(api_key="pc-local-key", host=server.host, namespace=f"adapter-{next(_namespaces)}")
        settings = settings.replace(vector_backend="pinecone", pinecone=pinecone)
    init(settings)
    if mode == "sync":
        made = dbcore.DatabaseAdapter(settings)
        yield AdapterView(made, None)
        made.close()
        return
    loop: LoopRunner = request.getfixturevalue("aio")
    made_async = dbcore.AsyncDatabaseAdapter(settings)
    yield AdapterView(made_async, loop)
    loop.run(made_async.close())


def test_search_and_duplicates_through_the_store(adapter: AdapterView) -> None:
    s = scene(adapter)
    other_room = adapter.create_room(kind="dm", world_id=s.world, participants=[s.user]).id
    said = {"agent_id": s.agent, "entity_id": s.user, "room_id": s.room}
    first = adapter.create_memory(**said, content={"text": "a"}, embedding=vector(1), unique=True)
    far = adapter.create_memory(**said, content={"text": "b"}, embedding=vector(2), unique=True)
    elsewhere = adapter.create_memory(**{**said, "room_id": other_room}, content={"text": "c"}, embedding=vector(1))
    near = adapter.create_memory(**said, content={"text": "d"}, embedding=vector(1) + 0.01, unique=True)
    assert (first.is_unique, far.is_unique, near.is_unique) == (True, True, False)

    hits = adapter.search_memories(vector(1), k=3, room_id=s.room)
    assert [h.memory.id for h in hits[:2]] == [first.id, near.id] or [h.memory.id for h in hits[:2]] == [
        near.id,
        first.id,
    ]
    assert hits[0].score > 0.99 and elsewhere.id not in {h.memory.id for h in hits}
    assert [h.memory.id for h in adapter.search_memories(vector(1), k=3, room_id=s.room, unique_only=True)][
        0
    ] == first.id
    assert adapter.delete_memory(first.id)
    assert first.id not in {h.memory.id for h in adapter.search_memories(vector(1), k=3, room_id=s.room)}
    assert adapter.for_agent(adapter.create_agent("other").id).search_memories(vector(1), k=3) == []
