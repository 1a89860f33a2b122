#!/usr/bin/env python
"""Concurrent load benchmark: dbcore's async API against its sync API and raw SQLAlchemy async.

Run from the repository root::

    python benchmarks/async_load.py            # 3 rounds x 2,000 units per runner
    python benchmarks/async_load.py --quick    # 1 round x 400 units

Against the embedded PostgreSQL 18 with pgvector (``dbcore.testing``; its
``max_connections`` raised so that every task can hold a connection), one migrated
database preloaded with ``--preload`` memories and their embeddings (HNSW index). A
*unit of work* inserts a memory with its embedding (one transaction), reads the
memory back (another), and runs one top-``k`` vector query. Three runners do the same
units, side by side in one process, in rotating order each round:

(a) dbcore async: ``--tasks`` (200) tasks on one event loop taking units from a
    queue; ``get_async_session()`` (the memory, then its ``MemoryEmbedding``),
    ``get_async_session(read_only=True)`` and ``session.get`` for the read,
    ``await store.aquery()`` on the integrated store.
(b) dbcore sync: ``--threads`` (40) threads, ``get_session()`` and ``store.query()``.
(c) raw SQLAlchemy async: ``create_async_engine`` with the same pool size, no dbcore
    listeners, ``--tasks`` tasks; Core statements on dbcore's tables (the same INSERTs,
    SELECT and ``ORDER BY embedding <=> :q LIMIT k``).

Every runner counts errors and the most connections its pool had checked out.
Throughput is units per wall-clock second; latency is per unit (p50, p99). Targets:
(a) without errors, (a) >= 0.9 x (c) and (a) >= 1.0 x (b). Progress goes to stderr,
the table to stdout, and the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--units", type=int, default=None, help="units of work per runner and round (default 2000)")
    p.add_argument("--rounds", type=int, default=None, help="rounds; each runs (a), (b), (c) in a rotated order")
    p.add_argument("--tasks", type=int, default=200, help="concurrent tasks of (a) and (c) (default 200)")
    p.add_argument("--threads", type=int, default=40, help="threads of (b) (default 40)")
    p.add_argument("--preload", type=int, default=5000, help="memories in the database before the runs")
    p.add_argument("--dims", type=int, default=384, help="embedding dimensions (default 384)")
    p.add_argument("--k", type=int, default=10, help="top-k of the vector query (default 10)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round of 400 units")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    args.units = args.units or (400 if args.quick else 2000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    return args


ARGS = parse_args()
os.environ["DBCORE_VECTOR_DIMS"] = str(ARGS.dims)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from provenance import code_state, machine  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

import dbcore  # noqa: E402
from dbcore import migrate  # noqa: E402
from dbcore.DB_Memories import Memory, MemoryEmbedding, MemoryKind  # noqa: E402
from dbcore.memories import add_memories  # noqa: E402
from dbcore.testing import EmbeddedPostgres, add_memory_parents, isolated_database  # noqa: E402
from dbcore.vectorstores import get_vector_store  # noqa: E402

MEMORIES: sa.Table = Memory.__table__  # type: ignore[assignment]
EMBEDDINGS: sa.Table = MemoryEmbedding.__table__  # type: ignore[assignment]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Tally:
    """Latencies, errors and the pool's high-water mark of one run."""

    def __init__(self, pool: Any) -> None:
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.pool = pool
        self.max_checked_out = 0
        self._lock = threading.Lock()

    def done(self, seconds: float) -> None:
        with self._lock:
            self.latencies.append(seconds)
            self.max_checked_out = max(self.max_checked_out, self.pool.checkedout())

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    def summary(self, wall: float) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else float("nan")

        return {
            "units": len(lat),
            "errors": len(self.errors),
            "first_errors": sorted(set(self.errors))[:3],
            "wall_s": round(wall, 3),
            "units_per_s": round(len(lat) / wall, 1) if wall else 0.0,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else float("nan"),
            "max_checked_out": self.max_checked_out,
        }


# --- the three runners --------------------------------------------------------------------------


