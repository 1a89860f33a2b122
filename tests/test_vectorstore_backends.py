"""One behavioural suite for every vector store backend.

``STORE_FACTORIES`` maps a backend name to a function building an empty store; the
``store`` fixture is parametrized over its keys. To run the suite on another backend,
add an entry and a name to ``BACKENDS``.
Expected results come from an exact numpy cosine top-k over the same data and the
pure-Python filter evaluator.

The integrated backend runs on every live dialect (``integrated-<dialect>``). Its
records are memory embeddings: the suite's data set is written as memories (the
metadata becomes memory columns and ``memories.metadata``) whose ids are the
record ids, then the vectors are upserted. Every query test is the same for
every backend; the few write tests whose contract differs (the integrated store
takes no metadata and only ids of existing memories) say so.
"""

from __future__ import annotations

import itertools
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

import dbcore
from dbcore import migrate
from dbcore.config import ChromaSettings, PineconeSettings, Settings
from dbcore.DB_Memories import EMBEDDING_DIMS, Memory, MemoryEmbedding, MemoryKind
from dbcore.errors import ConfigurationError, DimensionMismatchError, ValidationError
from dbcore.memories import as_memory_kind
from dbcore.testing import TestServers, isolated_database
from dbcore.vectorstores import (
    And,
    F,
    Filter,
    Or,
    UnsupportedFilter,
    VectorStore,
    available_vector_stores,
    get_vector_store,
    register_vector_store,
    unregister_vector_store,
)
from tests.api_modes import MODES, drive_async
from tests.conftest import LIVE_DIALECTS, server_url
from tests.pinecone_local import PineconeLocal, running_index

DIMS = EMBEDDING_DIMS  # the integrated store holds memory_embeddings.embedding vectors
N = 300
METADATA_KEYS = ("priority", "lang", "pinned")
ROOMS = [uuid.UUID(int=0xA0 + i) for i in range(3)]
AGENTS = [uuid.UUID(f"00000000-0000-4000-8000-0000000000b{i}") for i in range(2)]
ENTITIES = [uuid.UUID(f"00000000-0000-4000-8000-0000000000e{i}") for i in range(2)]
KINDS = ["message", "document", "fragment"]
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


