"""The integrated vector store: memory embeddings searched inside the relational database.

Records are the rows of ``memory_embeddings``; a record id is the memory's id and
its metadata is read from the ``memories`` row (agent_id, entity_id, room_id,
world_id, kind as its lowercase name, created_at, and the keys of
``memories.metadata``). Filters are translated to SQL over those columns, so they
always see the current rows. Writing metadata goes through the Memory, not the
store: :meth:`IntegratedVectorStore.upsert` takes ids and vectors only, for
memories that exist. :meth:`delete` removes embeddings; the memories stay. Both
refuse an id that is not a UUID: no memory can have it.

Two search paths, chosen per engine:

- **pgvector** (PostgreSQL with the extension): ``ORDER BY embedding <=> :q LIMIT k``
  on the HNSW cosine index the migrations create (halfvec above 2,000 dimensions).
  ``hnsw.ef_search`` is raised to cover ``k`` and filtered queries turn on
  pgvector 0.8's iterative index scans (``hnsw.iterative_scan = strict_order``).
  When a filtered query still returns fewer than ``k`` rows, the query is run
  again as an exact scan over the matching rows, so a filtered top-k returns k
  rows whenever k rows match.
- **numpy** (SQLite, MariaDB, SQL Server, PostgreSQL without pgvector): exact
  cosine search over the float32 bytes. The matrix is cached per process and per
  database; every query first reads ``embedding_versions`` (bumped in the same
  transaction as every embedding write, see :mod:`dbcore.vector_changes`) and
  reloads the matrix when it changed. Filters run in SQL and select the rows of
  the matrix to score. Results equal an exact numpy search over the rows.

From async code (``aquery``, ``aupsert``, ...) the store runs the same functions on a
connection of the async engine of its database (:func:`dbcore.get_async_engine`, one
per event loop), through ``AsyncConnection.run_sync``; only the numpy path's CPU
work leaves the loop: building the matrix from the fetched rows, and scoring, run on
a worker thread (``asyncio.to_thread``). The rows are fetched on the loop (async
I/O); the matrix cache is the one the sync methods use.

Declared metadata keys are read from the JSON column with a type check per
dialect: a number condition matches JSON numbers only, a string condition JSON
strings only, a bool condition JSON booleans only (the reference semantics of
:meth:`Filter.matches`). List-valued metadata is not searched element by element.
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from dbcore.config import Settings
from dbcore.DB_Memories import Memory, MemoryEmbedding
from dbcore.engine import get_async_engine, get_engine
from dbcore.errors import DataError, DimensionMismatchError, ValidationError
from dbcore.hooks import track_embedding_writes
from dbcore.memories import MEMORY_METADATA_COLUMNS, memory_metadata, memory_records
from dbcore.types import has_pgvector, new_uuid, utcnow
from dbcore.vector_changes import embedding_version
from dbcore.vectorstores import ann as ann_module
from dbcore.vectorstores.ann import EXACT_ROWS, AnnIndex, Selection, load_faiss, row_hashes, uuid_keys
from dbcore.vectorstores.base import Match, PreparedRecord, Record, StoreHealth, VectorStore, chunked
from dbcore.vectorstores.filters import Filter, FilterLike, short_repr
from dbcore.vectorstores.matrix_filters import COLUMN_NAMES, FilterColumns
from dbcore.vectorstores.pgvector_wire import HNSW_INFO_KEY, QueryVector, prepare_pg_connection
from dbcore.vectorstores.sql_filters import SqlFilterCompiler

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["IntegratedVectorStore", "create_store", "clear_matrix_cache"]

_ME: sa.Table = MemoryEmbedding.__table__  # type: ignore[assignment]
_MEM: sa.Table = Memory.__table__  # type: ignore[assignment]
_KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
_IN_CHUNK = 500
_LOAD_BATCH = 10_000
_LOAD_SQL = "SELECT memory_id, embedding FROM memory_embeddings"
# The counter every numpy query reads first, with its row's id (which database: the ANN index's
# stamp): a constant statement on the driver's cursor (the version is vector_changes.embedding_version,
# read without a compiled statement's per-call cost).
_STAMP_SQL = "SELECT id, version FROM embedding_versions WHERE name = 'memory_embeddings'"
#: Below this many embeddings an ``ann=True`` store keeps searching exactly (docs/vectors.md).
ANN_MIN_ROWS = 100_000
#: Filter selections an ANN index remembers (the oldest is dropped first).
_ANN_SELECTIONS = 64
#: Above this share of the rows a filter keeps, scoring every row and picking is cheaper than
#: gathering the kept rows first (a gathered row costs about twice a scored one here).
_GATHER_SHARE = 0.3
_EF_SEARCH_MAX = 1000
#: One batch of the matrix load: raw ids and the driver's vector values.
_Batch = tuple[list[Any], Any]
# Async drivers whose raw ids (what the matrix cache holds) have the sync driver's form.
_RAW_ID_FORM = {"aiosqlite": "pysqlite", "psycopg_async": "psycopg", "asyncmy": "pymysql", "aioodbc": "pyodbc"}
#: dbcore's default hnsw.ef_search: pgvector's 40 gave recall@10 0.90 and 100 gave 0.945-0.99 in benchmarks/
_EF_SEARCH_DEFAULT = 200


def _memory_ids(ids: Sequence[str]) -> list[uuid.UUID]:
    """The ids that are UUIDs; ``get`` skips others as never stored (``delete`` refused them already)."""
    found = []
    for raw in ids:
        try:
            found.append(uuid.UUID(raw))
        except ValueError:
            continue
    return found


def _as_uuid(value: Any) -> uuid.UUID:
    """A memory id as ``uuid.UUID``, whatever form the driver returned it in (Match.id's one type)."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _row_metadata(row: Sequence[Any]) -> dict[str, Any]:
    return memory_metadata(*row)


# --- the per-process matrix cache ------------------------------------------------------


@dataclass
class _Matrix:
    version: int
    raw_ids: list[Any]
    vectors: np.ndarray  # unit-normalised float32 rows
    index: dict[Any, int] | None = None
    # Each row's agent, room, entity, world and kind, read on the first filtered query (matrix_filters).
    columns: FilterColumns | None = None

    def position_of(self) -> dict[Any, int]:
        """Row position by raw id (made on first use)."""
        if self.index is None:
            self.index = {raw: i for i, raw in enumerate(self.raw_ids)}
        return self.index

    def positions(self, raw_ids: Iterable[Any]) -> np.ndarray:
        index = self.position_of()
        found = [p for p in map(index.get, raw_ids) if p is not None]
        return np.fromiter(found, dtype=np.int64, count=len(found))

    def lookup(self, raw_ids: Sequence[Any]) -> np.ndarray:
        """The row of each raw id, -1 where none (FilterColumns.load's lookup)."""
        index = self.position_of()
        return np.fromiter((index.get(raw, -1) for raw in raw_ids), dtype=np.int64, count=len(raw_ids))


_cache: dict[tuple[Any, ...], _Matrix] = {}
_ann_indexes: dict[tuple[Any, ...], AnnIndex] = {}
_cache_lock = threading.Lock()


def clear_matrix_cache() -> None:
    """Forget every cached matrix and ANN index of this process (the next query reloads)."""
    with _cache_lock:
        _cache.clear()
        _ann_indexes.clear()


def _raw(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The column without its type's result processing (raw driver values, for speed)."""
    return sa.type_coerce(column, sa.types.NullType())


# The metadata of memories by id: raw driver ids (the matrix's) or UUIDs (the ANN index's); built once.
_METADATA_BY_RAW_ID = sa.select(_raw(_MEM.c.id), *MEMORY_METADATA_COLUMNS).where(
    _raw(_MEM.c.id).in_(sa.bindparam("ids", expanding=True))
)
_METADATA_BY_ID = sa.select(_MEM.c.id, *MEMORY_METADATA_COLUMNS).where(
    _MEM.c.id.in_(sa.bindparam("ids", expanding=True))
)
# Each memory's id and filter columns, as the driver returns them (matrix_filters reads these).
_COLUMNS_SQL = sa.select(_raw(_MEM.c.id), *(_raw(_MEM.c[name]) for name in COLUMN_NAMES))


# --- the store -------------------------------------------------------------------------


class IntegratedVectorStore(VectorStore):
    """Memory embeddings in the relational database, searched with pgvector or numpy.

    ``search`` is ``"auto"`` (pgvector when the server has it), ``"pgvector"`` or
    ``"numpy"``. ``ef_search`` fixes pgvector's ``hnsw.ef_search`` (default: enough
    for ``k``, at least 40, at most 1,000). ``cache=False`` reloads the matrix on
    every numpy query.

    ``ann=True`` (needs ``faiss-cpu``: ``pip install 'dbcore[ann]'``) gives the numpy path
    an approximate HNSW index once the table holds ``ann_min_rows`` embeddings (default
    100,000; below it search stays exact), kept exact to the rows through the
    embedding version (:mod:`dbcore.vectorstores.ann`). ``ann_path`` is the directory
    it is saved in: default beside a SQLite database file (``<file>.ann``), otherwise
    not saved (built from the rows in each process).
    """

    backend_name = "integrated"

    def __init__(
        self,
        engine: Engine,
        dims: int | None = None,
        *,
        metadata_keys: Iterable[str] = (),
        search: str = "auto",
        ef_search: int | None = None,
        cache: bool = True,
        model: str = "",
        settings: Settings | None = None,
        ann: bool = False,
        ann_path: str | Path | None = None,
        ann_min_rows: int = ANN_MIN_ROWS,
    ) -> None:
        column_dims = int(_ME.c.embedding.type.dim)  # type: ignore[attr-defined]
        dims = column_dims if dims is None else dims
        if dims != column_dims:
            raise DimensionMismatchError(
                f"the store was asked for {dims}-dimensional vectors but memory_embeddings.embedding holds "
                f"{column_dims} (DBCORE_VECTOR_DIMS when dbcore was imported); re-embed and migrate to change it"
            )
        keys = tuple(metadata_keys)
        for key in keys:
            if not isinstance(key, str) or not _KEY_PATTERN.match(key):
                raise ValidationError(f"metadata key {key!r} must be letters, digits, _ or - (at most 64)")
        super().__init__(dims, metadata_keys=keys)
        if search not in ("auto", "pgvector", "numpy"):
            raise ValidationError(f"search={search!r} must be 'auto', 'pgvector' or 'numpy'")
        if ef_search is not None and (not isinstance(ef_search, int) or not 1 <= ef_search <= _EF_SEARCH_MAX):
            raise ValidationError(f"ef_search={ef_search!r} must be an integer from 1 to {_EF_SEARCH_MAX}")
        if ann and not cache:
            raise ValidationError("ann=True needs cache=True: the index is kept between queries")
        if not isinstance(ann_min_rows, int) or ann_min_rows < 0:
            raise ValidationError(f"ann_min_rows={ann_min_rows!r} must be a non-negative integer")
        if ann:
            load_faiss()  # refuse at once when faiss is missing
        self._ann = ann
        self._ann_path = Path(ann_path) if ann_path is not None else _default_ann_path(engine.url)
        self._ann_min_rows = ann_min_rows
        self._engine = engine
        # The async methods use the async engine of these settings (default: the engine's URL).
        self._settings = settings
        self._search = search
        self._ef_search = ef_search
        self._cache = cache
        self._model = model
        self._metadata_keys = frozenset(keys)
        # The matrix cache is per database (the URL without its driver) and per form of raw ids:
        # an async driver that returns ids as the sync one does shares the sync matrix.
        self._cache_key = (engine.url.set(drivername=engine.dialect.name).render_as_string(hide_password=True), dims)
        self._resolved: str | None = None
        self._pg_cache: dict[tuple[bool, bool], tuple[sa.Select[Any], sa.Select[Any]]] = {}
        track_embedding_writes(engine)

    def __repr__(self) -> str:
        return f"IntegratedVectorStore({self._engine.url.render_as_string(hide_password=True)!r}, dims={self.dims})"

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def search_path(self) -> str:
        """``"pgvector"`` or ``"numpy"``: how this store searches on its engine (decided once)."""
        if self._resolved is None:
            self._resolved = self._resolve_search_path()
        return self._resolved

    def async_engine(self) -> AsyncEngine:
        """The async engine the ``a*`` methods use: the same database, for the running event loop."""
        if self._settings is None:  # derived once: building Settings parses and checks the URL
            self._settings = Settings(database_url=self._engine.url.render_as_string(hide_password=False))
        return get_async_engine(self._settings)

    async def _asearch_path(self) -> str:
        """:attr:`search_path`, found with the async engine's first connection."""
        if self._resolved is None:
            engine = self.async_engine()
            available = False
            if self._search != "numpy" and engine.dialect.name == "postgresql":
                async with engine.connect():  # the first connection tells whether the extension exists
                    pass
                available = has_pgvector(engine.sync_engine.dialect)
            self._resolved = self._choose_path(available)
        return self._resolved

    def ef_search_for(self, k: int) -> int:
        """The ``hnsw.ef_search`` a top-``k`` pgvector query runs with."""
        return self._ef_search or min(_EF_SEARCH_MAX, max(_EF_SEARCH_DEFAULT, k))

    def _resolve_search_path(self) -> str:
        return self._choose_path(self._search != "numpy" and self._pgvector_available())

    def _choose_path(self, pgvector_available: bool) -> str:
        if self._search == "pgvector" and not pgvector_available:
            raise ValidationError("search='pgvector' needs PostgreSQL with the vector extension")
        if self._search != "auto":
            return self._search
        return "pgvector" if pgvector_available else "numpy"

    def _pgvector_available(self) -> bool:
        if self._engine.dialect.name != "postgresql":
            return False
        with self._engine.connect():  # the first connection tells whether the extension exists
            pass
        return has_pgvector(self._engine.dialect)

    def _compile(self, flt: Filter) -> sa.ColumnElement[bool]:
        return SqlFilterCompiler(self._engine.dialect.name, self._metadata_keys).compile(flt)

    # --- writes ------------------------------------------------------------------------

    def _check_id(self, record_id: str) -> None:
        try:
            uuid.UUID(record_id)
        except ValueError:
            raise ValidationError(
                f"record id {short_repr(record_id)} is not a memory id (a UUID); "
                "the integrated store holds memory embeddings"
            ) from None

    def _check_batch(self, batch: Sequence[PreparedRecord]) -> None:
        for record in batch:
            if record.metadata:
                raise ValidationError(
                    f"record {record.id!r}: the integrated store reads metadata from the memory row; "
                    "write metadata on the Memory and pass only ids and vectors"
                )

    def _upsert(self, batch: Sequence[PreparedRecord]) -> None:
        with self._engine.begin() as conn:
            self._upsert_on(conn, batch)

    async def _aupsert(self, batch: Sequence[PreparedRecord]) -> None:
        async with self.async_engine().begin() as conn:
            await conn.run_sync(self._upsert_on, batch)

    def _upsert_on(self, conn: Connection, batch: Sequence[PreparedRecord]) -> None:
        ids = [uuid.UUID(r.id) for r in batch]
        existing_memories: set[uuid.UUID] = set()
        existing_embeddings: set[uuid.UUID] = set()
        for part in chunked(ids, _IN_CHUNK):
            existing_memories.update(conn.execute(sa.select(_MEM.c.id).where(_MEM.c.id.in_(part))).scalars())
            existing_embeddings.update(
                conn.execute(sa.select(_ME.c.memory_id).where(_ME.c.memory_id.in_(part))).scalars()
            )
        missing = [str(i) for i in ids if i not in existing_memories]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise ValidationError(f"no memory with id {shown}; create the memories before their embeddings")
        now = utcnow()
        inserts = [
            {"id": new_uuid(), "memory_id": mid, "embedding": r.vector, "model": self._model, "created_at": now}
            for mid, r in zip(ids, batch, strict=True)
            if mid not in existing_embeddings
        ]
        updates = [
            {"b_memory_id": mid, "embedding": r.vector}
            for mid, r in zip(ids, batch, strict=True)
            if mid in existing_embeddings
        ]
        if inserts:
            conn.execute(_ME.insert(), inserts)
        if updates:
            conn.execute(
                _ME.update()
                .where(_ME.c.memory_id == sa.bindparam("b_memory_id"))
                .values(embedding=sa.bindparam("embedding")),
                updates,
            )

    def _delete_ids(self, ids: Sequence[str]) -> None:
        with self._engine.begin() as conn:
            _delete_ids_on(conn, ids)

    async def _adelete_ids(self, ids: Sequence[str]) -> None:
        async with self.async_engine().begin() as conn:
            await conn.run_sync(_delete_ids_on, ids)

    def _delete_filter(self, filter: Filter) -> None:  # noqa: A002
        with self._engine.begin() as conn:
            _delete_where_on(conn, self._compile(filter))

    async def _adelete_filter(self, filter: Filter) -> None:  # noqa: A002
        async with self.async_engine().begin() as conn:
            await conn.run_sync(_delete_where_on, self._compile(filter))

    # --- reads -------------------------------------------------------------------------

    def _get(self, ids: Sequence[str]) -> Iterable[Record]:
        with self._engine.connect() as conn:
            return _get_on(conn, ids)

    async def _aget(self, ids: Sequence[str]) -> Iterable[Record]:
        async with self.async_engine().connect() as conn:
            return await conn.run_sync(_get_on, ids)

    def _count(self) -> int:
        with self._engine.connect() as conn:
            return _count_on(conn)

    async def _acount(self) -> int:
        async with self.async_engine().connect() as conn:
            return await conn.run_sync(_count_on)

    def _ids(self) -> Iterator[str]:
        with self._engine.connect() as conn:
            for memory_id in conn.execute(sa.select(_ME.c.memory_id)).scalars():
                yield str(memory_id)

    def _health(self) -> StoreHealth:
        return self._healthy(self.search_path, self._count())

    async def _ahealth(self) -> StoreHealth:
        return self._healthy(await self._asearch_path(), await self._acount())

    def _healthy(self, path: str, count: int) -> StoreHealth:
        detail: dict[str, Any] = {"search": path, "dialect": self._engine.dialect.name}
        if path == "numpy":
            cached = _cache.get(self._matrix_key(self._engine.dialect))
            detail["cached_rows"] = len(cached.raw_ids) if cached else 0
        return StoreHealth(self.backend_name, ok=True, dims=self.dims, count=count, detail=detail)

    def _query(
        self,
        vector: np.ndarray,
        k: int,
        filter: Filter | None,  # noqa: A002
        min_score: float | None,
        include_metadata: bool,
    ) -> Iterable[Match]:
        if self.search_path == "pgvector":
            condition = self._compile(filter) if filter is not None else None
            with self._engine.connect() as conn:
                return self._query_pgvector(conn, vector, k, condition, min_score, include_metadata)
        return self._query_numpy(vector, k, filter, min_score, include_metadata)

    def query_in(
        self,
        connection: Connection,
        vector: Any,
        k: int = 10,
        filter: FilterLike | None = None,  # noqa: A002
        min_score: float | None = None,
        *,
        include_metadata: bool = True,
    ) -> list[Match] | None:
        """The search on ``connection`` in its open transaction, or None (another database; see below).

        pgvector searches there; so does the numpy path of a store built with
        ``cache=False`` (its matrix read on that connection, the transaction's own writes
        included: what the pytest plugin's rolled-back tests need). A caching numpy store
        answers None: a matrix read inside an open transaction must not be cached.
        """
        if not _same_database(connection.engine.url, self._engine.url):
            return None
        pgvector = (
            self._search != "numpy" and connection.dialect.name == "postgresql" and has_pgvector(connection.dialect)
        )
        if not pgvector and self._cache:
            return None
        vector, k, flt, min_score = self._prepare_query(vector, k, filter, min_score)
        if pgvector:
            condition = self._compile(flt) if flt is not None else None
            found = self._query_pgvector(connection, vector, k, condition, min_score, include_metadata)
        else:
            found = self._numpy_on(connection, _unit(vector), k, flt, min_score, include_metadata)
        return self._finish_matches(found, k, min_score)

    async def _aquery(
        self,
        vector: np.ndarray,
        k: int,
        filter: Filter | None,  # noqa: A002
        min_score: float | None,
        include_metadata: bool,
    ) -> Iterable[Match]:
        path = await self._asearch_path()
        async with self.async_engine().connect() as conn:
            if path == "pgvector":
                condition = self._compile(filter) if filter is not None else None
                return await conn.run_sync(self._query_pgvector, vector, k, condition, min_score, include_metadata)
            return await self._aquery_numpy(conn, vector, k, filter, min_score, include_metadata)

    # --- pgvector ----------------------------------------------------------------------

    def _pg_statements(
        self, include_metadata: bool, condition: sa.ColumnElement[bool] | None, with_min_score: bool
    ) -> tuple[sa.Select[Any], sa.Select[Any]]:
        """The HNSW top-k statement and its exact-scan twin, with the vector, k and min_score as parameters.

        Unfiltered shapes are built once per store: rebuilding a statement costs more than the
        index scan's client side (benchmarks/vector_search.py).
        """
        key = (include_metadata, with_min_score)
        if condition is None and key in self._pg_cache:
            return self._pg_cache[key]
        from pgvector.sqlalchemy import HALFVEC, VECTOR

        query_vector = sa.cast(sa.bindparam("query_vector", type_=QueryVector()), VECTOR(self.dims))
        if self.dims <= 2000:
            raw_distance = _ME.c.embedding.cosine_distance(query_vector)  # type: ignore[attr-defined]
        else:
            halfvec = HALFVEC(self.dims)  # the expression index the migrations create above 2,000
            raw_distance = sa.cast(_ME.c.embedding, halfvec).op("<=>", return_type=sa.Float)(
                sa.cast(query_vector, halfvec)
            )
        distance = raw_distance.label("distance")
        columns: list[Any] = [_ME.c.memory_id, distance]
        if include_metadata:
            columns.extend(MEMORY_METADATA_COLUMNS)
        query = sa.select(*columns)
        if include_metadata or condition is not None:
            query = query.join(_MEM, _MEM.c.id == _ME.c.memory_id)
        if condition is not None:
            query = query.where(condition)
        if with_min_score:
            query = query.where(raw_distance <= sa.bindparam("max_distance", type_=sa.Float))
        limit = sa.bindparam("k", type_=sa.Integer)
        # The exact twin orders by distance + 0, which keeps the planner off the index.
        statements = (query.order_by(distance).limit(limit), query.order_by(raw_distance + 0.0).limit(limit))
        if condition is None:
            self._pg_cache[key] = statements
        return statements

    def _query_pgvector(
        self,
        conn: Connection,
        vector: np.ndarray,
        k: int,
        condition: sa.ColumnElement[bool] | None,
        min_score: float | None,
        include_metadata: bool,
    ) -> list[Match]:
        indexed, exact = self._pg_statements(include_metadata, condition, min_score is not None)
        params: dict[str, Any] = {"query_vector": vector, "k": k}
        if min_score is not None:
            params["max_distance"] = 1.0 - min_score
        ef_search = self.ef_search_for(k)
        try:
            # On the caller's connection (query_in) the search joins its transaction.
            with nullcontext() if conn.in_transaction() else conn.begin():
                prepare_pg_connection(conn, ef_search)
                rows = conn.execute(indexed, params).all()
                if len(rows) < k:
                    # The index ran out before k rows matched (a selective filter, a high min_score,
                    # or fewer rows than k); an exact scan answers, so k rows come back whenever k
                    # rows match.
                    rows = conn.execute(exact, params).all()
        except Exception:
            conn.info.pop(HNSW_INFO_KEY, None)  # the rollback undid the settings
            raise
        return [
            Match(_as_uuid(row[0]), 1.0 - float(row[1]), _row_metadata(row[2:]) if include_metadata else None)
            for row in rows
        ]

    # --- numpy -------------------------------------------------------------------------

    def _matrix(self, conn: Connection) -> _Matrix:
        version = _version_on(conn)
        key = self._matrix_key(conn.dialect)
        matrix = self._cached(key, version)
        if matrix is None:
            expected = _count_on(conn)
            matrix = self._remember(key, self._assemble(version, expected, self._raw_batches(conn)))
        return matrix

    def _matrix_key(self, dialect: sa.Dialect) -> tuple[Any, ...]:
        """The cache key of the matrix read through ``dialect``'s driver (its raw ids are the driver's)."""
        return (*self._cache_key, _RAW_ID_FORM.get(dialect.driver, dialect.driver))

    def _cached(self, key: tuple[Any, ...], version: int) -> _Matrix | None:
        with _cache_lock:
            cached = _cache.get(key)
        return cached if cached is not None and cached.version == version and self._cache else None

    def _remember(self, key: tuple[Any, ...], matrix: _Matrix) -> _Matrix:
        if self._cache:
            with _cache_lock:
                _cache[key] = matrix
        return matrix

    def _raw_batches(self, conn: Connection) -> Iterator[_Batch]:
        """(raw ids, the driver's values) per batch: float32 bytes, or pgvector's arrays."""
        if conn.dialect.name == "postgresql" and has_pgvector(conn.dialect):
            return self._batches_pgvector(conn)
        return self._batches_bytes(conn)

    def _fetch_matrix_rows(self, conn: Connection) -> tuple[int, int, list[_Batch]]:
        """For async code: the version, the row count and every raw batch, read in one go."""
        return embedding_version(conn), _count_on(conn), list(self._raw_batches(conn))

    def _assemble(self, version: int, expected: int, batches: Iterable[_Batch]) -> _Matrix:
        """The unit-normalised float32 matrix of the batches (CPU only; async code runs it on a thread)."""
        vectors = np.empty((max(expected, 1), self.dims), dtype=np.float32)
        raw_ids: list[Any] = []
        filled = 0
        for batch_ids, values in batches:
            block = self._block(batch_ids, values)
            if filled + len(batch_ids) > vectors.shape[0]:
                vectors = np.resize(vectors, (filled + len(batch_ids), self.dims))
            target = vectors[filled : filled + len(batch_ids)]
            target[...] = block
            _normalise(target)  # block by block: no temporary as large as the matrix
            raw_ids.extend(batch_ids)
            filled += len(batch_ids)
        return _Matrix(version=version, raw_ids=raw_ids, vectors=vectors[: len(raw_ids)])

    def _block(self, ids: list[Any], values: Any) -> np.ndarray:
        if not isinstance(values, _Blobs):
            return np.stack(values)
        width = 4 * self.dims
        blobs = values.blobs
        bad = next((i for i, blob in enumerate(blobs) if len(blob) != width), None)
        if bad is not None:
            raise DataError(
                f"memory_embeddings row of memory {ids[bad]!r} holds {len(blobs[bad])} bytes, "
                f"not {width} ({self.dims} float32 values)"
            )
        return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), self.dims)

    def _batches_bytes(self, conn: Connection) -> Iterator[_Batch]:
        """(raw ids, float32 blobs) per batch, straight from the driver's cursor: no per-row processing."""
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(_LOAD_SQL)  # a constant statement, no user values
            while rows := cursor.fetchmany(_LOAD_BATCH):
                ids = [row[0] for row in rows]
                yield ids, _Blobs([bytes(row[1]) if row[1] is not None else b"" for row in rows])
        finally:
            cursor.close()

    def _batches_pgvector(self, conn: Connection) -> Iterator[_Batch]:
        result = conn.execution_options(stream_results=True, yield_per=_LOAD_BATCH).execute(
            sa.select(_raw(_ME.c.memory_id), _ME.c.embedding)
        )
        for rows in result.partitions(_LOAD_BATCH):
            yield [row[0] for row in rows], [row[1] for row in rows]

    def _filter_columns(self, conn: Connection, matrix: _Matrix) -> FilterColumns:
        """The matrix rows' filter columns, read from ``memories`` on first use and kept with the matrix.

        Kept only when the version is still the matrix's after the read (on READ COMMITTED
        a write may commit between two statements); otherwise used for this query alone.
        """
        if matrix.columns is not None:
            return matrix.columns
        result = conn.execution_options(stream_results=True, yield_per=_LOAD_BATCH).execute(_COLUMNS_SQL)
        columns = FilterColumns.load(matrix.lookup, len(matrix.raw_ids), result.partitions(_LOAD_BATCH), self._uuid_of)
        if embedding_version(conn) == matrix.version:
            matrix.columns = columns
        return columns

    def _query_numpy(
        self,
        vector: np.ndarray,
        k: int,
        flt: Filter | None,
        min_score: float | None,
        include_metadata: bool,
    ) -> list[Match]:
        with self._engine.connect() as conn, conn.begin():
            return self._numpy_on(conn, _unit(vector), k, flt, min_score, include_metadata)

    def _numpy_on(
        self,
        conn: Connection,
        query_unit: np.ndarray,
        k: int,
        flt: Filter | None,
        min_score: float | None,
        include_metadata: bool,
    ) -> list[Match]:
        if self._ann:
            found = self._ann_on(conn, query_unit, k, flt, min_score, include_metadata)
            if found is not None:
                return found
        matrix = self._matrix(conn)
        rows = self._filtered_rows(conn, matrix, flt)
        chosen, scores = _score(matrix, query_unit, rows, k, min_score)
        metadata = self._metadata_for(conn, chosen) if include_metadata and chosen else {}
        return self._matches(chosen, scores, metadata, include_metadata)

    async def _aquery_numpy(
        self,
        conn: AsyncConnection,
        vector: np.ndarray,
        k: int,
        flt: Filter | None,
        min_score: float | None,
        include_metadata: bool,
    ) -> list[Match]:
        """:meth:`_query_numpy` on an async connection: SQL on the loop, the matrix and scoring on a thread."""
        query_unit = _unit(vector)
        key = self._matrix_key(conn.dialect)
        async with conn.begin():
            if self._ann:  # the index is refreshed and searched on the loop's thread, under its lock
                found = await conn.run_sync(self._ann_on, query_unit, k, flt, min_score, include_metadata)
                if found is not None:
                    return found
            version = await conn.run_sync(embedding_version)
            matrix = self._cached(key, version)
            if matrix is None:
                version, expected, batches = await conn.run_sync(self._fetch_matrix_rows)
                matrix = self._remember(key, await asyncio.to_thread(self._assemble, version, expected, batches))
            rows = await conn.run_sync(self._filtered_rows, matrix, flt)
            chosen, scores = await asyncio.to_thread(_score, matrix, query_unit, rows, k, min_score)
            metadata = await conn.run_sync(self._metadata_for, chosen) if include_metadata and chosen else {}
        return self._matches(chosen, scores, metadata, include_metadata)

    def _filtered_rows(self, conn: Connection, matrix: _Matrix, flt: Filter | None) -> np.ndarray | None:
        """The matrix positions ``flt`` selects (None: every row).

        Equality filters on the memory's agent, room, entity, world and kind are answered
        from the columns kept with the matrix (:mod:`dbcore.vectorstores.matrix_filters`);
        any other filter selects its memory ids in SQL.
        """
        if flt is None:
            return None
        if FilterColumns.answers(flt):
            return np.flatnonzero(self._filter_columns(conn, matrix).mask(flt))
        return matrix.positions(_allowed_on(conn, self._compile(flt)))

    # --- the optional ANN index (dbcore.vectorstores.ann) --------------------------------

    def _ann_on(
        self,
        conn: Connection,
        query_unit: np.ndarray,
        k: int,
        flt: Filter | None,
        min_score: float | None,
        include_metadata: bool,
    ) -> list[Match] | None:
        """The search through the ANN index, or None while the table is below ``ann_min_rows``."""
        stamp = _stamp_on(conn)
        ann = self._ann_index(conn.dialect)
        with ann.lock:
            if ann.stamp != stamp:
                ann.load()
            if ann.stamp != stamp:
                if not ann.built and _count_on(conn) < self._ann_min_rows:
                    return None
                ann.refresh(stamp, self._unit_batches(conn))
            selection = self._ann_selection(conn, ann, flt)
            if selection is not None and selection.count <= EXACT_ROWS:
                rows = np.flatnonzero(selection.mask)
                picked, scores = _score_rows(ann.rows(rows), query_unit, None, k, min_score)
                labels = rows[picked]
            else:
                ef = self._ef_search or max(ann_module.EF_SEARCH, k)
                labels, scores = ann.search(query_unit, k, ef, selection)
                if min_score is not None:
                    kept = scores >= min_score
                    labels, scores = labels[kept], scores[kept]
            ids = ann.uuids(labels.tolist())
        metadata = _metadata_of(conn, _METADATA_BY_ID, ids) if include_metadata and ids else {}
        return [
            Match(memory_id, float(score), metadata.get(memory_id) if include_metadata else None)
            for memory_id, score in zip(ids, scores.tolist(), strict=True)
        ]

    def _ann_index(self, dialect: sa.Dialect) -> AnnIndex:
        key = self._matrix_key(dialect)
        with _cache_lock:
            ann = _ann_indexes.get(key)
            if ann is None:
                ann = _ann_indexes[key] = AnnIndex(self.dims, self._ann_path)
        return ann

    def _unit_batches(self, conn: Connection) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every row as (16-byte memory ids, hashes of the stored vectors, unit float32 vectors), batch by batch."""
        for raw_ids, values in self._raw_batches(conn):
            block = np.array(self._block(raw_ids, values), dtype=np.float32)
            hashes = row_hashes(block)
            _normalise(block)
            yield uuid_keys(raw_ids, self._uuid_of), hashes, block

    def _ann_selection(self, conn: Connection, ann: AnnIndex, flt: Filter | None) -> Selection | None:
        """The live labels ``flt`` selects (None: every row); as :meth:`_filtered_rows` does for the matrix.

        Filters the kept columns answer are remembered until the index's stamp changes:
        an agent repeats its room or entity filter from query to query.
        """
        if flt is None:
            return None
        if not FilterColumns.answers(flt):
            labels = ann.labels_of(uuid_keys(_allowed_on(conn, self._compile(flt)), self._uuid_of))
            mask = np.zeros(ann.live.size, dtype=bool)
            mask[labels[labels >= 0]] = True
            return ann.select(mask)
        key = repr(flt)
        selection = ann.selections.get(key)
        if selection is None:
            if ann.columns is None:
                result = conn.execution_options(stream_results=True, yield_per=_LOAD_BATCH).execute(_COLUMNS_SQL)
                lookup = functools.partial(_labels_of, ann, self._uuid_of)
                ann.columns = FilterColumns.load(lookup, ann.live.size, result.partitions(_LOAD_BATCH), self._uuid_of)
            if len(ann.selections) >= _ANN_SELECTIONS:
                ann.selections.pop(next(iter(ann.selections)))
            selection = ann.selections[key] = ann.select(ann.columns.mask(flt))
        return selection

    @functools.cached_property
    def _result_processor(self) -> Callable[[Any], Any] | None:
        """The id column's result processor on this dialect (None when the driver returns UUIDs)."""
        return _ME.c.memory_id.type._cached_result_processor(self._engine.dialect, None)  # type: ignore[attr-defined,no-any-return]

    def _uuid_of(self, raw_id: Any) -> uuid.UUID:
        """A raw id of the matrix (any UUID column's driver value) as ``uuid.UUID``."""
        process = self._result_processor
        return _as_uuid(process(raw_id) if process else raw_id)

    def _matches(
        self, chosen: list[Any], scores: list[float], metadata: dict[Any, dict[str, Any]], include_metadata: bool
    ) -> list[Match]:
        matches = []
        for raw_id, score in zip(chosen, scores, strict=True):
            memory_id = self._uuid_of(raw_id)
            matches.append(Match(memory_id, float(score), metadata.get(raw_id) if include_metadata else None))
        return matches

    def _metadata_for(self, conn: Connection, raw_ids: list[Any]) -> dict[Any, dict[str, Any]]:
        return _metadata_of(conn, _METADATA_BY_RAW_ID, raw_ids)


