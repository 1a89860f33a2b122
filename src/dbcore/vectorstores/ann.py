"""An optional approximate (HNSW) index for the integrated store's numpy path, on faiss.

For databases without a native vector index (SQLite, MariaDB, SQL Server, PostgreSQL
without pgvector) the integrated store scans every vector. With ``ann=True`` and
``faiss-cpu`` installed (``pip install 'dbcore[ann]'``) it keeps, per process and per
database, a faiss ``IndexHNSWSQ`` (inner product over unit vectors: cosine) instead of
its matrix. The index stores each vector as float16 and is the only copy the process
holds: half the float32 matrix, plus the graph. Scores are computed on the float16
values (within about 1e-3 of the float32 score), also where a narrow filter is scored
exactly over its rows.

**Labels.** A vector's label is its position in the index, fixed for the index's life;
``keys[label]`` is its memory id (16 bytes). faiss's HNSW cannot remove a vector, so a
deleted or changed embedding is a tombstone (``live[label]`` false) that no search
returns; a changed one is added again under a new label. When tombstones pass a
quarter of the labels the index is built again.

**Exact to the rows.** The index carries the stamp it was brought up to: the
``embedding_versions`` row's id (which database) and its version. When the stamp in
the database differs, :meth:`AnnIndex.refresh` reads every embedding and compares a
64-bit hash of its stored bytes with the one kept per label: new and changed vectors
are added, missing and changed ones tombstoned. That costs one read of the table, not
a rebuild of the graph. The hash is a sum of the float32 words times fixed odd 64-bit
multipliers (mod 2**64): a change to any one word always changes it.

**On disk.** With a path (beside the SQLite file by default) the index, its keys and
tombstones are saved after a build, and after a refresh once the changes since the
last save pass 1% of the rows. A fresh process loads the last save and refreshes it
from there. The stamp file is written last and names the other files, so a reader
never mixes two saves.

This module knows nothing of SQL: the store hands it (keys, unit vectors) batches.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dbcore.errors import ConfigurationError

__all__ = ["AnnIndex", "Selection", "load_faiss", "row_hashes", "uuid_keys"]

#: HNSW graph degree and build breadth: at a million clustered vectors M=16 gave recall@10
#: 0.86 at efSearch 200, M=32 0.96 (docs/benchmarks.md, "ANN index").
M = 32
EF_CONSTRUCTION = 128
#: The default search breadth (the store's ``ef_search`` overrides it). At a million clustered
#: vectors efSearch 300 gave recall@10 0.97 in 3.5 ms.
EF_SEARCH = 300
#: A filtered search's breadth over the unfiltered one: a 10% room filter gave recall@10 0.948
#: at efSearch 300 and 0.964 at 400 (docs/benchmarks.md, "ANN index").
FILTERED_EF = 4 / 3
#: A filter that keeps this many rows or fewer is scored exactly over the kept rows.
EXACT_ROWS = 10_000
#: Above this share of tombstones the index is built again from the rows.
_DEAD_SHARE = 0.25
#: Unsaved changes (as a share of the rows) after which a refresh saves the index.
_SAVE_SHARE = 0.01
_KEY = np.dtype("S16")
_STAMP = "stamp.json"
_FILES = ("index", "keys", "live", "hashes")
# Fixed odd multipliers of the row hash (the same in every process: hashes are saved).
_MULTIPLIERS = np.random.default_rng(0x5EED).integers(1, 2**63, size=65536, dtype=np.uint64) * 2 + 1

Stamp = tuple[str, int]
#: One batch of the rows: memory ids as 16-byte keys, the hashes of their stored vectors, unit vectors.
Batch = tuple[np.ndarray, np.ndarray, np.ndarray]


def row_hashes(stored: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each float32 row as stored (before normalising), for change detection."""
    words = np.ascontiguousarray(stored, dtype=np.float32).view(np.uint32)
    return (words.astype(np.uint64) * _MULTIPLIERS[: words.shape[1]]).sum(axis=1, dtype=np.uint64)


_build_threads: list[int] = []  # OpenMP threads for builds, read when faiss is first loaded


