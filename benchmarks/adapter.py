#!/usr/bin/env python
"""The adapter against the same work written with raw SQLAlchemy Core, on SQLite and PostgreSQL.

Run from the repository root::

    python benchmarks/adapter.py             # 3 rounds x 300 units per runner and database
    python benchmarks/adapter.py --quick     # 1 round x 60 units

A *unit* is what an agent does per message: store the message with its embedding,
read the room's latest 50 memories, and search the room for the 10 nearest memories.

(a) adapter: ``DatabaseAdapter.create_memory`` (with the embedding),
    ``get_memories(room_id=..., limit=50)`` and ``search_memories(vector, k=10,
    room_id=...)`` through the configured integrated vector store.
(b) raw Core: a plain ``sqlalchemy.create_engine`` (no dbcore listeners) running the
    same statements on dbcore's tables: one transaction inserting the memory and its
    embedding, a ``SELECT ... ORDER BY created_at DESC LIMIT 50`` of the room, and the
    search as the database allows: ``ORDER BY embedding <=> :q LIMIT 10`` on
    PostgreSQL with pgvector; on SQLite, the room's embeddings read back and scored
    exactly in numpy.

Both run on one database per dialect (a temporary SQLite file; the embedded
PostgreSQL 18 with pgvector from ``dbcore.testing``), preloaded with ``--preload``
memories in the room, one after the other in rotating order each round. Target:
(a) >= 0.8 x (b) in units per second on each database. The table goes to stdout, the
last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--units", type=int, default=None, help="units per runner and round (default 300)")
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 3)")
    p.add_argument("--preload", type=int, default=2000, help="memories in the room before the runs (default 2000)")
    p.add_argument("--dims", type=int, default=384, help="embedding dimensions (default 384)")
    p.add_argument("--only", choices=("sqlite", "postgresql"), default=None, help="one database only")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round of 60 units")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    args.units = args.units or (60 if args.quick else 300)
    args.rounds = args.rounds or (1 if args.quick else 3)
    return args


ARGS = parse_args()
os.environ["DBCORE_VECTOR_DIMS"] = str(ARGS.dims)
os.environ.setdefault("DBCORE_VECTOR_BACKEND", "integrated")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from provenance import code_state, machine  # noqa: E402

import dbcore  # noqa: E402
from dbcore.DB_Memories import Memory, MemoryEmbedding, MemoryKind  # noqa: E402
from dbcore.memories import add_memories  # noqa: E402
from dbcore.testing import EmbeddedPostgres, add_memory_parents, isolated_database  # noqa: E402

TARGET = 0.8
MEM: sa.Table = Memory.__table__  # type: ignore[assignment]
EMB: sa.Table = MemoryEmbedding.__table__  # type: ignore[assignment]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    m = rng.standard_normal((n, ARGS.dims)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def prepare(settings: dbcore.Settings, rng: np.random.Generator) -> dict[str, Any]:
    """Migrate, seed and preload the room; returns the parents' ids."""
    dbcore.DatabaseAdapter(settings).init()
    with dbcore.get_session(settings) as session:
        parents = add_memory_parents(session, name="adapter-bench")
        room = parents["room_ids"][0]
        rows = [
            {
                "agent_id": parents["agent_id"],
                "entity_id": parents["entity_id"],
                "room_id": room,
                "kind": "message",
                "content": {"text": f"preloaded {i}"},
            }
            for i in range(ARGS.preload)
        ]
        add_memories(session, rows, unit_vectors(rng, ARGS.preload))
    return {"agent_id": parents["agent_id"], "entity_id": parents["entity_id"], "room_id": room}


def adapter_runner(settings: dbcore.Settings, ids: dict[str, Any]) -> Callable[[np.ndarray, int], None]:
    adapter = dbcore.DatabaseAdapter(settings)

    def unit(vector: np.ndarray, i: int) -> None:
        adapter.create_memory(
            agent_id=ids["agent_id"],
            entity_id=ids["entity_id"],
            room_id=ids["room_id"],
            content={"text": f"message {i}"},
            embedding=vector,
        )
        page = adapter.get_memories(room_id=ids["room_id"], limit=50)
        hits = adapter.search_memories(vector, k=10, room_id=ids["room_id"])
        assert len(page.items) == 50 and hits, (len(page.items), len(hits))

    return unit


