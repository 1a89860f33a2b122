"""Which in-process HNSW library could give the integrated store an approximate index: usearch or faiss.

The groundwork for an optional ANN index on databases without a native vector index
(docs/benchmarks.md, "ANN candidates"). Each library runs in a child process of its own
(so resident memory is its own) on the same clustered unit vectors, cosine metric,
HNSW with M=16 and efConstruction=128, two build threads:

- build time, and resident memory growth against the float32 matrix size;
- warm single-query p50 at efSearch 64 and 128, recall@10 against exact search;
- a room filter keeping 10% of the rows: faiss's filtered search (an ``IDSelectorBitmap``)
  and usearch's only option in Python, over-fetching 20 x k and filtering after;
- save, and the first query after loading the index from disk in a fresh process.

Needs ``pip install usearch faiss-cpu`` (neither is a dbcore dependency):

    python benchmarks/ann_candidates.py [--n 200000] [--dims 384]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

M, EF_CONSTRUCTION, THREADS, K, QUERIES, ROOMS = 16, 128, 2, 10, 200, 10


def vectors(n: int, dims: int, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around 100 centres (as benchmarks/bulk_import.py), and query vectors drawn alike."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((100, dims)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(count: int) -> np.ndarray:
        out = centres[rng.integers(0, 100, count)] + rng.standard_normal((count, dims)).astype(np.float32) * (
            0.75 / np.sqrt(dims)
        )
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    return draw(n), draw(QUERIES)


def exact(data: np.ndarray, queries: np.ndarray, rows: np.ndarray | None = None) -> list[set[int]]:
    out = []
    for q in queries:
        if rows is None:
            out.append(set(np.argpartition(-(data @ q), K)[:K].tolist()))
        else:
            scores = data[rows] @ q
            out.append(set(rows[np.argpartition(-scores, K)[:K]].tolist()))
    return out


def recall(found: list[list[int]], truth: list[set[int]]) -> float:
    return sum(len(set(f) & t) for f, t in zip(found, truth, strict=True)) / (K * len(truth))


def timed(search: Any, queries: np.ndarray) -> tuple[float, list[list[int]]]:
    times, found = [], []
    for q in queries:
        start = time.perf_counter()
        found.append(search(q))
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000), found


class Usearch:
    def __init__(self, dims: int) -> None:
        from usearch.index import Index

        self.index = Index(ndim=dims, metric="cos", dtype="f32", connectivity=M, expansion_add=EF_CONSTRUCTION)

    def build(self, data: np.ndarray) -> None:
        self.index.add(np.arange(len(data), dtype=np.uint64), data, threads=THREADS)

    def search(self, ef: int) -> Any:
        self.index.expansion_search = ef
        return lambda q: self.index.search(q, K).keys.tolist()

    def filtered(self, ef: int, allowed: np.ndarray) -> Any:
        self.index.expansion_search = max(ef, 20 * K)

        def run(q: np.ndarray) -> list[int]:
            keys = self.index.search(q, 20 * K).keys
            return [int(key) for key in keys if allowed[key]][:K]

        return run

    def save(self, path: str) -> None:
        self.index.save(path)

    @staticmethod
    def load(path: str, dims: int) -> Any:
        from usearch.index import Index

        return Index.restore(path, view=True)


class Faiss:
    def __init__(self, dims: int) -> None:
        import faiss

        faiss.omp_set_num_threads(THREADS)
        self.faiss = faiss
        self.index = faiss.IndexHNSWFlat(dims, M, faiss.METRIC_INNER_PRODUCT)  # unit vectors: cosine
        self.index.hnsw.efConstruction = EF_CONSTRUCTION

    def build(self, data: np.ndarray) -> None:
        self.index.add(data)

    def search(self, ef: int) -> Any:
        params = self.faiss.SearchParametersHNSW(efSearch=ef)
        return lambda q: self.index.search(q[None, :], K, params=params)[1][0].tolist()

    def filtered(self, ef: int, allowed: np.ndarray) -> Any:
        bits = np.packbits(allowed, bitorder="little")
        selector = self.faiss.IDSelectorBitmap(len(allowed), self.faiss.swig_ptr(bits))
        params = self.faiss.SearchParametersHNSW(efSearch=ef, sel=selector)
        self._keep = (bits, selector)  # the selector points into bits
        return lambda q: self.index.search(q[None, :], K, params=params)[1][0].tolist()

    def save(self, path: str) -> None:
        self.faiss.write_index(self.index, path)

    @staticmethod
    def load(path: str, dims: int) -> Any:
        import faiss

        return faiss.read_index(path, faiss.IO_FLAG_MMAP)


LIBRARIES = {"usearch": Usearch, "faiss": Faiss}


def child(name: str, n: int, dims: int, workdir: str) -> dict[str, Any]:
    """One library: build, query, filter, save (run in a process of its own)."""
    data, queries = vectors(n, dims)
    room = np.arange(n) % ROOMS == 3
    truth, truth_room = exact(data, queries), exact(data, queries, np.flatnonzero(room))
    process = psutil.Process()
    before = process.memory_info().rss
    library = LIBRARIES[name](dims)
    start = time.perf_counter()
    library.build(data)
    out: dict[str, Any] = {"library": name, "n": n, "dims": dims, "build_s": round(time.perf_counter() - start, 1)}
    out["index_rss_over_matrix"] = round((process.memory_info().rss - before) / data.nbytes, 2)
    for ef in (64, 128):
        p50, found = timed(library.search(ef), queries)
        out[f"ef{ef}"] = {"p50_ms": round(p50, 3), "recall": round(recall(found, truth), 4)}
        p50, found = timed(library.filtered(ef, room), queries)
        out[f"ef{ef}_room"] = {"p50_ms": round(p50, 3), "recall": round(recall(found, truth_room), 4)}
    path = str(Path(workdir) / f"{name}.index")
    start = time.perf_counter()
    library.save(path)
    out["save_s"] = round(time.perf_counter() - start, 2)
    return out


def first_query(name: str, dims: int, workdir: str) -> dict[str, Any]:
    """Load the saved index in a fresh process and time load plus one query."""
    start = time.perf_counter()
    index = LIBRARIES[name].load(str(Path(workdir) / f"{name}.index"), dims)
    q = np.ones(dims, dtype=np.float32) / np.sqrt(dims)
    if name == "faiss":
        index.search(q[None, :], K)
    else:
        index.search(q, K)
    return {"first_query_s": round(time.perf_counter() - start, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_first", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        print(json.dumps(child(args._child, args.n, args.dims, args._dir)))
        return 0
    if args._first:
        print(json.dumps(first_query(args._first, args.dims, args._dir)))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="dbcore-ann-") as workdir:
        for name in LIBRARIES:
            base = [sys.executable, __file__, "--n", str(args.n), "--dims", str(args.dims), "--_dir", workdir]
            env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
            built = subprocess.run([*base, "--_child", name], capture_output=True, text=True, check=True, env=env)
            result = json.loads(built.stdout.strip().splitlines()[-1])
            loaded = subprocess.run([*base, "--_first", name], capture_output=True, text=True, check=True, env=env)
            result.update(json.loads(loaded.stdout.strip().splitlines()[-1]))
            print(json.dumps(result), file=sys.stderr, flush=True)
            results.append(result)
    print(f"{'library':<9}{'build s':>9}{'RSS/matrix':>11}  {'ef64 p50 ms / recall':>22}  {'ef128':>16}  "
          f"{'room ef128':>16}  {'first query s':>13}")  # fmt: skip
    for r in results:
        print(
            f"{r['library']:<9}{r['build_s']:>9}{r['index_rss_over_matrix']:>11}  "
            f"{r['ef64']['p50_ms']:>12} / {r['ef64']['recall']:<7}  {r['ef128']['p50_ms']:>7} / {r['ef128']['recall']:<6}  "
            f"{r['ef128_room']['p50_ms']:>7} / {r['ef128_room']['recall']:<6}  {r['first_query_s']:>13}"
        )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
