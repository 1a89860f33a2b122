"""The VectorStore interface every backend implements, and the checks they share.

Scores have one definition on every backend: **cosine similarity in [-1, 1], higher
is more similar** (Chroma's cosine space reports ``1 - score`` as its distance, Pinecone's
cosine metric the similarity itself, pgvector and numpy compute it). ``min_score``, a
number in [-1, 1], keeps matches with ``score >= min_score``. ``k`` is at most
:data:`MAX_K` on every backend. Results are sorted by score descending, ties broken by
id ascending.

Public methods validate everything first (dimension, finiteness, filter fields and
kinds, ``k``, ``min_score``, ids) and only then call the backend's ``_``-prefixed
hooks, so a refused batch writes nothing. A backend implements
:meth:`VectorStore._upsert`, ``_query``, ``_delete_ids``, ``_delete_filter``, ``_get``,
``_count`` and ``_health``, and may narrow the ids it holds with ``_check_id``.

Ids: memory ids are ``uuid.UUID`` everywhere they come back (:attr:`Match.id`,
:attr:`Record.id`), the type :func:`dbcore.memories.add_memories` returns and the
memories' primary key has, so ``match.id in ids`` and ``session.get(Memory, match.id)``
work. Methods that take ids accept a ``uuid.UUID`` or its canonical (lowercase) text.
Chroma and Pinecone may also hold records under ids that are not UUIDs (written by
other tools, or your own keys); those come back as the ``str`` stored, so they stay
deletable and ``vectors reindex`` can remove them. :meth:`VectorStore.ids` lists the
stored keys as text, for verify and reindex.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar

import numpy as np

from dbcore.errors import ValidationError
from dbcore.types import VECTOR_MAX_DIM, vector_values
from dbcore.vector_changes import chunked
from dbcore.vectorstores.filters import (
    DATETIME_FIELDS,
    MEMORY_FIELDS,
    UUID_FIELDS,
    Filter,
    FilterLike,
    is_number,
    normalize_value,
    short_repr,
)

__all__ = [
    "VectorStore",
    "Record",
    "Match",
    "StoreHealth",
    "RecordLike",
    "validate_vector",
    "check_k",
    "check_min_score",
    "coerce_id",
    "as_record_id",
    "RecordId",
    "encode_metadata",
    "decode_metadata",
    "chunked",
    "JSON_KEYS_MARKER",
    "MAX_K",
]

#: The most matches one query may ask for, on every backend: Pinecone's own top_k limit,
#: so a query that works on one backend works on all.
MAX_K = 10_000

#: Stored-metadata key listing the keys whose values were JSON-encoded (see encode_metadata).
JSON_KEYS_MARKER = "_dbcore_json"


#: The id of a record or match: a memory id (``uuid.UUID``), or the text of a stored id that is no UUID.
RecordId = uuid.UUID | str


@dataclass(frozen=True)
class Record:
    """One stored embedding: id (a ``uuid.UUID`` for memory ids), vector (float32 array) and metadata."""

    id: RecordId
    vector: np.ndarray = field(repr=False, compare=False)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Match:
    """A query result: the record id and its cosine similarity (higher is better).

    ``id`` is a ``uuid.UUID`` for memory ids, equal to what ``add_memories`` returned;
    only a stored id that is no UUID (Chroma, Pinecone) comes back as its ``str``.
    """

    id: RecordId
    score: float
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class StoreHealth:
    """What :meth:`VectorStore.health` reports; ``ok`` is False with ``error`` set on failure."""

    backend: str
    ok: bool
    dims: int
    count: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "ok": self.ok,
            "dims": self.dims,
            "count": self.count,
            "detail": dict(self.detail),
            "error": self.error,
        }


RecordLike = Record | Mapping[str, Any] | tuple[Any, ...]


def coerce_id(value: Any) -> str:
    """Return a record id as text: UUIDs in canonical lowercase form, strings as given."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str) and value:
        return value
    raise ValidationError(f"a record id must be a uuid.UUID or a non-empty string, got {value!r}")


