"""The write step of ``add_memories(..., bulk=True)``: COPY on PostgreSQL, the driver's executemany elsewhere.

**PostgreSQL (psycopg 3).** Memories go in with a text ``COPY`` and embeddings with
a binary one, each vector's pgvector binary form made for all rows at once by numpy.
When the load holds at least as many rows as ``memory_embeddings`` already does, the
table's vector indexes (HNSW, IVFFlat) are dropped first and built again after the
load, with ``maintenance_work_mem`` raised to hold the graph and the parallel
maintenance workers raised to what the server allows: building the HNSW index over
100,000 x 384 rows took 27 s on the benchmark machine, against 193 s spent keeping
it up to date row by row (docs/benchmarks.md). A dropped index locks
``memory_embeddings`` until the transaction ends, so searches wait for the import's
COMMIT; a smaller load keeps the index and its readers.

**Other databases, and other PostgreSQL drivers.** Values are converted a column at a
time by the columns' own bind processors (the vectors by one numpy call, checked
once for the whole matrix) and sent with one executemany per chunk, skipping
SQLAlchemy's per-row parameter work, which is most of the time of a plain insert.

Everything runs in the caller's transaction: a failure leaves no rows, no index
change and no counter bump. The embedding version row is locked first and bumped
once at the end, as the engine hooks do for a Core statement (the statements here
are driver SQL, which those hooks do not count).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dbcore.DB_Memories import Memory, MemoryEmbedding
from dbcore.dialects import STATEMENT_TARGET, table_target
from dbcore.errors import DatabaseError, classify_dbapi_error
from dbcore.types import Vector, new_uuid
from dbcore.vector_changes import bump_embedding_version, lock_embedding_version

__all__ = ["Progress", "bulk_insert", "CHUNK"]

#: ``progress(done, total)``, called after each chunk of rows is written.
Progress = Callable[[int, int], None]

#: Rows per COPY or executemany: small enough for a progress bar that moves, large
#: enough that the per-statement cost does not show.
CHUNK = 5_000

_MEM: sa.Table = Memory.__table__  # type: ignore[assignment]
_ME: sa.Table = MemoryEmbedding.__table__  # type: ignore[assignment]
_VECTOR: Vector = _ME.c.embedding.type  # type: ignore[assignment]
#: Bytes an HNSW graph takes per row beyond the vector itself (neighbour lists at m=16, with slack).
_GRAPH_BYTES_PER_ROW = 1024
#: The most maintenance_work_mem the loader asks for; a server set higher keeps its own value.
_MAX_BUILD_MEMORY_KB = 4 * 1024 * 1024
#: pgvector's own suggestion for parallel HNSW builds; the server's max_parallel_workers bounds it.
_MAX_BUILD_WORKERS = 7
_VECTOR_INDEXES = sa.text(
    "SELECT indexname, indexdef FROM pg_indexes "
    "WHERE schemaname = current_schema() AND tablename = :table AND indexdef ~ ' USING (hnsw|ivfflat) '"
)
#: Binary COPY types of memory_embeddings' columns. "bytea" only has psycopg send the vector's bytes
#: as they are (pgvector's binary form, made by Vector.copy_binary_rows); the server reads them as the column's type.
_EMBEDDING_COPY_TYPES = {
    "id": "uuid",
    "memory_id": "uuid",
    "model": "text",
    "created_at": "timestamptz",
    "embedding": "bytea",
}
logger = logging.getLogger("dbcore.bulk")


def bulk_insert(
    connection: Connection,
    memories: Sequence[Mapping[str, Any]],
    matrix: np.ndarray | None,
    *,
    model: str,
    now: dt.datetime,
    progress: Progress | None = None,
) -> None:
    """Insert ``memories`` (complete rows of ``memories``) and, when ``matrix`` is given, one embedding each."""
    dialect = connection.dialect
    columns = _driver_columns(_MEM, memories, dialect)
    embeddings: dict[str, list[Any]] = {}
    if matrix is not None:
        rows = [{"id": new_uuid(), "model": model, "created_at": now} for _ in memories]
        embeddings = _driver_columns(_ME, rows, dialect)
        embeddings["memory_id"] = columns["id"]  # the same type as memories.id: the same driver values
    driver = _psycopg_connection(connection)
    indexes: list[tuple[str, str]] = []
    held = 0
    total = len(memories)
    if matrix is not None:
        lock_embedding_version(connection)
        if driver is not None:
            indexes, held = _drop_vector_indexes(connection, total)
    for start in range(0, total, CHUNK):
        part = slice(start, min(total, start + CHUNK))
        _write(connection, driver, _MEM, _sliced(columns, part))
        if matrix is not None:
            chunk = _sliced(embeddings, part)
            if driver is not None:
                chunk["embedding"] = _VECTOR.copy_binary_rows(matrix[part], dialect)
            else:
                chunk["embedding"] = _VECTOR.bind_rows(matrix[part], dialect)
            _write(connection, driver, _ME, chunk)
        if progress is not None:
            progress(part.stop, total)
    if matrix is not None:
        if indexes:
            _build_indexes(connection, indexes, held + total, int(matrix.shape[1]))
        bump_embedding_version(connection)


def _write(connection: Connection, driver: Any, table: sa.Table, columns: Mapping[str, list[Any]]) -> None:
    """A chunk of converted ``columns`` into ``table``: COPY through ``driver`` (psycopg), else executemany."""
    if driver is None:
        _executemany(connection, table, columns)
    elif table is _ME:
        _copy(driver, table, columns, [_EMBEDDING_COPY_TYPES[key] for key in columns])
    else:  # text COPY: psycopg writes each converted value's text form
        _copy(driver, table, columns, None)


def _sliced(columns: Mapping[str, list[Any]], part: slice) -> dict[str, list[Any]]:
    return {key: values[part] for key, values in columns.items()}


def _driver_columns(table: sa.Table, rows: Sequence[Mapping[str, Any]], dialect: sa.Dialect) -> dict[str, list[Any]]:
    """The values the driver gets, by column key, converted a column at a time by each column's bind processor.

    A wrong value fails here, naming its column, before anything is written.
    """
    out: dict[str, list[Any]] = {}
    keys = rows[0].keys() if rows else ()
    for column in table.columns:
        if column.key not in keys:
            continue
        values = [row[column.key] for row in rows]
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        if process is None:
            out[column.key] = values
        elif column.primary_key:  # a new value on every row: nothing to remember
            out[column.key] = [process(value) for value in values]
        else:
            out[column.key] = _processed(values, process)
    return out


def _processed(values: list[Any], process: Callable[[Any], Any]) -> list[Any]:
    """``process`` of each value, once per distinct object: an import repeats the same agent,
    entity, rooms and timestamp objects on every row. Keyed by ``id``, which ``values`` keeps alive."""
    done: dict[int, Any] = {}
    out = []
    for value in values:
        key = id(value)
        if key not in done:
            done[key] = process(value)
        out.append(done[key])
    return out


def _given(columns: Mapping[str, list[Any]]) -> set[str]:
    """The keys of the columns with at least one value other than NULL (for error messages)."""
    return {key for key, values in columns.items() if any(value is not None for value in values)}


# --- other databases: the driver's executemany ------------------------------------------


def _executemany(connection: Connection, table: sa.Table, columns: Mapping[str, list[Any]]) -> None:
    """One executemany of the converted ``columns`` into ``table``, its SQL compiled by SQLAlchemy."""
    compiled = table.insert().compile(dialect=connection.dialect, column_keys=list(columns))
    if compiled.positional:
        ordered = [columns[name] for name in compiled.positiontup or ()]
        params: list[Any] = list(zip(*ordered, strict=True))
    else:
        params = [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
    target = table_target(table, "insert", _given(columns))
    connection.exec_driver_sql(compiled.string, params, execution_options={STATEMENT_TARGET: target})


# --- PostgreSQL: COPY ------------------------------------------------------------------


def _psycopg_connection(connection: Connection) -> Any:
    """The psycopg 3 connection under ``connection`` (None for any other driver, async ones included)."""
    if connection.dialect.name != "postgresql":
        return None
    try:
        import psycopg
    except ImportError:
        return None
    driver = connection.connection.driver_connection
    return driver if isinstance(driver, psycopg.Connection) else None


def _copy(driver: Any, table: sa.Table, columns: Mapping[str, list[Any]], binary_types: list[str] | None) -> None:
    """One COPY FROM STDIN of ``columns`` into ``table``; a driver error becomes dbcore's typed error."""
    import psycopg

    names = ", ".join(table.c[key].name for key in columns)
    sql = f"COPY {table.name} ({names}) FROM STDIN" + (" (FORMAT BINARY)" if binary_types else "")
    try:
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            if binary_types:
                copy.set_types(binary_types)
            for row in zip(*columns.values(), strict=True):
                copy.write_row(row)
    except psycopg.Error as exc:
        target = table_target(table, "insert", _given(columns))
        error = classify_dbapi_error("postgresql", exc, target=target)
        if error is None:  # the first line only: COPY's context lines quote the row's values
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            error = DatabaseError(f"DatabaseError on postgresql: {first}", orig=exc, dialect="postgresql")
        raise error from exc