def _dataset() -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    rng = np.random.default_rng(1234)
    vectors = rng.normal(size=(N, DIMS))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors.astype(np.float32)
    ids = [str(uuid.UUID(int=10_000 + i)) for i in range(N)]
    metadata = []
    for i in range(N):
        meta: dict[str, Any] = {
            "room_id": ROOMS[i % 3],
            "agent_id": AGENTS[i % 2],
            "entity_id": ENTITIES[i % 2],
            "kind": KINDS[(i // 3) % 3],
            "created_at": T0 + timedelta(minutes=i),
            "priority": i % 10,
            "pinned": i % 4 == 0,
        }
        if i % 7:  # every seventh record has no "lang": ne/nin must still match it
            meta["lang"] = "en" if i % 2 else "fr"
        metadata.append(meta)
    return ids, vectors, metadata


IDS, VECTORS, METADATA = _dataset()


# --- backends -------------------------------------------------------------------------

StoreFactory = Callable[[pytest.FixtureRequest, Path], VectorStore]


@pytest.fixture(scope="session")
def pinecone_server() -> Iterator[PineconeLocal]:
    with running_index(DIMS) as server:
        yield server


def _chroma_store(request: pytest.FixtureRequest, tmp_path: Path) -> VectorStore:
    pytest.importorskip("chromadb")
    import chromadb

    from dbcore.vectorstores.chroma import ChromaVectorStore

    return ChromaVectorStore(
        chromadb.PersistentClient(path=str(tmp_path / "chroma")), DIMS, metadata_keys=METADATA_KEYS
    )


_namespaces = itertools.count()


def _pinecone_store(request: pytest.FixtureRequest, tmp_path: Path) -> VectorStore:
    pytest.importorskip("pinecone")
    from pinecone import Pinecone

    from dbcore.vectorstores.pinecone import PineconeVectorStore

    server: PineconeLocal = request.getfixturevalue("pinecone_server")
    index = Pinecone(api_key="test-key").Index(host=server.host)
    return PineconeVectorStore(index, DIMS, namespace=f"test-{next(_namespaces)}", metadata_keys=METADATA_KEYS)


def _integrated_store(dialect: str) -> StoreFactory:
    def factory(request: pytest.FixtureRequest, tmp_path: Path) -> VectorStore:
        from dbcore.vectorstores.integrated import IntegratedVectorStore, clear_matrix_cache

        engine = request.getfixturevalue("integrated_engines")(dialect)
        with engine.begin() as conn:  # a clean slate: no memories, no embeddings
            if dialect.startswith("postgresql"):
                conn.exec_driver_sql("TRUNCATE memory_embeddings, memories")  # and a fresh HNSW graph
            else:
                conn.execute(MemoryEmbedding.__table__.delete())
                conn.execute(Memory.__table__.delete())
        clear_matrix_cache()
        # ef_search covers the whole data set, so pgvector's HNSW answers exactly here.
        return IntegratedVectorStore(engine, DIMS, metadata_keys=METADATA_KEYS, ef_search=1000)

    return factory


@pytest.fixture(scope="module")
def integrated_engines(
    servers: TestServers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Engine]]:
    """One migrated database per dialect, with the agents, entities and rooms the data set names."""
    made: dict[str, Engine] = {}
    stack = ExitStack()

    def get(dialect: str) -> Engine:
        if dialect not in made:
            if dialect == "sqlite":
                url = make_url(f"sqlite:///{tmp_path_factory.mktemp('integrated') / 'store.sqlite3'}")
            else:
                url = stack.enter_context(isolated_database(server_url(servers, dialect)))
            settings = Settings(database_url=url.render_as_string(hide_password=False))
            migrate.upgrade(settings, "head")
            engine = dbcore.create_engine(settings)
            stack.callback(engine.dispose)
            _add_parents(engine)
            made[dialect] = engine
        return made[dialect]

    with stack:
        yield get


def _add_parents(engine: Engine) -> None:
    with Session(engine) as session:
        for agent_id, entity_id in zip(AGENTS, ENTITIES, strict=True):
            session.add(dbcore.Agent(id=agent_id, name=f"agent {agent_id}"))
            session.flush()
            session.add(dbcore.Entity(id=entity_id, agent_id=agent_id))
        session.add_all(dbcore.Room(id=room_id, kind=dbcore.RoomKind(1)) for room_id in ROOMS)
        session.commit()


def _write_memories(engine: Engine, ids: dict[str, int]) -> None:
    """Write memories (no embeddings) with the metadata of data-set rows: ``{memory id: row}``."""
    rows = []
    for memory_id, i in ids.items():
        meta = dict(METADATA[i])
        fields = {key: meta.pop(key) for key in ("agent_id", "entity_id", "room_id", "kind", "created_at")}
        fields["kind"] = as_memory_kind(fields["kind"])
        rows.append({"id": uuid.UUID(memory_id), **fields, "metadata": meta, "content": {"i": i}})
    with Session(engine) as session:
        session.execute(Memory.__table__.insert(), rows)
        session.commit()


def _load(store: VectorStore) -> None:
    from dbcore.vectorstores.integrated import IntegratedVectorStore

    if isinstance(store, IntegratedVectorStore):
        _write_memories(store.engine, {memory_id: i for i, memory_id in enumerate(IDS)})
        assert store.upsert(list(zip(IDS, VECTORS, strict=True))) == N
    else:
        records = [{"id": i, "vector": v, "metadata": m} for i, v, m in zip(IDS, VECTORS, METADATA, strict=True)]
        assert store.upsert(records) == N


INTEGRATED = [f"integrated-{name}" for name in LIVE_DIALECTS]
STORE_FACTORIES: dict[str, StoreFactory] = {
    "chroma": _chroma_store,
    "pinecone": _pinecone_store,
    **{f"integrated-{name}": _integrated_store(name) for name in LIVE_DIALECTS},
}
_BACKEND_MARKS = {f"integrated-{name}": getattr(pytest.mark, name.split("_")[0]) for name in LIVE_DIALECTS}
BACKENDS = [
    pytest.param(name, marks=_BACKEND_MARKS.get(name, ()), id=name) for name in ["chroma", "pinecone", *INTEGRATED]
]


@pytest.fixture(params=MODES)
def store_mode(request: pytest.FixtureRequest) -> str:
    """``sync``: the store's methods; ``async``: every call goes through its ``a*`` twin on an event loop."""
    return str(request.param)


@pytest.fixture(params=BACKENDS)
def empty_store(request: pytest.FixtureRequest, tmp_path: Path, store_mode: str) -> Iterator[VectorStore]:
    store = STORE_FACTORIES[request.param](request, tmp_path)
    if store_mode == "sync":
        yield store
        store.close()
        return
    loop = request.getfixturevalue("aio")
    yield drive_async(store, loop)
    loop.run(store.aclose())


@pytest.fixture
def store(empty_store: VectorStore) -> VectorStore:
    _load(empty_store)
    assert empty_store.count() == N
    return empty_store


# --- the reference ---------------------------------------------------------------------


def expected(
    query: np.ndarray, k: int, flt: Filter | None = None, min_score: float | None = None
) -> list[tuple[str, float]]:
    q = np.asarray(query, dtype=np.float64)
    data = VECTORS.astype(np.float64)
    scores = data @ q / (np.linalg.norm(data, axis=1) * np.linalg.norm(q))
    rows = [
        (IDS[i], float(scores[i]))
        for i in range(N)
        if (flt is None or flt.matches(METADATA[i])) and (min_score is None or scores[i] >= min_score)
    ]
    rows.sort(key=lambda r: (-r[1], r[0]))
    return rows[:k]


def assert_same(got: list[Any], want: list[tuple[str, float]]) -> None:
    assert [str(m.id) for m in got] == [w[0] for w in want]
    np.testing.assert_allclose([m.score for m in got], [w[1] for w in want], atol=1e-5)


def _query_vector(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=DIMS)


FILTERS: dict[str, Any] = {
    "eq-uuid": F("room_id") == ROOMS[1],
    "eq-str-uuid": F("agent_id") == str(AGENTS[0]).upper(),
    "eq-bool": F("pinned") == True,  # noqa: E712 - builds a condition
    "ne": F("kind") != "document",
    "ne-missing-field": F("lang") != "en",
    "gt": F("priority") > 6,
    "gte-fractional": F("priority") >= 3.5,
    "gte-datetime": F("created_at") >= T0 + timedelta(minutes=200),
    "lt": F("priority") < 2,
    "lte-datetime": F("created_at") <= T0 + timedelta(minutes=50),
    "in": F("kind").in_(["fragment", "document"]),
    "in-uuid": F("room_id").in_([ROOMS[0], ROOMS[2]]),
    "nin": F("priority").nin([0, 1, 2, 3]),
    "nin-missing-field": F("lang").nin(["fr"]),
    "and": (F("kind") == "message") & (F("priority") >= 5),
    "or": Or(F("kind") == "fragment", F("room_id") == ROOMS[0]),
    "and-or": And(Or(F("priority") < 3, F("priority") > 7), F("agent_id") == AGENTS[1], F("lang") == "en"),
    "single-child-and": And(F("kind") == "document"),
    "eq-kind-member": F("kind") == MemoryKind.DOCUMENT,
    "nin-kind-member": F("kind").nin([MemoryKind.MESSAGE, "fragment"]),
    "world-ne-null-field": F("world_id") != uuid.UUID(int=1),
    "dict-implicit-eq": {"kind": "document", "room_id": str(ROOMS[2])},
    "dict-ops": {"$or": [{"priority": {"$gte": 8}}, {"created_at": {"$lt": T0 + timedelta(minutes=10)}}]},
    "dict-range": {"priority": {"$gt": 2, "$lte": 4}},
}


def test_query_without_filter(store: VectorStore) -> None:
    for seed in range(3):
        q = _query_vector(seed)
        assert_same(store.query(q, k=10), expected(q, 10))


@pytest.mark.parametrize("name", list(FILTERS))
def test_query_with_filter(store: VectorStore, name: str) -> None:
    flt = Filter.parse(FILTERS[name])
    q = _query_vector(7)
    want = expected(q, 15, flt)
    assert want, "the filter should match something"
    assert_same(store.query(q, k=15, filter=FILTERS[name]), want)


@pytest.mark.parametrize("min_score", [-1.0, 0.0, 0.3, 0.6, 0.99])
def test_min_score(store: VectorStore, min_score: float) -> None:
    noise = _query_vector(3)
    q = VECTORS[5] + 0.4 * (noise / np.linalg.norm(noise)).astype(np.float32)
    got = store.query(q, k=50, min_score=min_score)
    assert_same(got, expected(q, 50, min_score=min_score))
    assert all(m.score >= min_score for m in got)


def test_min_score_with_filter(store: VectorStore) -> None:
    q = _query_vector(11)
    flt = F("kind") == "fragment"
    assert_same(store.query(q, k=20, filter=flt, min_score=0.05), expected(q, 20, flt, 0.05))


def test_k_larger_than_matches(store: VectorStore) -> None:
    flt = (F("priority") == 3) & (F("room_id") == ROOMS[0])
    q = _query_vector(2)
    want = expected(q, 1000, flt)
    assert 0 < len(want) < 20
    assert_same(store.query(q, k=1000, filter=flt), want)


def test_scores_are_cosine_similarity(store: VectorStore) -> None:
    best = store.query(VECTORS[42] * 3.0, k=1)[0]  # scaling does not change cosine
    assert best.id == uuid.UUID(IDS[42])
    assert best.score == pytest.approx(1.0, abs=1e-5)
    worst = store.query(-VECTORS[42], k=N)[-1]
    assert worst.id == uuid.UUID(IDS[42])
    assert worst.score == pytest.approx(-1.0, abs=1e-5)


def test_query_returns_decoded_metadata(store: VectorStore) -> None:
    match = store.query(VECTORS[9], k=1)[0]
    assert match.id == uuid.UUID(IDS[9])
    assert match.metadata is not None
    assert match.metadata["room_id"] == ROOMS[0]
    assert match.metadata["created_at"] == METADATA[9]["created_at"]


def test_get_round_trips_vectors_and_metadata(store: VectorStore) -> None:
    wanted = [IDS[3], uuid.UUID(IDS[7]), "missing-id", IDS[1]]
    records = store.get(wanted)
    assert [str(r.id) for r in records] == [IDS[3], IDS[7], IDS[1]]
    for record, index in zip(records, (3, 7, 1), strict=True):
        np.testing.assert_allclose(record.vector, VECTORS[index], atol=1e-6)
        assert record.metadata == METADATA[index]
    assert store.get([]) == []


def test_ids_lists_every_record(store: VectorStore) -> None:
    assert sorted(store.ids()) == sorted(IDS)
    store.delete(ids=IDS[:5])
    assert sorted(store.ids()) == sorted(IDS[5:])


def test_delete_by_ids(store: VectorStore) -> None:
    store.delete(ids=IDS[:10] + [str(uuid.UUID(int=1))])  # a UUID never stored is no error
    assert store.count() == N - 10
    assert store.get(IDS[:10]) == []
    assert uuid.UUID(IDS[0]) not in {m.id for m in store.query(VECTORS[0], k=5)}


def test_delete_by_filter(store: VectorStore) -> None:
    flt = (F("kind") == "document") | (F("priority") == 9)
    doomed = {IDS[i] for i in range(N) if flt.matches(METADATA[i])}
    store.delete(filter=flt)
    assert store.count() == N - len(doomed)
    assert store.get(sorted(doomed)) == []
    q = _query_vector(5)
    assert_same(store.query(q, k=10), [w for w in expected(q, N) if w[0] not in doomed][:10])
    # The integrated store keeps the memories: a filter matching only them finds no vectors.
    assert store.query(q, k=10, filter=flt) == []


def test_delete_needs_ids_or_filter(store: VectorStore) -> None:
    with pytest.raises(ValidationError):
        store.delete()
    assert store.count() == N


def _integrated(store: VectorStore) -> bool:
    return store.backend_name == "integrated"


def test_upsert_overwrites_the_vector(store: VectorStore) -> None:
    new_vector = -VECTORS[0]
    store.upsert([(IDS[0], new_vector)])
    assert store.count() == N
    (record,) = store.get([IDS[0]])
    np.testing.assert_allclose(record.vector, new_vector, atol=1e-6)
    assert [str(m.id) for m in store.query(new_vector, k=1)] == [IDS[0]]


def test_upsert_overwrites_metadata(store: VectorStore) -> None:
    """External stores replace a record's metadata; the integrated store refuses it (it lives on the Memory)."""
    new_vector = -VECTORS[0]
    if _integrated(store):
        with pytest.raises(ValidationError, match="metadata from the memory row"):
            store.upsert([(IDS[0], new_vector, {"kind": "fragment", "priority": 99})])
        (record,) = store.get([IDS[0]])
        np.testing.assert_allclose(record.vector, VECTORS[0], atol=1e-6)
        assert record.metadata == METADATA[0]
        return
    store.upsert([(IDS[0], new_vector, {"kind": "fragment", "priority": 99})])
    assert store.count() == N
    (record,) = store.get([IDS[0]])
    np.testing.assert_allclose(record.vector, new_vector, atol=1e-6)
    assert record.metadata == {"kind": "fragment", "priority": 99}
    assert [str(m.id) for m in store.query(new_vector, k=1, filter=F("priority") == 99)] == [IDS[0]]


def test_upsert_accepts_uuid_ids_and_tuples(empty_store: VectorStore) -> None:
    rid = uuid.UUID("6F2A0D3C-1B2A-4C5D-8E9F-0A1B2C3D4E5F")
    other = str(uuid.UUID(int=5))
    if _integrated(empty_store):
        with pytest.raises(ValidationError, match="no memory with id"):
            empty_store.upsert([(rid, VECTORS[0]), (other, VECTORS[1].tolist(), None)])
        assert empty_store.count() == 0
        _write_memories(empty_store.engine, {str(rid): 0, other: 1})  # type: ignore[attr-defined]
    assert empty_store.upsert([(rid, VECTORS[0]), (other, VECTORS[1].tolist(), None)]) == 2
    # one id type: what was written as a UUID comes back as that uuid.UUID, asked for either way
    assert [r.id for r in empty_store.get([rid, other])] == [rid, uuid.UUID(other)]
    matches = empty_store.query(VECTORS[0], k=2)
    assert matches[0].id == rid and all(isinstance(m.id, uuid.UUID) for m in matches)
    assert matches[0].id in [rid, uuid.UUID(other)]


def test_integrated_ids_must_be_memory_ids(empty_store: VectorStore) -> None:
    if not _integrated(empty_store):
        pytest.skip("only the integrated store ties record ids to memories")
    with pytest.raises(ValidationError, match="not a memory id"):
        empty_store.upsert([("fresh-1", VECTORS[0])])
    assert empty_store.count() == 0


def test_dimension_mismatch_on_upsert_writes_nothing(store: VectorStore) -> None:
    batch = [("fresh-1", VECTORS[0], {}), ("fresh-2", np.ones(DIMS + 1), {})]
    with pytest.raises(DimensionMismatchError, match=f"{DIMS + 1} values"):
        store.upsert(batch)
    assert store.count() == N
    assert store.get(["fresh-1"]) == []


def test_dimension_mismatch_on_query(store: VectorStore) -> None:
    with pytest.raises(DimensionMismatchError):
        store.query(np.ones(DIMS - 1))
    assert store.count() == N


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param([float("nan")] * DIMS, id="nan"),
        pytest.param([1.0] * (DIMS - 1) + [float("inf")], id="inf"),
        pytest.param([], id="empty"),
        pytest.param(["a"] * DIMS, id="strings"),
        pytest.param([0.0] * DIMS, id="zeros"),
        pytest.param(None, id="none"),
    ],
)
def test_invalid_vectors_write_nothing(store: VectorStore, bad: Any) -> None:
    with pytest.raises(ValidationError):
        store.upsert([("fresh", VECTORS[0], {}), ("bad", bad, {})])
    with pytest.raises(ValidationError):
        store.query(bad)
    assert store.count() == N
    assert store.get(["fresh"]) == []