async def _drive(units: int, workers: int, unit: Callable[[int], Awaitable[None]], tally: Tally) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(units):
        queue.put_nowait(i)

    async def worker() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            start = time.perf_counter()
            try:
                await unit(i)
            except Exception as exc:  # noqa: BLE001 - counted, reported
                tally.failed(exc)
            else:
                tally.done(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.perf_counter() - start


def run_dbcore_async(settings: dbcore.Settings, parents: dict[str, Any], vectors: np.ndarray) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        engine = dbcore.get_async_engine(settings)
        store = get_vector_store(settings)
        tally = Tally(engine.sync_engine.pool)

        async def unit(i: int) -> None:
            vector = vectors[i]
            async with dbcore.get_async_session(settings) as session:
                memory = Memory(kind=MemoryKind.MESSAGE, content={"i": i}, **parents)
                session.add(memory)
                await session.flush()
                session.add(MemoryEmbedding(memory_id=memory.id, embedding=vector))
            async with dbcore.get_async_session(settings, read_only=True) as session:
                assert await session.get(Memory, memory.id) is not None
            assert len(await store.aquery(vector, k=ARGS.k, include_metadata=False)) == ARGS.k

        await unit(len(vectors) - 1)  # warm: connect, first queries
        wall = await _drive(ARGS.units, ARGS.tasks, unit, tally)
        await store.aclose()
        await dbcore.dispose_async_engines()
        return tally.summary(wall)

    return asyncio.run(main())


def run_dbcore_sync(settings: dbcore.Settings, parents: dict[str, Any], vectors: np.ndarray) -> dict[str, Any]:
    engine = dbcore.get_engine(settings)
    store = get_vector_store(settings)
    tally = Tally(engine.pool)

    def unit(i: int) -> None:
        vector = vectors[i]
        start = time.perf_counter()
        try:
            with dbcore.get_session(settings) as session:
                memory = Memory(kind=MemoryKind.MESSAGE, content={"i": i}, **parents)
                session.add(memory)
                session.flush()
                session.add(MemoryEmbedding(memory_id=memory.id, embedding=vector))
            with dbcore.get_session(settings, read_only=True) as session:
                assert session.get(Memory, memory.id) is not None
            assert len(store.query(vector, k=ARGS.k, include_metadata=False)) == ARGS.k
        except Exception as exc:  # noqa: BLE001 - counted, reported
            tally.failed(exc)
        else:
            tally.done(time.perf_counter() - start)

    unit(len(vectors) - 1)
    with ThreadPoolExecutor(max_workers=ARGS.threads) as pool:
        start = time.perf_counter()
        list(pool.map(unit, range(ARGS.units)))
        wall = time.perf_counter() - start
    store.close()
    dbcore.dispose_engines()
    return tally.summary(wall)


def run_raw_async(settings: dbcore.Settings, parents: dict[str, Any], vectors: np.ndarray) -> dict[str, Any]:
    limit = int(ARGS.k)  # an int from argparse
    query = sa.bindparam("q", type_=EMBEDDINGS.c.embedding.type)
    knn = sa.select(EMBEDDINGS.c.memory_id).order_by(EMBEDDINGS.c.embedding.cosine_distance(query))

    async def main() -> dict[str, Any]:
        engine = create_async_engine(
            settings.async_url, pool_size=settings.pool_size, max_overflow=settings.max_overflow, pool_pre_ping=True
        )
        tally = Tally(engine.sync_engine.pool)
        memory_row = {"kind": MemoryKind.MESSAGE, "metadata": {}, "is_unique": False, **parents}

        async def unit(i: int) -> None:
            vector = vectors[i]
            memory_id = uuid.uuid4()
            now = datetime.now(timezone.utc)
            async with engine.begin() as conn:
                await conn.execute(
                    MEMORIES.insert(),
                    {"id": memory_id, "content": {"i": i}, "created_at": now, "updated_at": now, **memory_row},
                )
                await conn.execute(
                    EMBEDDINGS.insert(),
                    {"id": uuid.uuid4(), "memory_id": memory_id, "embedding": vector, "model": "", "created_at": now},
                )
            async with engine.connect() as conn:
                assert (await conn.execute(sa.select(MEMORIES).where(MEMORIES.c.id == memory_id))).one()
                await conn.commit()
            async with engine.connect() as conn:
                rows = (await conn.execute(knn.limit(limit), {"q": vector})).all()
                await conn.commit()
            assert len(rows) == limit

        await unit(len(vectors) - 1)
        wall = await _drive(ARGS.units, ARGS.tasks, unit, tally)
        await engine.dispose()
        return tally.summary(wall)

    return asyncio.run(main())


RUNNERS: dict[str, Callable[[dbcore.Settings, dict[str, Any], np.ndarray], dict[str, Any]]] = {
    "a_dbcore_async": run_dbcore_async,
    "b_dbcore_sync": run_dbcore_sync,
    "c_raw_async": run_raw_async,
}


# --- set-up and report ----------------------------------------------------------------------------


def prepare(url: str, rng: np.random.Generator) -> tuple[dbcore.Settings, dict[str, Any]]:
    settings = dbcore.Settings(database_url=url, vector_dims=ARGS.dims)
    migrate.upgrade(settings, "head")
    with dbcore.system_session(settings) as session:
        dbcore.seed(session)
    with dbcore.get_session(settings) as session:
        made = add_memory_parents(session, name="async-load")
    parents = {"agent_id": made["agent_id"], "entity_id": made["entity_id"], "room_id": made["room_ids"][0]}
    log(f"preloading {ARGS.preload} memories")
    for start in range(0, ARGS.preload, 1000):
        count = min(1000, ARGS.preload - start)
        with dbcore.get_session(settings) as session:
            add_memories(
                session,
                [{**parents, "kind": "message", "content": {"p": start + j}} for j in range(count)],
                rng.normal(size=(count, ARGS.dims)).astype(np.float32),
            )
    with dbcore.get_engine(settings).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE memories")
        conn.exec_driver_sql("VACUUM ANALYZE memory_embeddings")
    dbcore.dispose_engines()
    return settings, parents


def start_server() -> EmbeddedPostgres:
    """The embedded PostgreSQL, allowed enough connections for every task of (a) and (c) at once.

    dbcore's pool (40, overflow unbounded) grows to one connection per task in flight;
    PostgreSQL's default of 100 connections would refuse the rest.
    """
    server = EmbeddedPostgres()
    admin = sa.create_engine(server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"ALTER SYSTEM SET max_connections = {int(ARGS.tasks) + ARGS.threads + 60}")
    admin.dispose()
    server.stop()
    server.start()
    return server


def main() -> None:
    rng = np.random.default_rng(ARGS.seed)
    log("starting the embedded PostgreSQL with pgvector")
    server = start_server()
    try:
        with isolated_database(server.url) as server_url:
            settings, parents = prepare(server_url.render_as_string(hide_password=False), rng)
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in RUNNERS}
            names = list(RUNNERS)
            for round_no in range(ARGS.rounds):
                order = names[round_no % 3 :] + names[: round_no % 3]
                for name in order:
                    vectors = rng.normal(size=(ARGS.units + 1, ARGS.dims)).astype(np.float32)
                    log(f"round {round_no + 1}/{ARGS.rounds}: {name}")
                    result = RUNNERS[name](settings, parents, vectors)
                    log(f"  {result}")
                    runs[name].append(result)
    finally:
        server.cleanup()
    report(runs)


