"""The integrated store's own guarantees, on every live dialect.

- The numpy path's per-process matrix cache never serves stale results: writes by
  another process, another engine, ORM flushes, Core statements and bulk ORM
  statements all bump the version counter in their transaction; a rollback does not
  (for the units of get_session and get_async_session alike).
- pgvector: the HNSW index is used, and a selective filter still returns k rows.
- Bulk writes validate everything first and write nothing on bad input.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import dbcore
from dbcore.DB_Memories import EMBEDDING_DIMS, Memory, MemoryEmbedding
from dbcore.errors import DimensionMismatchError, ValidationError
from dbcore.memories import add_memories
from dbcore.testing import add_memory_parents
from dbcore.vector_changes import embedding_version
from dbcore.vectorstores import F, integrated
from dbcore.vectorstores.integrated import IntegratedVectorStore, clear_matrix_cache
from tests.api_modes import Api, LoopRunner

DIMS = EMBEDDING_DIMS


@pytest.fixture
def ready(migrated: dbcore.Settings) -> Iterator[tuple[dbcore.Settings, Engine, dict[str, Any]]]:
    engine = dbcore.create_engine(migrated)
    with Session(engine) as session:
        made = add_memory_parents(session, rooms=4, name="integrated")
        session.commit()
    parents = {"agent_id": made["agent_id"], "entity_id": made["entity_id"], "rooms": made["room_ids"]}
    clear_matrix_cache()
    yield migrated, engine, parents
    engine.dispose()


def _vectors(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, DIMS)).astype(np.float32)


def _adding(
    parents: dict[str, Any], vectors: np.ndarray, room: int | None = None
) -> Callable[[Session], list[uuid.UUID]]:
    """A unit of work that adds one memory per vector (to room ``room``, or spread over the rooms)."""
    rooms = parents["rooms"]
    memories = [
        {
            "agent_id": parents["agent_id"],
            "entity_id": parents["entity_id"],
            "room_id": rooms[room if room is not None else i % len(rooms)],
            "kind": "message",
        }
        for i in range(len(vectors))
    ]
    return lambda session: add_memories(session, memories, vectors)


def _add(engine: Engine, parents: dict[str, Any], vectors: np.ndarray, room: int | None = None) -> list[uuid.UUID]:
    with Session(engine) as session:
        ids = _adding(parents, vectors, room)(session)
        session.commit()
    return ids


def _exact(vectors: np.ndarray, ids: list[uuid.UUID], query: np.ndarray, k: int) -> list[uuid.UUID]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = unit @ (query / np.linalg.norm(query))
    return [ids[i] for i in np.argsort(-scores, kind="stable")[:k]]


def _version(engine: Engine) -> int:
    with engine.connect() as conn:
        return embedding_version(conn)


def test_search_path_per_dialect(ready: tuple[dbcore.Settings, Engine, dict[str, Any]], dialect: str) -> None:
    _, engine, _ = ready
    store = IntegratedVectorStore(engine)
    assert store.search_path == ("pgvector" if dialect == "postgresql" else "numpy")
    assert store.health().detail["search"] == store.search_path


@pytest.mark.parametrize("search", ["numpy", "pgvector"])
def test_query_and_get_ids_equal_add_memories_ids(
    ready: tuple[dbcore.Settings, Engine, dict[str, Any]], dialect: str, search: str
) -> None:
    """add_memories returns uuid.UUID ids; the store's matches and records carry the same ids (issue 16 #8)."""
    if search == "pgvector" and dialect != "postgresql":
        pytest.skip("pgvector search needs PostgreSQL with the extension")
    _, engine, parents = ready
    vectors = _vectors(5, 11)
    ids = _add(engine, parents, vectors)
    store = IntegratedVectorStore(engine, search=search)
    matches = store.query(vectors[2], k=3)
    assert matches[0].id == ids[2] and matches[0].id in ids
    assert all(isinstance(m.id, uuid.UUID) for m in matches)
    assert [r.id for r in store.get([ids[1], str(ids[3])])] == [ids[1], ids[3]]


