"""A local stand-in for one Pinecone index's REST data plane, for tests.

It serves what the SDK's ``Index`` calls for vectors: ``POST /vectors/upsert``,
``POST /query``, ``GET /vectors/fetch``, ``POST /vectors/delete`` and
``POST /describe_index_stats``, with exact cosine scores, namespaces and metadata
filters (evaluated by dbcore's own filter evaluator). It enforces Pinecone's limits
(1,000 vectors and 2 MB per upsert, 1,000 ids per fetch/delete, 40 KB metadata per
record, the index dimension) with HTTP 400, and logs every request so tests can
assert how the client batched its calls.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from dbcore.errors import ValidationError
from dbcore.vectorstores.filters import Filter

MAX_BODY_BYTES = 2 * 1000 * 1000
MAX_VECTORS = 1000
MAX_IDS = 1000
MAX_METADATA_BYTES = 40 * 1024
MAX_TOP_K = 10_000


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    body_bytes: int
    items: int
    status: int


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class PineconeLocal:
    """In-memory index state plus the HTTP server that exposes it."""

    def __init__(self, dimension: int, metric: str = "cosine") -> None:
        self.dimension = dimension
        self.metric = metric
        self.namespaces: dict[str, dict[str, tuple[np.ndarray, dict[str, Any]]]] = {}
        self.requests: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self.down = False  # True: every request gets 503, as from an index that is down
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="pinecone-local", daemon=True)

    @property
    def host(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> PineconeLocal:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.namespaces.clear()
            self.requests.clear()

    def requests_to(self, path: str) -> list[LoggedRequest]:
        return [r for r in self.requests if r.path == path]

    # --- endpoints ----------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[Any, int]:
        """Return (response JSON, number of items the request carried)."""
        if method == "POST" and path == "/vectors/upsert":
            return self._upsert(body)
        if method == "POST" and path == "/query":
            return self._query(body), 1
        if method == "GET" and path == "/vectors/fetch":
            return self._fetch(query)
        if method == "POST" and path == "/vectors/delete":
            return self._delete(body)
        if method == "POST" and path == "/describe_index_stats":
            return self._stats(), 0
        if method == "GET" and path == "/vectors/list":
            return self._list(query), 0
        raise _ApiError(404, f"no route for {method} {path}")

    def _list(self, query: dict[str, list[str]]) -> Any:
        namespace = query.get("namespace", [""])[0]
        prefix = query.get("prefix", [""])[0]
        limit = int(query.get("limit", ["100"])[0])
        if not 1 <= limit <= 100:
            raise _ApiError(400, "limit must be between 1 and 100")
        start = int(query.get("paginationToken", ["0"])[0])
        with self._lock:
            ids = sorted(i for i in self._space(namespace) if i.startswith(prefix))
        page = ids[start : start + limit]
        result: dict[str, Any] = {
            "vectors": [{"id": i} for i in page],
            "namespace": namespace,
            "usage": {"readUnits": 1},
        }
        if start + limit < len(ids):
            result["pagination"] = {"next": str(start + limit)}
        return result

    def _space(self, namespace: Any) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
        if not isinstance(namespace, str):
            raise _ApiError(400, "namespace must be a string")
        return self.namespaces.setdefault(namespace, {})

    def _upsert(self, body: dict[str, Any]) -> tuple[Any, int]:
        vectors = body.get("vectors")
        if not isinstance(vectors, list) or not vectors:
            raise _ApiError(400, "vectors must be a non-empty list")
        if len(vectors) > MAX_VECTORS:
            raise _ApiError(400, f"Max vector count per upsert is {MAX_VECTORS}, got {len(vectors)}")
        staged: list[tuple[str, np.ndarray, dict[str, Any]]] = []
        for item in vectors:
            values = item.get("values")
            if not isinstance(values, list) or len(values) != self.dimension:
                got = len(values) if isinstance(values, list) else values
                raise _ApiError(
                    400, f"Vector dimension {got} does not match the dimension of the index {self.dimension}"
                )
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise _ApiError(400, "vector values must be finite numbers")
            metadata = item.get("metadata") or {}
            _check_metadata(metadata)
            staged.append((item["id"], np.asarray(values, dtype=np.float32), metadata))
        with self._lock:
            space = self._space(body.get("namespace", ""))
            for vid, values, metadata in staged:
                space[vid] = (values, metadata)
        return {"upsertedCount": len(staged)}, len(staged)

    def _query(self, body: dict[str, Any]) -> Any:
        top_k = body.get("topK")
        if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise _ApiError(400, f"topK must be between 1 and {MAX_TOP_K}")
        vector = body.get("vector")
        if not isinstance(vector, list) or len(vector) != self.dimension:
            raise _ApiError(400, f"Query vector dimension does not match the dimension of the index {self.dimension}")
        flt = _parse_filter(body.get("filter"))
        namespace = body.get("namespace", "")
        with self._lock:
            rows = list(self._space(namespace).items())
        if flt is not None:
            rows = [(vid, row) for vid, row in rows if flt.matches(row[1])]
        q = np.asarray(vector, dtype=np.float64)
        q /= np.linalg.norm(q)
        scored = []
        for vid, (values, metadata) in rows:
            v = values.astype(np.float64)
            scored.append((float(np.dot(q, v) / np.linalg.norm(v)), vid, values, metadata))
        scored.sort(key=lambda s: (-s[0], s[1]))
        matches = []
        for score, vid, values, metadata in scored[:top_k]:
            match: dict[str, Any] = {"id": vid, "score": score}
            if body.get("includeValues"):
                match["values"] = values.tolist()
            if body.get("includeMetadata") and metadata:
                match["metadata"] = metadata
            matches.append(match)
        return {"matches": matches, "namespace": namespace, "usage": {"readUnits": 1}}

    def _fetch(self, query: dict[str, list[str]]) -> tuple[Any, int]:
        ids = query.get("ids", [])
        if not ids:
            raise _ApiError(400, "ids are required")
        if len(ids) > MAX_IDS:
            raise _ApiError(400, f"Max ids per fetch is {MAX_IDS}, got {len(ids)}")
        namespace = query.get("namespace", [""])[0]
        with self._lock:
            space = self._space(namespace)
            found = {vid: space[vid] for vid in ids if vid in space}
        vectors = {}
        for vid, (values, metadata) in found.items():
            entry: dict[str, Any] = {"id": vid, "values": values.tolist()}
            if metadata:
                entry["metadata"] = metadata
            vectors[vid] = entry
        return {"vectors": vectors, "namespace": namespace, "usage": {"readUnits": 1}}, len(ids)

    def _delete(self, body: dict[str, Any]) -> tuple[Any, int]:
        ids = body.get("ids")
        delete_all = bool(body.get("deleteAll"))
        flt = _parse_filter(body.get("filter"))
        if sum(x is not None and x is not False for x in (ids, flt, delete_all or None)) != 1:
            raise _ApiError(400, "exactly one of ids, deleteAll or filter is required")
        if ids is not None and len(ids) > MAX_IDS:
            raise _ApiError(400, f"Max ids per delete is {MAX_IDS}, got {len(ids)}")
        with self._lock:
            space = self._space(body.get("namespace", ""))
            if delete_all:
                space.clear()
            elif ids is not None:
                for vid in ids:
                    space.pop(vid, None)
            elif flt is not None:
                for vid in [vid for vid, (_, metadata) in space.items() if flt.matches(metadata)]:
                    del space[vid]
        return {}, len(ids or ())

    def _stats(self) -> Any:
        with self._lock:
            counts = {ns: len(rows) for ns, rows in self.namespaces.items() if rows}
        return {
            "namespaces": {ns: {"vectorCount": n} for ns, n in counts.items()},
            "dimension": self.dimension,
            "indexFullness": 0.0,
            "totalVectorCount": sum(counts.values()),
            "metric": self.metric,
            "vectorType": "dense",
        }


def _parse_filter(raw: Any) -> Filter | None:
    if raw is None:
        return None
    try:
        return Filter.parse(raw)
    except ValidationError as exc:
        raise _ApiError(400, f"invalid filter: {exc}") from None


def _check_metadata(metadata: Any) -> None:
    if not isinstance(metadata, dict):
        raise _ApiError(400, "metadata must be an object")
    for key, value in metadata.items():
        ok = isinstance(value, (str, bool, int, float)) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        )
        if not ok:
            raise _ApiError(400, f"Metadata value for {key!r} must be a string, number, boolean or list of strings")
    size = len(json.dumps(metadata, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise _ApiError(
            400, f"Metadata size is {size} bytes, which exceeds the limit of {MAX_METADATA_BYTES} bytes per vector"
        )


def _handler_for(index: PineconeLocal) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
            pass

        def _serve(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            items = 0
            try:
                if index.down:
                    raise _ApiError(503, "service unavailable (the test switched the index off)")
                if not self.headers.get("Api-Key"):
                    raise _ApiError(401, "missing Api-Key header")
                if length > MAX_BODY_BYTES:
                    raise _ApiError(400, f"Request size {length} bytes exceeds the limit of {MAX_BODY_BYTES} bytes")
                body = json.loads(raw) if raw else {}
                result, items = index.handle(method, parts.path, parse_qs(parts.query), body)
                status = 200
            except _ApiError as exc:
                result, status = (
                    {"code": 3 if exc.status == 400 else exc.status, "message": exc.message, "details": []},
                    exc.status,
                )
            except (ValueError, KeyError, TypeError) as exc:
                result, status = {"code": 3, "message": f"bad request: {exc}", "details": []}, 400
            with index._lock:
                index.requests.append(LoggedRequest(method, parts.path, length, items, status))
            payload = json.dumps(result).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            self._serve("POST")

    return Handler


@contextmanager
def running_index(dimension: int, metric: str = "cosine") -> Iterator[PineconeLocal]:
    """Start a local index on a free port; stop it on exit."""
    server = PineconeLocal(dimension, metric).start()
    try:
        yield server
    finally:
        server.stop()
