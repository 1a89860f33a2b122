"""Bulk import of memories with embeddings: ``add_memories(..., bulk=True)`` against the raw driver.

Each contender loads the same rows (same ids of agent, entity and rooms, same content,
content hashes, times and vectors) into its own freshly migrated database on the same
server, in one transaction:

- **SQLite:** the raw side is ``sqlite3`` ``executemany`` of the values as dbcore stores
  them (UUID text, JSON text, little-endian float32 blobs). Target: dbcore <= 1.5x its time.
- **PostgreSQL incremental** (first round only): then 10,000 more rows into each
  database of n rows through the plain ``add_memories`` (the HNSW index maintained row
  by row) against SQLAlchemy Core ``executemany`` of the same values. Target: dbcore's
  rows/s >= 0.9x.
- **PostgreSQL 18 + pgvector 0.8** (the embedded server): the raw side is psycopg
  ``COPY`` of the same rows (the vectors binary, through pgvector-python's dumper),
  after dropping the HNSW index of the empty table, followed by ``CREATE INDEX`` with
  the settings pgvector's README suggests (``maintenance_work_mem`` 1 GB and 7
  parallel maintenance workers). Target: dbcore <= 1.3x its time, and the same
  recall@10 afterwards (both measured with the same SQL and ``hnsw.ef_search``).

Building the input (dicts for dbcore, tuples for the raw side) is part of each time.
Rounds alternate which contender goes first; the best round of each is reported.

    python benchmarks/bulk_import.py [--n 100000] [--dims 384] [--rounds 2] [--skip postgresql]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

TARGETS = {"sqlite_ratio_max": 1.5, "pg_ratio_max": 1.3, "pg_incremental_ratio_min": 0.9}
INCREMENTAL = 10_000  # rows added after the import, in the first round (the plain path, the index kept)
N_ROOMS = 10
N_CLUSTERS = 100
EF_SEARCH = 200  # dbcore's default for top-10
QUERIES = 50


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="memories to import (default 100000)")
    p.add_argument("--dims", type=int, default=384, help="embedding dimensions (default 384)")
    p.add_argument("--rounds", type=int, default=2, help="imports per contender and database (default 2)")
    p.add_argument("--skip", default="", help="comma list of sections to skip: sqlite,postgresql")
    p.add_argument("--incremental", type=int, default=INCREMENTAL, help="rows added after the PostgreSQL import")
    return p.parse_args(argv)


if __name__ == "__main__":
    os.environ["DBCORE_VECTOR_DIMS"] = str(parse_args().dims)

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

import dbcore  # noqa: E402
from dbcore import migrate  # noqa: E402
from dbcore.memories import add_memories  # noqa: E402
from dbcore.testing import add_memory_parents  # noqa: E402


def log(msg: str) -> None:
    print(f"[bulk_import] {msg}", file=sys.stderr, flush=True)


def make_vectors(n: int, dims: int, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around ``N_CLUSTERS`` centres, and ``QUERIES`` query vectors drawn the same way."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((N_CLUSTERS, dims)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(count: int) -> np.ndarray:
        noise = rng.standard_normal((count, dims)).astype(np.float32) * (0.75 / np.sqrt(dims))
        out = centres[rng.integers(0, N_CLUSTERS, count)] + noise
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return draw(n), draw(QUERIES)


def make_db(url: str) -> tuple[sa.Engine, dict[str, Any]]:
    """Migrate ``url`` to head, create an agent, an entity and ``N_ROOMS`` rooms; return engine and parent ids."""
    settings = dbcore.Settings(database_url=url)
    migrate.upgrade(settings, "head")
    engine = dbcore.create_engine(settings)
    with Session(engine) as session:
        parents = add_memory_parents(session, rooms=N_ROOMS, name="bulk")
        session.commit()
    return engine, parents


def content_of(i: int) -> dict[str, Any]:
    return {"text": f"memory {i}"}


def content_hash(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def import_dbcore(engine: sa.Engine, parents: dict[str, Any], vectors: np.ndarray, bulk: bool = True) -> None:
    rooms = parents["room_ids"]
    items = [
        {
            "agent_id": parents["agent_id"],
            "entity_id": parents["entity_id"],
            "room_id": rooms[i % N_ROOMS],
            "kind": "message",
            "content": content_of(i),
        }
        for i in range(len(vectors))
    ]
    with Session(engine) as session:
        add_memories(session, items, vectors, bulk=bulk)
        session.commit()


def insert_raw_core(engine: sa.Engine, parents: dict[str, Any], vectors: np.ndarray) -> None:
    """The incremental baseline: two SQLAlchemy Core executemany statements of the same values."""
    now = datetime.now(timezone.utc)
    rooms = parents["room_ids"]
    memories = []
    for i in range(len(vectors)):
        content = content_of(i)
        memories.append(
            {"id": uuid.uuid4(), "kind": 1, "content": content, "metadata": {}, "is_unique": False,
             "agent_id": parents["agent_id"], "entity_id": parents["entity_id"], "room_id": rooms[i % N_ROOMS],
             "content_hash": content_hash(content), "created_at": now, "updated_at": now}
        )  # fmt: skip
    embeddings = [
        {"id": uuid.uuid4(), "memory_id": memory["id"], "embedding": vectors[i], "model": "", "created_at": now}
        for i, memory in enumerate(memories)
    ]
    with engine.begin() as connection:
        connection.execute(dbcore.Memory.__table__.insert(), memories)
        connection.execute(dbcore.MemoryEmbedding.__table__.insert(), embeddings)


def raw_rows(parents: dict[str, Any], n: int, as_text: Callable[[Any], Any]) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """The memories rows (id, kind, content, metadata, is_unique, agent, entity, room, hash, created, updated)."""
    now = datetime.now(timezone.utc)
    stamp = as_text(now)
    agent, entity = as_text(parents["agent_id"]), as_text(parents["entity_id"])
    rooms = [as_text(room) for room in parents["room_ids"]]
    ids = [uuid.uuid4() for _ in range(n)]
    rows = []
    for i, memory_id in enumerate(ids):
        content = content_of(i)
        rows.append(
            (as_text(memory_id), 1, json.dumps(content), "{}", False, agent, entity, rooms[i % N_ROOMS],
             content_hash(content), stamp, stamp)
        )  # fmt: skip
    return rows, ids


MEMORY_COLUMNS = (
    "id, kind, content, metadata, is_unique, agent_id, entity_id, room_id, content_hash, created_at, updated_at"
)


# --- SQLite --------------------------------------------------------------------------------


def sqlite_text(value: Any) -> Any:
    """A value as dbcore's SQLite columns store it: UUIDs as text, times as naive UTC text."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
    return str(value)