class Abandoned(Exception):
    """Raised inside a unit so that it rolls back."""


def test_every_kind_of_write_bumps_the_version(api: Api, ready: tuple[dbcore.Settings, Engine, dict[str, Any]]) -> None:
    settings, engine, parents = ready
    start = _version(engine)
    ids = api.unit(settings, _adding(parents, _vectors(3, 1)))
    after_add = _version(engine)
    assert after_add > start

    def embedding_of(session: Session, memory_id: uuid.UUID) -> MemoryEmbedding:
        return session.execute(sa.select(MemoryEmbedding).where(MemoryEmbedding.memory_id == memory_id)).scalar_one()

    def orm_flush(session: Session) -> None:
        embedding_of(session, ids[0]).embedding = _vectors(1, 2)[0]

    api.unit(settings, orm_flush)
    after_orm = _version(engine)
    assert after_orm > after_add
    api.unit(  # bulk ORM statement
        settings,
        lambda session: session.execute(
            sa.update(MemoryEmbedding).where(MemoryEmbedding.memory_id == ids[1]).values(model="m2")
        ),
    )
    after_bulk = _version(engine)
    assert after_bulk > after_orm
    with engine.begin() as conn:  # Core statement
        conn.execute(MemoryEmbedding.__table__.delete().where(MemoryEmbedding.__table__.c.memory_id == ids[2]))
    after_core = _version(engine)
    assert after_core > after_bulk

    def rolled_back(session: Session) -> None:
        embedding_of(session, ids[0]).embedding = _vectors(1, 3)[0]
        session.flush()
        assert embedding_version(session.connection()) > after_core  # bumped in the unit's transaction
        raise Abandoned

    with pytest.raises(Abandoned):  # a rolled-back unit leaves the counter alone
        api.unit(settings, rolled_back)
    assert _version(engine) == after_core


def test_cache_sees_writes_from_another_engine(ready: tuple[dbcore.Settings, Engine, dict[str, Any]]) -> None:
    settings, engine, parents = ready
    first = _vectors(40, 4)
    ids = _add(engine, parents, first)
    store = IntegratedVectorStore(engine, search="numpy")
    query = first[7]
    assert store.query(query, k=1)[0].id == ids[7]  # the matrix is cached now
    other = dbcore.create_engine(settings)
    try:
        with Session(other) as session:  # another engine: its own pool and connections
            row = session.execute(sa.select(MemoryEmbedding).where(MemoryEmbedding.memory_id == ids[7])).scalar_one()
            row.embedding = -query
            session.commit()
        newcomer = _add(other, parents, query[None, :] * 2.0)
    finally:
        other.dispose()
    got = store.query(query, k=2)
    assert got[0].id == newcomer[0] and got[0].score == pytest.approx(1.0, abs=1e-5)
    assert ids[7] not in {m.id for m in got}
    assert store.query(-query, k=1)[0].id == ids[7]


def test_cache_sees_writes_from_another_process(ready: tuple[dbcore.Settings, Engine, dict[str, Any]]) -> None:
    settings, engine, parents = ready
    vectors = _vectors(30, 5)
    ids = _add(engine, parents, vectors)
    store = IntegratedVectorStore(engine, search="numpy")
    assert store.query(vectors[3], k=1)[0].id == ids[3]
    script = textwrap.dedent(
        """
        import sys, uuid
        import sqlalchemy as sa
        import dbcore
        from dbcore.DB_Memories import MemoryEmbedding
        engine = dbcore.create_engine(dbcore.Settings(database_url=sys.argv[1]))
        with engine.begin() as conn:
            conn.execute(sa.delete(MemoryEmbedding.__table__).where(MemoryEmbedding.__table__.c.memory_id == uuid.UUID(sys.argv[2])))
        """
    )
    url = settings.url.render_as_string(hide_password=False)
    subprocess.run([sys.executable, "-c", script, url, str(ids[3])], check=True, timeout=120)
    got = store.query(vectors[3], k=5)
    assert ids[3] not in {m.id for m in got}
    assert [m.id for m in got] == [i for i in _exact(vectors, ids, vectors[3], 6) if i != ids[3]][:5]


