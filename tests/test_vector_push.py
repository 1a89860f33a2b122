"""A committed memory is searchable in Chroma and Pinecone as soon as the commit returns.

Every test writes through a dbcore session on a real database (the dialect tests on
every live dialect), with the store configured by Settings as an application would:
an embedded Chroma (``chromadb.PersistentClient`` in a temporary folder) or the real
Pinecone SDK against ``tests/pinecone_local.py``. The test reads through its own
store object, never the one the commit pushed with, and runs no ``sync``. Where the
push must send nothing, the store is first given a stray record under the id
concerned: a push of that memory (absent from the rows) would delete it.

The tests of a session's commit take the ``api`` fixture: the push happens for the
units of ``get_session`` and of ``get_async_session`` alike. (In async mode the push
runs inside the awaited COMMIT, on the event loop's thread, with the store's sync
client.)
"""

from __future__ import annotations

import itertools
import logging
import socket
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import dbcore
from dbcore import migrate, vectorsync
from dbcore.base import Base
from dbcore.cli import main
from dbcore.config import ChromaSettings, PineconeSettings
from dbcore.DB_Memories import EMBEDDING_DIMS, Memory, MemoryEmbedding, VectorOutbox
from dbcore.memories import add_memories, delete_memories
from dbcore.testing import add_memory_parents
from dbcore.vector_push import push_markers
from dbcore.vectorstores import VectorStore, get_vector_store
from dbcore.vectorstores.base import PreparedRecord
from tests.api_modes import Api
from tests.pinecone_local import PineconeLocal, running_index
from tests.wrapped_store import WrappedStore

DIMS = EMBEDDING_DIMS
SECRET = "pc-secret-key-9f3a"
_namespaces = itertools.count()


@pytest.fixture(scope="module")
def pinecone_server() -> Iterator[PineconeLocal]:
    with running_index(DIMS) as server:
        yield server