def raw_runner(settings: dbcore.Settings, ids: dict[str, Any]) -> Callable[[np.ndarray, int], None]:
    engine = sa.create_engine(settings.url)
    pgvector = engine.dialect.name == "postgresql"
    latest = sa.select(MEM).where(MEM.c.room_id == sa.bindparam("room")).order_by(MEM.c.created_at.desc()).limit(50)
    in_room = (
        sa.select(EMB.c.memory_id, EMB.c.embedding)
        .join(MEM, MEM.c.id == EMB.c.memory_id)
        .where(MEM.c.room_id == sa.bindparam("room"))
    )

    def search(conn: sa.Connection, vector: np.ndarray) -> list[Any]:
        if pgvector:
            distance = EMB.c.embedding.cosine_distance(vector)  # type: ignore[attr-defined]
            return conn.execute(
                in_room.with_only_columns(EMB.c.memory_id, distance).order_by(distance).limit(10),
                {"room": ids["room_id"]},
            ).all()
        rows = conn.execute(in_room, {"room": ids["room_id"]}).all()
        matrix = np.vstack([row.embedding for row in rows])
        scores = matrix @ vector / np.linalg.norm(matrix, axis=1)
        best = np.argpartition(-scores, 10)[:10]
        return [rows[i].memory_id for i in best[np.argsort(-scores[best])]]

    def unit(vector: np.ndarray, i: int) -> None:
        now = datetime.now(timezone.utc)
        memory_id = uuid.uuid4()
        with engine.begin() as conn:
            conn.execute(
                MEM.insert(),
                {
                    "id": memory_id,
                    "agent_id": ids["agent_id"],
                    "entity_id": ids["entity_id"],
                    "room_id": ids["room_id"],
                    "kind": MemoryKind.MESSAGE,
                    "content": {"text": f"message {i}"},
                    "metadata": {},
                    "is_unique": False,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            conn.execute(
                EMB.insert(),
                {"id": uuid.uuid4(), "memory_id": memory_id, "embedding": vector, "model": "", "created_at": now},
            )
        with engine.connect() as conn:
            page = conn.execute(latest, {"room": ids["room_id"]}).all()
            hits = search(conn, vector)
        assert len(page) == 50 and hits

    return unit


def timed(unit: Callable[[np.ndarray, int], None], vectors: np.ndarray) -> float:
    start = time.perf_counter()
    for i, vector in enumerate(vectors):
        unit(vector, i)
    return len(vectors) / (time.perf_counter() - start)


def bench(name: str, settings: dbcore.Settings, rng: np.random.Generator) -> dict[str, Any]:
    log(f"{name}: preloading {ARGS.preload} memories")
    ids = prepare(settings, rng)
    runners = {"adapter": adapter_runner(settings, ids), "raw": raw_runner(settings, ids)}
    rates: dict[str, list[float]] = {"adapter": [], "raw": []}
    for round_no in range(ARGS.rounds):
        order = list(runners) if round_no % 2 == 0 else list(reversed(runners))
        for runner in order:
            rates[runner].append(timed(runners[runner], unit_vectors(rng, ARGS.units)))
            log(f"{name} round {round_no + 1} {runner}: {rates[runner][-1]:.1f} units/s")
    adapter, raw = statistics.median(rates["adapter"]), statistics.median(rates["raw"])
    return {
        "adapter_units_per_s": round(adapter, 1),
        "raw_units_per_s": round(raw, 1),
        "ratio": round(adapter / raw, 3),
        "meets_target": adapter / raw >= TARGET,
    }


def main() -> None:
    rng = np.random.default_rng(ARGS.seed)
    results: dict[str, Any] = {}
    if ARGS.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            settings = dbcore.Settings(database_url=f"sqlite:///{Path(tmp) / 'bench.sqlite3'}")
            results["sqlite"] = bench("sqlite", settings, rng)
            dbcore.dispose_engines()
    if ARGS.only in (None, "postgresql"):
        server = EmbeddedPostgres()
        try:
            with isolated_database(server.url) as url:
                settings = dbcore.Settings(database_url=url.render_as_string(hide_password=False))
                results["postgresql"] = bench("postgresql (pgvector)", settings, rng)
                dbcore.dispose_engines()
        finally:
            server.stop()
    print(f"{'database':<22}{'adapter u/s':>13}{'raw u/s':>10}{'ratio':>8}  target >= {TARGET}")
    for name, r in results.items():
        verdict = "met" if r["meets_target"] else "MISSED"
        print(f"{name:<22}{r['adapter_units_per_s']:>13}{r['raw_units_per_s']:>10}{r['ratio']:>8}  {verdict}")
    print(
        json.dumps(
            {
                "benchmark": "adapter",
                "units": ARGS.units,
                "rounds": ARGS.rounds,
                "preload": ARGS.preload,
                "results": results,
                "code": code_state(),
                "machine": machine(sqlalchemy=sa.__version__),
            }
        )
    )


if __name__ == "__main__":
    main()