def import_raw_sqlite(path: str, parents: dict[str, Any], vectors: np.ndarray) -> None:
    rows, _ = raw_rows(parents, len(vectors), sqlite_text)
    stamp = rows[0][-1] if rows else ""
    embeddings = [
        (str(uuid.uuid4()), row[0], vectors[i].astype("<f4").tobytes(), "", stamp) for i, row in enumerate(rows)
    ]
    connection = sqlite3.connect(path)
    try:
        with connection:
            connection.executemany(
                "INSERT INTO memories (id, kind, content, metadata, is_unique, agent_id, entity_id, room_id, "
                "content_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            connection.executemany(
                "INSERT INTO memory_embeddings (id, memory_id, embedding, model, created_at) VALUES (?, ?, ?, ?, ?)",
                embeddings,
            )
    finally:
        connection.close()


def bench_sqlite(vectors: np.ndarray, rounds: int, tmp: Path) -> dict[str, Any]:
    times: dict[str, list[float]] = {"dbcore": [], "raw": []}
    for round_ in range(rounds):
        for who in ("dbcore", "raw") if round_ % 2 == 0 else ("raw", "dbcore"):
            path = tmp / f"{who}-{round_}.sqlite3"
            engine, parents = make_db(f"sqlite:///{path}")
            start = time.perf_counter()
            if who == "dbcore":
                import_dbcore(engine, parents, vectors)
            else:
                import_raw_sqlite(str(path), parents, vectors)
            times[who].append(time.perf_counter() - start)
            check_counts(engine, len(vectors))
            engine.dispose()
            log(f"sqlite round {round_}: {who} {times[who][-1]:.2f} s")
    best = {who: min(values) for who, values in times.items()}
    ratio = best["dbcore"] / best["raw"]
    return {
        "dbcore_s": round(best["dbcore"], 3),
        "raw_s": round(best["raw"], 3),
        "ratio": round(ratio, 3),
        "all_s": {who: [round(t, 3) for t in values] for who, values in times.items()},
        "pass": ratio <= TARGETS["sqlite_ratio_max"],
    }


