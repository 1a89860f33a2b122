"""Pinecone backend over the official SDK's REST data-plane client.

The index must be created with ``metric="cosine"`` and ``dimension=dims``; Pinecone's
cosine score is the similarity itself, so it is returned as is. On open the store
reads ``describe_index_stats`` and refuses another dimension
(DimensionMismatchError) or metric (ConfigurationError).

Limits respected per request: at most 1,000 vectors and at most ~2 MB of JSON per
upsert (the body size is computed exactly as the SDK will encode it and kept under
2,000,000 bytes, below both 2 MB and 2 MiB); at most 1,000 ids per fetch or delete;
metadata of at most 40 KB per record (larger raises ValidationError before any
write). Metadata is encoded by :func:`dbcore.vectorstores.base.encode_metadata`:
nulls dropped, nested values JSON-encoded and restored on read. Pinecone returns
numbers as floats. Pinecone's ``$gt``/``$gte``/``$lt``/``$lte`` take numbers and
``$in``/``$nin`` take strings or numbers; other uses raise UnsupportedFilter.

Environment (read by :meth:`PineconeVectorStore.from_env`): ``PINECONE_API_KEY``,
``DBCORE_PINECONE_INDEX``, ``DBCORE_PINECONE_HOST`` (index host URL, wins over the
name), ``DBCORE_PINECONE_NAMESPACE`` (default ``""``). The API key never appears in
errors or reprs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

import numpy as np

from dbcore.config import PineconeSettings, Settings
from dbcore.errors import ConfigurationError, ConnectionFailed, DatabaseError, DimensionMismatchError, ValidationError
from dbcore.vectorstores.base import (
    Match,
    PreparedRecord,
    Record,
    StoreHealth,
    VectorStore,
    as_record_id,
    chunked,
    decode_metadata,
)
from dbcore.vectorstores.filters import And, Condition, Filter, Or, UnsupportedFilter, is_number

__all__ = [
    "PineconeVectorStore",
    "create_store",
    "to_pinecone_filter",
    "MAX_VECTORS_PER_UPSERT",
    "MAX_REQUEST_BYTES",
    "MAX_IDS_PER_REQUEST",
    "MAX_METADATA_BYTES",
]

MAX_VECTORS_PER_UPSERT = 1000
MAX_REQUEST_BYTES = 2_000_000
MAX_IDS_PER_REQUEST = 1000
MAX_METADATA_BYTES = 40 * 1024
MAX_TOP_K_WITH_METADATA = 1000  # without metadata, Pinecone's 10,000 is the base's MAX_K
# Keeps GET /vectors/fetch query strings well below common URL limits.
_MAX_FETCH_QUERY_CHARS = 48_000
_ENVELOPE_BYTES = 64

T = TypeVar("T")


def to_pinecone_filter(node: Filter) -> dict[str, Any]:
    """Translate a filter to Pinecone's metadata filter; raise UnsupportedFilter when it cannot."""
    if isinstance(node, (And, Or)):
        if len(node.children) == 1:
            return to_pinecone_filter(node.children[0])
        return {f"${node.op}": [to_pinecone_filter(child) for child in node.children]}
    if not isinstance(node, Condition):
        raise UnsupportedFilter(f"Pinecone cannot express filter node {type(node).__name__}")
    if node.op in ("gt", "gte", "lt", "lte") and not is_number(node.value):
        raise UnsupportedFilter(
            f"Pinecone compares ${node.op} on numbers only; {node.field!r} was given {type(node.value).__name__} {node.value!r}"
        )
    if node.op in ("in", "nin"):
        if any(not isinstance(v, str) and not is_number(v) for v in node.value):
            raise UnsupportedFilter(
                f"Pinecone ${node.op} takes strings or numbers; {node.field!r} was given {list(node.value)!r}"
            )
        return {node.field: {f"${node.op}": list(node.value)}}
    return {node.field: {f"${node.op}": node.value}}


def _json_size(value: Any) -> int:
    # Compact separators and raw UTF-8 match the SDK's orjson encoding; Python's float
    # repr is never shorter than orjson's, so this over-estimates if anything.
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _wire_item(record: PreparedRecord) -> dict[str, Any]:
    item: dict[str, Any] = {"id": record.id, "values": record.vector.tolist()}
    if record.metadata:
        item["metadata"] = record.metadata
    return item


