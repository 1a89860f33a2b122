"""Chroma backend: persistence, where translation against real Chroma, collection checks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

chromadb = pytest.importorskip("chromadb")

from dbcore.errors import ConfigurationError, DimensionMismatchError  # noqa: E402
from dbcore.vectorstores.base import encode_metadata  # noqa: E402
from dbcore.vectorstores.chroma import ChromaVectorStore, to_chroma_metadata, to_chroma_where  # noqa: E402
from dbcore.vectorstores.filters import And, F, Filter, Or  # noqa: E402

DIMS = 6


def _vectors(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, DIMS)).astype(np.float32)


def test_persists_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "db"
    store = ChromaVectorStore(chromadb.PersistentClient(path=str(path)), DIMS, collection="persist")
    vectors = _vectors(20)
    store.upsert([(f"id{i}", vectors[i], {"kind": "fact"}) for i in range(20)])
    want = [(m.id, round(m.score, 5)) for m in store.query(vectors[4], k=3)]
    script = textwrap.dedent(
        f"""
        import chromadb, numpy as np
        from dbcore.vectorstores.chroma import ChromaVectorStore
        store = ChromaVectorStore(chromadb.PersistentClient(path={str(path)!r}), {DIMS}, collection="persist")
        q = np.array({vectors[4].tolist()!r}, dtype=np.float32)
        print(store.count(), [(m.id, round(m.score, 5)) for m in store.query(q, k=3)])
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == f"20 {want}"


def test_reopen_with_other_dimension_is_refused(tmp_path: Path) -> None:
    client = chromadb.PersistentClient(path=str(tmp_path))
    ChromaVectorStore(client, DIMS, collection="dims")  # empty: the declared size is remembered
    with pytest.raises(DimensionMismatchError, match=f"{DIMS}-dimensional"):
        ChromaVectorStore(client, DIMS + 2, collection="dims")
    # a collection made outside dbcore is checked by the size of what it holds
    raw = client.create_collection("foreign", configuration={"hnsw": {"space": "cosine"}}, embedding_function=None)
    raw.add(ids=["a"], embeddings=[[0.1, 0.2, 0.3]])
    with pytest.raises(DimensionMismatchError):
        ChromaVectorStore(client, DIMS, collection="foreign")


def test_non_cosine_collection_is_refused(tmp_path: Path) -> None:
    client = chromadb.PersistentClient(path=str(tmp_path))
    client.create_collection("l2-space", configuration={"hnsw": {"space": "l2"}}, embedding_function=None)
    with pytest.raises(ConfigurationError, match="cosine"):
        ChromaVectorStore(client, DIMS, collection="l2-space")
    with pytest.raises(ConfigurationError):
        ChromaVectorStore(client, DIMS, collection="other", hnsw={"space": "ip"})


def test_collection_uses_cosine_space(tmp_path: Path) -> None:
    store = ChromaVectorStore(chromadb.PersistentClient(path=str(tmp_path)), DIMS)
    assert store.health().detail["space"] == "cosine"


WHERE_CASES = [
    F("kind") == "fact",
    F("kind") != "fact",
    F("n") > 3,
    F("n") >= 3.5,
    F("n") < 2,
    F("n") <= 2,
    F("n").in_([1, 2.0, 7]),
    F("kind").nin(["fact", "goal"]),
    F("flag") == True,  # noqa: E712 - builds a condition
    And(F("n") > 1),
    Or(F("kind") == "goal", And(F("n") >= 5, F("flag") == False)),  # noqa: E712
    Filter.parse({"lang": {"$ne": "en"}}),
]


@pytest.mark.parametrize("flt", WHERE_CASES, ids=[str(c.to_dict()) for c in WHERE_CASES])
def test_where_translation_matches_the_evaluator(tmp_path: Path, flt: Filter) -> None:
    client = chromadb.EphemeralClient()
    col = client.get_or_create_collection(f"where-{tmp_path.name[-20:]}".replace("_", "-"), embedding_function=None)
    rows = []
    for i in range(12):
        meta = {"kind": ["fact", "goal", "message"][i % 3], "n": i if i % 2 else float(i), "flag": i % 4 == 0}
        if i % 5:
            meta["lang"] = "en" if i % 2 else "de"
        rows.append(meta)
    col.add(
        ids=[f"r{i}" for i in range(12)],
        embeddings=_vectors(12).tolist(),
        metadatas=[to_chroma_metadata(encode_metadata(m)) for m in rows],
    )
    got = sorted(col.get(where=to_chroma_where(flt))["ids"])
    assert got == sorted(f"r{i}" for i, m in enumerate(rows) if flt.matches(m))


def test_k_above_collection_size(tmp_path: Path) -> None:
    store = ChromaVectorStore(chromadb.PersistentClient(path=str(tmp_path)), DIMS)
    store.upsert([(f"a{i}", v) for i, v in enumerate(_vectors(4))])
    assert len(store.query(_vectors(1, seed=9)[0], k=500)) == 4


def test_upsert_replaces_metadata(tmp_path: Path) -> None:
    store = ChromaVectorStore(chromadb.PersistentClient(path=str(tmp_path)), DIMS)
    v = _vectors(1)[0]
    store.upsert([("a", v, {"kind": "fact", "extra": 1})])
    store.upsert([("a", v, {"kind": "goal"})])
    assert store.get(["a"])[0].metadata == {"kind": "goal"}
    store.upsert([("a", v)])
    assert store.get(["a"])[0].metadata == {}


def test_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBCORE_CHROMA_HOST", raising=False)
    store = ChromaVectorStore.from_env(
        DIMS, environ={"DBCORE_CHROMA_PATH": str(tmp_path), "DBCORE_CHROMA_COLLECTION": "envcol"}
    )
    assert "envcol" in repr(store) and store.count() == 0
    with pytest.raises(ConfigurationError, match="DBCORE_CHROMA_PORT"):
        ChromaVectorStore.from_env(DIMS, environ={"DBCORE_CHROMA_HOST": "localhost", "DBCORE_CHROMA_PORT": "eighty"})