def load_faiss() -> Any:
    """The faiss module, or a ConfigurationError saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise ConfigurationError("the integrated store's ann=True needs faiss-cpu: pip install 'dbcore[ann]'") from None
    if not _build_threads:
        _build_threads.append(faiss.omp_get_max_threads())
    return faiss


def uuid_keys(raw_ids: Sequence[Any], to_uuid: Callable[[Any], uuid.UUID]) -> np.ndarray:
    """Memory ids (driver values) as 16-byte keys; hyphenated text ids without a Python object each."""
    if raw_ids and all(isinstance(raw, str) and len(raw) == 36 for raw in raw_ids):
        digits = "".join(raw_ids).replace("-", "")
        if len(digits) == 32 * len(raw_ids):
            try:
                return np.frombuffer(bytes.fromhex(digits), dtype=_KEY)
            except ValueError:
                pass  # not hex: each id goes through to_uuid, which names the bad one
    return np.array([to_uuid(raw).bytes for raw in raw_ids], dtype=_KEY)


class AnnIndex:
    """One database's HNSW index with its labels, tombstones and stamp (see the module)."""

    def __init__(self, dims: int, path: Path | None = None) -> None:
        self._faiss = load_faiss()
        self.dims = dims
        self.path = path
        #: Held while the index is refreshed or searched (faiss's graph is not safe to read while it grows).
        self.lock = threading.Lock()
        self.index: Any = None
        self.keys = np.empty(0, dtype=_KEY)
        self.live = np.empty(0, dtype=bool)
        self.hashes = np.empty(0, dtype=np.uint64)
        self.stamp: Stamp | None = None
        #: Filter columns by label, and selections by filter, kept by the store while the stamp holds.
        self.columns: Any = None
        self.selections: dict[str, Selection] = {}
        self._all_live: Selection | None = None
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # live keys sorted, and their labels
        self._unsaved = 0
        self._tried_disk = False

    # --- state -----------------------------------------------------------------------

    @property
    def built(self) -> bool:
        return self.index is not None

    @property
    def size(self) -> int:
        """Live vectors."""
        return int(np.count_nonzero(self.live))

    def rows(self, labels: np.ndarray) -> np.ndarray:
        """The stored (float16) vectors of ``labels`` as float32 rows."""
        storage = self._faiss.downcast_index(self.index.storage)
        total = self.index.ntotal
        codes = self._faiss.rev_swig_ptr(storage.codes.data(), total * storage.code_size)
        return codes.view(np.float16).reshape(total, self.dims)[labels].astype(np.float32)

    def labels_of(self, keys: np.ndarray) -> np.ndarray:
        """The live label of each key, -1 where none."""
        if self._sorted is None:
            labels = np.flatnonzero(self.live)
            order = np.argsort(self.keys[labels], kind="stable")
            self._sorted = (self.keys[labels][order], labels[order])
        sorted_keys, sorted_labels = self._sorted
        if sorted_keys.size == 0 or keys.size == 0:
            return np.full(keys.size, -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
        return np.where(sorted_keys[at] == keys, sorted_labels[at], -1).astype(np.int64)

    def uuids(self, labels: Iterable[int]) -> list[uuid.UUID]:
        raw = self.keys.view(np.uint8).reshape(-1, 16)
        return [uuid.UUID(bytes=raw[label].tobytes()) for label in labels]

    # --- bringing it to the rows -----------------------------------------------------

    def load(self) -> None:
        """Read the last save, once per process (a missing or torn save leaves the index empty)."""
        if self._tried_disk or self.path is None:
            return
        self._tried_disk = True
        try:
            stamp = json.loads((self.path / _STAMP).read_text())
            token = stamp["token"]
            index = self._faiss.read_index(str(self.path / f"index-{token}.faiss"))
            keys = np.load(self.path / f"keys-{token}.npy")
            live = np.load(self.path / f"live-{token}.npy")
            hashes = np.load(self.path / f"hashes-{token}.npy")
        except (OSError, ValueError, KeyError, RuntimeError):
            return
        if index.d != self.dims or not index.ntotal == keys.size == live.size == hashes.size or keys.dtype != _KEY:
            return
        self.index, self.keys, self.live, self.hashes = index, keys, live, hashes
        self.stamp = (str(stamp["identity"]), int(stamp["version"]))
        self._forget()

    def refresh(self, stamp: Stamp, batches: Iterable[Batch]) -> dict[str, int]:
        """Bring the index to ``batches`` (every row of the table) and take ``stamp``; returns the changes."""
        rebuild = (
            self.index is None
            or self.stamp is None
            or self.stamp[0] != stamp[0]
            or self.live.size - self.size > _DEAD_SHARE * max(self.live.size, 1)
        )
        if rebuild:
            self._empty()
        seen = np.zeros(self.live.size, dtype=bool)
        added = 0
        try:
            for keys, hashes, block in batches:
                labels = self.labels_of(keys)
                same = labels >= 0
                known = np.flatnonzero(same)
                same[known] = self.hashes[labels[known]] == hashes[known]
                seen[labels[same]] = True
                fresh = ~same
                if fresh.any():
                    self._add(keys[fresh], hashes[fresh], block[fresh])
                    added += int(np.count_nonzero(fresh))
        finally:
            # Also when the read fails halfway: the stamp stays old, so the next query refreshes
            # again, and finds what this pass added by its key and hash.
            self._forget()
        old = seen.size
        gone = self.live[:old] & ~seen
        removed = int(np.count_nonzero(gone))
        self.live[:old][gone] = False
        if self.live.size - self.size > _DEAD_SHARE * self.live.size:
            self._compact()
            rebuild = True
        self.stamp = stamp
        self._unsaved += added + removed
        if rebuild or self._unsaved > _SAVE_SHARE * max(self.size, 1):
            self.save()
        return {"added": added, "removed": removed, "rebuilt": int(rebuild)}

    def _forget(self) -> None:
        """Drop what is derived from the labels: the key lookup, the filter columns and selections."""
        self._sorted = None
        self.columns = None
        self.selections = {}
        self._all_live = None

    def _empty(self) -> None:
        fp16 = self._faiss.ScalarQuantizer.QT_fp16
        self.index = self._faiss.IndexHNSWSQ(self.dims, fp16, M, self._faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = EF_CONSTRUCTION
        self.keys = np.empty(0, dtype=_KEY)
        self.live = np.empty(0, dtype=bool)
        self.hashes = np.empty(0, dtype=np.uint64)
        self.stamp = None
        self._forget()

    def _compact(self) -> None:
        """Build the index again from its live vectors (the tombstones dropped)."""
        labels = np.flatnonzero(self.live)
        keys, hashes, block = self.keys[labels], self.hashes[labels], self.rows(labels)
        self._empty()
        self._add(keys, hashes, block)  # float16 values read back as float32 are stored unchanged

    def _add(self, keys: np.ndarray, hashes: np.ndarray, block: np.ndarray) -> None:
        # Builds use every OpenMP thread; one query is faster on one (no thread wake-ups).
        self._faiss.omp_set_num_threads(_build_threads[0])
        self.index.add(np.ascontiguousarray(block, dtype=np.float32))
        self.keys = np.concatenate([self.keys, keys])
        self.hashes = np.concatenate([self.hashes, hashes])
        self.live = np.concatenate([self.live, np.ones(keys.size, dtype=bool)])

    def save(self) -> None:
        """Write the index, keys, tombstones and hashes, then the stamp naming them; remove older saves."""
        if self.path is None or self.stamp is None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(8)
        self._faiss.write_index(self.index, str(self.path / f"index-{token}.faiss"))
        np.save(self.path / f"keys-{token}.npy", self.keys)
        np.save(self.path / f"live-{token}.npy", self.live)
        np.save(self.path / f"hashes-{token}.npy", self.hashes)
        stamp = {"identity": self.stamp[0], "version": self.stamp[1], "token": token, "dims": self.dims}
        partial = self.path / f"{_STAMP}.{token}"
        partial.write_text(json.dumps(stamp))
        os.replace(partial, self.path / _STAMP)
        self._unsaved = 0
        for old in self.path.iterdir():
            if token not in old.name and old.name != _STAMP and old.name.split("-")[0] in _FILES:
                try:
                    old.unlink()
                except OSError:
                    pass  # another process may hold it open (Windows); the next save retries

    # --- search ------------------------------------------------------------------------

    def select(self, mask: np.ndarray) -> Selection:
        """The live labels of ``mask`` as a :class:`Selection` (its faiss bitmap made on first use)."""
        kept = mask & self.live
        return Selection(kept, int(np.count_nonzero(kept)))

    def search(
        self, query_unit: np.ndarray, k: int, ef: int, selection: Selection | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Labels and scores of the approximate top ``k`` among ``selection`` (None: every live label).

        faiss's filtered HNSW search walks the whole graph but keeps only selected labels,
        and stops once ``ef`` of them are found, so a narrower filter walks further by itself;
        a filtered search still gets ``FILTERED_EF`` times the breadth, for the same recall.
        """
        if selection is None and self.size < self.live.size:
            if self._all_live is None:
                self._all_live = self.select(self.live)
            selection = self._all_live
        if selection is not None and selection is not self._all_live:
            ef = math.ceil(ef * FILTERED_EF)
        params: dict[str, Any] = {"efSearch": max(ef, k)}
        if selection is not None:
            params["sel"] = selection.selector(self._faiss)
        self._faiss.omp_set_num_threads(1)
        distances, labels = self.index.search(
            query_unit.reshape(1, -1), k, params=self._faiss.SearchParametersHNSW(**params)
        )
        found = labels[0] >= 0
        return labels[0][found].astype(np.int64), distances[0][found]


class Selection:
    """Labels a filter keeps: a mask, its count, and the faiss bitmap selector over it."""

    def __init__(self, mask: np.ndarray, count: int) -> None:
        self.mask = mask
        self.count = count
        self._bits: np.ndarray | None = None
        self._selector: Any = None

    def selector(self, faiss: Any) -> Any:
        if self._selector is None:
            self._bits = np.packbits(self.mask, bitorder="little")  # the selector points into these bytes
            self._selector = faiss.IDSelectorBitmap(self.mask.size, faiss.swig_ptr(self._bits))
        return self._selector
