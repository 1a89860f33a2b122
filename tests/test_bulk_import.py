"""``add_memories(..., bulk=True)`` and ``dbcore vectors import``: the fast path writes what the plain one does.

On every live dialect (COPY on PostgreSQL, the driver's executemany elsewhere):

- the rows read back equal those of the plain path, field by field and vector by vector,
  with content that text COPY must escape (tabs, newlines, backslashes, non-ASCII);
- the integrated store finds the imported vectors, and the embedding version moves once;
- an import that fails halfway (a missing room in a later chunk, a duplicate id)
  raises dbcore's typed error and leaves no memories, embeddings, outbox markers,
  counter bump, or (PostgreSQL) dropped index; a value of the wrong type is refused
  before anything is sent;
- on PostgreSQL with pgvector the HNSW index is dropped and built again, with the
  same definition, for a load as large as the table, and kept for a smaller one.

The command line is run as a subprocess on SQLite: success, a bad line, no file.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import dbcore
from dbcore import bulk_load
from dbcore.DB_Memories import EMBEDDING_DIMS, Memory, MemoryEmbedding, VectorOutbox
from dbcore.errors import DuplicateKeyError, ForeignKeyViolation, ValidationError
from dbcore.memories import add_memories, content_hash
from dbcore.testing import add_memory_parents
from dbcore.types import Vector, has_pgvector
from dbcore.vector_changes import embedding_version
from dbcore.vectorstores.integrated import IntegratedVectorStore, clear_matrix_cache
from tests.test_cli import DBCORE, base_env

TRICKY = ["tab\there", "line\nbreak", "back\\slash \\N", "ünïcode ✓", "quote \" and '", ""]


@pytest.fixture
def engine(migrated: dbcore.Settings) -> Iterator[Engine]:
    made = dbcore.create_engine(migrated)
    yield made
    made.dispose()
    clear_matrix_cache()


@pytest.fixture
def parents(engine: Engine) -> dict[str, Any]:
    with Session(engine) as session:
        made = add_memory_parents(session, rooms=3, name="bulk")
        session.commit()
    return made


def items(parents: dict[str, Any], n: int, tag: str) -> list[dict[str, Any]]:
    when = datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=timezone.utc)
    return [
        {
            "agent_id": parents["agent_id"],
            "entity_id": parents["entity_id"],
            "room_id": parents["room_ids"][i % 3],
            "kind": ("message", "document", "fragment")[i % 3],
            "content": {"text": f"{tag} {i} {TRICKY[i % len(TRICKY)]}", "n": i},
            "metadata": {"source": TRICKY[i % len(TRICKY)]} if i % 2 else {},
            "is_unique": bool(i % 4 == 0),
            "created_at": when,
        }
        for i in range(n)
    ]


def vectors(n: int, seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, EMBEDDING_DIMS)).astype(np.float32)


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        found = {
            table.name: connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (Memory.__table__, MemoryEmbedding.__table__, VectorOutbox.__table__)
        }
        found["version"] = embedding_version(connection)
    return found


def read_back(engine: Engine, tag: str) -> list[tuple[Any, ...]]:
    """Every field of the tagged memories and their embeddings, in the items' order."""
    with Session(engine) as session:
        rows = session.execute(
            sa.select(Memory, MemoryEmbedding).join(MemoryEmbedding, MemoryEmbedding.memory_id == Memory.id)
        ).all()
    found = []
    for memory, embedding in rows:
        if not memory.content["text"].startswith(f"{tag} "):
            continue
        found.append(
            (
                memory.content["n"],
                memory.content["text"].split(" ", 2)[2],
                memory.kind,
                memory.meta,
                memory.content_hash == content_hash(memory.content),
                memory.is_unique,
                (memory.agent_id, memory.entity_id, memory.room_id, memory.world_id, memory.parent_id),
                memory.created_at,
                embedding.model,
                embedding.embedding.tobytes(),
            )
        )
    return sorted(found)


def test_bulk_rows_equal_the_plain_path(engine: Engine, parents: dict[str, Any]) -> None:
    n = 24
    matrix = vectors(n)
    with Session(engine) as session:
        add_memories(session, items(parents, n, "plain"), matrix, model="m1")
        add_memories(session, items(parents, n, "bulk"), matrix, model="m1", bulk=True)
        session.commit()
    plain, bulk = read_back(engine, "plain"), read_back(engine, "bulk")
    assert len(bulk) == n
    assert bulk == plain
    assert [row[1] for row in bulk[: len(TRICKY)]] == TRICKY