def _drop_vector_indexes(connection: Connection, loading: int) -> tuple[list[tuple[str, str]], int]:
    """Drop the vector indexes of memory_embeddings when ``loading`` rows are at least as many as it holds.

    Returns each dropped index's name and definition, as the server wrote it, to build it
    again, and the rows the table held before the load.
    """
    indexes = [
        (str(name), str(definition)) for name, definition in connection.execute(_VECTOR_INDEXES, {"table": _ME.name})
    ]
    if not indexes:
        return [], 0
    held = int(connection.execute(sa.select(sa.func.count()).select_from(_ME)).scalar_one())
    if loading < held:
        return [], held
    quote = connection.dialect.identifier_preparer.quote
    for name, _ in indexes:
        connection.exec_driver_sql(f"DROP INDEX {quote(name)}")
    logger.info("dropped %s to build after loading %d rows into %d", ", ".join(n for n, _ in indexes), loading, held)
    return indexes, held


def _build_indexes(connection: Connection, indexes: list[tuple[str, str]], rows: int, dims: int) -> None:
    """Build the dropped indexes again over ``rows`` rows, with memory for the whole graph and the
    parallel workers allowed."""
    memory_kb = int(
        connection.execute(
            sa.text("SELECT setting::bigint FROM pg_settings WHERE name = 'maintenance_work_mem'")
        ).scalar_one()
    )
    workers, allowed = connection.execute(
        sa.text(
            "SELECT current_setting('max_parallel_maintenance_workers')::int, current_setting('max_parallel_workers')::int"
        )
    ).one()
    wanted_kb = min(_MAX_BUILD_MEMORY_KB, rows * (4 * dims + _GRAPH_BYTES_PER_ROW) * 5 // 4 // 1024)
    settings = {
        "maintenance_work_mem": (f"{memory_kb}kB", f"{max(memory_kb, wanted_kb)}kB"),
        "max_parallel_maintenance_workers": (str(workers), str(max(workers, min(_MAX_BUILD_WORKERS, allowed)))),
    }
    _set_local(connection, {name: wanted for name, (_, wanted) in settings.items()})
    for name, definition in indexes:
        logger.info("building %s over %d rows", name, rows)
        connection.exec_driver_sql(definition)
    _set_local(connection, {name: before for name, (before, _) in settings.items()})


def _set_local(connection: Connection, settings: Mapping[str, str]) -> None:
    """``SET LOCAL`` each setting (it ends with the transaction, or with a savepoint rolled back)."""
    for name, value in settings.items():
        connection.execute(sa.select(sa.func.set_config(name, value, True)))