@dataclass(frozen=True)
class _Blobs:
    """A batch of embeddings as the driver returned them: float32 bytes, checked when assembled."""

    blobs: list[bytes]


def _unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def _normalise(block: np.ndarray) -> None:
    """Scale each row of ``block`` to unit length, in place (a zero row stays zero)."""
    norms = np.sqrt(np.einsum("ij,ij->i", block, block))
    norms[norms == 0] = 1.0
    block /= norms[:, None]


def _labels_of(ann: AnnIndex, to_uuid: Callable[[Any], uuid.UUID], raw_ids: Sequence[Any]) -> np.ndarray:
    return ann.labels_of(uuid_keys(raw_ids, to_uuid))


def _score_rows(
    vectors: np.ndarray, query_unit: np.ndarray, rows: np.ndarray | None, k: int, min_score: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``rows`` (or into ``vectors`` when None) of the best ``k`` rows, and their scores."""
    if rows is not None and rows.size > _GATHER_SHARE * len(vectors):
        scores = (vectors @ query_unit)[rows]
    elif rows is not None:
        scores = vectors[rows] @ query_unit
    else:
        scores = vectors @ query_unit
    picked = _top(scores, k, min_score)
    return picked, scores[picked]


def _score(
    matrix: _Matrix, query_unit: np.ndarray, rows: np.ndarray | None, k: int, min_score: float | None
) -> tuple[list[Any], list[float]]:
    """The raw ids of the best ``k`` rows (of the matrix positions ``rows``, if given) and their scores; CPU only."""
    picked, scores = _score_rows(matrix.vectors, query_unit, rows, k, min_score)
    positions = picked if rows is None else rows[picked]
    return [matrix.raw_ids[p] for p in positions], scores.tolist()


def _stamp_on(conn: Connection) -> tuple[str, int]:
    """The counter row's id and version in ``conn``'s transaction (the ANN index's stamp)."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(_STAMP_SQL)  # a constant statement, no user values
        row = cursor.fetchone()
    finally:
        cursor.close()
    return (str(row[0]), int(row[1])) if row else ("", 0)


def _version_on(conn: Connection) -> int:
    """The embedding version in ``conn``'s transaction, read on the driver's cursor."""
    return _stamp_on(conn)[1]


def _metadata_of(conn: Connection, statement: sa.Select[Any], ids: list[Any]) -> dict[Any, dict[str, Any]]:
    """Each memory's metadata by its id, as ``statement`` (one of the ``_METADATA_BY_*``) returns it."""
    found: dict[Any, dict[str, Any]] = {}
    for part in chunked(ids, _IN_CHUNK):
        for row in conn.execute(statement, {"ids": part}):
            found[row[0]] = _row_metadata(row[1:])
    return found


def _allowed_on(conn: Connection, condition: sa.ColumnElement[bool]) -> list[Any]:
    return list(conn.execute(sa.select(_raw(_MEM.c.id)).where(condition)).scalars().all())


def _delete_ids_on(conn: Connection, ids: Sequence[str]) -> None:
    for part in chunked(_memory_ids(ids), _IN_CHUNK):
        conn.execute(_ME.delete().where(_ME.c.memory_id.in_(part)))


def _delete_where_on(conn: Connection, condition: sa.ColumnElement[bool]) -> None:
    doomed = list(conn.execute(sa.select(_MEM.c.id).where(condition)).scalars())
    for part in chunked(doomed, _IN_CHUNK):
        conn.execute(_ME.delete().where(_ME.c.memory_id.in_(part)))


def _get_on(conn: Connection, ids: Sequence[str]) -> list[Record]:
    records = memory_records(conn, _memory_ids(ids))
    return [Record(uuid.UUID(memory_id), vector, metadata) for memory_id, vector, metadata in records]


def _count_on(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(_ME)).scalar_one())


def _top(scores: np.ndarray, k: int, min_score: float | None) -> np.ndarray:
    """Indices of the best ``k`` scores, keeping every tie of the k-th (the caller sorts and cuts)."""
    if min_score is None:
        if scores.size <= k:
            return np.arange(scores.size)
        kth = np.partition(scores, scores.size - k)[scores.size - k]
        return np.flatnonzero(scores >= kth)
    candidates = np.flatnonzero(scores >= min_score)
    if candidates.size > k:
        kept = scores[candidates]
        kth = np.partition(kept, kept.size - k)[kept.size - k]
        candidates = candidates[kept >= kth]
    return candidates


def create_store(settings: Settings, **kwargs: Any) -> IntegratedVectorStore:
    """Build the integrated store on the engine of ``settings`` (``kwargs`` go to the store)."""
    kwargs.setdefault("settings", settings)
    if kwargs.get("cache", True):  # a store built with cache=False reads every row per query: no index
        kwargs.setdefault("ann", settings.vector_ann)
    return IntegratedVectorStore(get_engine(settings), settings.vector_dims, **kwargs)


def _default_ann_path(url: URL) -> Path | None:
    """Where an ANN index is saved by default: beside a SQLite database file (none elsewhere)."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if url.database.startswith("file:"):
        return None
    return Path(f"{url.database}.ann")


def _same_database(a: URL, b: URL) -> bool:
    """Whether two URLs name one database (their drivers may differ: a sync and an async one)."""
    return (a.get_backend_name(), a.host, a.port, a.database, a.username, dict(a.query)) == (
        b.get_backend_name(),
        b.host,
        b.port,
        b.database,
        b.username,
        dict(b.query),
    )