@pytest.fixture(params=["chroma", "pinecone"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _store_settings(
    base: dbcore.Settings, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> dbcore.Settings:
    if backend == "chroma":
        return base.replace(vector_backend="chroma", chroma=ChromaSettings(path=str(tmp_path / "chroma")))
    server: PineconeLocal = request.getfixturevalue("pinecone_server")
    server.down = False
    pinecone = PineconeSettings(api_key=SECRET, host=server.host, namespace=f"push-{next(_namespaces)}")
    return base.replace(vector_backend="pinecone", pinecone=pinecone)


@pytest.fixture
def pushed(
    settings: dbcore.Settings, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[dbcore.Settings, dict[str, Any]]:
    """Settings of a migrated database of each live dialect with an external store, and memory parents."""
    configured = _store_settings(settings, backend, tmp_path, request)
    return configured, _migrate(configured)


@pytest.fixture
def store(pushed: tuple[dbcore.Settings, dict[str, Any]]) -> Iterator[VectorStore]:
    made = get_vector_store(pushed[0])
    yield made
    made.close()


def _migrate(settings: dbcore.Settings) -> dict[str, Any]:
    migrate.upgrade(settings, "head")
    with dbcore.get_session(settings) as session:
        made = add_memory_parents(session, name="push")
    return {"agent_id": made["agent_id"], "entity_id": made["entity_id"], "room_id": made["room_ids"][0]}


def _vectors(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, DIMS)).astype(np.float32)


def _markers(settings: dbcore.Settings) -> list[str]:
    with dbcore.get_engine(settings).connect() as conn:
        return sorted(str(i) for i in conn.execute(sa.select(VectorOutbox.memory_id)).scalars())


def _memories(parents: dict[str, Any], count: int) -> list[dict[str, Any]]:
    return [{**parents, "kind": "message", "content": {"i": i}, "metadata": {"i": i}} for i in range(count)]


def _stray(store: VectorStore, memory_id: uuid.UUID) -> None:
    store.upsert([(memory_id, _vectors(1, 404)[0], {})])


# --- searchable right after commit, on every live dialect ---------------------------------


def _adding_one(parents: dict[str, Any], vector: np.ndarray) -> Callable[[Session], uuid.UUID]:
    """A unit of work that adds a memory and its embedding with the ORM."""

    def add(session: Session) -> uuid.UUID:
        memory = Memory(kind=dbcore.MemoryKind.MESSAGE, content={"text": "hi"}, **parents)
        session.add(memory)
        session.flush()
        session.add(MemoryEmbedding(memory_id=memory.id, embedding=vector))
        return memory.id

    return add


def test_orm_commit_is_searchable_at_once(
    api: Api, pushed: tuple[dbcore.Settings, dict[str, Any]], store: VectorStore
) -> None:
    settings, parents = pushed
    vector = _vectors(1, 1)[0]
    memory_id = api.unit(settings, _adding_one(parents, vector))
    (match,) = store.query(vector, k=1)
    assert match.id == memory_id and match.score == pytest.approx(1.0, abs=1e-5)
    assert match.metadata["room_id"] == parents["room_id"] and match.metadata["kind"] == "message"
    assert _markers(settings) == []
    report = vectorsync.verify(store, settings=settings)
    assert report.ok and not report.pending and not report.missing


def test_add_update_and_delete_show_at_once(
    api: Api, pushed: tuple[dbcore.Settings, dict[str, Any]], store: VectorStore
) -> None:
    settings, parents = pushed
    ids = api.unit(settings, lambda session: add_memories(session, _memories(parents, 6), _vectors(6, 2)))
    assert {m.id for m in store.query(_vectors(6, 2)[4], k=6)} == set(ids)
    assert store.query(_vectors(6, 2)[4], k=1)[0].id == ids[4]
    assert _markers(settings) == []

    new = _vectors(1, 3)[0]

    def update_embedding(session: Session) -> None:  # an ORM update of one embedding
        row = session.execute(sa.select(MemoryEmbedding).where(MemoryEmbedding.memory_id == ids[0])).scalar_one()
        row.embedding = new

    api.unit(settings, update_embedding)
    (record,) = store.get([ids[0]])
    np.testing.assert_allclose(record.vector, new, atol=1e-5)

    def update_metadata(session: Session) -> None:  # metadata lives on the memory row
        session.get(Memory, ids[1]).meta = {"i": 1, "lang": "fr"}  # type: ignore[union-attr]

    api.unit(settings, update_metadata)
    assert store.get([ids[1]])[0].metadata["lang"] == "fr"

    def delete_three_ways(session: Session) -> None:
        delete_memories(session, [ids[2]])
        session.delete(session.get(MemoryEmbedding, _embedding_id(session, ids[3])))
        session.execute(sa.delete(MemoryEmbedding).where(MemoryEmbedding.memory_id == ids[5]))

    api.unit(settings, delete_three_ways)
    assert store.get([ids[2], ids[3], ids[5]]) == []
    assert set(store.ids()) == {str(ids[0]), str(ids[1]), str(ids[4])}
    assert _markers(settings) == []


def _embedding_id(session: Session, memory_id: uuid.UUID) -> uuid.UUID:
    return session.execute(sa.select(MemoryEmbedding.id).where(MemoryEmbedding.memory_id == memory_id)).scalar_one()


def test_rollback_and_rolled_back_savepoint_push_nothing(
    api: Api, pushed: tuple[dbcore.Settings, dict[str, Any]], store: VectorStore
) -> None:
    settings, parents = pushed
    lost, kept, dropped = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for memory_id in (lost, dropped):
        _stray(store, memory_id)

    def rolled_back(session: Session) -> None:
        add_memories(session, [{**_memories(parents, 1)[0], "id": lost}], _vectors(1, 4))
        session.rollback()

    api.unit(settings, rolled_back)
    assert store.get([lost]) != [] and _markers(settings) == []

    def savepoint_rolled_back(session: Session) -> None:
        add_memories(session, [{**_memories(parents, 1)[0], "id": kept}], _vectors(1, 5))
        savepoint = session.begin_nested()
        add_memories(session, [{**_memories(parents, 1)[0], "id": dropped}], _vectors(1, 6))
        row = session.execute(sa.select(MemoryEmbedding).where(MemoryEmbedding.memory_id == kept)).scalar_one()
        row.embedding = _vectors(1, 7)[0]
        session.flush()
        savepoint.rollback()

    api.unit(settings, savepoint_rolled_back)
    assert store.get([dropped]) != [], "a memory of the rolled-back savepoint was pushed"
    (record,) = store.get([kept])
    np.testing.assert_allclose(record.vector, _vectors(1, 5)[0], atol=1e-5)
    assert _markers(settings) == []


# --- failures wait for sync --------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("failure", ["pinecone 503", "pinecone unreachable", "chroma unreachable"])
def test_failing_store_leaves_commit_and_markers_for_sync(
    api: Api, failure: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = dbcore.Settings(database_url=f"sqlite:///{tmp_path / 'fail.sqlite3'}")
    with running_index(DIMS) as server:
        if failure == "chroma unreachable":  # nothing listens on the port: every commit's push fails
            settings = base.replace(
                vector_backend="chroma", chroma=ChromaSettings(host="127.0.0.1", port=_closed_port())
            )
            healthy = get_vector_store(settings.replace(chroma=ChromaSettings(path=str(tmp_path / "chroma"))))
        else:
            pinecone = PineconeSettings(api_key=SECRET, host=server.host)
            settings = base.replace(vector_backend="pinecone", pinecone=pinecone)
            healthy = get_vector_store(settings)
            if failure == "pinecone unreachable":
                settings = settings.replace(
                    pinecone=PineconeSettings(api_key=SECRET, host=f"http://127.0.0.1:{_closed_port()}")
                )
        always_down = failure != "pinecone 503"
        parents = _migrate(settings)
        first = api.unit(settings, lambda session: add_memories(session, _memories(parents, 2), _vectors(2, 8)))
        assert set(healthy.ids()) == (set() if always_down else {str(i) for i in first})
        server.down = failure == "pinecone 503"  # real 503 answers to the store the first commit built
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dbcore.vector_push"):
            # returns normally: the commit happened
            ids = api.unit(settings, lambda session: add_memories(session, _memories(parents, 3), _vectors(3, 9)))
        assert "marker(s) kept for `dbcore vectors sync`" in caplog.text and SECRET not in caplog.text
        expected_pending = {str(i) for i in ids} | ({str(i) for i in first} if always_down else set())
        assert set(_markers(settings)) == expected_pending
        with dbcore.get_session(settings, read_only=True) as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(MemoryEmbedding)) == 5
        server.down = False
        report = vectorsync.verify(healthy, settings=settings)
        assert report.ok and set(report.pending) == expected_pending
        done = vectorsync.sync(healthy, settings=settings)
        assert done.ok and done.markers_cleared == len(expected_pending) and _markers(settings) == []
        assert set(healthy.ids()) == {str(i) for i in first + ids}


def test_push_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'off.sqlite3'}")
    monkeypatch.setenv("DBCORE_VECTOR_BACKEND", "chroma")
    monkeypatch.setenv("DBCORE_CHROMA_PATH", str(tmp_path / "chroma"))
    monkeypatch.delenv("DBCORE_CHROMA_HOST", raising=False)
    monkeypatch.setenv("DBCORE_VECTOR_PUSH_ON_COMMIT", "false")
    settings = dbcore.Settings.from_env()
    parents = _migrate(settings)
    with dbcore.get_session() as session:
        ids = add_memories(session, _memories(parents, 2), _vectors(2, 10))
    assert _markers(settings) == sorted(map(str, ids))
    store = get_vector_store()
    assert store.count() == 0
    assert vectorsync.sync(store).markers_cleared == 2 and store.count() == 2


@pytest.mark.parametrize("database", ["file", "memory"])
def test_session_joined_to_an_outer_transaction_pushes_nothing_before_it_commits(database: str, tmp_path: Path) -> None:
    # In memory, every connection of the engine is the same SQLite connection: a push
    # would run inside the outer transaction, and could commit it.
    url = "sqlite:///:memory:" if database == "memory" else f"sqlite:///{tmp_path / 'outer.sqlite3'}"
    settings = dbcore.Settings(
        database_url=url, vector_backend="chroma", chroma=ChromaSettings(path=str(tmp_path / "chroma"))
    )
    engine = dbcore.get_engine(settings)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        made = add_memory_parents(session, name="outer")
        session.commit()
    parents = {"agent_id": made["agent_id"], "entity_id": made["entity_id"], "room_id": made["room_ids"][0]}
    store = get_vector_store(settings)
    with engine.connect() as conn:
        outer = conn.begin()
        with Session(bind=conn, join_transaction_mode="create_savepoint") as session:
            ids = add_memories(session, _memories(parents, 2), _vectors(2, 11))
            session.commit()  # releases a savepoint; the outer transaction is still open
        assert store.count() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(VectorOutbox)).scalar() == 2
        outer.rollback()
    assert _markers(settings) == [] and store.count() == 0
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).where(Memory.id.in_(ids))).scalar() == 0