def test_results_equal_exact_numpy(ready: tuple[dbcore.Settings, Engine, dict[str, Any]]) -> None:
    _, engine, parents = ready
    vectors = _vectors(500, 6)
    ids = _add(engine, parents, vectors)
    store = IntegratedVectorStore(engine, ef_search=1000)
    for seed in range(5):
        query = _vectors(1, 100 + seed)[0]
        assert [m.id for m in store.query(query, k=10)] == _exact(vectors, ids, query, 10)


def test_selective_filter_still_returns_k(ready: tuple[dbcore.Settings, Engine, dict[str, Any]]) -> None:
    """1,000 memories in room 0 and 12 in room 3: a top-10 in room 3 returns 10 rows (ef_search 40)."""
    _, engine, parents = ready
    crowd = _add(engine, parents, _vectors(1000, 7), room=0)
    few_vectors = _vectors(12, 8)
    few = _add(engine, parents, few_vectors, room=3)
    store = IntegratedVectorStore(engine)  # default ef_search: max(40, k)
    query = _vectors(1, 9)[0]
    got = store.query(query, k=10, filter=F("room_id") == parents["rooms"][3])
    assert [m.id for m in got] == _exact(few_vectors, few, query, 10)
    assert len(store.query(query, k=50, filter=F("room_id") == parents["rooms"][3])) == 12
    assert len(store.query(query, k=10)) == 10 and crowd