def as_record_id(stored: str) -> RecordId:
    """The id a backend returns for a stored key: ``uuid.UUID`` for canonical UUID text, else the text.

    Only the canonical form is parsed, so a foreign key such as ``"ABC..."`` or 32 bare hex
    digits is returned as stored and stays deletable under that exact text.
    """
    if len(stored) == 36:
        try:
            parsed = uuid.UUID(stored)
        except ValueError:
            return stored
        if str(parsed) == stored:
            return parsed
    return stored


def check_k(k: Any) -> int:
    """Return ``k`` if it is a whole number from 1 to :data:`MAX_K`, else raise ValidationError."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise ValidationError(f"k={short_repr(k)} must be a whole number from 1 to at most {MAX_K}")
    return k


def check_min_score(min_score: Any) -> float | None:
    """Return ``min_score`` as a float in [-1, 1] (or None), else raise ValidationError.

    Every backend scores by cosine similarity, so a bound outside [-1, 1] would keep
    everything or nothing: a mistake (a distance, a percentage), not a filter.
    """
    if min_score is None:
        return None
    if not is_number(min_score) or not -1.0 <= min_score <= 1.0:  # NaN fails the comparison
        raise ValidationError(f"min_score={short_repr(min_score)} must be a number from -1 to 1 (a cosine similarity)")
    return float(min_score)


def validate_vector(values: Any, dims: int, *, what: str = "vector") -> np.ndarray:
    """Return ``values`` as a float32 array of length ``dims``, or raise.

    The same check as every Vector column (:func:`dbcore.types.vector_values`), plus
    all-zero vectors refused: cosine similarity is undefined for them.
    """
    return vector_values(values, dims, where=what, nonzero=True)


def _encode_scalar(key: str, value: Any) -> Any:
    value = normalize_value(key, value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"metadata {key!r}={value!r} is not a finite number")
    return value


def encode_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return metadata in the form Chroma and Pinecone both accept.

    - ``None`` values are dropped (neither store holds nulls).
    - ``uuid.UUID`` -> canonical lowercase text; ``datetime`` -> epoch seconds (float,
      naive = UTC); strings on the UUID fields are checked and canonicalised.
    - str, int, float (finite) and bool are kept; non-empty lists of strings are kept.
    - Other values (dicts, empty lists, lists of non-strings) are JSON-encoded to a
      string; their keys are listed under ``_dbcore_json`` so :func:`decode_metadata`
      restores them. They are stored, not meant for filtering.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValidationError(f"metadata must be a dict, got {type(metadata).__name__}")
    out: dict[str, Any] = {}
    encoded: list[str] = []
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise ValidationError(f"metadata keys must be non-empty strings, got {key!r}")
        if key.startswith(("$", "#")) or key == JSON_KEYS_MARKER:
            raise ValidationError(
                f"metadata key {key!r} is reserved; keys may not start with $ or # or be {JSON_KEYS_MARKER}"
            )
        if value is None:
            continue
        if isinstance(value, (str, bool, int, float, uuid.UUID, datetime)):
            out[key] = _encode_scalar(key, value)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            out[key] = list(value)
        else:
            try:
                out[key] = json.dumps(value, sort_keys=True, allow_nan=False, default=_json_default)
            except (TypeError, ValueError) as exc:
                raise ValidationError(f"metadata {key!r} cannot be stored: {exc}") from None
            encoded.append(key)
    if encoded:
        out[JSON_KEYS_MARKER] = json.dumps(sorted(encoded))
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def decode_metadata(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """Invert :func:`encode_metadata`: UUID fields -> uuid.UUID, created_at -> aware UTC datetime."""
    if not stored:
        return {}
    out = dict(stored)
    marker = out.pop(JSON_KEYS_MARKER, None)
    if isinstance(marker, str):
        for key in json.loads(marker):
            if isinstance(out.get(key), str):
                out[key] = json.loads(out[key])
    for key in UUID_FIELDS & out.keys():
        if isinstance(out[key], str):
            try:
                out[key] = uuid.UUID(out[key])
            except ValueError:
                pass
    for key in DATETIME_FIELDS & out.keys():
        if is_number(out[key]):
            out[key] = datetime.fromtimestamp(float(out[key]), tz=timezone.utc)
    return out


@dataclass(frozen=True)
class PreparedRecord:
    """A validated record ready for a backend: id text, float32 vector, encoded metadata."""

    id: str
    vector: np.ndarray = field(repr=False)
    metadata: dict[str, Any]


def _in_order(found: Iterable[Record], id_list: list[str]) -> list[Record]:
    by_id = {str(record.id): record for record in found}
    return [by_id[i] for i in id_list if i in by_id]


def _unpack(item: Any, position: int) -> tuple[Any, Any, Any]:
    if isinstance(item, Record):
        return item.id, item.vector, item.metadata
    if isinstance(item, Mapping):
        unknown = set(item) - {"id", "vector", "metadata"}
        if unknown or "id" not in item or "vector" not in item:
            raise ValidationError(
                f"record #{position} must have keys id, vector and optional metadata; got {sorted(item)}"
            )
        return item["id"], item["vector"], item.get("metadata")
    if isinstance(item, tuple) and len(item) in (2, 3):
        return item[0], item[1], item[2] if len(item) == 3 else None
    raise ValidationError(f"record #{position} must be a Record, a dict or an (id, vector[, metadata]) tuple")


class VectorStore(ABC):
    """A similarity index of memory embeddings, one backend behind one interface.

    ``dims`` is the vector size the store holds. ``metadata_keys`` declares the
    metadata keys that filters may name besides the memory fields
    (agent_id, entity_id, room_id, world_id, kind, created_at).
    """

    #: The registry name of the backend ("chroma", "pinecone", ...).
    backend_name: ClassVar[str] = "abstract"

    def __init__(self, dims: int, *, metadata_keys: Iterable[str] = ()) -> None:
        if not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= VECTOR_MAX_DIM:
            raise ValidationError(f"dims={dims!r} must be an integer between 1 and {VECTOR_MAX_DIM}")
        self._dims = dims
        self._filter_fields = frozenset(MEMORY_FIELDS | frozenset(metadata_keys))

    @property
    def dims(self) -> int:
        return self._dims

    @property
    def filter_fields(self) -> frozenset[str]:
        """Field names filters may use on this store."""
        return self._filter_fields

    # --- public API -----------------------------------------------------------

    def upsert(self, records: Iterable[RecordLike]) -> int:
        """Insert or overwrite records; the whole batch is validated before anything is written.

        Returns the number of records written. A repeated id in one batch keeps the last one.
        """
        batch = self._prepare_upsert(records)
        if batch:
            self._upsert(batch)
        return len(batch)

    def query(
        self,
        vector: Any,
        k: int = 10,
        filter: FilterLike | None = None,  # noqa: A002 - the name users expect
        min_score: float | None = None,
        *,
        include_metadata: bool = True,
    ) -> list[Match]:
        """Return up to ``k`` (1 to :data:`MAX_K`) nearest records by cosine similarity, best first.

        ``min_score`` (-1 to 1) keeps matches with ``score >= min_score``.
        """
        asked = self._prepare_query(vector, k, filter, min_score)
        found = self._query(*asked, include_metadata)
        return self._finish_matches(found, asked[1], asked[3])

    def query_in(
        self,
        connection: Any,
        vector: Any,
        k: int = 10,
        filter: FilterLike | None = None,  # noqa: A002
        min_score: float | None = None,
        *,
        include_metadata: bool = True,
    ) -> list[Match] | None:
        """:meth:`query` on ``connection`` (a SQLAlchemy ``Connection``), inside the caller's transaction.

        Only a store that searches in that very database can: it then sees the
        transaction's own writes and takes no second connection. Others return None
        (the default here): call :meth:`query`.
        """
        return None

    def delete(self, ids: Iterable[str | uuid.UUID] | None = None, filter: FilterLike | None = None) -> None:  # noqa: A002
        """Delete records by ids, by filter, or both (records matching either are removed).

        Deleting missing ids is not an error; an id the store could never hold (one that
        :meth:`upsert` refuses) is, so a mistyped id is not silently skipped. Calling with
        neither raises ValidationError.
        """
        id_list, parsed = self._prepare_delete(ids, filter)
        if id_list:
            self._delete_ids(id_list)
        if parsed is not None:
            self._delete_filter(parsed)

    def get(self, ids: Iterable[str | uuid.UUID]) -> list[Record]:
        """Return the stored records for ``ids`` in the order asked; missing ids are skipped."""
        id_list = self._coerce_ids(ids)
        if not id_list:
            return []
        return _in_order(self._get(id_list), id_list)

    def count(self) -> int:
        """Number of records in the store (namespace, collection)."""
        return self._count()

    def ids(self) -> Iterator[str]:
        """Every record id in the store, in no particular order (used by verify and reindex)."""
        return iter(self._ids())

    def _ids(self) -> Iterable[str]:
        raise ValidationError(f"the {self.backend_name!r} vector store cannot list its ids; verify and reindex need it")

    def health(self) -> StoreHealth:
        """Check the backend answers; never raises for a backend failure."""
        try:
            return self._health()
        except Exception as exc:  # noqa: BLE001 - health reports, it does not raise
            return self._unhealthy(exc)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients; the default does nothing."""

    # --- the same from async code ------------------------------------------------------
    # Each runs the sync method's checks, then the backend's async hook: by default the sync
    # hook on a worker thread (asyncio.to_thread), so a blocking client never holds the event
    # loop; a backend with async I/O of its own overrides the hooks (the integrated store).

    async def aupsert(self, records: Iterable[RecordLike]) -> int:
        """:meth:`upsert` from async code."""
        batch = self._prepare_upsert(records)
        if batch:
            await self._aupsert(batch)
        return len(batch)

    async def aquery(
        self,
        vector: Any,
        k: int = 10,
        filter: FilterLike | None = None,  # noqa: A002 - the name users expect
        min_score: float | None = None,
        *,
        include_metadata: bool = True,
    ) -> list[Match]:
        """:meth:`query` from async code."""
        asked = self._prepare_query(vector, k, filter, min_score)
        found = await self._aquery(*asked, include_metadata)
        return self._finish_matches(found, asked[1], asked[3])

    async def adelete(
        self,
        ids: Iterable[str | uuid.UUID] | None = None,
        filter: FilterLike | None = None,  # noqa: A002
    ) -> None:
        """:meth:`delete` from async code."""
        id_list, parsed = self._prepare_delete(ids, filter)
        if id_list:
            await self._adelete_ids(id_list)
        if parsed is not None:
            await self._adelete_filter(parsed)

    async def aget(self, ids: Iterable[str | uuid.UUID]) -> list[Record]:
        """:meth:`get` from async code."""
        id_list = self._coerce_ids(ids)
        if not id_list:
            return []
        return _in_order(await self._aget(id_list), id_list)

    async def acount(self) -> int:
        """:meth:`count` from async code."""
        return await self._acount()

    async def ahealth(self) -> StoreHealth:
        """:meth:`health` from async code; never raises for a backend failure."""
        try:
            return await self._ahealth()
        except Exception as exc:  # noqa: BLE001 - health reports, it does not raise
            return self._unhealthy(exc)

    async def aclose(self) -> None:
        """:meth:`close` from async code (on a worker thread: closing a client may block)."""
        await asyncio.to_thread(self.close)

    async def _aupsert(self, batch: Sequence[PreparedRecord]) -> None:
        await asyncio.to_thread(self._upsert, batch)

    async def _aquery(
        self, vector: np.ndarray, k: int, filter: Filter | None, min_score: float | None, include_metadata: bool
    ) -> Iterable[Match]:  # noqa: A002
        return await asyncio.to_thread(lambda: list(self._query(vector, k, filter, min_score, include_metadata)))

    async def _adelete_ids(self, ids: Sequence[str]) -> None:
        await asyncio.to_thread(self._delete_ids, ids)

    async def _adelete_filter(self, filter: Filter) -> None:  # noqa: A002
        await asyncio.to_thread(self._delete_filter, filter)

    async def _aget(self, ids: Sequence[str]) -> Iterable[Record]:
        return await asyncio.to_thread(lambda: list(self._get(ids)))

    async def _acount(self) -> int:
        return await asyncio.to_thread(self._count)

    async def _ahealth(self) -> StoreHealth:
        return await asyncio.to_thread(self._health)

    # --- argument checks, shared by the sync and async methods -------------------------

    def _prepare_upsert(self, records: Iterable[RecordLike]) -> list[PreparedRecord]:
        if isinstance(records, (Record, Mapping)):
            raise ValidationError("upsert takes a list of records; wrap a single record in a list")
        prepared: dict[str, PreparedRecord] = {}
        for position, item in enumerate(records):
            raw_id, vector, metadata = _unpack(item, position)
            record_id = coerce_id(raw_id)
            prepared[record_id] = PreparedRecord(
                id=record_id,
                vector=validate_vector(vector, self._dims, what=f"vector of record {record_id!r}"),
                metadata=encode_metadata(metadata),
            )
        batch = list(prepared.values())
        for record in batch:
            self._check_id(record.id)
        if batch:
            self._check_batch(batch)
        return batch

    def _prepare_query(
        self,
        vector: Any,
        k: int,
        filter: FilterLike | None,
        min_score: float | None,  # noqa: A002
    ) -> tuple[np.ndarray, int, Filter | None, float | None]:
        return (
            validate_vector(vector, self._dims, what="query vector"),
            check_k(k),
            self._coerce_filter(filter),
            check_min_score(min_score),
        )

    def _prepare_delete(
        self,
        ids: Iterable[str | uuid.UUID] | None,
        filter: FilterLike | None,  # noqa: A002
    ) -> tuple[list[str], Filter | None]:
        if ids is None and filter is None:
            raise ValidationError("delete needs ids or a filter; refusing to delete everything implicitly")
        id_list = self._coerce_ids(ids) if ids is not None else []
        for record_id in id_list:
            self._check_id(record_id)
        return id_list, self._coerce_filter(filter)

    def _unhealthy(self, exc: BaseException) -> StoreHealth:
        return StoreHealth(self.backend_name, ok=False, dims=self._dims, error=f"{type(exc).__name__}: {exc}")

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- helpers for backends ------------------------------------------------

    def _coerce_filter(self, spec: FilterLike | None) -> Filter | None:
        if spec is None:
            return None
        return Filter.parse(spec, self._filter_fields)

    @staticmethod
    def _coerce_ids(ids: Iterable[Any]) -> list[str]:
        if isinstance(ids, (str, uuid.UUID)):
            raise ValidationError("pass a list of ids, not a single id")
        return list(dict.fromkeys(coerce_id(i) for i in ids))

    @staticmethod
    def _finish_matches(found: Iterable[Match], k: int, min_score: float | None) -> list[Match]:
        kept = [m for m in found if min_score is None or m.score >= min_score]
        kept.sort(key=lambda m: (-m.score, str(m.id)))
        return kept[:k]

    def _check_id(self, record_id: str) -> None:  # noqa: B027 - optional hook
        """Refuse an id this backend can never hold; upsert and delete both ask, so they agree.

        The default holds any non-empty text (Chroma, Pinecone: stray ids written by others
        must stay deletable).
        """

    def _check_batch(self, batch: Sequence[PreparedRecord]) -> None:  # noqa: B027 - optional hook
        """Backend-specific checks of a validated batch, run before any write."""

    # --- backend hooks ---------------------------------------------------------

    @abstractmethod
    def _upsert(self, batch: Sequence[PreparedRecord]) -> None: ...

    @abstractmethod
    def _query(
        self,
        vector: np.ndarray,
        k: int,
        filter: Filter | None,
        min_score: float | None,
        include_metadata: bool,  # noqa: A002
    ) -> Iterable[Match]:
        """Return at least the best ``k`` matches (more is fine; the base sorts and cuts)."""

    @abstractmethod
    def _delete_ids(self, ids: Sequence[str]) -> None: ...

    @abstractmethod
    def _delete_filter(self, filter: Filter) -> None: ...  # noqa: A002

    @abstractmethod
    def _get(self, ids: Sequence[str]) -> Iterable[Record]: ...

    @abstractmethod
    def _count(self) -> int: ...

    @abstractmethod
    def _health(self) -> StoreHealth: ...
