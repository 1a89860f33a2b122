"""Keeping an external vector store equal to the relational rows: sync, verify, reindex.

The relational rows are the system of record. A memory change made through a
dbcore engine configured for an external store writes an outbox marker in the
same transaction (see :mod:`dbcore.vector_changes`), so a committed change always
leaves either the store updated or a marker saying it is not yet.

A session's COMMIT already pushes the memories it changed
(:mod:`dbcore.vector_push`); :func:`sync` finishes what is left: pushes that
failed, Core writes on bare connections, or every change when
``DBCORE_VECTOR_PUSH_ON_COMMIT`` is false. It takes the markers in batches and hands
each to :func:`dbcore.vector_push.push_markers`, which reads each named memory's
*current* state (embedding and metadata, or absent), upserts the present ones and
deletes the absent ones in the store, and only then deletes the markers it read
(but those of a memory that changed during the push). A store failure at any
point leaves the markers, so the next sync redoes the work (every step is
idempotent). A marker written meanwhile by another transaction is a different
row and stays for the next run.

:func:`verify` compares the ids on both sides; :func:`reindex` rebuilds the store
from the rows (and removes ids the rows do not have).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dbcore.config import Settings
from dbcore.DB_Memories import Memory, MemoryEmbedding, VectorOutbox
from dbcore.engine import get_engine
from dbcore.errors import ValidationError
from dbcore.memories import memory_records
from dbcore.vector_push import push_markers
from dbcore.vectorstores.base import VectorStore, chunked

__all__ = ["SyncReport", "DriftReport", "ReindexReport", "sync", "verify", "reindex", "memory_records", "Progress"]

log = logging.getLogger(__name__)

_ME: sa.Table = MemoryEmbedding.__table__  # type: ignore[assignment]
_MEM: sa.Table = Memory.__table__  # type: ignore[assignment]
_OUTBOX: sa.Table = VectorOutbox.__table__  # type: ignore[assignment]
_IN_CHUNK = 500

#: ``progress(done, total)``, called after each batch of :func:`reindex`.
Progress = Callable[[int, int], None]


@dataclass
class SyncReport:
    """What :func:`sync` did. ``error`` is set (and markers kept) when the store failed."""

    upserted: int = 0
    deleted: int = 0
    markers_cleared: int = 0
    pending: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class DriftReport:
    """Ids in SQL but not in the store (``missing``) and in the store but not in SQL (``orphans``).

    Differences explained by an outbox marker are ``pending`` (a sync finishes them);
    the rest is ``drift``.
    """

    sql_count: int
    store_count: int
    missing: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)

    @property
    def drift(self) -> list[str]:
        waiting = set(self.pending)
        return sorted((set(self.missing) | set(self.orphans)) - waiting)

    @property
    def ok(self) -> bool:
        return not self.drift

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "sql_count": self.sql_count,
            "store_count": self.store_count,
            "missing": len(self.missing),
            "orphans": len(self.orphans),
            "pending": len(self.pending),
            "drift": len(self.drift),
        }


@dataclass
class ReindexReport:
    upserted: int = 0
    orphans_deleted: int = 0
    markers_cleared: int = 0


def _engine_of(settings: Settings | None, engine: Engine | None) -> Engine:
    return engine if engine is not None else get_engine(settings)


def _pending_count(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(_OUTBOX)).scalar_one())


def _check_batch_size(batch_size: object) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValidationError(f"batch_size={batch_size!r} must be a whole number of at least 1")


def sync(
    store: VectorStore,
    *,
    settings: Settings | None = None,
    engine: Engine | None = None,
    batch_size: int = 500,
) -> SyncReport:
    """Bring ``store`` up to the rows named by outbox markers; clear the markers it finished."""
    _check_batch_size(batch_size)
    engine = _engine_of(settings, engine)
    report = SyncReport()
    while True:
        with engine.connect() as conn:
            markers = conn.execute(
                sa.select(_OUTBOX.c.id, _OUTBOX.c.memory_id)
                .order_by(_OUTBOX.c.created_at, _OUTBOX.c.id)
                .limit(batch_size)
            ).all()
        if not markers:
            break
        try:
            pushed = push_markers(engine, store, markers)
        except Exception as exc:  # noqa: BLE001 - the store failed; the markers stay for the next run
            report.error = f"{type(exc).__name__}: {exc}"
            log.warning("vector sync stopped, %d marker(s) kept: %s", len(markers), report.error)
            break
        report.upserted += pushed.upserted
        report.deleted += pushed.deleted
        report.markers_cleared += pushed.markers_cleared
        if pushed.markers_cleared == 0:
            break  # every memory of the batch changed meanwhile: its new markers are for the next run
    with engine.connect() as conn:
        report.pending = _pending_count(conn)
    return report


def _sql_ids(conn: Connection) -> set[str]:
    return {str(i) for i in conn.execute(sa.select(_ME.c.memory_id)).scalars()}


def verify(store: VectorStore, *, settings: Settings | None = None, engine: Engine | None = None) -> DriftReport:
    """Compare the memory ids with an embedding in SQL with the ids in ``store``."""
    engine = _engine_of(settings, engine)
    with engine.connect() as conn:
        pending = {str(i) for i in conn.execute(sa.select(_OUTBOX.c.memory_id)).scalars()}
        sql_ids = _sql_ids(conn)
    store_ids = set(store.ids())
    return DriftReport(
        sql_count=len(sql_ids),
        store_count=len(store_ids),
        missing=sorted(sql_ids - store_ids),
        orphans=sorted(store_ids - sql_ids),
        pending=sorted(pending),
    )


def _iter_batches(engine: Engine, batch_size: int) -> Iterator[list[tuple[str, np.ndarray, dict[str, Any]]]]:
    with engine.connect() as conn:
        ids = list(conn.execute(sa.select(_ME.c.memory_id).order_by(_ME.c.memory_id)).scalars())
    for part in chunked(ids, batch_size):
        with engine.connect() as conn:
            yield memory_records(conn, part)


def reindex(
    store: VectorStore,
    *,
    settings: Settings | None = None,
    engine: Engine | None = None,
    batch_size: int = 500,
    progress: Progress | None = None,
) -> ReindexReport:
    """Write every memory embedding to ``store``, delete ids the rows lack, clear the markers seen at the start."""
    _check_batch_size(batch_size)
    engine = _engine_of(settings, engine)
    report = ReindexReport()
    with engine.connect() as conn:
        markers = list(conn.execute(sa.select(_OUTBOX.c.id)).scalars())
        total = int(conn.execute(sa.select(sa.func.count()).select_from(_ME)).scalar_one())
    if progress:
        progress(0, total)
    for records in _iter_batches(engine, batch_size):
        if records:
            store.upsert(records)
        report.upserted += len(records)
        if progress:
            progress(report.upserted, total)
    with engine.connect() as conn:
        sql_ids = _sql_ids(conn)
    orphans = [i for i in store.ids() if i not in sql_ids]
    if orphans:
        store.delete(ids=orphans)
    report.orphans_deleted = len(orphans)
    with engine.begin() as conn:
        for part in chunked(markers, _IN_CHUNK):
            conn.execute(_OUTBOX.delete().where(_OUTBOX.c.id.in_(part)))
    report.markers_cleared = len(markers)
    return report