@contextlib.contextmanager
def store_query_plans(engine: Engine) -> Iterator[list[str]]:
    """EXPLAIN of every pgvector statement run on ``engine``, as sent: same SQL, same bound parameters.

    The EXPLAIN runs on the store's own connection and transaction, right after the
    statement, with sequential scans off so a tiny table shows the planner's index choice.
    """
    plans: list[str] = []

    def explain(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if "<=>" in statement and not statement.startswith("EXPLAIN"):
            with cursor.connection.cursor() as other:
                other.execute("SET LOCAL enable_seqscan = off")
                other.execute("EXPLAIN " + statement, parameters)
                plans.append("\n".join(str(row[0]) for row in other.fetchall()))

    sa.event.listen(engine, "after_cursor_execute", explain)
    try:
        yield plans
    finally:
        sa.event.remove(engine, "after_cursor_execute", explain)


def test_pgvector_query_uses_the_hnsw_index(
    ready: tuple[dbcore.Settings, Engine, dict[str, Any]], dialect: str
) -> None:
    if dialect != "postgresql":
        pytest.skip("the HNSW index exists on PostgreSQL with pgvector only")
    _, engine, parents = ready
    vectors = _vectors(300, 10)
    ids = _add(engine, parents, vectors)
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE memory_embeddings")
    store = IntegratedVectorStore(engine)
    query = _vectors(1, 11)[0]
    with store_query_plans(engine) as plans:
        got = store.query(query, k=10, include_metadata=False)
    assert [m.id for m in got] == _exact(vectors, ids, query, 10)
    assert len(plans) == 1  # the index answered: no exact rescan
    assert "Index Scan using ix_memory_embeddings_embedding_hnsw" in plans[0], plans[0]


def test_pgvector_query_through_psycopg2_sends_text(
    ready: tuple[dbcore.Settings, Engine, dict[str, Any]], dialect: str
) -> None:
    """psycopg2 has no binary dumper: the query vector goes as pgvector text, with the same results."""
    if dialect != "postgresql":
        pytest.skip("the pgvector search path needs PostgreSQL with pgvector")
    settings, engine, parents = ready
    vectors = _vectors(120, 30)
    ids = _add(engine, parents, vectors)
    url = settings.url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    other = dbcore.create_engine(dbcore.Settings(database_url=url))
    try:
        binary, text = IntegratedVectorStore(engine), IntegratedVectorStore(other)
        assert text.search_path == "pgvector"
        for seed in (31, 32, 33):
            query = _vectors(1, seed)[0]
            got_text = text.query(query, k=10, min_score=-1.0)
            got_binary = binary.query(query, k=10, min_score=-1.0)
            assert [m.id for m in got_text] == [m.id for m in got_binary] == _exact(vectors, ids, query, 10)
            assert np.allclose([m.score for m in got_text], [m.score for m in got_binary], atol=1e-6)
        with pytest.raises(DimensionMismatchError):
            text.query(np.ones(DIMS + 1))
    finally:
        other.dispose()


_HALFVEC_SCRIPT = """
import json, sys
import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session
import dbcore
from dbcore import migrate
from dbcore.memories import add_memories
from dbcore.testing import add_memory_parents
from dbcore.vectorstores.integrated import IntegratedVectorStore
from tests.test_vectorstore_integrated import store_query_plans

settings = dbcore.Settings(database_url=sys.argv[1])
migrate.upgrade(settings, "head")
engine = dbcore.create_engine(settings)
with Session(engine) as session:
    parents = add_memory_parents(session, name="halfvec")
    vectors = np.random.default_rng(21).normal(size=(200, 2048)).astype(np.float32)
    base = {"agent_id": parents["agent_id"], "entity_id": parents["entity_id"],
            "room_id": parents["room_ids"][0], "kind": "message"}
    ids = [str(i) for i in add_memories(session, [base] * len(vectors), vectors)]
    session.commit()
with engine.connect() as conn:
    conn.exec_driver_sql("ANALYZE memory_embeddings")
    index = conn.exec_driver_sql(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_memory_embeddings_embedding_hnsw'"
    ).scalar_one()
store = IntegratedVectorStore(engine)
query = np.random.default_rng(22).normal(size=2048).astype(np.float32)
with store_query_plans(engine) as plans:
    got = store.query(query, k=10, include_metadata=False)
unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
scores = unit @ (query / np.linalg.norm(query))
exact = [ids[i] for i in np.argsort(-scores)[:10]]
print(json.dumps({"index": index, "plans": plans, "got": [str(m.id) for m in got], "exact": exact,
                  "scores": [m.score for m in got], "exact_scores": sorted(scores.tolist(), reverse=True)[:10]}))
"""


def test_pgvector_above_2000_dimensions_uses_the_halfvec_index(settings: dbcore.Settings, dialect: str) -> None:
    """DBCORE_VECTOR_DIMS=2048 (read when dbcore is imported, so in a child process): halfvec index and query."""
    if dialect != "postgresql":
        pytest.skip("halfvec is pgvector's")
    env = {**os.environ, "DBCORE_VECTOR_DIMS": "2048"}
    url = settings.url.render_as_string(hide_password=False)
    done = subprocess.run(
        [sys.executable, "-c", _HALFVEC_SCRIPT, url],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "halfvec(2048)" in result["index"] and "halfvec_cosine_ops" in result["index"]
    assert len(result["plans"]) == 1 and "ix_memory_embeddings_embedding_hnsw" in result["plans"][0]
    assert result["got"] == result["exact"]
    # halfvec keeps about 3 significant digits: scores agree with float32 numpy to that precision
    assert np.allclose(result["scores"], result["exact_scores"], atol=2e-3)


def test_dimension_and_input_errors_write_nothing(ready: tuple[dbcore.Settings, Engine, dict[str, Any]]) -> None:
    _, engine, parents = ready
    _add(engine, parents, _vectors(5, 12))
    store = IntegratedVectorStore(engine)
    base = {
        "agent_id": parents["agent_id"],
        "entity_id": parents["entity_id"],
        "room_id": parents["rooms"][0],
        "kind": "message",
    }
    cases: list[tuple[Any, Any, type[Exception]]] = [
        ([base, base], _vectors(2, 1)[:, :-1], DimensionMismatchError),
        ([base, base], np.vstack([_vectors(1, 1), np.full((1, DIMS), np.nan, dtype=np.float32)]), ValidationError),
        ([base, base], np.vstack([_vectors(1, 1), np.zeros((1, DIMS), dtype=np.float32)]), ValidationError),
        ([base, {**base, "kind": "bogus"}], _vectors(2, 1), ValidationError),
        ([base, {k: v for k, v in base.items() if k != "room_id"}], _vectors(2, 1), ValidationError),
        ([base, {**base, "colour": "red"}], _vectors(2, 1), ValidationError),
        ([base], _vectors(2, 1), ValidationError),
    ]
    for memories, vectors, error in cases:
        with Session(engine) as session, pytest.raises(error):
            add_memories(session, memories, vectors)
            session.commit()
    with pytest.raises(DimensionMismatchError):
        store.upsert([(uuid.uuid4(), np.ones(DIMS + 3))])
    with pytest.raises(ValidationError, match="no memory with id"):
        store.upsert([(uuid.uuid4(), np.ones(DIMS))])
    with pytest.raises(DimensionMismatchError):
        IntegratedVectorStore(engine, dims=DIMS * 2)
    with pytest.raises(ValidationError, match="metadata key"):
        IntegratedVectorStore(engine, metadata_keys=["bad key'"])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Memory)).scalar_one() == 5
    assert store.count() == 5


