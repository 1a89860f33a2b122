"""The pgvector wire: per-connection HNSW settings and query vectors in pgvector's formats.

On psycopg 3 a query vector is bound in pgvector's binary format through a
private parameter class (user code binding numpy arrays is unaffected); other
drivers get pgvector's text format. The statement casts the parameter to
``vector(dims)``, so the server also checks the dimension.
"""

from __future__ import annotations

import functools
import struct
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["prepare_pg_connection", "QueryVector", "HNSW_INFO_KEY"]

#: Where a pooled connection remembers the hnsw.ef_search it was set to.
HNSW_INFO_KEY = "dbcore_hnsw_ef_search"
_BINARY_INFO_KEY = "dbcore_binary_vector"


def prepare_pg_connection(conn: Connection, ef_search: int) -> None:
    """Make this pooled connection ready for dbcore's pgvector queries, once per connection.

    Sets ``hnsw.ef_search`` and ``strict_order`` iterative scans at session level (kept
    with the connection in the pool, so later queries pay no round trip; iterative
    scans keep exact distance order and only matter when a filter or ``min_score``
    discards index rows), and on psycopg 3 registers the binary dumper of query vectors.
    """
    info = conn.connection.info
    if _sends_binary(conn.dialect) and not info.get(_BINARY_INFO_KEY):
        conn.connection.driver_connection.adapters.register_dumper(  # type: ignore[union-attr]
            _BinaryVector, _binary_vector_dumper()
        )
        info[_BINARY_INFO_KEY] = True
    if info.get(HNSW_INFO_KEY) == ef_search:
        return
    conn.execute(
        sa.select(
            sa.func.set_config("hnsw.ef_search", str(ef_search), False),
            sa.func.set_config("hnsw.iterative_scan", "strict_order", False),
        )
    )
    info[HNSW_INFO_KEY] = ef_search


def _sends_binary(dialect: sa.Dialect) -> bool:
    """Whether query vectors go in pgvector's binary format: psycopg 3 (sync or async), the driver with a dumper for it."""
    return dialect.driver in ("psycopg", "psycopg_async")


class _BinaryVector:
    """A query vector in pgvector's binary format (big-endian dims, unused, float32 values)."""

    __slots__ = ("payload",)

    def __init__(self, vector: np.ndarray) -> None:
        self.payload = struct.pack(">HH", vector.shape[0], 0) + vector.astype(">f4", copy=False).tobytes()


@functools.cache
def _binary_vector_dumper() -> type:
    """psycopg 3's dumper for :class:`_BinaryVector` (imported late: psycopg is an optional extra)."""
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    class BinaryVectorDumper(Dumper):
        format = Format.BINARY  # oid 0: the server takes the type from the CAST around the parameter

        def dump(self, obj: _BinaryVector) -> bytes:
            return obj.payload

    return BinaryVectorDumper


def _vector_text(vector: np.ndarray) -> str:
    from pgvector import Vector as PgVector

    return PgVector(vector).to_text()


class QueryVector(sa.types.UserDefinedType[Any]):
    """The type of a bound query vector: pgvector's binary format on psycopg 3, its text format elsewhere.

    Binary skips formatting 384 floats as text on every query; the statement casts the
    parameter to ``vector(dims)``, which also makes the server check the dimension.
    """

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "vector"

    def bind_processor(self, dialect: sa.Dialect) -> Any:
        return _BinaryVector if _sends_binary(dialect) else _vector_text
