"""The outbox keeps Chroma and Pinecone equal to the relational rows, whatever fails when.

Each fault-injection test writes or deletes memories on a real database (SQLite
here, the outbox-marker test runs on every live dialect, sync and async), makes the store fail
before, during (a partial batch) or after its step, or switches the Pinecone
server off, and checks two things: right after the failure every difference
between SQL and the store is covered by an outbox marker, and after a clean
``sync()`` the ids (and vectors) on both sides are equal with no marker left.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import dbcore
from dbcore import migrate, vectorsync
from dbcore.cli import main
from dbcore.DB_Memories import EMBEDDING_DIMS, Memory, MemoryEmbedding, VectorOutbox
from dbcore.errors import ForeignKeyViolation, ValidationError
from dbcore.memories import add_memories, delete_memories
from dbcore.testing import add_memory_parents
from dbcore.vector_changes import embedding_version
from dbcore.vectorstores.base import PreparedRecord, VectorStore
from tests.api_modes import Api
from tests.pinecone_local import PineconeLocal, running_index
from tests.wrapped_store import WrappedStore

DIMS = EMBEDDING_DIMS
N = 24


class StoreFault(ConnectionError):
    """What the injected faults raise."""


class FlakyStore(WrappedStore):
    """Wraps a real store; fails writes ``before``, ``during`` (half the batch written) or ``after`` the step."""

    backend_name = "flaky"

    def __init__(self, inner: VectorStore, fault: str) -> None:
        super().__init__(inner)
        self.fault = fault
        self.calls = 0

    def _write(self, items: Sequence[Any], step: Callable[[Sequence[Any]], None]) -> None:
        self.calls += 1
        if self.fault == "before":
            raise StoreFault("store refused the request")
        if self.fault == "during":
            step(items[: max(1, len(items) // 2)])
            raise StoreFault("connection reset in the middle of the batch")
        step(items)
        if self.fault == "after":
            raise StoreFault("the reply was lost after the store applied the write")

    def _upsert(self, batch: Sequence[PreparedRecord]) -> None:
        self._write(batch, self.inner._upsert)

    def _delete_ids(self, ids: Sequence[str]) -> None:
        self._write(ids, self.inner._delete_ids)


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pinecone_server() -> Iterator[PineconeLocal]:
    with running_index(DIMS) as server:
        yield server


_namespaces = itertools.count()


def _make_store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> VectorStore:
    if backend == "chroma":
        import chromadb

        from dbcore.vectorstores.chroma import ChromaVectorStore

        return ChromaVectorStore(chromadb.PersistentClient(path=str(tmp_path / "chroma")), DIMS)
    from pinecone import Pinecone

    from dbcore.vectorstores.pinecone import PineconeVectorStore

    server: PineconeLocal = request.getfixturevalue("pinecone_server")
    server.down = False
    index = Pinecone(api_key="test-key").Index(host=server.host)
    return PineconeVectorStore(index, DIMS, namespace=f"sync-{next(_namespaces)}")


@pytest.fixture(params=["chroma", "pinecone"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    made = _make_store(backend, request, tmp_path)
    yield made
    made.close()


def _prepare(settings: dbcore.Settings) -> tuple[Engine, dict[str, Any]]:
    migrate.upgrade(settings, "head")
    engine = dbcore.create_engine(settings)
    with Session(engine) as session:
        made = add_memory_parents(session, name="sync")
        session.commit()
    parents = {"agent_id": made["agent_id"], "entity_id": made["entity_id"], "room_id": made["room_ids"][0]}
    return engine, parents


@pytest.fixture
def db(backend: str, tmp_path: Path) -> Iterator[tuple[Engine, dict[str, Any]]]:
    # These tests drive sync() themselves: commits leave their markers (tests/test_vector_push.py covers the push).
    settings = dbcore.Settings(
        database_url=f"sqlite:///{tmp_path / 'sync.sqlite3'}", vector_backend=backend, vector_push_on_commit=False
    )
    engine, parents = _prepare(settings)
    yield engine, parents
    engine.dispose()


def _vectors(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, DIMS)).astype(np.float32)


def _add(engine: Engine, parents: dict[str, Any], count: int = N, seed: int = 1) -> list[uuid.UUID]:
    memories = [{**parents, "kind": "message", "content": {"i": i}, "metadata": {"i": i}} for i in range(count)]
    with Session(engine) as session:
        ids = add_memories(session, memories, _vectors(count, seed))
        session.commit()
    return ids


def _sql_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {str(i) for i in conn.execute(sa.select(MemoryEmbedding.memory_id)).scalars()}


def _version(engine: Engine) -> int:
    with engine.connect() as conn:
        return embedding_version(conn)


def _markers(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [str(i) for i in conn.execute(sa.select(VectorOutbox.memory_id)).scalars()]


def _assert_covered(engine: Engine, store: VectorStore) -> None:
    """Right after a failure: every difference between SQL and the store has a marker."""
    report = vectorsync.verify(store, engine=engine)
    assert report.ok, f"unrecorded drift: {report.drift}"


def _assert_equal_after_sync(engine: Engine, store: VectorStore) -> None:
    done = vectorsync.sync(store, engine=engine)
    assert done.ok, done.error
    assert set(store.ids()) == _sql_ids(engine)
    assert _markers(engine) == []
    report = vectorsync.verify(store, engine=engine)
    assert report.ok and not report.missing and not report.orphans and not report.pending


# --- the fault matrix ------------------------------------------------------------------

FAULTS = ["before", "during", "after", "down"]


def _flaky(backend: str, store: VectorStore, fault: str, request: pytest.FixtureRequest) -> VectorStore:
    if fault == "down":
        if backend == "pinecone":
            request.getfixturevalue("pinecone_server").down = True  # real 503s through the SDK
            return store
        return FlakyStore(store, "before")  # an embedded Chroma has no server to switch off
    return FlakyStore(store, fault)


def _heal(backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "pinecone":
        request.getfixturevalue("pinecone_server").down = False


@pytest.mark.parametrize("fault", FAULTS)
def test_write_with_failing_store(
    backend: str, store: VectorStore, db: tuple[Engine, dict[str, Any]], fault: str, request: pytest.FixtureRequest
) -> None:
    engine, parents = db
    ids = _add(engine, parents)
    assert sorted(_markers(engine)) == sorted(map(str, ids))  # committed with the rows
    flaky = _flaky(backend, store, fault, request)
    done = vectorsync.sync(flaky, engine=engine)
    assert not done.ok and done.error
    assert len(_markers(engine)) == N  # nothing cleared: the store's state is unknown
    _heal(backend, request)
    assert set(store.ids()) <= _sql_ids(engine)  # never a vector without its row
    _assert_covered(engine, store)
    _assert_equal_after_sync(engine, store)
    (record,) = store.get([ids[3]])
    np.testing.assert_allclose(record.vector, _vectors(N, 1)[3], atol=1e-6)
    assert record.metadata["room_id"] == parents["room_id"] and record.metadata["kind"] == "message"


@pytest.mark.parametrize("fault", FAULTS)
def test_delete_with_failing_store(
    backend: str, store: VectorStore, db: tuple[Engine, dict[str, Any]], fault: str, request: pytest.FixtureRequest
) -> None:
    engine, parents = db
    ids = _add(engine, parents)
    assert vectorsync.sync(store, engine=engine).ok
    with Session(engine) as session:
        assert delete_memories(session, ids[:6]) == 6
        session.commit()
    flaky = _flaky(backend, store, fault, request)
    done = vectorsync.sync(flaky, engine=engine)
    assert not done.ok
    _heal(backend, request)
    orphans = set(store.ids()) - _sql_ids(engine)
    assert orphans <= set(_markers(engine))  # a vector without its row is always recorded
    _assert_covered(engine, store)
    _assert_equal_after_sync(engine, store)
    assert store.get(ids[:6]) == []


@pytest.mark.parametrize("fault", ["before", "during", "after"])
def test_update_with_failing_store(
    backend: str, store: VectorStore, db: tuple[Engine, dict[str, Any]], fault: str
) -> None:
    engine, parents = db
    ids = _add(engine, parents)
    assert vectorsync.sync(store, engine=engine).ok
    new = _vectors(4, 99)
    with Session(engine) as session:  # ORM changes record markers in the same flush
        rows = session.execute(sa.select(MemoryEmbedding).where(MemoryEmbedding.memory_id.in_(ids[:4]))).scalars()
        by_memory = {row.memory_id: row for row in rows}
        for i in range(4):
            by_memory[ids[i]].embedding = new[i]
        session.commit()
    assert sorted(_markers(engine)) == sorted(map(str, ids[:4]))
    assert not vectorsync.sync(FlakyStore(store, fault), engine=engine).ok
    _assert_equal_after_sync(engine, store)
    for i, record in enumerate(store.get(ids[:4])):
        np.testing.assert_allclose(record.vector, new[i], atol=1e-6)


def test_query_and_get_ids_equal_add_memories_ids(store: VectorStore, db: tuple[Engine, dict[str, Any]]) -> None:
    """Synced memories come back from Chroma and Pinecone under their uuid.UUID ids (issue 16 #8)."""
    engine, parents = db
    ids = _add(engine, parents, count=5, seed=11)
    assert vectorsync.sync(store, engine=engine).ok
    matches = store.query(_vectors(5, 11)[2], k=3)
    assert matches[0].id == ids[2] and matches[0].id in ids
    assert all(isinstance(m.id, uuid.UUID) for m in matches)
    assert [r.id for r in store.get([ids[1], str(ids[3])])] == [ids[1], ids[3]]


def test_partial_batches_across_several_sync_batches(
    backend: str, store: VectorStore, db: tuple[Engine, dict[str, Any]]
) -> None:
    engine, parents = db
    _add(engine, parents, count=60)
    flaky = FlakyStore(store, "during")
    done = vectorsync.sync(flaky, engine=engine, batch_size=25)
    assert not done.ok and done.markers_cleared == 0
    flaky.fault = "none"
    assert vectorsync.sync(flaky, engine=engine, batch_size=25).markers_cleared == 60
    assert set(store.ids()) == _sql_ids(engine)


def test_failed_sql_transaction_writes_no_marker_and_no_vector(
    store: VectorStore, db: tuple[Engine, dict[str, Any]]
) -> None:
    engine, parents = db
    _add(engine, parents, count=3)
    bad = {**parents, "room_id": uuid.uuid4()}  # no such room
    with Session(engine) as session, pytest.raises(ForeignKeyViolation):
        add_memories(session, [{**parents, "kind": "message"}, {**bad, "kind": "message"}], _vectors(2, 5))
        session.commit()
    with Session(engine) as session, pytest.raises(ValidationError, match="kind"):
        add_memories(session, [{**parents, "kind": "no-such-kind"}], _vectors(1, 5))
    assert len(_markers(engine)) == 3 and len(_sql_ids(engine)) == 3
    _assert_equal_after_sync(engine, store)
    assert store.count() == 3


def test_orm_writes_and_bulk_deletes_record_markers(store: VectorStore, db: tuple[Engine, dict[str, Any]]) -> None:
    engine, parents = db
    with Session(engine) as session:
        memory = Memory(kind=dbcore.MemoryKind.MESSAGE, content={}, **parents)
        session.add(memory)
        session.flush()
        session.add(MemoryEmbedding(memory_id=memory.id, embedding=_vectors(1, 3)[0]))
        session.commit()
        memory_id = memory.id
    assert _markers(engine) == [str(memory_id)]
    with Session(engine) as session:  # a rolled-back change leaves no marker
        session.add(Memory(kind=dbcore.MemoryKind.MESSAGE, content={}, **parents))
        session.flush()
        session.rollback()
    assert _markers(engine) == [str(memory_id)]
    _assert_equal_after_sync(engine, store)
    with Session(engine) as session:  # a bulk DELETE names the rows it will remove
        session.execute(sa.delete(MemoryEmbedding).where(MemoryEmbedding.memory_id == memory_id))
        session.commit()
    assert _markers(engine) == [str(memory_id)]
    _assert_equal_after_sync(engine, store)
    assert store.count() == 0


def test_verify_reports_drift_and_reindex_repairs_it(store: VectorStore, db: tuple[Engine, dict[str, Any]]) -> None:
    engine, parents = db
    ids = _add(engine, parents)
    assert vectorsync.sync(store, engine=engine).ok
    store.delete(ids=[ids[0], ids[1]])  # lost behind dbcore's back
    store.upsert([("stray-vector", _vectors(1, 7)[0], {})])
    report = vectorsync.verify(store, engine=engine)
    assert not report.ok
    assert report.missing == sorted([str(ids[0]), str(ids[1])]) and report.orphans == ["stray-vector"]
    seen: list[tuple[int, int]] = []
    rebuilt = vectorsync.reindex(store, engine=engine, batch_size=10, progress=lambda d, t: seen.append((d, t)))
    assert rebuilt.upserted == N and rebuilt.orphans_deleted == 1
    assert seen[0] == (0, N) and seen[-1] == (N, N) and len(seen) == 1 + 3
    assert vectorsync.verify(store, engine=engine).ok and set(store.ids()) == _sql_ids(engine)


def test_cli_vectors_verify_sync_reindex(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("DBCORE_VECTOR_BACKEND", "chroma")
    monkeypatch.setenv("DBCORE_CHROMA_PATH", str(tmp_path / "chroma"))
    monkeypatch.delenv("DBCORE_CHROMA_HOST", raising=False)
    monkeypatch.setenv("DBCORE_VECTOR_PUSH_ON_COMMIT", "0")  # leave the markers for the commands to handle
    settings = dbcore.Settings.from_env()
    engine, parents = _prepare(settings)
    ids = _add(engine, parents, count=12)
    assert main(["vectors", "verify"]) == 0  # pending markers are not drift
    assert "pending 12" in capsys.readouterr().out
    assert main(["vectors", "sync"]) == 0
    assert "12 upserted" in capsys.readouterr().out
    store = dbcore.get_vector_store(settings)
    store.delete(ids=[ids[5]])
    assert main(["vectors", "verify"]) == 1
    out = capsys.readouterr().out
    assert f"drift: {ids[5]} missing from the store" in out
    assert main(["vectors", "reindex", "--batch-size", "5"]) == 0
    captured = capsys.readouterr()
    assert "12 upserted" in captured.out
    assert "reindex [" in captured.err and "100%  12/12" in captured.err
    assert main(["vectors", "verify"]) == 0
    engine.dispose()


def test_cli_vectors_integrated_has_nothing_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'i.sqlite3'}")
    monkeypatch.setenv("DBCORE_VECTOR_BACKEND", "integrated")
    migrate.upgrade(dbcore.Settings.from_env(), "head")
    assert main(["vectors", "sync"]) == 0
    assert "nothing to sync" in capsys.readouterr().out


# --- markers in the same transaction, on every live dialect ------------------------------


class Abandoned(Exception):
    """Raised inside a unit so that it rolls back."""


def test_outbox_markers_and_the_embedding_version_commit_and_roll_back_with_the_rows(
    api: Api, settings: dbcore.Settings
) -> None:
    """A unit's outbox markers and embedding version bump are in its transaction: a rolled-back
    unit leaves neither, a committed one has both (get_session and get_async_session)."""
    outboxed = settings.replace(vector_backend="chroma", vector_push_on_commit=False)
    engine, parents = _prepare(outboxed)
    try:
        ids = _add(engine, parents, count=5)
        assert sorted(_markers(engine)) == sorted(map(str, ids))
        start = _version(engine)
        inside: list[tuple[list[str], int]] = []  # what each unit saw in its own transaction

        def change(session: Session) -> None:
            add_memories(session, [{**parents, "kind": "document"}], _vectors(1, 2))
            delete_memories(session, ids[:2])
            session.flush()
            markers = session.execute(sa.select(VectorOutbox.memory_id)).scalars()
            inside.append((sorted(map(str, markers)), embedding_version(session.connection())))

        def change_then_fail(session: Session) -> None:
            change(session)
            raise Abandoned

        with pytest.raises(Abandoned):
            api.unit(outboxed, change_then_fail)
        [(markers, version)] = inside
        assert len(markers) == 5 + 3 and version > start  # written in the transaction...
        assert sorted(_markers(engine)) == sorted(map(str, ids)) and len(_sql_ids(engine)) == 5
        assert _version(engine) == start  # ...and rolled back with it

        api.unit(outboxed, change)
        [_, (markers, version)] = inside
        assert sorted(_markers(engine)) == markers and len(_sql_ids(engine)) == 5 - 2 + 1
        assert sorted(set(markers) - set(map(str, ids))) != [] and _version(engine) == version > start
    finally:
        engine.dispose()


@pytest.mark.parametrize("size", [0, -5, True, 2.5, "10"])
def test_batch_size_below_one_is_refused_before_any_work(
    store: VectorStore, db: tuple[Engine, dict[str, Any]], size: Any
) -> None:
    engine, _ = db
    for run in (vectorsync.sync, vectorsync.reindex):
        with pytest.raises(ValidationError, match="batch_size"):
            run(store, engine=engine, batch_size=size)