def test_corrupt_embedding_bytes_are_a_typed_error(
    ready: tuple[dbcore.Settings, Engine, dict[str, Any]], dialect: str
) -> None:
    if dialect == "postgresql":
        pytest.skip("a pgvector column cannot hold a wrong-length vector")
    _, engine, parents = ready
    ids = _add(engine, parents, _vectors(3, 13))
    with engine.begin() as conn:
        raw = sa.type_coerce(MemoryEmbedding.__table__.c.embedding, sa.LargeBinary)
        conn.execute(
            sa.update(MemoryEmbedding.__table__)
            .where(MemoryEmbedding.__table__.c.memory_id == ids[1])
            .values({raw: b"\x00\x01\x02"})
        )
    with pytest.raises(dbcore.DataError, match="3 bytes"):
        IntegratedVectorStore(engine, search="numpy").query(_vectors(1, 1)[0])


@pytest.mark.compile_only
def test_filters_compile_for_sql_server() -> None:
    """SQL Server runs live in the GitHub workflow; here every filter form must at least compile for it."""
    from sqlalchemy.dialects import mssql

    from dbcore.vectorstores.sql_filters import SqlFilterCompiler
    from tests.test_vectorstore_backends import FILTERS, METADATA_KEYS

    compiler = SqlFilterCompiler("mssql", frozenset(METADATA_KEYS))
    for name, spec in FILTERS.items():
        sql = str(compiler.compile(dbcore.Filter.parse(spec)).compile(dialect=mssql.dialect()))
        assert sql, name
        if "priority" in dbcore.Filter.parse(spec).fields():
            assert "OPENJSON" in sql.upper() and "TRY_CAST" in sql.upper(), name


# --- from async code ------------------------------------------------------------------------