def test_invalid_metadata_writes_nothing(store: VectorStore) -> None:
    with pytest.raises(ValidationError):
        store.upsert([("fresh", VECTORS[0], {}), ("bad", VECTORS[1], {"room_id": "not-a-uuid"})])
    with pytest.raises(ValidationError):
        store.upsert([("bad", VECTORS[1], {"$where": 1})])
    assert store.count() == N


def test_unsupported_filter_is_refused(store: VectorStore) -> None:
    with pytest.raises(UnsupportedFilter, match="numbers"):
        store.query(VECTORS[0], filter=F("kind") > "document")
    with pytest.raises(UnsupportedFilter):
        store.delete(filter=F("lang") <= "en")
    assert store.count() == N


def test_unknown_filter_field_is_refused(store: VectorStore) -> None:
    with pytest.raises(ValidationError, match="undeclared"):
        store.query(VECTORS[0], filter={"undeclared": 1})


def test_bad_query_arguments(store: VectorStore) -> None:
    for k in (0, -1, 1.5, True):
        with pytest.raises(ValidationError):
            store.query(VECTORS[0], k=k)
    with pytest.raises(ValidationError):
        store.query(VECTORS[0], min_score=float("nan"))


#: Text that looks like SQL injection, sent where a caller's text reaches a store.
INJECTION = "x'; DROP TABLE memories; --"
KIND_NAMES = "message, document, fragment, description, custom"


