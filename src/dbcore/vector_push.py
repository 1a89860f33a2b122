"""Sending outbox markers to an external vector store: right after COMMIT, and for sync.

With ``DBCORE_VECTOR_BACKEND`` chroma, pinecone or a plugin, every memory change
made through a dbcore engine writes an outbox marker in its own transaction
(:mod:`dbcore.vector_changes`). After the outermost COMMIT of a session that wrote
markers, :func:`push_after_commit` (called by the session hook in :mod:`dbcore.hooks`,
before the :func:`~dbcore.on_saved` hooks run) sends the memories those markers
name to the store and deletes the markers, so a memory is searchable as soon as
the commit returns. Only markers whose rows still exist are pushed, so those of a
savepoint that rolled back are not. Between the COMMIT and the push returning,
other connections see the rows without their vectors.

A push that fails (store unreachable or refusing, or the database gone after the
commit) never raises out of the commit, which has happened: it logs a warning and
leaves the markers for ``dbcore vectors sync``, and ``dbcore vectors verify``
counts them as pending. Markers written by Core statements on a bare connection
(``engine.begin()``), on a session joined to an outer transaction, or with
``DBCORE_VECTOR_PUSH_ON_COMMIT=false`` wait for sync too.

:func:`push_markers` sends one batch; :func:`dbcore.vectorsync.sync` uses it too.
It reads each memory's current state, writes the store, then, in one transaction,
reads the state again and deletes the markers of the memories that did not change
meanwhile. A memory changed by a transaction that committed during the push keeps
its marker: the store may hold the older state if the two pushes crossed, and the
next push or sync sends the newer one.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from dbcore.config import Settings
from dbcore.DB_Memories import VectorOutbox
from dbcore.vector_changes import chunked, memory_records, noted_markers, outbox_settings

if TYPE_CHECKING:
    from dbcore.vectorstores import VectorStore

__all__ = [
    "Pushed",
    "CommittedPush",
    "push_markers",
    "committed_pushes",
    "push_after_commit",
    "read_markers",
    "read_records",
    "write_store",
    "clear_markers",
    "report_failed_push",
    "commit_store",
    "close_stores",
]

log = logging.getLogger(__name__)

_OUTBOX: sa.Table = VectorOutbox.__table__  # type: ignore[assignment]
_IN_CHUNK = 500

# The store each configuration pushes to after COMMIT, built on first use.
_stores: dict[Settings, VectorStore] = {}
_stores_lock = threading.Lock()


@dataclass(frozen=True)
class Pushed:
    """What :func:`push_markers` did with one batch."""

    upserted: int
    deleted: int
    markers_cleared: int


@dataclass(frozen=True)
class CommittedPush:
    """What one connection of a committed session owes the store: its markers, and where they are."""

    engine: Engine
    settings: Settings
    marker_ids: list[uuid.UUID]


def push_markers(engine: Engine, store: VectorStore, markers: Sequence[Any]) -> Pushed:
    """Bring ``store`` up to the memories ``markers`` (rows with ``id`` and ``memory_id``) name.

    Deletes the markers of the memories whose state did not change during the push.
    A store error propagates with every marker kept.
    """
    with engine.connect() as conn:
        records = read_records(conn, markers)
    upserted, deleted = write_store(store, markers, records)
    with engine.begin() as conn:
        cleared = clear_markers(conn, markers, records)
    return Pushed(upserted=upserted, deleted=deleted, markers_cleared=cleared)


# The three steps of a push, apart so that async code runs the database ones on its connection
# (AsyncConnection.run_sync) and the store's on a worker thread (dbcore.session).


def read_markers(conn: Connection, marker_ids: Sequence[uuid.UUID]) -> list[Any]:
    """The rows (``id``, ``memory_id``) of those markers that still exist."""
    markers: list[Any] = []
    for part in chunked(list(marker_ids), _IN_CHUNK):
        query = sa.select(_OUTBOX.c.id, _OUTBOX.c.memory_id).where(_OUTBOX.c.id.in_(part))
        markers.extend(conn.execute(query).all())
    return markers


def read_records(conn: Connection, markers: Sequence[Any]) -> list[Any]:
    """The store records (id, vector, metadata) of the memories ``markers`` name that have a vector."""
    return memory_records(conn, _memory_ids(markers))


def write_store(store: VectorStore, markers: Sequence[Any], records: Sequence[Any]) -> tuple[int, int]:
    """Upsert ``records`` and delete the named memories without one; (upserted, deleted)."""
    present = {r[0] for r in records}
    absent = [str(i) for i in _memory_ids(markers) if str(i) not in present]
    if records:
        store.upsert(records)
    if absent:
        store.delete(ids=absent)
    return len(records), len(absent)


def clear_markers(conn: Connection, markers: Sequence[Any], records: Sequence[Any]) -> int:
    """Delete the markers whose memory still has the state ``records`` were read in; how many."""
    moved = _changed_since(conn, _memory_ids(markers), records)
    done = [m.id for m in markers if str(m.memory_id) not in moved]
    for part in chunked(done, _IN_CHUNK):
        conn.execute(_OUTBOX.delete().where(_OUTBOX.c.id.in_(part)))
    return len(done)


def _memory_ids(markers: Sequence[Any]) -> list[uuid.UUID]:
    return list(dict.fromkeys(m.memory_id for m in markers))


def _changed_since(conn: Connection, memory_ids: Sequence[uuid.UUID], pushed: Sequence[Any]) -> set[str]:
    """The memory ids whose record (vector and metadata, or absence) now differs from ``pushed``."""
    before = {r[0]: r for r in pushed}
    now = {r[0]: r for r in memory_records(conn, memory_ids)}
    changed = set()
    for key in {str(i) for i in memory_ids}:
        old, new = before.get(key), now.get(key)
        if old is None or new is None:
            if old is not new:
                changed.add(key)
        elif not (np.array_equal(old[1], new[1]) and old[2] == new[2]):
            changed.add(key)
    return changed


def committed_pushes(session: Session) -> list[CommittedPush]:
    """After the outermost COMMIT: what ``session``'s markers owe the store (taken: asked once)."""
    if session.in_nested_transaction():
        return []  # a savepoint was released; its markers wait for the outer COMMIT
    pushes = []
    for connection, marker_ids in noted_markers(session).items():
        settings = outbox_settings(connection)
        # Still in a transaction: the session joined an outer one, which has not committed.
        if settings is None or not settings.vector_push_on_commit or connection.in_transaction():
            continue
        pushes.append(CommittedPush(connection.engine, settings, marker_ids))
    return pushes