def check_counts(engine: sa.Engine, n: int) -> None:
    with engine.connect() as connection:
        counts = [
            connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (dbcore.Memory.__table__, dbcore.MemoryEmbedding.__table__)
        ]
    if counts != [n, n]:
        raise RuntimeError(f"expected {n} rows in memories and memory_embeddings, found {counts}")


# --- PostgreSQL ----------------------------------------------------------------------------

HNSW = "ix_memory_embeddings_embedding_hnsw"


def import_raw_postgresql(url: sa.URL, parents: dict[str, Any], vectors: np.ndarray) -> None:
    import psycopg
    from pgvector.psycopg import register_vector

    rows, ids = raw_rows(parents, len(vectors), lambda value: value)
    now = rows[0][-1] if rows else None
    with psycopg.connect(conninfo(url)) as connection:
        register_vector(connection)
        with connection.transaction(), connection.cursor() as cursor:
            definition = cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (HNSW,)).fetchone()[0]
            cursor.execute(f"DROP INDEX {HNSW}")
            with cursor.copy(f"COPY memories ({MEMORY_COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            with cursor.copy(
                "COPY memory_embeddings (id, memory_id, embedding, model, created_at) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["uuid", "uuid", "vector", "text", "timestamptz"])
                for i, memory_id in enumerate(ids):
                    copy.write_row((uuid.uuid4(), memory_id, vectors[i], "", now))
            cursor.execute("SET LOCAL maintenance_work_mem = '1GB'")
            cursor.execute("SET LOCAL max_parallel_maintenance_workers = 7")
            cursor.execute(definition)


def conninfo(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def pg_recall(url: sa.URL, vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    """Recall@k of the HNSW index against exact search, by memory row order (same SQL for both contenders)."""
    import psycopg
    from pgvector.psycopg import register_vector

    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :k]
    nearest = (
        "SELECT m.content->>'text' FROM (SELECT memory_id, embedding <=> %s AS d FROM memory_embeddings "
        "ORDER BY d LIMIT %s) e JOIN memories m ON m.id = e.memory_id"
    )
    found = 0
    with psycopg.connect(conninfo(url)) as connection:
        register_vector(connection)
        cursor = connection.cursor()
        cursor.execute(f"SET hnsw.ef_search = {EF_SEARCH}")
        for q, truth in zip(queries, exact, strict=True):
            cursor.execute(nearest, (q.astype(np.float32), k))
            got = {int(text.rsplit(" ", 1)[1]) for (text,) in cursor.fetchall()}
            found += len(got & set(truth.tolist()))
    return found / (len(queries) * k)


def bench_postgresql(vectors: np.ndarray, queries: np.ndarray, extra: np.ndarray, rounds: int) -> dict[str, Any]:
    from dbcore.testing import TestServers, isolated_database

    servers = TestServers()
    times: dict[str, list[float]] = {"dbcore": [], "raw": []}
    recalls: dict[str, list[float]] = {"dbcore": [], "raw": []}
    incremental: dict[str, float] = {}
    try:
        server = servers.url("postgresql")
        for round_ in range(rounds):
            for who in ("dbcore", "raw") if round_ % 2 == 0 else ("raw", "dbcore"):
                with isolated_database(server) as url:
                    engine, parents = make_db(url.render_as_string(hide_password=False))
                    start = time.perf_counter()
                    if who == "dbcore":
                        import_dbcore(engine, parents, vectors)
                    else:
                        import_raw_postgresql(url, parents, vectors)
                    times[who].append(time.perf_counter() - start)
                    check_counts(engine, len(vectors))
                    recalls[who].append(pg_recall(url, vectors, queries))
                    if round_ == 0 and len(extra):
                        start = time.perf_counter()
                        if who == "dbcore":
                            import_dbcore(engine, parents, extra, bulk=False)
                        else:
                            insert_raw_core(engine, parents, extra)
                        incremental[who] = len(extra) / (time.perf_counter() - start)
                        check_counts(engine, len(vectors) + len(extra))
                    engine.dispose()
                log(f"postgresql round {round_}: {who} {times[who][-1]:.2f} s, recall@10 {recalls[who][-1]:.3f}")
    finally:
        servers.close()
    best = {who: min(values) for who, values in times.items()}
    ratio = best["dbcore"] / best["raw"]
    recall = {who: round(float(np.mean(values)), 4) for who, values in recalls.items()}
    return {
        "dbcore_s": round(best["dbcore"], 3),
        "raw_s": round(best["raw"], 3),
        "ratio": round(ratio, 3),
        "all_s": {who: [round(t, 3) for t in values] for who, values in times.items()},
        "recall_at_10": recall,
        "pass": ratio <= TARGETS["pg_ratio_max"] and recall["dbcore"] >= recall["raw"] - 0.01,
        "incremental": {
            "rows": len(extra),
            "into_rows": len(vectors),
            "dbcore_rows_per_s": round(incremental["dbcore"], 1),
            "raw_rows_per_s": round(incremental["raw"], 1),
            "ratio": round(incremental["dbcore"] / incremental["raw"], 3),
        }
        if incremental
        else None,
    }


def run(n: int, dims: int, rounds: int, skip: set[str], incremental: int = INCREMENTAL) -> dict[str, Any]:
    """Both sections; each result has ``pass`` (the vector_search benchmark runs this as its bulk section)."""
    everything, queries = make_vectors(n + incremental, dims)
    vectors, extra = everything[:n], everything[n:]
    out: dict[str, Any] = {"rows": n, "dims": dims, "rounds": rounds, "targets": TARGETS}
    with tempfile.TemporaryDirectory(prefix="dbcore-bulk-") as tmp:
        if "sqlite" not in skip:
            out["sqlite"] = bench_sqlite(vectors, rounds, Path(tmp))
        if "postgresql" not in skip:
            out["postgresql"] = bench_postgresql(vectors, queries, extra, rounds)
    return out


def report(results: dict[str, Any]) -> str:
    lines = [f"bulk import of {results['rows']} x {results['dims']} (best of {results['rounds']})"]
    lines.append(f"{'database':<12}{'dbcore s':>10}{'raw s':>10}{'ratio':>8}  target   recall@10 dbcore/raw")
    for name, limit in (("sqlite", "sqlite_ratio_max"), ("postgresql", "pg_ratio_max")):
        if name in results:
            r = results[name]
            recall = r.get("recall_at_10")
            shown = f"{recall['dbcore']:.3f} / {recall['raw']:.3f}" if recall else "-"
            verdict = "PASS" if r["pass"] else "FAIL"
            lines.append(
                f"{name:<12}{r['dbcore_s']:>10.2f}{r['raw_s']:>10.2f}{r['ratio']:>7.2f}x  <={TARGETS[limit]}x  {shown}  {verdict}"
            )
    more = results.get("postgresql", {}).get("incremental")
    if more:
        verdict = "PASS" if more["ratio"] >= TARGETS["pg_incremental_ratio_min"] else "FAIL"
        lines.append(
            f"postgresql incremental, {more['rows']:,} rows into {more['into_rows']:,}: add_memories "
            f"{more['dbcore_rows_per_s']:.0f} rows/s, Core executemany {more['raw_rows_per_s']:.0f} rows/s, "
            f"{more['ratio']:.3f}x (target >= {TARGETS['pg_incremental_ratio_min']}x)  {verdict}"
        )
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    results = run(args.n, args.dims, args.rounds, skip, args.incremental)
    print(report(results))
    print(json.dumps(results, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