# --- ordering and concurrency ----------------------------------------------------------


def test_post_save_hooks_can_search_what_was_committed(api: Api, tmp_path: Path) -> None:
    settings = dbcore.Settings(
        database_url=f"sqlite:///{tmp_path / 'hooks.sqlite3'}",
        vector_backend="chroma",
        chroma=ChromaSettings(path=str(tmp_path / "chroma")),
    )
    parents = _migrate(settings)
    store = get_vector_store(settings)
    found: list[list[Any]] = []

    @dbcore.on_saved(MemoryEmbedding, actions=("insert",))
    def search(obj: MemoryEmbedding, action: str) -> None:
        found.append([m.id for m in store.query(_vectors(1, 12)[0], k=1)])

    try:
        memory_id = api.unit(settings, _adding_one(parents, _vectors(1, 12)[0]))
    finally:
        dbcore.events.remove_hooks(search)
    assert found == [[memory_id]]


class _CommitsMeanwhile(WrappedStore):
    """A real store whose first upsert lets another transaction change the memory and push first."""

    backend_name = "meanwhile"

    def __init__(self, inner: VectorStore, change: Callable[[], None]) -> None:
        super().__init__(inner)
        self.change: Callable[[], None] | None = change

    def _upsert(self, batch: Sequence[PreparedRecord]) -> None:
        if self.change is not None:
            change, self.change = self.change, None
            change()  # commits the newer state, whose own push reaches the store before ours
        self.inner._upsert(batch)