def test_k_has_one_upper_bound(store: VectorStore) -> None:
    """Every backend takes k up to Pinecone's own top_k limit, and refuses more before querying."""
    for k in (10_001, 10**12, 2**64):
        with pytest.raises(ValidationError, match=rf"k={k} .*at most 10000\b"):
            store.query(VECTORS[0], k=k)
    assert len(store.query(VECTORS[0], k=10_000, include_metadata=False)) == N


def test_min_score_is_a_cosine_similarity(store: VectorStore) -> None:
    """Every backend scores by cosine similarity, so a min_score outside [-1, 1] is a mistake, not a filter."""
    for bad in (1.5, -2, 1.0001, -1.0001, float("-inf")):
        with pytest.raises(ValidationError, match=r"min_score=.*-1 to 1"):
            store.query(VECTORS[0], min_score=bad)
    assert [str(m.id) for m in store.query(VECTORS[4], k=1, min_score=0.999)] == [IDS[4]]
    assert len(store.query(VECTORS[4], k=N, min_score=-1)) == N


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(F("kind") == INJECTION, id="eq-injection"),
        pytest.param({"kind": {"$ne": "fact"}}, id="ne-unknown"),
        pytest.param(F("kind").nin(["message", "no-such-kind"]), id="nin-unknown"),
        pytest.param(Or(F("priority") == 4, F("kind").in_(["MESSAGE"])), id="in-upper-case"),
        pytest.param(F("kind") == 1, id="eq-number"),
    ],
)
def test_kind_filter_must_name_a_memory_kind(store: VectorStore, spec: Any) -> None:
    """A kind that no memory can have would match nothing (or, negated, everything): refused on every backend."""
    with pytest.raises(ValidationError, match=f"kind.*{KIND_NAMES}"):
        store.query(VECTORS[0], filter=spec)
    with pytest.raises(ValidationError, match=f"kind.*{KIND_NAMES}"):
        store.delete(filter=spec)
    assert store.count() == N