def test_bulk_import_is_searchable_and_moves_the_version_once(engine: Engine, parents: dict[str, Any]) -> None:
    n = 40
    matrix = vectors(n, seed=9)
    store = IntegratedVectorStore(engine)
    before = counts(engine)
    with Session(engine) as session:
        ids = add_memories(session, items(parents, n, "s"), matrix, bulk=True)
        session.commit()
    after = counts(engine)
    assert after["version"] == before["version"] + 1
    assert (after["memories"], after["memory_embeddings"]) == (before["memories"] + n, before["memory_embeddings"] + n)
    for row in (0, 17, 39):
        assert store.query(matrix[row], k=1)[0].id == ids[row]


def test_progress_is_told_after_each_chunk(
    engine: Engine, parents: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk_load, "CHUNK", 7)
    told: list[tuple[int, int]] = []
    with Session(engine) as session:
        add_memories(session, items(parents, 20, "p"), vectors(20), bulk=True, progress=lambda *a: told.append(a))
        session.commit()
    assert told == [(7, 20), (14, 20), (20, 20)]


@pytest.fixture
def outboxed(migrated: dbcore.Settings) -> Iterator[Engine]:
    """An engine that records vector outbox markers (an external store), pushing none."""
    made = dbcore.create_engine(dataclasses.replace(migrated, vector_backend="chroma", vector_push_on_commit=False))
    yield made
    made.dispose()


def hnsw_definitions(engine: Engine) -> list[str]:
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = 'memory_embeddings' AND indexdef ~ 'hnsw'")
            ).scalars()
        )


def test_outbox_markers_are_written_for_every_imported_memory(outboxed: Engine, parents: dict[str, Any]) -> None:
    with Session(outboxed) as session:
        add_memories(session, items(parents, 12, "o"), vectors(12), bulk=True)
        session.commit()
    assert counts(outboxed)["vector_outbox"] == 12


def test_a_failure_halfway_leaves_nothing(
    outboxed: Engine, parents: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk_load, "CHUNK", 7)
    with Session(outboxed) as session:
        add_memories(session, items(parents, 5, "kept"), vectors(5), bulk=True)
        session.commit()
    before, indexes = counts(outboxed), hnsw_definitions(outboxed)
    batch = items(parents, 20, "lost")
    batch[16]["room_id"] = uuid.uuid4()  # no such room: the third chunk fails in the database
    with Session(outboxed) as session:
        with pytest.raises(ForeignKeyViolation, match="room_id|rooms"):
            add_memories(session, batch, vectors(20), bulk=True)
        session.commit()  # what the savepoint kept, if anything: nothing
    assert counts(outboxed) == before
    assert hnsw_definitions(outboxed) == indexes


def test_a_duplicate_id_leaves_nothing(engine: Engine, parents: dict[str, Any]) -> None:
    batch = items(parents, 10, "d")
    batch[8]["id"] = batch[2]["id"] = uuid.uuid4()
    before = counts(engine)
    with Session(engine) as session:
        with pytest.raises(DuplicateKeyError):
            add_memories(session, batch, vectors(10), bulk=True)
    assert counts(engine) == before


def test_a_value_of_the_wrong_type_is_refused_before_anything_is_sent(engine: Engine, parents: dict[str, Any]) -> None:
    batch = items(parents, 10, "w")
    batch[6]["room_id"] = "not-a-uuid"
    before = counts(engine)
    with Session(engine) as session:
        with pytest.raises(ValidationError, match=r"memories\.room_id"):
            add_memories(session, batch, vectors(10), bulk=True)
    assert counts(engine) == before


def needs_pgvector(engine: Engine) -> None:
    with engine.connect():
        if engine.dialect.name != "postgresql" or not has_pgvector(engine.dialect):
            pytest.skip("the vector index exists only on PostgreSQL with pgvector")


def test_a_load_as_large_as_the_table_builds_the_index_again(
    engine: Engine, parents: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    needs_pgvector(engine)
    before = hnsw_definitions(engine)
    assert len(before) == 1
    with caplog.at_level(logging.INFO, logger="dbcore.bulk"), Session(engine) as session:
        add_memories(session, items(parents, 30, "big"), vectors(30), bulk=True)
        session.commit()
    assert any("building ix_memory_embeddings_embedding_hnsw over 30 rows" in r.message for r in caplog.records)
    assert hnsw_definitions(engine) == before
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dbcore.bulk"), Session(engine) as session:
        add_memories(session, items(parents, 10, "small"), vectors(10, seed=3), bulk=True)
        session.commit()
    assert not [r for r in caplog.records if r.name == "dbcore.bulk"]  # 10 rows into 30: the index is kept
    assert hnsw_definitions(engine) == before


# --- the command -----------------------------------------------------------------------------


def write_jsonl(path: Path, parents: dict[str, Any], n: int, bad_line: int | None = None) -> None:
    lines = []
    for i, item in enumerate(items(parents, n, "cli")):
        row = {key: str(value) if isinstance(value, (uuid.UUID, datetime)) else value for key, value in item.items()}
        row["embedding"] = vectors(n)[i].tolist()
        lines.append("{not json" if bad_line == i + 1 else json.dumps(row))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_import(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DBCORE), "vectors", *args], cwd=cwd, env=base_env(DATABASE_URL=url), capture_output=True, text=True
    )