def _median(results: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in results))


def report(runs: dict[str, list[dict[str, Any]]]) -> None:
    summary = {
        name: {
            "units_per_s": _median(results, "units_per_s"),
            "p50_ms": _median(results, "p50_ms"),
            "p99_ms": _median(results, "p99_ms"),
            "errors": sum(r["errors"] for r in results),
            "max_checked_out": max(r["max_checked_out"] for r in results),
            "first_errors": sorted({e for r in results for e in r["first_errors"]})[:3],
        }
        for name, results in runs.items()
    }
    a, b, c = (summary[name]["units_per_s"] for name in RUNNERS)
    ratios = {"a_over_c": round(a / c, 3) if c else None, "a_over_b": round(a / b, 3) if b else None}
    verdicts = {
        "a_no_errors": summary["a_dbcore_async"]["errors"] == 0,
        "a_at_least_0.9x_raw_async": bool(c) and a >= 0.9 * c,
        "a_at_least_1.0x_sync": bool(b) and a >= 1.0 * b,
    }
    print(f"{'runner':<16} {'units/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'max conns':>10}")
    for name, row in summary.items():
        print(
            f"{name:<16} {row['units_per_s']:>9.1f} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} "
            f"{row['errors']:>7} {row['max_checked_out']:>10}"
        )
    print(f"(a)/(c) = {ratios['a_over_c']}   (a)/(b) = {ratios['a_over_b']}   {verdicts}")
    record = {
        "benchmark": "async_load",
        "args": {k: v for k, v in vars(ARGS).items()},
        "summary": summary,
        "ratios": ratios,
        "verdicts": verdicts,
        "runs": runs,
        "code": code_state(),
        "machine": machine(sqlalchemy=sa.__version__),
    }
    print(json.dumps(record, default=str))


if __name__ == "__main__":
    main()