def test_delete_refuses_ids_upsert_refuses(store: VectorStore) -> None:
    """delete refuses an id the store could never hold rather than skip it; ids it can hold are deleted.

    The integrated store holds memory ids (UUIDs) only. Chroma and Pinecone hold any text id
    (``vectors reindex`` deletes stray ids others wrote there), so there it must stay deletable.
    """
    long_bad = INJECTION + " " + "x" * 200
    if _integrated(store):
        for bad in (INJECTION, long_bad):
            with pytest.raises(ValidationError, match="not a memory id") as caught:
                store.delete(ids=[IDS[0], bad])
            assert long_bad not in str(caught.value) and len(str(caught.value)) < 200
        assert store.count() == N
        assert [str(r.id) for r in store.get([IDS[0]])] == [IDS[0]]
        return
    store.upsert([(INJECTION, VECTORS[0], {})])
    store.delete(ids=[INJECTION, IDS[0]])
    assert store.get([INJECTION, IDS[0]]) == [] and store.count() == N - 1


def test_empty_store(empty_store: VectorStore) -> None:
    assert empty_store.count() == 0
    assert empty_store.query(VECTORS[0], k=5) == []
    assert empty_store.get([IDS[0]]) == []
    assert empty_store.upsert([]) == 0


def test_health(store: VectorStore) -> None:
    health = store.health()
    assert health.ok and health.count == N and health.dims == DIMS
    assert health.as_dict()["backend"] == store.backend_name


