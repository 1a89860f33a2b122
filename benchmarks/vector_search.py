#!/usr/bin/env python
"""Vector search benchmark: dbcore's vector stores against baselines run side by side.

Run from the repository root::

    python benchmarks/vector_search.py                 # 100,000 x 384, 20 queries, k=10
    python benchmarks/vector_search.py --quick         # 10,000 x 384 smoke run

Every figure comes from one process (and one short child process for the
resident-memory probe), with dbcore and its baseline timed alternately, query by
query, so neither is favoured by drift, caches or frequency scaling:

1. ``integrated`` on a SQLite file (numpy search path), warm, against an exact numpy
   search over an in-memory float32 matrix; plus the cold query after
   ``clear_matrix_cache()`` and the resident memory growth of loading the matrix.
2. ``integrated`` on PostgreSQL 18 + pgvector (embedded, ``dbcore.testing``), against
   raw SQL on the same engine, pool and HNSW index with the same ``hnsw.ef_search``
   (and ``hnsw.iterative_scan``) dbcore uses, set once per pooled connection as dbcore
   does; unfiltered and with a room filter. For reference also the same SQL with
   ``SET LOCAL`` per query, and on one connection held open.
3. ``ChromaVectorStore`` against ``collection.query`` on the same collection.
4. Bulk insert through ``add_memories`` against a raw SQLAlchemy Core executemany into
   the same two tables of a fresh database, on SQLite and on PostgreSQL.
5. Small stores (10,000 and 20,000 memories on SQLite, section ``small``), where most
   agents live: warm queries unfiltered and with a room, an entity and an agent
   filter, each against exact numpy over the same rows of an in-memory matrix.

Recall@10 is measured against an exact float64 search over the same vectors.
Progress goes to stderr; the table to stdout, and the last stdout line is one JSON
object with every figure, ratio and verdict.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------
# arguments first: dbcore reads DBCORE_VECTOR_DIMS when it is imported


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=None, help="number of memories (default 100000; 10000 with --quick)")
    p.add_argument("--dims", type=int, default=384, help="embedding dimensions (default 384)")
    p.add_argument("--queries", type=int, default=20, help="timed queries per backend (default 20)")
    p.add_argument("--k", type=int, default=10, help="top-k (default 10)")
    p.add_argument("--quick", action="store_true", help="smoke run: n=10000 unless --n is given")
    p.add_argument("--seed", type=int, default=42, help="data seed (default 42)")
    p.add_argument("--rounds", type=int, default=1, help="timed passes over the queries; medians over all (default 1)")
    p.add_argument("--chunk", type=int, default=10_000, help="rows per add_memories call / raw transaction")
    p.add_argument(
        "--skip",
        default="",
        help="comma list of sections to skip: sqlite,small,postgresql,chroma,bulk (or bulk-sqlite, bulk-postgresql)",
    )
    p.add_argument(
        "--only",
        default="",
        help="comma list of the sections to run, the others skipped; sqlite-ann (the ANN index on SQLite, "
        "benchmarks/ann_index.py: run it as --only sqlite-ann --n 1000000) runs only when named here",
    )
    p.add_argument("--_rss-probe", dest="rss_probe", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.n is None:
        args.n = 10_000 if args.quick else 100_000
    return args


ARGS = parse_args()
os.environ["DBCORE_VECTOR_DIMS"] = str(ARGS.dims)
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import ann_index  # noqa: E402  (the ANN index section, also runnable alone)
import bulk_import  # noqa: E402  (the bulk-import section, also runnable alone)
import psutil  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from provenance import code_state, machine  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

import dbcore  # noqa: E402
from dbcore import migrate  # noqa: E402
from dbcore.memories import add_memories  # noqa: E402
from dbcore.vectorstores import F  # noqa: E402
from dbcore.vectorstores.integrated import IntegratedVectorStore, clear_matrix_cache  # noqa: E402

# ---------------------------------------------------------------------------------------
# constants

N_CLUSTERS = 100
NOISE = 0.75  # norm of the noise added to a unit cluster centre (cosine to the centre ~0.8)
N_ROOMS = bulk_import.N_ROOMS  # the rooms make_db creates
FILTER_ROOM = 3
WARMUP = 2
COLD_TRIALS = 3
CHROMA_BATCH = 5_000

TARGETS = {
    "sqlite_warm_ratio_max": 1.5,
    "sqlite_recall_min": 1.0,
    "sqlite_cold_ms_max": 300.0,
    "sqlite_rss_growth_ratio_max": 1.5,
    "pg_ratio_max": 1.3,
    "pg_recall_min": 0.95,
    "chroma_ratio_max": 1.3,
    "insert_ratio_min": 0.7,
    # The last chunk alone (10,000 rows into a table of 90,000 at the defaults), on PostgreSQL.
    "pg_incremental_insert_ratio_min": 0.9,
    # Small stores and structured filters on SQLite: within 1.5x of the numpy floor, or 0.5 ms above it.
    "small_ratio_max": 1.5,
    "small_ms_above_floor_max": 0.5,
}
SMALL_SIZES = (10_000, 20_000)
SECTIONS = {"sqlite", "small", "postgresql", "chroma", "bulk", "bulk-sqlite", "bulk-postgresql", "sqlite-ann"}
SMALL_ENTITIES = 4  # of 2 agents, entity i % 4 of agent (i % 4) % 2

T0 = time.perf_counter()
PROC = psutil.Process()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def rss() -> int:
    return int(PROC.memory_info().rss)


def peak_rss(reset: bool = False) -> int:
    """Peak resident set (VmHWM) of this process in bytes; ``reset`` restarts it at the current RSS.

    Not ru_maxrss: on Linux a child started by fork+exec inherits its parent's ru_maxrss.
    """
    status = Path("/proc/self/status")
    if reset:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: reset the peak RSS counter
        except OSError:
            pass
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


# ---------------------------------------------------------------------------------------
# data


class Data:
    """Clustered unit vectors (float32), a room per row and query vectors near the clusters."""

    def __init__(self, n: int, dims: int, n_queries: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((N_CLUSTERS, dims))
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        self.cluster = rng.integers(0, N_CLUSTERS, n)
        vectors = centres[self.cluster] + rng.standard_normal((n, dims)) * (NOISE / np.sqrt(dims))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        del vectors
        qrng = np.random.default_rng(seed + 1)
        total = n_queries + WARMUP
        qc = qrng.integers(0, N_CLUSTERS, total)
        q = centres[qc] + qrng.standard_normal((total, dims)) * (NOISE / np.sqrt(dims))
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        q = q.astype(np.float32)
        self.warmup = [q[i] for i in range(WARMUP)]
        self.queries = [q[i] for i in range(WARMUP, total)]
        self.room = np.arange(n) % N_ROOMS
        self.n, self.dims = n, dims

    def exact_top(self, k: int, rows: np.ndarray | None = None) -> list[list[int]]:
        """Exact float64 cosine top-k row indices for every query (optionally among ``rows``)."""
        base = self.vectors if rows is None else self.vectors[rows]
        m64 = base.astype(np.float64)
        m64 /= np.linalg.norm(m64, axis=1, keepdims=True)
        out = []
        for q in self.queries:
            q64 = q.astype(np.float64)
            q64 /= np.linalg.norm(q64)
            s = m64 @ q64
            top = np.argsort(-s, kind="stable")[:k]
            out.append([int(i) if rows is None else int(rows[i]) for i in top])
        return out


def recall(found: list[list[int]], exact: list[list[int]], k: int) -> float:
    hits = [len(set(f[:k]) & set(e[:k])) / k for f, e in zip(found, exact, strict=True)]
    return float(np.mean(hits))


# ---------------------------------------------------------------------------------------
# timing: baselines and dbcore alternately, query by query


def side_by_side(
    fns: dict[str, Callable[[np.ndarray], Any]],
    to_rows: dict[str, Callable[[Any], list[int]]],
    data: Data,
    rounds: int | None = None,
) -> tuple[dict[str, list[float]], dict[str, list[list[int]]]]:
    """Warm medians of every contender over the same queries, timed in rotating order.

    Each contender first runs the warm-up queries; then every timed query runs once, untimed, through
    every contender (so all of them meet the same warm caches: PostgreSQL's buffers hold only part of
    the table and index, and the first visitor of a query's graph region would otherwise pay for it);
    then the timed pass runs each query through all contenders, the first of them rotating query by query.
    """
    rounds = max(1, rounds or ARGS.rounds)
    names = list(fns)
    for name in names:
        for q in data.warmup:
            fns[name](q)
    for q in data.queries:
        for name in names:
            fns[name](q)
    times: dict[str, list[float]] = {name: [] for name in names}
    raw: dict[str, list[Any]] = {name: [] for name in names}
    for rnd in range(rounds):
        for j, q in enumerate(data.queries):
            first = (j + rnd) % len(names)
            for name in names[first:] + names[:first]:
                start = time.perf_counter()
                result = fns[name](q)
                times[name].append(ms_since(start))
                if rnd == 0:
                    raw[name].append(result)
    rows = {name: [to_rows[name](x) for x in raw[name]] for name in names}
    return times, rows


def stats(times: list[float]) -> dict[str, float | None]:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"median_ms": r(statistics.median(times)), "p95_ms": r(p95), "min_ms": r(ordered[0])}


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# ---------------------------------------------------------------------------------------
# databases


def insert_dbcore(engine: sa.Engine, parents: dict[str, Any], data: Data, start: int, stop: int) -> list[uuid.UUID]:
    """One add_memories call (and commit) for rows start..stop; building its input is part of the cost."""
    rooms = parents["room_ids"]
    items = [
        dict(
            agent_id=parents["agent_id"],
            entity_id=parents["entity_id"],
            room_id=rooms[i % N_ROOMS],
            kind="message",
            content={"text": f"m{i}"},
        )
        for i in range(start, stop)
    ]
    with Session(engine) as ses:
        ids = add_memories(ses, items, data.vectors[start:stop])
        ses.commit()
    return ids


MEM_T: sa.Table = dbcore.Memory.__table__  # type: ignore[assignment]
ME_T: sa.Table = dbcore.MemoryEmbedding.__table__  # type: ignore[assignment]


def insert_raw(engine: sa.Engine, parents: dict[str, Any], data: Data, start: int, stop: int) -> list[uuid.UUID]:
    """The baseline: two Core executemany statements of the same values in one transaction."""
    rooms = parents["room_ids"]
    now = datetime.now(timezone.utc)
    ids = [uuid.uuid4() for _ in range(start, stop)]
    kind = dbcore.MemoryKind.MESSAGE
    mem_rows = [
        {
            "id": mid,
            "parent_id": None,
            "kind": kind,
            "content": {"text": f"m{i}"},
            "metadata": {},
            "is_unique": False,
            "agent_id": parents["agent_id"],
            "entity_id": parents["entity_id"],
            "room_id": rooms[i % N_ROOMS],
            "world_id": None,
            "created_at": now,
            "updated_at": now,
        }
        for mid, i in zip(ids, range(start, stop), strict=True)
    ]
    vectors = data.vectors
    emb_rows = [
        {"id": uuid.uuid4(), "embedding": vectors[i], "model": "", "memory_id": mid, "created_at": now}
        for mid, i in zip(ids, range(start, stop), strict=True)
    ]
    with engine.begin() as conn:
        conn.execute(MEM_T.insert(), mem_rows)
        conn.execute(ME_T.insert(), emb_rows)
    return ids


def insert_benchmark(
    label: str,
    dbc: tuple[sa.Engine, dict[str, Any]],
    raw: tuple[sa.Engine, dict[str, Any]],
    data: Data,
    chunk: int,
) -> tuple[dict[str, Any], list[uuid.UUID]]:
    """Insert all rows into two fresh databases of equal state, chunk by chunk, alternating who goes first."""
    t_dbcore = t_raw = 0.0
    last: dict[str, float] = {}  # the last chunk: an incremental insert into a table of n - chunk rows
    ids: list[uuid.UUID] = []
    rss_before = rss()
    for c, start in enumerate(range(0, data.n, chunk)):
        stop = min(data.n, start + chunk)
        for who in ("dbcore", "raw") if c % 2 == 0 else ("raw", "dbcore"):
            gc.collect()
            t = time.perf_counter()
            if who == "dbcore":
                ids.extend(insert_dbcore(*dbc, data, start, stop))
                last["dbcore"] = time.perf_counter() - t
                t_dbcore += last["dbcore"]
            else:
                insert_raw(*raw, data, start, stop)
                last["raw"] = time.perf_counter() - t
                t_raw += last["raw"]
        log(f"{label} insert: {stop}/{data.n} rows (dbcore {t_dbcore:.1f}s, raw {t_raw:.1f}s)")
    for engine, _ in (dbc, raw):
        with engine.connect() as conn:
            counts = [conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in (MEM_T, ME_T)]
        if counts != [data.n, data.n]:
            raise RuntimeError(f"{label}: expected {data.n} rows in each table, found {counts}")
    out = {
        "rows": data.n,
        "chunk": chunk,
        "dbcore_s": r(t_dbcore),
        "raw_s": r(t_raw),
        "dbcore_rows_per_s": r(data.n / t_dbcore, 1),
        "raw_rows_per_s": r(data.n / t_raw, 1),
        "ratio": r((data.n / t_dbcore) / (data.n / t_raw)),
        "client_rss_growth_bytes": rss() - rss_before,
        "incremental": {
            "rows": data.n - start,
            "into_rows": start,
            "dbcore_rows_per_s": r((data.n - start) / last["dbcore"], 1),
            "raw_rows_per_s": r((data.n - start) / last["raw"], 1),
            "ratio": r(last["raw"] / last["dbcore"]),
        },
    }
    out["pass"] = out["ratio"] >= TARGETS["insert_ratio_min"]
    return out, ids


# ---------------------------------------------------------------------------------------
# 1. SQLite (integrated, numpy path)


def rss_probe(url: str, dims: int) -> None:
    """Child process: resident memory growth of the first (cold) query, which loads the matrix."""
    engine = dbcore.create_engine(dbcore.Settings(database_url=url))
    store = IntegratedVectorStore(engine)
    assert store.search_path == "numpy"
    with engine.connect() as conn:  # open the connection and warm SQLAlchemy before measuring
        conn.execute(sa.select(sa.func.count()).select_from(ME_T)).scalar_one()
    q = np.random.default_rng(7).standard_normal(dims).astype(np.float32)
    # First use of BLAS and partition (thread buffers) is numpy's cost, not the matrix's: pay it before measuring.
    np.argpartition(np.ones((64, dims), dtype=np.float32) @ q, -2)
    gc.collect()
    before, peak_before = rss(), peak_rss(reset=True)
    start = time.perf_counter()
    store.query(q, k=10, include_metadata=False)
    cold_ms = ms_since(start)
    gc.collect()
    after, peak_after = rss(), peak_rss()
    print(
        json.dumps(
            {
                "rss_before": before,
                "rss_after": after,
                "peak_rss_before": peak_before,
                "peak_rss_after": peak_after,
                "cold_ms": cold_ms,
            }
        )
    )


def bench_sqlite(
    data: Data, k: int, tmp: Path, chunk: int, exact: list[list[int]], exact_room: list[list[int]]
) -> dict[str, Any]:
    log("sqlite: creating two fresh databases")
    dbc = bulk_import.make_db(f"sqlite:///{tmp / 'dbcore.sqlite3'}")
    raw = bulk_import.make_db(f"sqlite:///{tmp / 'raw.sqlite3'}")
    insert, ids = insert_benchmark("sqlite", dbc, raw, data, chunk)
    raw[0].dispose()
    for suffix in ("", "-wal", "-shm"):
        (tmp / f"raw.sqlite3{suffix}").unlink(missing_ok=True)
    engine, parents = dbc
    url = engine.url.render_as_string(hide_password=False)
    index_of: dict[Any, int] = {key: i for i, mid in enumerate(ids) for key in (mid, str(mid))}  # Match.id is a UUID
    store = IntegratedVectorStore(engine)
    assert store.search_path == "numpy", store.search_path
    matrix_bytes = data.n * data.dims * 4

    # Resident memory of loading, in a fresh child process (nothing else allocated there since).
    log("sqlite: resident-memory probe in a child process")
    child = subprocess.run(
        [sys.executable, __file__, "--_rss-probe", url, "--dims", str(data.dims)],
        capture_output=True,
        text=True,
        check=True,
    )
    probe = json.loads(child.stdout.strip().splitlines()[-1])
    rss_growth = probe["rss_after"] - probe["rss_before"]
    peak_growth = max(probe["peak_rss_after"], probe["rss_after"]) - probe["rss_before"]

    # Python-level allocations of loading (tracemalloc, in this process; slows the load, not timed).
    clear_matrix_cache()
    gc.collect()
    tracemalloc.start()
    store.query(data.queries[0], k=k, include_metadata=False)
    traced_current, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    # Cold queries: clear the cache, time the first query (which reloads the matrix). Alternated with a
    # reference that reads the same rows through the bare sqlite3 cursor into a float32 matrix and searches it:
    # roughly the floor any loader from this database file pays on this machine.
    def raw_cold(q: np.ndarray) -> np.ndarray:
        with engine.connect() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            count = cursor.execute("SELECT count(*) FROM memory_embeddings").fetchone()[0]
            matrix = np.empty((count, data.dims), dtype=np.float32)
            cursor.execute("SELECT memory_id, embedding FROM memory_embeddings")
            ids: list[str] = []
            while rows := cursor.fetchmany(10_000):
                part_ids, blobs = zip(*rows, strict=True)
                matrix[len(ids) : len(ids) + len(blobs)] = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(
                    -1, data.dims
                )
                ids.extend(part_ids)
            cursor.close()
        scores = matrix @ (q / np.linalg.norm(q)).astype(np.float32)
        return np.argpartition(scores, -k)[-k:]

    log("sqlite: cold queries")
    cold: list[float] = []
    cold_ref: list[float] = []
    for t in range(COLD_TRIALS):
        q = data.queries[t % len(data.queries)]
        for who in ("dbcore", "raw") if t % 2 == 0 else ("raw", "dbcore"):
            clear_matrix_cache()
            gc.collect()
            start = time.perf_counter()
            if who == "dbcore":
                store.query(q, k=k, include_metadata=False)
                cold.append(ms_since(start))
            else:
                raw_cold(q)
                cold_ref.append(ms_since(start))

    # Warm: exact numpy over an in-memory float32 matrix vs the integrated store.
    log("sqlite: warm queries, side by side")
    matrix = data.vectors.copy()  # the baseline's own in-memory float32 matrix (unit rows)

    def numpy_exact(q: np.ndarray) -> np.ndarray:
        qn = (q / np.linalg.norm(q)).astype(np.float32)
        scores = matrix @ qn
        top = np.argpartition(scores, -k)[-k:]
        return top[np.argsort(-scores[top])]

    def integrated(q: np.ndarray) -> list[Any]:
        return store.query(q, k=k, include_metadata=False)

    def by_id(matches: list[Any]) -> list[int]:
        return [index_of[m.id] for m in matches]

    times, rows = side_by_side(
        {"numpy_exact": numpy_exact, "integrated": integrated},
        {"numpy_exact": lambda x: [int(i) for i in x], "integrated": by_id},
        data,
    )

    # Filtered (for reference): the integrated store with a room filter vs numpy over that room's rows.
    log("sqlite: filtered queries, side by side")
    room_id = str(parents["room_ids"][FILTER_ROOM])
    room_rows = np.flatnonzero(data.room == FILTER_ROOM)
    flt = F("room_id") == room_id

    def numpy_room(q: np.ndarray) -> np.ndarray:
        qn = (q / np.linalg.norm(q)).astype(np.float32)
        scores = matrix[room_rows] @ qn
        top = np.argpartition(scores, -k)[-k:]
        return room_rows[top[np.argsort(-scores[top])]]

    def integrated_room(q: np.ndarray) -> list[Any]:
        return store.query(q, k=k, filter=flt, include_metadata=False)

    ftimes, frows = side_by_side(
        {"numpy_exact": numpy_room, "integrated": integrated_room},
        {"numpy_exact": lambda x: [int(i) for i in x], "integrated": by_id},
        data,
    )

    base_med = statistics.median(times["numpy_exact"])
    int_med = statistics.median(times["integrated"])
    out: dict[str, Any] = {
        "insert": insert,
        "numpy_exact": {**stats(times["numpy_exact"]), "recall": r(recall(rows["numpy_exact"], exact, k), 4)},
        "integrated": {
            **stats(times["integrated"]),
            "recall": r(recall(rows["integrated"], exact, k), 4),
            "build_s": insert["dbcore_s"],
            "cold_ms": [r(x) for x in cold],
            "cold_ms_median": r(statistics.median(cold)),
            "cold_ms_child_process": r(probe["cold_ms"]),
            "cold_reference_sqlite3_ms": [r(x) for x in cold_ref],
            "cold_reference_sqlite3_ms_median": r(statistics.median(cold_ref)),
        },
        "filtered": {
            "room": FILTER_ROOM,
            "rows_in_room": int(room_rows.size),
            "numpy_exact": {
                **stats(ftimes["numpy_exact"]),
                "recall": r(recall(frows["numpy_exact"], exact_room, k), 4),
            },
            "integrated": {**stats(ftimes["integrated"]), "recall": r(recall(frows["integrated"], exact_room, k), 4)},
            "ratio": r(statistics.median(ftimes["integrated"]) / statistics.median(ftimes["numpy_exact"])),
        },
        "memory": {
            "method": "psutil RSS of a fresh child process just before and after its first (cold) query, after "
            "gc; peak = VmHWM (reset just before the query) minus RSS before; traced = tracemalloc in the main "
            "process (Python and numpy allocations of one cold query)",
            "matrix_bytes": matrix_bytes,
            "rss_growth_bytes": rss_growth,
            "rss_growth_ratio": r(rss_growth / matrix_bytes),
            "rss_peak_growth_bytes": peak_growth,
            "rss_peak_growth_ratio": r(peak_growth / matrix_bytes),
            "traced_retained_bytes": traced_current,
            "traced_peak_bytes": traced_peak,
            "traced_peak_ratio": r(traced_peak / matrix_bytes),
            "probe": probe,
        },
        "db_file_bytes": sum(
            (tmp / f"dbcore.sqlite3{s}").stat().st_size for s in ("", "-wal") if (tmp / f"dbcore.sqlite3{s}").exists()
        ),
        "warm_ratio": r(int_med / base_med),
    }
    out["checks"] = {
        "warm_ratio": {
            "value": out["warm_ratio"],
            "target": f"<= {TARGETS['sqlite_warm_ratio_max']}",
            "pass": out["warm_ratio"] <= TARGETS["sqlite_warm_ratio_max"],
        },
        "recall": {
            "value": out["integrated"]["recall"],
            "target": "== 1.0",
            "pass": out["integrated"]["recall"] >= TARGETS["sqlite_recall_min"],
        },
        "cold_ms": {
            "value": out["integrated"]["cold_ms_median"],
            "target": f"< {TARGETS['sqlite_cold_ms_max']}",
            "pass": out["integrated"]["cold_ms_median"] < TARGETS["sqlite_cold_ms_max"],
        },
        "rss_growth_ratio": {
            "value": out["memory"]["rss_growth_ratio"],
            "target": f"<= {TARGETS['sqlite_rss_growth_ratio_max']}",
            "pass": out["memory"]["rss_growth_ratio"] <= TARGETS["sqlite_rss_growth_ratio_max"],
        },
        "insert_ratio": {
            "value": insert["ratio"],
            "target": f">= {TARGETS['insert_ratio_min']}",
            "pass": insert["pass"],
        },
    }
    clear_matrix_cache()
    engine.dispose()
    out["_ids"] = ids
    out["_room_ids"] = parents["room_ids"]
    return out


# ---------------------------------------------------------------------------------------
# 2. PostgreSQL + pgvector (integrated, pgvector path)


def bench_small(tmp: Path, k: int) -> dict[str, Any]:
    """Warm SQLite queries on small stores, unfiltered and filtered, against numpy over the same rows."""
    from dbcore.DB_Entities import Entity, Room, RoomKind

    out: dict[str, Any] = {"sizes": {}, "checks": {}}
    for n in SMALL_SIZES:
        log(f"small: {n:,} memories")
        data = Data(n, ARGS.dims, ARGS.queries, ARGS.seed + n)
        settings = dbcore.Settings(database_url=f"sqlite:///{tmp / f'small-{n}.sqlite3'}")
        migrate.upgrade(settings, "head")
        engine = dbcore.create_engine(settings)
        with Session(engine) as ses:
            agents = [dbcore.Agent(name=f"small-{a}") for a in range(2)]
            ses.add_all(agents)
            ses.flush()
            entities = [Entity(agent_id=agents[e % 2].id) for e in range(SMALL_ENTITIES)]
            rooms = [Room(kind=RoomKind.GROUP) for _ in range(N_ROOMS)]
            ses.add_all([*entities, *rooms])
            ses.flush()
            items = [
                {
                    "agent_id": entities[i % SMALL_ENTITIES].agent_id,
                    "entity_id": entities[i % SMALL_ENTITIES].id,
                    "room_id": rooms[i % N_ROOMS].id,
                    "kind": "message",
                }
                for i in range(n)
            ]
            ids = add_memories(ses, items, data.vectors)
            ses.commit()
            agent_of = {e.id: e.agent_id for e in entities}
            entity_ids, room_ids = [e.id for e in entities], [r.id for r in rooms]
        index_of = {mid: i for i, mid in enumerate(ids)}
        store = IntegratedVectorStore(engine)
        matrix = data.vectors.copy()
        position = np.arange(n)
        cases: dict[str, tuple[Any, np.ndarray | None]] = {
            "unfiltered": (None, None),
            "room": (F("room_id") == str(room_ids[FILTER_ROOM]), np.flatnonzero(position % N_ROOMS == FILTER_ROOM)),
            "entity": (F("entity_id") == str(entity_ids[1]), np.flatnonzero(position % SMALL_ENTITIES == 1)),
            "agent": (
                F("agent_id") == str(agent_of[entity_ids[0]]),
                np.flatnonzero((position % SMALL_ENTITIES) % 2 == 0),
            ),
        }
        sized: dict[str, Any] = {}
        for case, (flt, rows) in cases.items():

            def numpy_exact(q: np.ndarray, rows: np.ndarray | None = rows, matrix: np.ndarray = matrix) -> np.ndarray:
                qn = (q / np.linalg.norm(q)).astype(np.float32)
                scores = (matrix if rows is None else matrix[rows]) @ qn
                top = np.argpartition(scores, -k)[-k:]
                best = top[np.argsort(-scores[top])]
                return best if rows is None else rows[best]

            def integrated(q: np.ndarray, flt: Any = flt, store: IntegratedVectorStore = store) -> list[Any]:
                return store.query(q, k=k, filter=flt, include_metadata=False)

            def by_id(matches: list[Any], index_of: dict[Any, int] = index_of) -> list[int]:
                return [index_of[m.id] for m in matches]

            times, found = side_by_side(
                {"numpy_exact": numpy_exact, "integrated": integrated},
                {"numpy_exact": lambda x: [int(i) for i in x], "integrated": by_id},
                data,
            )
            exact = data.exact_top(k, rows)
            floor, ours = stats(times["numpy_exact"]), stats(times["integrated"])
            ratio = ours["median_ms"] / floor["median_ms"]  # type: ignore[operator]
            above = ours["median_ms"] - floor["median_ms"]  # type: ignore[operator]
            ok = (ratio <= TARGETS["small_ratio_max"] or above <= TARGETS["small_ms_above_floor_max"]) and recall(
                found["integrated"], exact, k
            ) == 1.0
            sized[case] = {
                "rows": n if rows is None else int(rows.size),
                "numpy_exact": {**floor, "recall": r(recall(found["numpy_exact"], exact, k), 4)},
                "integrated": {**ours, "recall": r(recall(found["integrated"], exact, k), 4)},
                "ratio": r(ratio),
                "ms_above_floor": r(above),
            }
            out["checks"][f"{n}.{case}"] = {
                "value": r(ratio),
                "target": f"<= {TARGETS['small_ratio_max']}x or <= {TARGETS['small_ms_above_floor_max']} ms above "
                f"(+{above:.3f} ms), recall 1.0",
                "pass": ok,
            }
        out["sizes"][str(n)] = sized
        engine.dispose()
    return out


def vector_text(q: np.ndarray) -> str:
    return "[" + ",".join(map(str, q.tolist())) + "]"


def bench_postgresql(
    data: Data, k: int, chunk: int, exact: list[list[int]], exact_room: list[list[int]]
) -> dict[str, Any]:
    from dbcore.testing import TestServers, isolated_database

    servers = TestServers()
    try:
        log("postgresql: starting the embedded server")
        server = servers.url("postgresql")
        with isolated_database(server) as url_d, isolated_database(server) as url_r:
            dbc = bulk_import.make_db(url_d.render_as_string(hide_password=False))
            raw = bulk_import.make_db(url_r.render_as_string(hide_password=False))
            insert, ids = insert_benchmark("postgresql", dbc, raw, data, chunk)
            raw[0].dispose()
            engine, parents = dbc
            try:
                return _pg_queries(engine, parents, ids, insert, data, k, exact, exact_room)
            finally:
                engine.dispose()
    finally:
        servers.close()


def _pg_queries(
    engine: sa.Engine,
    parents: dict[str, Any],
    ids: list[uuid.UUID],
    insert: dict[str, Any],
    data: Data,
    k: int,
    exact: list[list[int]],
    exact_room: list[list[int]],
) -> dict[str, Any]:
    from pgvector.psycopg import register_vector

    index_of = {mid: i for i, mid in enumerate(ids)}
    index_of_str = {str(mid): i for i, mid in enumerate(ids)}
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # After a bulk load, as an operator would: fresh statistics, and no autovacuum running under the timings.
        conn.exec_driver_sql("VACUUM ANALYZE memories")
        conn.exec_driver_sql("VACUUM ANALYZE memory_embeddings")
    with engine.connect() as conn:
        sizes = conn.exec_driver_sql(
            "SELECT pg_total_relation_size('memory_embeddings'), "
            "pg_relation_size('ix_memory_embeddings_embedding_hnsw'), "
            "(SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_memory_embeddings_embedding_hnsw'), "
            "(SELECT extversion FROM pg_extension WHERE extname = 'vector'), "
            "current_setting('server_version'), current_setting('shared_buffers')"
        ).one()
    store = IntegratedVectorStore(engine)
    assert store.search_path == "pgvector", store.search_path

    limit = int(k)  # an int from argparse: the only value formatted into these statements
    knn_sql = f"SELECT memory_id FROM memory_embeddings ORDER BY embedding <=> %s::vector LIMIT {limit}"  # noqa: S608
    room_sql = (
        "SELECT e.memory_id FROM memory_embeddings e JOIN memories m ON m.id = e.memory_id "  # noqa: S608
        f"WHERE m.room_id = %s ORDER BY e.embedding <=> %s::vector LIMIT {limit}"
    )
    exact_sql = f"SELECT memory_id FROM memory_embeddings ORDER BY (embedding <=> %s::vector) + 0 LIMIT {limit}"  # noqa: S608

    # The hnsw.ef_search dbcore runs a top-k query with (ef_search_for exists since dbcore sets it per pooled
    # connection; before that it was min(1000, max(40, k)), set per query).
    ef_search = store.ef_search_for(k) if hasattr(store, "ef_search_for") else min(1000, max(40, k))
    settings_sql = f"SET hnsw.ef_search = {int(ef_search)}; SET hnsw.iterative_scan = strict_order"

    def raw_session(conn: sa.Connection) -> None:
        # The same settings dbcore uses, made once per pooled connection (session level, kept in the pool).
        info = conn.connection.info
        if info.get("bench_hnsw") != ef_search:
            for statement in settings_sql.split("; "):
                conn.exec_driver_sql(statement)
            conn.commit()
            info["bench_hnsw"] = ef_search

    def raw_pgvector(q: np.ndarray) -> list[Any]:
        # Baseline: same engine and pool; checkout, one SELECT in a transaction, commit.
        text = vector_text(q)
        with engine.connect() as conn:
            raw_session(conn)
            with conn.begin():
                return conn.exec_driver_sql(knn_sql, (text,)).all()

    def raw_pgvector_set_local(q: np.ndarray) -> list[Any]:
        # Reference: the settings made per query with SET LOCAL (one more round trip).
        text = vector_text(q)
        with engine.connect() as conn, conn.begin():
            conn.exec_driver_sql(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
            conn.exec_driver_sql("SET LOCAL hnsw.iterative_scan = strict_order")
            return conn.exec_driver_sql(knn_sql, (text,)).all()

    def raw_pgvector_binary(q: np.ndarray) -> list[Any]:
        # Reference: the baseline with the vector sent in pgvector's binary format (pgvector-python's
        # register_vector on the connection, numpy array as the parameter), as dbcore sends it.
        with engine.connect() as conn:
            raw_session(conn)
            if not conn.connection.info.get("bench_binary"):
                register_vector(conn.connection.dbapi_connection)
                conn.commit()
                conn.connection.info["bench_binary"] = True
            with conn.begin():
                return conn.exec_driver_sql(knn_sql, (q,)).all()

    held = engine.connect()
    for statement in settings_sql.split("; "):
        held.exec_driver_sql(statement)
    held.commit()

    def raw_pgvector_held(q: np.ndarray) -> list[Any]:
        # Lower bound: one statement on a connection held open (no pool checkout, no pre-ping).
        rows = held.exec_driver_sql(knn_sql, (vector_text(q),)).all()
        held.rollback()
        return rows

    def integrated(q: np.ndarray) -> list[Any]:
        return store.query(q, k=k, include_metadata=False)

    def rows_of(result: list[Any]) -> list[int]:
        return [index_of[row[0]] for row in result]

    def by_id(matches: list[Any]) -> list[int]:
        return [index_of_str[str(m.id)] for m in matches]

    log("postgresql: unfiltered queries, side by side")
    times, rows = side_by_side(
        {
            "raw_pgvector": raw_pgvector,
            "raw_pgvector_set_local": raw_pgvector_set_local,
            "raw_pgvector_held": raw_pgvector_held,
            "raw_pgvector_binary": raw_pgvector_binary,
            "integrated": integrated,
        },
        {
            "raw_pgvector": rows_of,
            "raw_pgvector_set_local": rows_of,
            "raw_pgvector_held": rows_of,
            "raw_pgvector_binary": rows_of,
            "integrated": by_id,
        },
        data,
    )

    room_id = parents["room_ids"][FILTER_ROOM]
    flt = F("room_id") == str(room_id)

    def raw_room(q: np.ndarray) -> list[Any]:
        text = vector_text(q)
        with engine.connect() as conn:
            raw_session(conn)
            with conn.begin():
                return conn.exec_driver_sql(room_sql, (room_id, text)).all()

    def integrated_room(q: np.ndarray) -> list[Any]:
        return store.query(q, k=k, filter=flt, include_metadata=False)

    log("postgresql: filtered queries, side by side")
    ftimes, frows = side_by_side(
        {"raw_pgvector": raw_room, "integrated": integrated_room},
        {"raw_pgvector": rows_of, "integrated": by_id},
        data,
    )

    log("postgresql: exact sequential scans (reference)")
    seq_times, seq_rows = [], []
    with engine.connect() as conn:
        for q in data.queries:
            start = time.perf_counter()
            result = conn.exec_driver_sql(exact_sql, (vector_text(q),)).all()
            seq_times.append(ms_since(start))
            seq_rows.append(rows_of(result))
        plan = [
            re.sub(r"'\[[^']*\]'", "'[...]'", row[0]).strip()
            for row in conn.exec_driver_sql("EXPLAIN " + knn_sql, (vector_text(data.queries[0]),)).all()
        ]
        conn.rollback()
        with conn.begin():
            conn.exec_driver_sql("SET LOCAL hnsw.iterative_scan = strict_order")
            plan_room = [
                re.sub(r"'\[[^']*\]'", "'[...]'", row[0]).strip()
                for row in conn.exec_driver_sql("EXPLAIN " + room_sql, (room_id, vector_text(data.queries[0]))).all()
            ]
    held.close()

    base_med = statistics.median(times["raw_pgvector"])
    int_med = statistics.median(times["integrated"])
    out: dict[str, Any] = {
        "insert": insert,
        "server": {"version": sizes[4], "pgvector": sizes[3], "shared_buffers": sizes[5], "index": sizes[2]},
        "ef_search": ef_search,
        "raw_pgvector": {**stats(times["raw_pgvector"]), "recall": r(recall(rows["raw_pgvector"], exact, k), 4)},
        "raw_pgvector_set_local": {
            **stats(times["raw_pgvector_set_local"]),
            "recall": r(recall(rows["raw_pgvector_set_local"], exact, k), 4),
        },
        "raw_pgvector_held": {
            **stats(times["raw_pgvector_held"]),
            "recall": r(recall(rows["raw_pgvector_held"], exact, k), 4),
        },
        "raw_pgvector_binary": {
            **stats(times["raw_pgvector_binary"]),
            "recall": r(recall(rows["raw_pgvector_binary"], exact, k), 4),
        },
        "integrated": {
            **stats(times["integrated"]),
            "recall": r(recall(rows["integrated"], exact, k), 4),
            "build_s": insert["dbcore_s"],
        },
        "filtered": {
            "room": FILTER_ROOM,
            "raw_pgvector": {
                **stats(ftimes["raw_pgvector"]),
                "recall": r(recall(frows["raw_pgvector"], exact_room, k), 4),
            },
            "integrated": {**stats(ftimes["integrated"]), "recall": r(recall(frows["integrated"], exact_room, k), 4)},
            "ratio": r(statistics.median(ftimes["integrated"]) / statistics.median(ftimes["raw_pgvector"])),
        },
        "exact_seqscan": {**stats(seq_times), "recall": r(recall(seq_rows, exact, k), 4)},
        "plan": plan,
        "plan_filtered": plan_room,
        "memory": {
            "method": "server-side sizes: pg_total_relation_size(memory_embeddings) and pg_relation_size(HNSW index)",
            "table_total_bytes": int(sizes[0]),
            "hnsw_index_bytes": int(sizes[1]),
        },
        "ratio": r(int_med / base_med),
        "ratio_vs_set_local": r(int_med / statistics.median(times["raw_pgvector_set_local"])),
        "ratio_vs_held_connection": r(int_med / statistics.median(times["raw_pgvector_held"])),
        "ratio_vs_binary": r(int_med / statistics.median(times["raw_pgvector_binary"])),
    }
    out["checks"] = {
        "ratio": {
            "value": out["ratio"],
            "target": f"<= {TARGETS['pg_ratio_max']}",
            "pass": out["ratio"] <= TARGETS["pg_ratio_max"],
        },
        "recall": {
            "value": out["integrated"]["recall"],
            "target": f">= {TARGETS['pg_recall_min']}",
            "pass": out["integrated"]["recall"] >= TARGETS["pg_recall_min"],
        },
        "recall_filtered": {
            "value": out["filtered"]["integrated"]["recall"],
            "target": f">= {TARGETS['pg_recall_min']}",
            "pass": out["filtered"]["integrated"]["recall"] >= TARGETS["pg_recall_min"],
        },
        "insert_ratio": {
            "value": insert["ratio"],
            "target": f">= {TARGETS['insert_ratio_min']}",
            "pass": insert["pass"],
        },
        "incremental_insert_ratio": {
            "value": insert["incremental"]["ratio"],
            "target": f">= {TARGETS['pg_incremental_insert_ratio_min']} (the last chunk: "
            f"{insert['incremental']['rows']:,} rows into {insert['incremental']['into_rows']:,})",
            "pass": insert["incremental"]["ratio"] >= TARGETS["pg_incremental_insert_ratio_min"],
        },
    }
    return out


# ---------------------------------------------------------------------------------------
# 3. Chroma


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_chroma(
    data: Data,
    k: int,
    tmp: Path,
    ids: list[str],
    room_ids: list[uuid.UUID],
    exact: list[list[int]],
    exact_room: list[list[int]],
) -> dict[str, Any]:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from dbcore.vectorstores.chroma import ChromaVectorStore

    path = tmp / "chroma"
    client = chromadb.PersistentClient(path=str(path), settings=ChromaSettings(anonymized_telemetry=False))
    store = ChromaVectorStore(client, data.dims, collection="bench")
    collection = store._collection  # the underlying chromadb Collection the store queries
    index_of = {mid: i for i, mid in enumerate(ids)}

    log("chroma: building the collection through ChromaVectorStore.upsert")
    gc.collect()
    rss_before = rss()
    start = time.perf_counter()
    for s in range(0, data.n, CHROMA_BATCH):
        stop = min(data.n, s + CHROMA_BATCH)
        store.upsert([(ids[i], data.vectors[i], {"room_id": room_ids[i % N_ROOMS]}) for i in range(s, stop)])
    build_s = time.perf_counter() - start
    rss_growth = rss() - rss_before
    log(f"chroma: built in {build_s:.1f}s")

    def raw_chroma(q: np.ndarray) -> Any:
        return collection.query(query_embeddings=[q], n_results=k, include=["distances"])

    def dbcore_chroma(q: np.ndarray) -> list[Any]:
        return store.query(q, k=k, include_metadata=False)

    log("chroma: queries, side by side")
    times, rows = side_by_side(
        {"raw_chromadb": raw_chroma, "dbcore_chroma": dbcore_chroma},
        {
            "raw_chromadb": lambda res: [index_of[i] for i in res["ids"][0]],
            "dbcore_chroma": lambda ms: [index_of[str(m.id)] for m in ms],
        },
        data,
    )

    room = str(room_ids[FILTER_ROOM])
    flt = F("room_id") == room

    def raw_room(q: np.ndarray) -> Any:
        return collection.query(
            query_embeddings=[q], n_results=k, where={"room_id": {"$eq": room}}, include=["distances"]
        )

    def dbcore_room(q: np.ndarray) -> list[Any]:
        return store.query(q, k=k, filter=flt, include_metadata=False)

    log("chroma: filtered queries, side by side")
    ftimes, frows = side_by_side(
        {"raw_chromadb": raw_room, "dbcore_chroma": dbcore_room},
        {
            "raw_chromadb": lambda res: [index_of[i] for i in res["ids"][0]],
            "dbcore_chroma": lambda ms: [index_of[str(m.id)] for m in ms],
        },
        data,
    )
    base_med = statistics.median(times["raw_chromadb"])
    dbc_med = statistics.median(times["dbcore_chroma"])
    out: dict[str, Any] = {
        "chromadb_version": chromadb.__version__,
        "hnsw": {"space": "cosine", "ef_construction": 200, "ef_search": 200},
        "raw_chromadb": {**stats(times["raw_chromadb"]), "recall": r(recall(rows["raw_chromadb"], exact, k), 4)},
        "dbcore_chroma": {
            **stats(times["dbcore_chroma"]),
            "recall": r(recall(rows["dbcore_chroma"], exact, k), 4),
            "build_s": r(build_s),
        },
        "filtered": {
            "room": FILTER_ROOM,
            "raw_chromadb": {
                **stats(ftimes["raw_chromadb"]),
                "recall": r(recall(frows["raw_chromadb"], exact_room, k), 4),
            },
            "dbcore_chroma": {
                **stats(ftimes["dbcore_chroma"]),
                "recall": r(recall(frows["dbcore_chroma"], exact_room, k), 4),
            },
            "ratio": r(statistics.median(ftimes["dbcore_chroma"]) / statistics.median(ftimes["raw_chromadb"])),
        },
        "memory": {
            "method": "psutil RSS growth of this process during the build (embedded Chroma runs in-process); "
            "disk = size of the PersistentClient directory",
            "rss_growth_bytes": rss_growth,
            "disk_bytes": dir_bytes(path),
        },
        "ratio": r(dbc_med / base_med),
    }
    out["checks"] = {
        "ratio": {
            "value": out["ratio"],
            "target": f"<= {TARGETS['chroma_ratio_max']}",
            "pass": out["ratio"] <= TARGETS["chroma_ratio_max"],
        },
    }
    return out


# ---------------------------------------------------------------------------------------
# report


# ---------------------------------------------------------------------------------------
# 5. bulk import (benchmarks/bulk_import.py)


def bench_bulk(n: int, dims: int, skip: set[str]) -> dict[str, Any]:
    """Bulk import into fresh SQLite and PostgreSQL databases against the raw drivers (best of two rounds)."""
    out = bulk_import.run(
        n, dims, rounds=2, skip={name.removeprefix("bulk-") for name in skip if name.startswith("bulk-")}
    )
    limits = bulk_import.TARGETS
    checks: dict[str, Any] = {}
    if "sqlite" in out:
        r = out["sqlite"]
        checks["import_ratio_sqlite"] = {
            "value": r["ratio"],
            "target": f"<= {limits['sqlite_ratio_max']}",
            "pass": r["pass"],
        }
    if "postgresql" in out:
        r = out["postgresql"]
        ok = r["ratio"] <= limits["pg_ratio_max"]
        checks["import_ratio_postgresql"] = {"value": r["ratio"], "target": f"<= {limits['pg_ratio_max']}", "pass": ok}
        gap = r["recall_at_10"]["dbcore"] - r["recall_at_10"]["raw"]
        checks["import_recall_minus_raw"] = {"value": round(gap, 4), "target": ">= -0.01", "pass": gap >= -0.01}
        more = r.get("incremental")
        if more:
            least = limits["pg_incremental_ratio_min"]
            checks["incremental_10k_into_n_postgresql"] = {
                "value": more["ratio"],
                "target": f">= {least} (rows/s)",
                "pass": more["ratio"] >= least,
            }
    out["checks"] = checks
    return out


def fmt(x: Any, nd: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def mib(b: float | int | None) -> str:
    return "-" if b is None else f"{b / 2**20:.1f} MiB"


def table(results: dict[str, Any]) -> str:
    cfg = results["config"]
    lines = [
        f"dbcore vector search benchmark: n={cfg['n']:,} dims={cfg['dims']} queries={cfg['queries']} k={cfg['k']} "
        f"(clustered synthetic data, seed {cfg['seed']})",
        "",
        f"{'backend':<52} {'build s':>8} {'median ms':>10} {'p95 ms':>8} {'recall@10':>9}  memory",
        "-" * 108,
    ]

    def row(name: str, build: Any, d: dict[str, Any], mem: str = "") -> None:
        lines.append(
            f"{name:<52} {fmt(build, 1):>8} {fmt(d['median_ms'], 3):>10} {fmt(d['p95_ms'], 3):>8} "
            f"{fmt(d['recall'], 3):>9}  {mem}"
        )

    s = results.get("sqlite")
    if s:
        m = s["memory"]
        row("numpy exact, in-memory float32 (baseline)", None, s["numpy_exact"], f"{mib(m['matrix_bytes'])} matrix")
        row(
            "integrated / SQLite file, warm (numpy)",
            s["integrated"]["build_s"],
            s["integrated"],
            f"RSS +{mib(m['rss_growth_bytes'])} (peak +{mib(m['rss_peak_growth_bytes'])})",
        )
        lines.append(
            f"{'  cold first query after clear_matrix_cache':<52} {'':>8} {fmt(s['integrated']['cold_ms_median'], 1):>10}"
            f"   (trials: {', '.join(fmt(x, 1) for x in s['integrated']['cold_ms'])} ms; "
            f"fresh process {fmt(s['integrated']['cold_ms_child_process'], 1)} ms)"
        )
        lines.append(
            f"{'  cold reference: bare sqlite3 read + search':<52} {'':>8} "
            f"{fmt(s['integrated']['cold_reference_sqlite3_ms_median'], 1):>10}"
            f"   (trials: {', '.join(fmt(x, 1) for x in s['integrated']['cold_reference_sqlite3_ms'])} ms)"
        )
        f = s["filtered"]
        row(f"numpy exact, room {f['room']} rows (baseline)", None, f["numpy_exact"])
        row("integrated / SQLite, room filter", None, f["integrated"])
    p = results.get("postgresql")
    if p:
        mem = p["memory"]
        row(f"raw pgvector SQL, HNSW ef_search={p['ef_search']} (baseline)", None, p["raw_pgvector"])
        row("raw pgvector SQL, SET LOCAL per query (reference)", None, p["raw_pgvector_set_local"])
        row("raw pgvector SQL, held connection (reference)", None, p["raw_pgvector_held"])
        if "raw_pgvector_binary" in p:
            row("raw pgvector SQL, binary vector (reference)", None, p["raw_pgvector_binary"])
        row(
            "integrated / PostgreSQL (pgvector HNSW)",
            p["integrated"]["build_s"],
            p["integrated"],
            f"table {mib(mem['table_total_bytes'])}, HNSW {mib(mem['hnsw_index_bytes'])}",
        )
        f = p["filtered"]
        row("raw pgvector SQL, room filter (baseline)", None, f["raw_pgvector"])
        row("integrated / PostgreSQL, room filter", None, f["integrated"])
        row("pgvector exact seq scan (reference)", None, p["exact_seqscan"])
        lines.append(
            f"  integrated / raw: {fmt(p['ratio'], 3)} (baseline), {fmt(p.get('ratio_vs_binary'), 3)} (binary vector), "
            f"{fmt(p['ratio_vs_set_local'], 3)} (SET LOCAL), {fmt(p['ratio_vs_held_connection'], 3)} (held connection)"
        )
    c = results.get("chroma")
    if c:
        mem = c["memory"]
        row("raw chromadb collection.query (baseline)", None, c["raw_chromadb"])
        row(
            "dbcore ChromaVectorStore",
            c["dbcore_chroma"]["build_s"],
            c["dbcore_chroma"],
            f"RSS +{mib(mem['rss_growth_bytes'])}, disk {mib(mem['disk_bytes'])}",
        )
        f = c["filtered"]
        row("raw chromadb, room filter (baseline)", None, f["raw_chromadb"])
        row("dbcore ChromaVectorStore, room filter", None, f["dbcore_chroma"])

    if results.get("small"):
        lines += ["", "Small stores on SQLite, warm (median ms; floor = numpy exact over the same rows in memory):"]
        lines.append(f"{'memories':>9} {'filter':<11} {'rows':>7} {'floor':>8} {'dbcore':>8} {'ratio':>7} {'+ms':>7}")
        for size, cases in results["small"]["sizes"].items():
            for case, d in cases.items():
                lines.append(
                    f"{int(size):>9,} {case:<11} {d['rows']:>7,} {fmt(d['numpy_exact']['median_ms'], 3):>8} "
                    f"{fmt(d['integrated']['median_ms'], 3):>8} {fmt(d['ratio'], 2):>7} {fmt(d['ms_above_floor'], 3):>7}"
                )

    lines += ["", "Bulk insert (memories + memory_embeddings, fresh databases, chunks alternating):"]
    lines.append(f"{'database':<12} {'add_memories rows/s':>20} {'raw Core rows/s':>16} {'ratio':>7}")
    for key, label in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        if results.get(key):
            ins = results[key]["insert"]
            lines.append(
                f"{label:<12} {fmt(ins['dbcore_rows_per_s'], 0):>20} {fmt(ins['raw_rows_per_s'], 0):>16} "
                f"{fmt(ins['ratio'], 3):>7}"
            )
            inc = ins["incremental"]
            lines.append(
                f"{'  last chunk':<12} {fmt(inc['dbcore_rows_per_s'], 0):>20} {fmt(inc['raw_rows_per_s'], 0):>16} "
                f"{fmt(inc['ratio'], 3):>7}  ({inc['rows']:,} rows into {inc['into_rows']:,})"
            )

    b = results.get("bulk")
    if b:
        lines += ["", f"Bulk import, add_memories(bulk=True), {b['rows']:,} x {b['dims']} into an empty database:"]
        lines += bulk_import.report(b).splitlines()[1:]
    lines += ["", "Targets:"]
    for name, check in results["checks"].items():
        lines.append(f"  {verdict(check['pass'])}  {name:<44} {fmt(check['value'], 3):>9}  (target {check['target']})")
    lines.append("")
    code = results["code"]
    lines.append(
        f"dbcore at commit {str(code['commit'])[:10]} ({code['subject']})"
        + ("; src/ has uncommitted changes" if code["src_modified"] else "")
        + ("" if code.get("unchanged_during_run", True) else "; WARNING: the code changed during the run")
    )
    m = results["machine"]
    lines.append(
        f"total run time {results['run_seconds']:.0f} s; {m['cpu']}, {m['cores']} cores, Python {m['python']}; "
        f"load average (1/5/15 min) at start {m['load_avg_at_start']}, at end {m['load_avg_at_end']}"
    )
    return "\n".join(lines)


def main() -> int:
    args = ARGS
    if args.rss_probe:
        rss_probe(args.rss_probe, args.dims)
        return 0
    skip = {s.strip() for s in args.skip.split(",") if s.strip()} | {"sqlite-ann"}
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if only:
        skip = SECTIONS - only
    if {"sqlite", "postgresql", "chroma"} - skip:
        log(f"generating data: n={args.n} dims={args.dims} queries={args.queries} seed={args.seed}")
        data = Data(args.n, args.dims, args.queries, args.seed)
        room_rows = np.flatnonzero(data.room == FILTER_ROOM)
        log("exact float64 references")
        exact = data.exact_top(args.k)
        exact_room = data.exact_top(args.k, room_rows)

    results: dict[str, Any] = {
        "benchmark": "dbcore vector search",
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {
            "n": args.n,
            "dims": args.dims,
            "queries": args.queries,
            "k": args.k,
            "seed": args.seed,
            "clusters": N_CLUSTERS,
            "noise_norm": NOISE,
            "rooms": N_ROOMS,
            "filter_room": FILTER_ROOM,
            "warmup_queries": WARMUP,
            "priming": "every timed query runs once untimed through every contender before timing",
            "rounds": args.rounds,
            "insert_chunk": args.chunk,
            "timer": "time.perf_counter; medians over the timed queries, contenders in rotating order per query",
        },
        "machine": machine(
            memory_gib=round(psutil.virtual_memory().total / 2**30, 1),
            numpy=np.__version__,
            sqlalchemy=sa.__version__,
            sqlite=__import__("sqlite3").sqlite_version,
        ),
        "code": {**code_state(), "dbcore_version": dbcore.__version__},
        "targets": TARGETS,
    }
    tmp = Path(tempfile.mkdtemp(prefix="dbcore-bench-"))
    try:
        ids: list[str] | None = None
        room_ids: list[uuid.UUID] | None = None
        if "sqlite" not in skip:
            s = bench_sqlite(data, args.k, tmp, args.chunk, exact, exact_room)
            ids = [str(i) for i in s.pop("_ids")]
            room_ids = s.pop("_room_ids")
            results["sqlite"] = s
        if "small" not in skip:
            results["small"] = bench_small(tmp, args.k)
        if "postgresql" not in skip:
            results["postgresql"] = bench_postgresql(data, args.k, args.chunk, exact, exact_room)
        if "chroma" not in skip:
            if ids is None:
                ids = [str(uuid.uuid4()) for _ in range(data.n)]
                room_ids = [uuid.uuid4() for _ in range(N_ROOMS)]
            assert room_ids is not None
            results["chroma"] = bench_chroma(data, args.k, tmp, ids, room_ids, exact, exact_room)
        if "bulk" not in skip:
            results["bulk"] = bench_bulk(args.n, args.dims, skip)
        if "sqlite-ann" not in skip:
            log(f"ANN index on SQLite, {args.n} rows (benchmarks/ann_index.py)")
            results["sqlite-ann"] = ann_index.run(args.n, args.dims)
            print(ann_index.report(results["sqlite-ann"]), file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    checks: dict[str, Any] = {}
    for key in ("sqlite", "small", "postgresql", "chroma", "bulk", "sqlite-ann"):
        for name, check in results.get(key, {}).get("checks", {}).items():
            checks[f"{key}.{name}"] = check
    results["checks"] = checks
    results["all_pass"] = all(c["pass"] for c in checks.values())
    results["run_seconds"] = round(time.perf_counter() - T0, 1)
    results["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    end_code = code_state()
    results["code"]["unchanged_during_run"] = (end_code["commit"], end_code["src_modified"]) == (
        results["code"]["commit"],
        results["code"]["src_modified"],
    )
    print(table(results))
    print(json.dumps(results, default=str, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