def test_async_query_sends_the_binary_vector_and_matches_sync(
    ready: tuple[dbcore.Settings, Engine, dict[str, Any]], dialect: str, aio: LoopRunner
) -> None:
    """aquery runs on the async engine (psycopg's async mode on PostgreSQL) with the same answers as query."""
    settings, engine, parents = ready
    vectors = _vectors(150, 40)
    ids = _add(engine, parents, vectors)
    store = dbcore.get_vector_store(settings)

    async def both(query: np.ndarray) -> tuple[list[Any], list[Any], dict[str, Any]]:
        got = await store.aquery(query, k=10, min_score=-1.0)
        engine_used = store.async_engine()  # type: ignore[attr-defined]
        async with engine_used.connect() as conn:
            raw = await conn.get_raw_connection()
            info = dict(raw.info)
        return got, store.query(query, k=10, min_score=-1.0), {"driver": engine_used.dialect.driver, **info}

    for seed in (41, 42):
        query = _vectors(1, seed)[0]
        got_async, got_sync, info = aio.run(both(query))
        assert [m.id for m in got_async] == [m.id for m in got_sync] == _exact(vectors, ids, query, 10)
        assert np.allclose([m.score for m in got_async], [m.score for m in got_sync], atol=1e-6)
    if dialect == "postgresql":  # the query vector went in pgvector's binary format on the async connection
        assert info["driver"] == "psycopg_async" or info["driver"] == "psycopg"
        assert info.get("dbcore_binary_vector") is True, info
    with pytest.raises(DimensionMismatchError):
        aio.run(store.aquery(np.ones(DIMS + 1)))


def test_async_numpy_search_scores_off_the_event_loop(
    ready: tuple[dbcore.Settings, Engine, dict[str, Any]], aio: LoopRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The numpy path builds the matrix and scores on a worker thread; its SQL runs on the loop's connection."""
    settings, engine, parents = ready
    vectors = _vectors(80, 50)
    ids = _add(engine, parents, vectors)
    store = IntegratedVectorStore(engine, search="numpy", settings=settings)
    threads: dict[str, set[int]] = {"assemble": set(), "score": set()}
    assemble, score = IntegratedVectorStore._assemble, integrated._score

    def assemble_noted(self: IntegratedVectorStore, *args: Any) -> Any:
        threads["assemble"].add(threading.get_ident())
        return assemble(self, *args)

    def score_noted(*args: Any) -> Any:
        threads["score"].add(threading.get_ident())
        return score(*args)

    monkeypatch.setattr(IntegratedVectorStore, "_assemble", assemble_noted)
    monkeypatch.setattr(integrated, "_score", score_noted)
    clear_matrix_cache()

    async def search() -> tuple[list[Any], int]:
        return await store.aquery(vectors[3], k=5), threading.get_ident()

    matches, loop_thread = aio.run(search())
    assert [m.id for m in matches] == _exact(vectors, ids, vectors[3], 5)
    assert threads["assemble"] and threads["score"]
    assert loop_thread not in threads["assemble"] | threads["score"]


@pytest.mark.parametrize("psycopg2", [False, True], ids=["same-driver", "psycopg2-sync"])
def test_sync_and_async_numpy_searches_agree_on_one_cache(
    ready: tuple[dbcore.Settings, Engine, dict[str, Any]], dialect: str, aio: LoopRunner, psycopg2: bool
) -> None:
    """Filtered numpy searches, sync then async then sync after a write: the cached matrix's raw ids fit each driver."""
    settings, engine, parents = ready
    if psycopg2:
        if not dialect.startswith("postgresql"):
            pytest.skip("psycopg2 is a PostgreSQL driver")
        url = settings.url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
        settings = dbcore.Settings(database_url=url)
        engine = dbcore.create_engine(settings)
    store = IntegratedVectorStore(engine, search="numpy", settings=settings)
    vectors = _vectors(60, 60)
    ids = _add(engine, parents, vectors, room=1)
    in_room = F("room_id") == parents["rooms"][1]
    want = _exact(vectors, ids, vectors[5], 5)
    try:
        assert [m.id for m in store.query(vectors[5], k=5, filter=in_room)] == want
        assert [m.id for m in aio.run(store.aquery(vectors[5], k=5, filter=in_room))] == want
        more = _vectors(10, 61)
        more_ids = _add(engine, parents, more, room=1)
        want = _exact(np.vstack([vectors, more]), ids + more_ids, more[2], 5)
        assert [m.id for m in aio.run(store.aquery(more[2], k=5, filter=in_room))] == want
        assert [m.id for m in store.query(more[2], k=5, filter=in_room)] == want
    finally:
        if psycopg2:
            engine.dispose()