# --- registry -----------------------------------------------------------------------


def _settings(backend: str = "chroma") -> Settings:
    return Settings(database_url="sqlite:///:memory:", vector_backend=backend, vector_dims=DIMS)


def test_get_vector_store_chroma_from_settings(tmp_path: Path) -> None:
    pytest.importorskip("chromadb")
    chroma = ChromaSettings(path=str(tmp_path / "c"), collection="from-settings")
    store = get_vector_store(_settings("chroma").replace(chroma=chroma))
    assert type(store).__name__ == "ChromaVectorStore" and store.dims == DIMS
    assert "from-settings" in repr(store)


def test_chroma_and_pinecone_settings_come_from_the_environment(tmp_path: Path) -> None:
    env = {
        "DBCORE_CHROMA_PATH": str(tmp_path / "c"),
        "DBCORE_CHROMA_COLLECTION": "from-env",
        "PINECONE_API_KEY": "secret-test-key",
        "DBCORE_PINECONE_HOST": "127.0.0.1:1",
        "DBCORE_PINECONE_NAMESPACE": "registry",
    }
    settings = Settings.from_env(env)
    assert settings.chroma == ChromaSettings(path=str(tmp_path / "c"), collection="from-env")
    assert settings.pinecone == PineconeSettings(api_key="secret-test-key", host="127.0.0.1:1", namespace="registry")
    assert "secret-test-key" not in repr(settings) + repr(settings.pinecone)