def test_crossing_pushes_keep_the_marker_of_the_older_state(
    pushed: tuple[dbcore.Settings, dict[str, Any]], store: VectorStore
) -> None:
    settings, parents = pushed
    dbcore.dispose_engines()  # the cached engine keeps the settings it was made with
    with dbcore.get_session(settings.replace(vector_push_on_commit=False)) as session:
        (memory_id,) = add_memories(session, _memories(parents, 1), _vectors(1, 13))
    dbcore.dispose_engines()
    newer = _vectors(1, 14)[0]

    def change() -> None:
        with dbcore.get_session(settings) as session:
            row = session.execute(sa.select(MemoryEmbedding).where(MemoryEmbedding.memory_id == memory_id)).scalar_one()
            row.embedding = newer

    engine = dbcore.get_engine(settings)
    with engine.connect() as conn:
        markers = conn.execute(sa.select(VectorOutbox.id, VectorOutbox.memory_id)).all()
    done = push_markers(engine, _CommitsMeanwhile(store, change), markers)
    assert done.upserted == 1 and done.markers_cleared == 0  # the state it sent is already old
    assert _markers(settings) == [str(memory_id)]
    assert vectorsync.sync(store, settings=settings).markers_cleared == 1
    np.testing.assert_allclose(store.get([memory_id])[0].vector, newer, atol=1e-5)


# --- the docs/vectors.md snippet and the command line ----------------------------------------


def test_readme_snippet(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'readme.sqlite3'}")
    monkeypatch.setenv("DBCORE_VECTOR_BACKEND", backend)
    monkeypatch.setenv("DBCORE_CHROMA_PATH", str(tmp_path / "chroma"))
    monkeypatch.delenv("DBCORE_CHROMA_HOST", raising=False)
    if backend == "pinecone":
        server: PineconeLocal = request.getfixturevalue("pinecone_server")
        monkeypatch.setenv("PINECONE_API_KEY", SECRET)
        monkeypatch.setenv("DBCORE_PINECONE_HOST", server.host)
        monkeypatch.setenv("DBCORE_PINECONE_NAMESPACE", f"readme-{next(_namespaces)}")
    parents = _migrate(dbcore.Settings.from_env())
    a, e, r = parents["agent_id"], parents["entity_id"], parents["room_id"]
    embeddings = _vectors(1, 15)
    query_emb = embeddings[0] + 0.01

    from dbcore import F, get_session, get_vector_store

    with get_session() as session:  # memories and their embeddings, one transaction
        ids = add_memories(
            session,
            [{"agent_id": a, "entity_id": e, "room_id": r, "kind": "message",
              "content": {"text": "hi"}, "metadata": {"lang": "en"}}],
            embeddings,
        )  # fmt: skip
        session.commit()

    store = get_vector_store(metadata_keys=["lang"])  # backend from DBCORE_VECTOR_BACKEND
    matches = store.query(
        query_emb, k=10, filter=(F("room_id") == r) & F("kind").in_(["message", "document"]), min_score=0.3
    )
    assert matches[0].id in ids  # uuid.UUID on both sides
    assert store.query(query_emb, k=1, filter=F("lang") == "en")[0].id == ids[0]


def test_cli_verify_after_commit_has_nothing_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    monkeypatch.setenv("DBCORE_VECTOR_BACKEND", "chroma")
    monkeypatch.setenv("DBCORE_CHROMA_PATH", str(tmp_path / "chroma"))
    monkeypatch.delenv("DBCORE_CHROMA_HOST", raising=False)
    parents = _migrate(dbcore.Settings.from_env())
    with dbcore.get_session() as session:
        add_memories(session, _memories(parents, 4), _vectors(4, 16))
    assert main(["vectors", "verify"]) == 0
    out = capsys.readouterr().out
    assert "pending 0" in out and "missing 0" in out, out
    assert main(["vectors", "sync"]) == 0
    assert "0 upserted" in capsys.readouterr().out
