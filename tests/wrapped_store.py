"""A vector store that passes every call to a real one: tests subclass it to inject a fault or a race."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from dbcore.vectorstores.base import Match, PreparedRecord, Record, StoreHealth, VectorStore
from dbcore.vectorstores.filters import Filter


class WrappedStore(VectorStore):
    """Every backend method is the wrapped store's; override the ones a test needs to change."""

    backend_name = "wrapped"

    def __init__(self, inner: VectorStore) -> None:
        super().__init__(inner.dims, metadata_keys=inner.filter_fields)
        self.inner = inner

    def _upsert(self, batch: Sequence[PreparedRecord]) -> None:
        self.inner._upsert(batch)

    def _delete_ids(self, ids: Sequence[str]) -> None:
        self.inner._delete_ids(ids)

    def _delete_filter(self, filter: Filter) -> None:  # noqa: A002
        self.inner._delete_filter(filter)

    def _query(
        self, vector: np.ndarray, k: int, filter: Filter | None, min_score: float | None, include_metadata: bool
    ) -> Iterable[Match]:  # noqa: A002
        return self.inner._query(vector, k, filter, min_score, include_metadata)

    def _get(self, ids: Sequence[str]) -> Iterable[Record]:
        return self.inner._get(ids)

    def _count(self) -> int:
        return self.inner._count()

    def _ids(self) -> Iterable[str]:
        return self.inner._ids()

    def _health(self) -> StoreHealth:
        return self.inner._health()