def plan_upsert_batches(
    items: Sequence[dict[str, Any]],
    *,
    namespace: str = "",
    max_vectors: int = MAX_VECTORS_PER_UPSERT,
    max_bytes: int = MAX_REQUEST_BYTES,
) -> list[list[dict[str, Any]]]:
    """Split upsert items into requests under both the vector-count and the body-size limit."""
    envelope = _ENVELOPE_BYTES + _json_size(namespace)
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = envelope
    for item in items:
        item_size = _json_size(item) + 1  # the comma between items
        if item_size + envelope > max_bytes:
            raise ValidationError(
                f"record {item['id']!r} alone encodes to {item_size} bytes, over Pinecone's {max_bytes}-byte request limit"
            )
        if current and (len(current) >= max_vectors or size + item_size > max_bytes):
            batches.append(current)
            current, size = [], envelope
        current.append(item)
        size += item_size
    if current:
        batches.append(current)
    return batches


def _id_chunks(ids: Sequence[str], *, max_chars: int | None) -> list[Sequence[str]]:
    chunks: list[Sequence[str]] = []
    for part in chunked(ids, MAX_IDS_PER_REQUEST):
        if max_chars is None:
            chunks.append(part)
            continue
        start, chars = 0, 0
        for index, value in enumerate(part):
            cost = len(quote(value, safe="")) + 5  # "ids=" and "&"
            if index > start and chars + cost > max_chars:
                chunks.append(part[start:index])
                start, chars = index, 0
            chars += cost
        chunks.append(part[start:])
    return chunks


