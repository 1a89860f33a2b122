"""Chroma backend: an embedded PersistentClient or a Chroma server over HTTP.

The collection is created with cosine space, so Chroma's distance is ``1 - cosine``
and the score is ``1 - distance``. The store writes ``dbcore_dims`` into the
collection metadata and checks it (and the metric) when it opens an existing
collection. Metadata is stored as :func:`dbcore.vectorstores.base.encode_metadata`
describes, with every number stored as a float (as Pinecone does; see
:func:`to_chroma_metadata`), and an upsert replaces the stored metadata (Chroma itself
would merge). Chroma's ``$gt``/``$gte``/``$lt``/``$lte`` only take numbers, so an
ordering filter on a string raises :class:`UnsupportedFilter`.

Environment (read by :meth:`ChromaVectorStore.from_env`): ``DBCORE_CHROMA_HOST`` /
``DBCORE_CHROMA_PORT`` for a server, else ``DBCORE_CHROMA_PATH`` (default ``./.chroma``);
``DBCORE_CHROMA_COLLECTION`` (default ``memories``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from dbcore.config import ChromaSettings, Settings
from dbcore.errors import ConfigurationError, DimensionMismatchError
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

__all__ = ["ChromaVectorStore", "create_store", "to_chroma_where", "to_chroma_metadata"]

_ID_PAGE = 1000

DIMS_KEY = "dbcore_dims"
DEFAULT_COLLECTION = ChromaSettings.collection


def to_chroma_where(node: Filter) -> dict[str, Any]:
    """Translate a filter to Chroma's ``where``; raise UnsupportedFilter for what Chroma cannot do."""
    if isinstance(node, (And, Or)):
        if len(node.children) == 1:
            return to_chroma_where(node.children[0])
        return {f"${node.op}": [to_chroma_where(child) for child in node.children]}
    if not isinstance(node, Condition):
        raise UnsupportedFilter(f"Chroma cannot express filter node {type(node).__name__}")
    value: Any = _as_float(node.value)
    if node.op in ("gt", "gte", "lt", "lte") and not is_number(value):
        raise UnsupportedFilter(
            f"Chroma compares ${node.op} on numbers only; {node.field!r} was given {type(value).__name__} {value!r}"
        )
    if node.op in ("in", "nin"):
        kinds = {"number" if is_number(v) else type(v).__name__ for v in value}
        if len(kinds) > 1:
            raise UnsupportedFilter(
                f"Chroma needs ${node.op} values of one type; {node.field!r} was given {sorted(kinds)}"
            )
        value = [_as_float(v) for v in value]
    return {node.field: {f"${node.op}": value}}


def _as_float(value: Any) -> Any:
    if isinstance(value, tuple):
        return value
    return float(value) if is_number(value) else value


def to_chroma_metadata(encoded: Mapping[str, Any]) -> dict[str, Any]:
    """Numbers as floats: Chroma compares an int it holds with a float operand by truncating
    the operand (3 >= 3.5 is true), so every number is stored and compared as a float."""
    return {key: _as_float(value) for key, value in encoded.items()}