def test_get_vector_store_pinecone_from_settings(pinecone_server: PineconeLocal) -> None:
    pytest.importorskip("pinecone")
    pinecone = PineconeSettings(api_key="secret-test-key", host=pinecone_server.host, namespace="registry")
    store = get_vector_store(_settings("pinecone").replace(pinecone=pinecone), metadata_keys=["priority"])
    assert store.upsert([("a", VECTORS[0], {"priority": 1})]) == 1
    assert store.count() == 1
    assert "secret-test-key" not in repr(store)


def test_pinecone_needs_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="PINECONE_API_KEY"):
        get_vector_store(_settings("pinecone"))


def test_get_vector_store_integrated_from_settings(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'i.sqlite3'}", vector_backend="integrated", vector_dims=DIMS
    )
    migrate.upgrade(settings, "head")
    store = get_vector_store(settings, metadata_keys=["priority"])
    assert type(store).__name__ == "IntegratedVectorStore" and store.dims == DIMS
    assert store.count() == 0 and store.health().ok


def test_integrated_dims_must_match_the_column(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'i.sqlite3'}", vector_dims=DIMS + 1)
    with pytest.raises(DimensionMismatchError, match=f"{DIMS + 1}-dimensional"):
        get_vector_store(settings)


def test_register_vector_store(tmp_path: Path) -> None:
    from dbcore.vectorstores.chroma import ChromaVectorStore

    pytest.importorskip("chromadb")
    import chromadb

    made: list[Settings] = []

    def factory(settings: Settings, **kwargs: Any) -> VectorStore:
        made.append(settings)
        return ChromaVectorStore(chromadb.PersistentClient(path=str(tmp_path)), settings.vector_dims, **kwargs)

    register_vector_store("custom-test", factory)
    try:
        with pytest.raises(ConfigurationError, match="already registered"):
            register_vector_store("custom-test", factory)
        assert "custom-test" in available_vector_stores()
        store = get_vector_store(_settings(), backend="custom-test", collection="custom")
        assert isinstance(store, ChromaVectorStore) and made
    finally:
        unregister_vector_store("custom-test")
    with pytest.raises(ConfigurationError, match="no vector store named 'custom-test'"):
        get_vector_store(_settings(), backend="custom-test")


def test_entry_point_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ep_store_plugin.py").write_text(
        "from dbcore.vectorstores.chroma import ChromaVectorStore\n"
        "import chromadb\n"
        "def make(settings, **kw):\n"
        "    return ChromaVectorStore(chromadb.EphemeralClient(), settings.vector_dims, collection='ep-test')\n"
        "def broken(settings, **kw):\n"
        "    return object()\n"
    )
    dist = tmp_path / "ep_store_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-store-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[dbcore.vector_stores]\nep-test = ep_store_plugin:make\nep-broken = ep_store_plugin:broken\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ep_store_plugin", raising=False)
    assert {"ep-test", "ep-broken"} <= set(available_vector_stores())
    store = get_vector_store(_settings(), backend="ep-test")
    assert store.dims == DIMS
    with pytest.raises(ConfigurationError, match="not a VectorStore"):
        get_vector_store(_settings(), backend="ep-broken")