def push_after_commit(push: CommittedPush) -> None:
    """Push one connection's markers; a failure is logged (:func:`report_failed_push`), never raised."""
    try:
        with push.engine.connect() as conn:
            markers = read_markers(conn, push.marker_ids)
        if markers:
            push_markers(push.engine, commit_store(push.settings), markers)
    except Exception as exc:  # noqa: BLE001 - the commit happened; the markers stay for sync
        report_failed_push(push, exc)


def report_failed_push(push: CommittedPush, exc: BaseException) -> None:
    """Log that the store was not updated after COMMIT (secrets removed); the markers wait for sync."""
    log.warning(
        "the %s vector store was not updated after COMMIT; %d marker(s) kept for `dbcore vectors sync`: %s",
        push.settings.vector_backend,
        len(push.marker_ids),
        _without_secrets(f"{type(exc).__name__}: {exc}", push.settings),
    )


def _without_secrets(text: str, settings: Settings) -> str:
    for secret in (settings.pinecone.api_key, settings.system_api_key, settings.url.password):
        if secret:
            text = text.replace(str(secret), "***")
    return text


def commit_store(settings: Settings) -> VectorStore:
    """The store that commits on an engine of ``settings`` push to (built once; a failed build is retried)."""
    store = _stores.get(settings)
    if store is None:
        with _stores_lock:
            store = _stores.get(settings)
            if store is None:
                # The one import upward (docs/architecture.md): the store's backend, and its SDK,
                # load when the first commit needs them, not with every dbcore engine.
                from dbcore.vectorstores import get_vector_store

                store = get_vector_store(settings)
                _stores[settings] = store
    return store


def close_stores() -> None:
    """Close and forget the stores :func:`commit_store` built (called by :func:`dbcore.dispose_engines`)."""
    with _stores_lock:
        stores = list(_stores.values())
        _stores.clear()
    for store in stores:
        try:
            store.close()
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            log.warning("closing the %s vector store failed: %s", type(store).__name__, type(exc).__name__)