class ChromaVectorStore(VectorStore):
    """Memories in one Chroma collection (cosine space)."""

    backend_name = "chroma"

    def __init__(
        self,
        client: Any,
        dims: int,
        *,
        collection: str = DEFAULT_COLLECTION,
        metadata_keys: Iterable[str] = (),
        hnsw: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(dims, metadata_keys=metadata_keys)
        self._client = client
        self._collection_name = collection
        # A wide search keeps HNSW results exact on small collections.
        config = {"space": "cosine", "ef_construction": 200, "ef_search": 200, **(hnsw or {})}
        if config["space"] != "cosine":
            raise ConfigurationError(
                "dbcore scores are cosine similarity; the Chroma collection space must be 'cosine'"
            )
        self._collection = self._open_collection(config)
        self._check_collection()

    @classmethod
    def from_settings(
        cls, chroma: ChromaSettings, dims: int, *, metadata_keys: Iterable[str] = ()
    ) -> ChromaVectorStore:
        """Open the client and collection ``chroma`` names (a server when it has a host, else a folder)."""
        import chromadb

        if chroma.host:
            client = chromadb.HttpClient(host=chroma.host, port=chroma.port)
        else:
            client = chromadb.PersistentClient(path=chroma.path)
        return cls(client, dims, collection=chroma.collection, metadata_keys=metadata_keys)

    @classmethod
    def from_env(
        cls, dims: int, *, environ: Mapping[str, str] | None = None, metadata_keys: Iterable[str] = ()
    ) -> ChromaVectorStore:
        """Open the client and collection named by the DBCORE_CHROMA_* variables."""
        return cls.from_settings(ChromaSettings.from_env(environ), dims, metadata_keys=metadata_keys)

    def __repr__(self) -> str:
        return f"ChromaVectorStore(collection={self._collection_name!r}, dims={self.dims})"

    def _open_collection(self, hnsw: dict[str, Any]) -> Any:
        # get first: get_or_create would not tell us the collection already existed with other settings.
        from chromadb.errors import NotFoundError

        try:
            return self._client.get_collection(self._collection_name, embedding_function=None)
        except (NotFoundError, ValueError):
            pass
        return self._client.get_or_create_collection(
            self._collection_name,
            configuration={"hnsw": hnsw},
            metadata={DIMS_KEY: self.dims},
            embedding_function=None,
        )

    def _check_collection(self) -> None:
        col = self._collection
        stored = (col.metadata or {}).get(DIMS_KEY)
        seen = getattr(getattr(col, "_model", None), "dimension", None)
        for found in (stored, seen):
            if found is not None and int(found) != self.dims:
                raise DimensionMismatchError(
                    f"Chroma collection {self._collection_name!r} holds {int(found)}-dimensional vectors but this "
                    f"store was opened with dims={self.dims}; use another collection or re-embed"
                )
        space = _collection_space(col)
        if space is not None and space != "cosine":
            raise ConfigurationError(
                f"Chroma collection {self._collection_name!r} uses the {space!r} space; dbcore needs 'cosine'. "
                "Create a new collection"
            )

    def _upsert(self, batch: Sequence[PreparedRecord]) -> None:
        size = max(1, int(self._client.get_max_batch_size()))
        for part in chunked(batch, size):
            ids = [r.id for r in part]
            # Chroma's upsert merges metadata into what is stored; a None value removes a key.
            # dbcore's upsert replaces the record, so keys the new metadata lacks are cleared.
            existing = self._collection.get(ids=ids, include=["metadatas"])
            old_keys = {i: set(m or ()) for i, m in zip(existing["ids"], existing["metadatas"], strict=True)}
            metadatas: list[Any] = []
            for record in part:
                cleared = {key: None for key in old_keys.get(record.id, set()) - set(record.metadata)}
                merged = {**to_chroma_metadata(record.metadata), **cleared}
                metadatas.append(merged or None)
            self._collection.upsert(ids=ids, embeddings=np.stack([r.vector for r in part]), metadatas=metadatas)

    def _query(
        self,
        vector: np.ndarray,
        k: int,
        filter: Filter | None,
        min_score: float | None,
        include_metadata: bool,  # noqa: A002
    ) -> list[Match]:
        where = to_chroma_where(filter) if filter is not None else None
        include = ["distances", "metadatas"] if include_metadata else ["distances"]
        try:
            result = self._collection.query(query_embeddings=[vector], n_results=k, where=where, include=include)
        except Exception:
            # Some Chroma versions refuse n_results above the collection size; only then pay for count().
            total = self._collection.count()
            if total == 0:
                return []
            if k <= total:
                raise
            result = self._collection.query(query_embeddings=[vector], n_results=total, where=where, include=include)
        ids = result["ids"][0]
        distances = result["distances"][0]
        metadatas = result["metadatas"][0] if include_metadata and result.get("metadatas") else [None] * len(ids)
        return [
            Match(
                id=as_record_id(i),
                score=float(1.0 - d),
                metadata=decode_metadata(m) if include_metadata else None,
            )
            for i, d, m in zip(ids, distances, metadatas, strict=True)
        ]

    def _delete_ids(self, ids: Sequence[str]) -> None:
        size = max(1, int(self._client.get_max_batch_size()))
        for part in chunked(ids, size):
            self._collection.delete(ids=list(part))

    def _delete_filter(self, filter: Filter) -> None:  # noqa: A002
        self._collection.delete(where=to_chroma_where(filter))

    def _get(self, ids: Sequence[str]) -> list[Record]:
        size = max(1, int(self._client.get_max_batch_size()))
        out: list[Record] = []
        for part in chunked(ids, size):
            result = self._collection.get(ids=list(part), include=["embeddings", "metadatas"])
            for i, emb, meta in zip(result["ids"], result["embeddings"], result["metadatas"], strict=True):
                out.append(
                    Record(id=as_record_id(i), vector=np.asarray(emb, dtype=np.float32), metadata=decode_metadata(meta))
                )
        return out

    def _count(self) -> int:
        return int(self._collection.count())

    def _ids(self) -> Iterator[str]:
        offset = 0
        while True:
            page = self._collection.get(include=[], limit=_ID_PAGE, offset=offset)["ids"]
            yield from page
            if len(page) < _ID_PAGE:
                return
            offset += len(page)

    def _health(self) -> StoreHealth:
        self._client.heartbeat()
        return StoreHealth(
            self.backend_name,
            ok=True,
            dims=self.dims,
            count=self._count(),
            detail={"collection": self._collection_name, "space": _collection_space(self._collection) or "cosine"},
        )


def _collection_space(col: Any) -> str | None:
    # configuration_json is the raw stored form; .configuration re-parses it and warns about our
    # deliberately absent embedding function.
    config = getattr(col, "configuration_json", None)
    if not isinstance(config, Mapping):
        config = getattr(col, "configuration", None) or {}
    hnsw = config.get("hnsw") if isinstance(config, Mapping) else None
    if isinstance(hnsw, Mapping) and hnsw.get("space"):
        return str(hnsw["space"])
    legacy = (col.metadata or {}).get("hnsw:space")
    return str(legacy) if legacy else None


def create_store(settings: Settings, **kwargs: Any) -> ChromaVectorStore:
    """Registry factory: ``settings.chroma`` with ``settings.vector_dims`` unless ``dims`` is given."""
    dims = kwargs.pop("dims", settings.vector_dims)
    return ChromaVectorStore.from_settings(settings.chroma, dims, **kwargs)