def test_vectors_import_command(tmp_path: Path) -> None:
    from dbcore import migrate

    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    settings = dbcore.Settings(database_url=url)
    migrate.upgrade(settings, "head")
    engine = dbcore.create_engine(settings)
    with Session(engine) as session:
        parents = add_memory_parents(session, rooms=3)
        session.commit()
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    write_jsonl(good, parents, 9)
    write_jsonl(bad, parents, 9, bad_line=3)

    done = run_import("import", str(good), "--model", "mini", url=url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "9 memories imported from" in done.stdout
    assert "9/9" in done.stderr  # the progress bar
    assert counts(engine)["memories"] == 9
    with engine.connect() as connection:
        assert set(connection.execute(sa.select(MemoryEmbedding.model)).scalars()) == {"mini"}

    refused = run_import("import", str(bad), url=url, cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"dbcore vectors: ValidationError: {bad} line 3 is not JSON: Expecting property name enclosed in "
        "double quotes (column 2)"
    ]
    assert counts(engine)["memories"] == 9

    missing = run_import("import", str(tmp_path / "nowhere.jsonl"), url=url, cwd=tmp_path)
    assert (missing.returncode, missing.stderr.strip()) == (
        2,
        f"dbcore vectors import: {tmp_path / 'nowhere.jsonl'} is not a file",
    )
    usage = run_import("import", url=url, cwd=tmp_path)
    assert usage.returncode == 2
    assert "vectors import needs the FILE to import" in usage.stderr
    engine.dispose()


# --- the converted values, per dialect, without a server ----------------------------------


def unwrapped(value: Any) -> Any:
    """psycopg's Json wrapper has no equality: compare what it wraps."""
    return getattr(value, "obj", value)


@pytest.mark.parametrize("name", ["sqlite", "mariadb", "mssql", "postgresql"])
def test_bulk_values_equal_what_the_columns_bind(name: str) -> None:
    """What the bulk path hands the driver is, value for value, what a Core insert would bind
    (SQL Server has no server here: this is its evidence)."""
    from sqlalchemy.dialects import mssql, mysql, postgresql, sqlite

    dialect = {
        "sqlite": sqlite.dialect(),
        "mariadb": mysql.dialect(is_mariadb=True),
        "mssql": mssql.dialect(driver="pyodbc"),
        "postgresql": postgresql.psycopg.dialect(),
    }[name]
    parents = {"agent_id": uuid.uuid4(), "entity_id": uuid.uuid4(), "room_ids": [uuid.uuid4() for _ in range(3)]}
    rows = [
        {
            **item,
            "id": uuid.uuid4(),
            "world_id": None,
            "parent_id": None,
            "content_hash": "h",
            "updated_at": item["created_at"],
        }
        for item in items(parents, 6, "v")
    ]
    for row in rows:
        row["kind"] = dbcore.MemoryKind[row["kind"].upper()]
    converted = bulk_load._driver_columns(Memory.__table__, rows, dialect)  # type: ignore[arg-type]
    for column in Memory.__table__.columns:
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        expected = [process(row[column.key]) if process else row[column.key] for row in rows]
        assert [unwrapped(v) for v in converted[column.key]] == [unwrapped(v) for v in expected], column.key
    matrix = vectors(6)
    vector_type: Vector = MemoryEmbedding.__table__.c.embedding.type  # type: ignore[assignment]
    bind = vector_type.dialect_impl(dialect).bind_processor(dialect)
    assert bind is not None
    assert [as_bytes(v) for v in vector_type.bind_rows(matrix, dialect)] == [as_bytes(bind(row)) for row in matrix]


def as_bytes(value: Any) -> Any:
    """A driver's binary wrapper (pyodbc's bytearray, a memoryview) as bytes, an array as its dtype and bytes."""
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.tobytes())
    return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else value