class PineconeVectorStore(VectorStore):
    """Memories in one Pinecone index namespace (cosine metric)."""

    backend_name = "pinecone"

    def __init__(
        self,
        index: Any,
        dims: int,
        *,
        namespace: str = "",
        metadata_keys: Iterable[str] = (),
        check_index: bool = True,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        super().__init__(dims, metadata_keys=metadata_keys)
        self._index = index
        self._namespace = namespace
        self._max_request_bytes = max_request_bytes
        if check_index:
            self._check_index()

    @classmethod
    def from_settings(
        cls, pinecone: PineconeSettings, dims: int, *, metadata_keys: Iterable[str] = (), **kwargs: Any
    ) -> PineconeVectorStore:
        """Connect with ``pinecone.api_key`` to its host or index name."""
        if not pinecone.api_key:
            raise ConfigurationError("the pinecone vector store needs PINECONE_API_KEY")
        if not pinecone.host and not pinecone.index:
            raise ConfigurationError("the pinecone vector store needs DBCORE_PINECONE_INDEX (or DBCORE_PINECONE_HOST)")
        from pinecone import Pinecone

        client = Pinecone(api_key=pinecone.api_key)
        host, name = pinecone.host, pinecone.index
        index = _call(lambda: client.Index(host=host) if host else client.Index(name=name), "open the index")
        return cls(index, dims, namespace=pinecone.namespace, metadata_keys=metadata_keys, **kwargs)

    @classmethod
    def from_env(
        cls, dims: int, *, environ: Mapping[str, str] | None = None, metadata_keys: Iterable[str] = (), **kwargs: Any
    ) -> PineconeVectorStore:
        """Connect with PINECONE_API_KEY to DBCORE_PINECONE_HOST or DBCORE_PINECONE_INDEX."""
        return cls.from_settings(PineconeSettings.from_env(environ), dims, metadata_keys=metadata_keys, **kwargs)

    def __repr__(self) -> str:
        host = getattr(self._index, "host", "?")
        return f"PineconeVectorStore(host={host!r}, namespace={self._namespace!r}, dims={self.dims})"

    @property
    def namespace(self) -> str:
        return self._namespace

    def _stats(self) -> Any:
        return _call(lambda: self._index.describe_index_stats(), "describe the index")

    def _check_index(self) -> None:
        stats = self._stats()
        dimension = getattr(stats, "dimension", None)
        if dimension and int(dimension) != self.dims:
            raise DimensionMismatchError(
                f"Pinecone index {getattr(self._index, 'host', '?')} holds {dimension}-dimensional vectors but this "
                f"store was opened with dims={self.dims}; use another index or re-embed"
            )
        metric = getattr(stats, "metric", None)
        if metric and str(metric).lower() != "cosine":
            raise ConfigurationError(
                f"the Pinecone index uses the {metric!r} metric; dbcore needs an index created with metric='cosine'"
            )

    def _check_batch(self, batch: Sequence[PreparedRecord]) -> None:
        for record in batch:
            size = _json_size(record.metadata)
            if size > MAX_METADATA_BYTES:
                raise ValidationError(
                    f"metadata of record {record.id!r} encodes to {size} bytes; Pinecone allows {MAX_METADATA_BYTES} per record"
                )

    def _upsert(self, batch: Sequence[PreparedRecord]) -> None:
        items = [_wire_item(r) for r in batch]
        for request in plan_upsert_batches(items, namespace=self._namespace, max_bytes=self._max_request_bytes):
            _call(partial(self._index.upsert, vectors=request, namespace=self._namespace), "upsert")

    def _query(
        self,
        vector: np.ndarray,
        k: int,
        filter: Filter | None,
        min_score: float | None,
        include_metadata: bool,  # noqa: A002
    ) -> list[Match]:
        if include_metadata and k > MAX_TOP_K_WITH_METADATA:
            raise ValidationError(
                f"k={k} is over Pinecone's top_k limit of {MAX_TOP_K_WITH_METADATA} when metadata is included; "
                "pass include_metadata=False"
            )
        translated = to_pinecone_filter(filter) if filter is not None else None
        response = _call(
            lambda: self._index.query(
                top_k=k,
                vector=vector.tolist(),
                namespace=self._namespace,
                filter=translated,
                include_metadata=include_metadata,
            ),
            "query",
        )
        return [
            Match(
                id=as_record_id(m.id),
                score=float(m.score),
                metadata=decode_metadata(m.metadata) if include_metadata else None,
            )
            for m in response.matches
        ]

    def _delete_ids(self, ids: Sequence[str]) -> None:
        for part in _id_chunks(ids, max_chars=None):
            _call(partial(self._index.delete, ids=list(part), namespace=self._namespace), "delete")

    def _delete_filter(self, filter: Filter) -> None:  # noqa: A002
        translated = to_pinecone_filter(filter)
        _call(lambda: self._index.delete(filter=translated, namespace=self._namespace), "delete by filter")

    def _get(self, ids: Sequence[str]) -> list[Record]:
        out: list[Record] = []
        for part in _id_chunks(ids, max_chars=_MAX_FETCH_QUERY_CHARS):
            response = _call(partial(self._index.fetch, ids=list(part), namespace=self._namespace), "fetch")
            for vid, vec in response.vectors.items():
                out.append(
                    Record(
                        id=as_record_id(vid),
                        vector=np.asarray(vec.values, dtype=np.float32),
                        metadata=decode_metadata(vec.metadata),
                    )
                )
        return out

    def _count(self) -> int:
        return _namespace_count(self._stats(), self._namespace)

    def _ids(self) -> Iterator[str]:
        pages = _call(lambda: list(self._index.list(namespace=self._namespace, limit=100)), "list ids")
        for page in pages:
            for item in page.vectors:
                if item.id is not None:
                    yield item.id

    def _health(self) -> StoreHealth:
        stats = self._stats()
        return StoreHealth(
            self.backend_name,
            ok=True,
            dims=self.dims,
            count=_namespace_count(stats, self._namespace),
            detail={
                "host": getattr(self._index, "host", None),
                "namespace": self._namespace,
                "metric": getattr(stats, "metric", None),
                "index_dimension": getattr(stats, "dimension", None),
                "total_vector_count": getattr(stats, "total_vector_count", None),
            },
        )

    def close(self) -> None:
        closer = getattr(self._index, "close", None)
        if callable(closer):
            closer()


def _namespace_count(stats: Any, namespace: str) -> int:
    namespaces = getattr(stats, "namespaces", None) or {}
    keys = (namespace,) if namespace else ("", "__default__")
    for key in keys:
        summary = namespaces.get(key)
        if summary is not None:
            return int(summary.vector_count)
    return 0


def _call(operation: Callable[[], T], what: str) -> T:
    """Run an SDK call, turning Pinecone errors into dbcore errors (the API key is never in them)."""
    from pinecone.errors import (
        PineconeConnectionError,
        PineconeError,
        PineconeTimeoutError,
        RateLimitError,
        ServiceError,
    )

    try:
        return operation()
    except (PineconeConnectionError, PineconeTimeoutError, RateLimitError, ServiceError) as exc:
        raise ConnectionFailed(f"Pinecone could not {what}: {type(exc).__name__}: {exc}", orig=exc) from exc
    except PineconeError as exc:
        raise DatabaseError(f"Pinecone refused to {what}: {type(exc).__name__}: {exc}", orig=exc) from exc


def create_store(settings: Settings, **kwargs: Any) -> PineconeVectorStore:
    """Registry factory: ``settings.pinecone`` with ``settings.vector_dims`` unless ``dims`` is given."""
    dims = kwargs.pop("dims", settings.vector_dims)
    return PineconeVectorStore.from_settings(settings.pinecone, dims, **kwargs)
