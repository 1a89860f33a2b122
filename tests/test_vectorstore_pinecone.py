"""Pinecone backend: request limits, metadata handling, index checks (local server), and a live test.

The local server (tests/pinecone_local.py) speaks the data-plane REST API the real SDK
uses and refuses what Pinecone refuses, so batching is checked at the wire.
The live test runs only with PINECONE_API_KEY and DBCORE_PINECONE_INDEX set.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("pinecone")

from pinecone import Pinecone  # noqa: E402

from dbcore.errors import ConfigurationError, DatabaseError, DimensionMismatchError, ValidationError  # noqa: E402
from dbcore.vectorstores.base import JSON_KEYS_MARKER  # noqa: E402
from dbcore.vectorstores.filters import F  # noqa: E402
from dbcore.vectorstores.pinecone import (  # noqa: E402
    MAX_REQUEST_BYTES,
    PineconeVectorStore,
    plan_upsert_batches,
)
from tests.pinecone_local import MAX_BODY_BYTES, PineconeLocal, running_index  # noqa: E402

DIMS = 8
_names = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[PineconeLocal]:
    with running_index(DIMS) as local:
        yield local


@pytest.fixture
def store(server: PineconeLocal) -> PineconeVectorStore:
    server.reset()
    index = Pinecone(api_key="test-key").Index(host=server.host)
    return PineconeVectorStore(index, DIMS, namespace=f"ns-{next(_names)}", metadata_keys=["n", "tags"])


def _vectors(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, DIMS)).astype(np.float32)


def test_upserts_are_split_at_1000_vectors(store: PineconeVectorStore, server: PineconeLocal) -> None:
    vectors = _vectors(2500)
    assert store.upsert([(f"v{i}", vectors[i], {"n": i}) for i in range(2500)]) == 2500
    requests = server.requests_to("/vectors/upsert")
    assert [r.items for r in requests] == [1000, 1000, 500]
    assert all(r.status == 200 for r in requests)
    assert store.count() == 2500


def test_upserts_are_split_at_2mb(store: PineconeVectorStore, server: PineconeLocal) -> None:
    vectors = _vectors(150)
    big = "x" * 30_000  # 150 x 30 KB = 4.5 MB of metadata
    store.upsert([(f"v{i}", vectors[i], {"n": i, "blob": big}) for i in range(150)])
    requests = server.requests_to("/vectors/upsert")
    assert len(requests) == 3
    assert all(r.status == 200 and r.body_bytes <= MAX_REQUEST_BYTES for r in requests)
    assert sum(r.items for r in requests) == 150
    assert max(r.body_bytes for r in requests) > 0.9 * MAX_REQUEST_BYTES  # batches are filled, not tiny
    assert store.count() == 150
    assert store.get(["v149"])[0].metadata["blob"] == big


def test_server_really_enforces_the_limits(server: PineconeLocal) -> None:
    index = Pinecone(api_key="test-key").Index(host=server.host)
    too_many = [{"id": f"x{i}", "values": [0.1] * DIMS} for i in range(1001)]
    with pytest.raises(Exception, match="1000") as info:
        index.upsert(vectors=too_many, namespace="raw")
    assert getattr(info.value, "status_code", None) == 400
    too_big = [{"id": f"y{i}", "values": [0.1] * DIMS, "metadata": {"b": "z" * 30_000}} for i in range(70)]
    with pytest.raises(Exception, match="exceeds") as info:
        index.upsert(vectors=too_big, namespace="raw")
    assert getattr(info.value, "status_code", None) == 400
    assert MAX_BODY_BYTES <= 2 * 1024 * 1024


def test_plan_upsert_batches_respects_both_limits() -> None:
    items = [{"id": str(i), "values": [0.5] * 4, "metadata": {"k": "v" * 50}} for i in range(30)]
    batches = plan_upsert_batches(items, max_vectors=7, max_bytes=10_000)
    assert [len(b) for b in batches] == [7, 7, 7, 7, 2]
    batches = plan_upsert_batches(items, max_vectors=1000, max_bytes=1_000)
    assert sum(len(b) for b in batches) == 30 and all(len(b) <= 10 for b in batches)
    with pytest.raises(ValidationError, match="alone"):
        plan_upsert_batches(items, max_bytes=100)


def test_metadata_over_40kb_is_refused_before_writing(store: PineconeVectorStore, server: PineconeLocal) -> None:
    vectors = _vectors(2)
    with pytest.raises(ValidationError, match="40960"):
        store.upsert([("ok", vectors[0], {"n": 1}), ("huge", vectors[1], {"blob": "x" * 41_000})])
    assert server.requests_to("/vectors/upsert") == []
    assert store.count() == 0


def test_metadata_encoding(store: PineconeVectorStore, server: PineconeLocal) -> None:
    room = uuid.uuid4()
    metadata = {
        "room_id": room,
        "n": 5,
        "gone": None,
        "nested": {"a": [1, 2], "b": None},
        "numbers": [1, 2, 3],
        "empty": [],
        "tags": ["red", "blue"],
        "flag": False,
    }
    store.upsert([("m1", _vectors(1)[0], metadata)])
    stored = server.namespaces[store.namespace]["m1"][1]
    assert "gone" not in stored
    assert stored["room_id"] == str(room)
    assert stored["tags"] == ["red", "blue"]  # Pinecone holds lists of strings natively
    assert stored["nested"] == '{"a": [1, 2], "b": null}'
    assert sorted(eval_json(stored[JSON_KEYS_MARKER])) == ["empty", "nested", "numbers"]
    (record,) = store.get(["m1"])
    expected = {k: v for k, v in metadata.items() if k != "gone"}
    assert record.metadata == expected
    assert store.query(_vectors(1)[0], k=1, filter=F("tags") == "red")[0].id == "m1"


def eval_json(text: str) -> list[str]:
    import json

    return list(json.loads(text))


def test_fetch_and_delete_are_chunked_at_1000_ids(store: PineconeVectorStore, server: PineconeLocal) -> None:
    vectors = _vectors(2500, seed=1)
    ids = [str(uuid.UUID(int=i)) for i in range(2500)]
    store.upsert(list(zip(ids, vectors, strict=True)))
    records = store.get(ids + ["absent"])
    assert len(records) == 2500 and [str(r.id) for r in records] == ids
    fetches = server.requests_to("/vectors/fetch")
    assert len(fetches) == 3 and max(r.items for r in fetches) <= 1000
    store.delete(ids=ids[:2100])
    deletes = server.requests_to("/vectors/delete")
    assert [r.items for r in deletes] == [1000, 1000, 100]
    assert store.count() == 400


def test_namespaces_are_isolated(server: PineconeLocal) -> None:
    server.reset()
    index = Pinecone(api_key="test-key").Index(host=server.host)
    a = PineconeVectorStore(index, DIMS, namespace="a")
    b = PineconeVectorStore(index, DIMS, namespace="b")
    a.upsert([("same", _vectors(1)[0])])
    assert a.count() == 1 and b.count() == 0
    assert b.query(_vectors(1)[0]) == []
    default = PineconeVectorStore(index, DIMS)
    default.upsert([("d", _vectors(1)[0])])
    assert default.count() == 1


def test_index_dimension_and_metric_are_checked(server: PineconeLocal) -> None:
    index = Pinecone(api_key="test-key").Index(host=server.host)
    with pytest.raises(DimensionMismatchError, match=f"{DIMS}-dimensional"):
        PineconeVectorStore(index, DIMS * 2)
    with running_index(DIMS, metric="dotproduct") as other:
        with pytest.raises(ConfigurationError, match="cosine"):
            PineconeVectorStore(Pinecone(api_key="test-key").Index(host=other.host), DIMS)


def test_errors_and_reprs_hide_the_api_key(server: PineconeLocal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINECONE_API_KEY", "sk-very-secret")
    monkeypatch.setenv("DBCORE_PINECONE_HOST", server.host)
    store = PineconeVectorStore.from_env(DIMS)
    assert "sk-very-secret" not in repr(store)
    assert "sk-very-secret" not in str(store.health().as_dict())
    unchecked = PineconeVectorStore.from_env(DIMS + 1, check_index=False)
    with pytest.raises(DatabaseError, match="dimension") as info:  # the server refuses the wrong size
        unchecked.upsert([("x", np.ones(DIMS + 1))])
    assert "sk-very-secret" not in str(info.value)


def test_from_env_needs_an_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINECONE_API_KEY", "k")
    monkeypatch.delenv("DBCORE_PINECONE_HOST", raising=False)
    monkeypatch.delenv("DBCORE_PINECONE_INDEX", raising=False)
    with pytest.raises(ConfigurationError, match="DBCORE_PINECONE_INDEX"):
        PineconeVectorStore.from_env(DIMS)


def test_top_k_limit(store: PineconeVectorStore) -> None:
    with pytest.raises(ValidationError, match="top_k"):
        store.query(_vectors(1)[0], k=1001)
    assert store.query(_vectors(1)[0], k=5000, include_metadata=False) == []


# --- live ------------------------------------------------------------------------------


@pytest.mark.skipif(
    not (os.environ.get("PINECONE_API_KEY") and os.environ.get("DBCORE_PINECONE_INDEX")),
    reason="live Pinecone test needs PINECONE_API_KEY and DBCORE_PINECONE_INDEX (an index with metric=cosine)",
)
def test_live_pinecone() -> None:
    probe = PineconeVectorStore.from_env(1, check_index=False)
    dims = int(probe._stats().dimension or 0)
    assert dims, "the live index reports no dimension"
    namespace = f"dbcore-test-{uuid.uuid4().hex[:12]}"
    store = PineconeVectorStore.from_env(
        dims, environ={**os.environ, "DBCORE_PINECONE_NAMESPACE": namespace}, metadata_keys=["n"]
    )
    vectors = np.random.default_rng(0).normal(size=(20, dims)).astype(np.float32)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(20)]
    try:
        store.upsert([(ids[i], vectors[i], {"n": i, "kind": "document" if i % 2 else "message"}) for i in range(20)])
        deadline = time.monotonic() + 90
        while store.count() < 20 and time.monotonic() < deadline:  # Pinecone is eventually consistent
            time.sleep(2)
        assert store.count() == 20
        best = store.query(vectors[3], k=3)
        assert str(best[0].id) == ids[3] and best[0].score == pytest.approx(1.0, abs=1e-3)
        assert all(
            m.metadata and m.metadata["kind"] == "document"
            for m in store.query(vectors[0], k=5, filter=F("kind") == "document")
        )
        assert [str(r.id) for r in store.get(ids[:2])] == ids[:2]
    finally:
        store.delete(ids=ids)
