"""A loopback TCP proxy that can be cut and restored: a server outage as the client sees it.

Used for servers this suite shares with other tests (MariaDB, the local
PostgreSQL 15), which must not really be stopped; the embedded PostgreSQL is
stopped and restarted for real instead.
"""

from __future__ import annotations

import selectors
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import URL

_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433}


class TcpProxy:
    """Forwards 127.0.0.1:<port> to an upstream host:port until ``stop()``; ``start()`` reopens the same port.

    While stopped the port is closed: clients are refused, as by a server that is down.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # rebind despite TIME_WAIT connections
        try:
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
        except OSError:
            listener.close()
            raise
        self.port = listener.getsockname()[1]
        self._stopping = threading.Event()
        with self._lock:
            self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, args=(listener, self._stopping), daemon=True)
        self._acceptor.start()

    def stop(self) -> None:
        """Close the port and every open connection, as a crashed server would; the port is free on return."""
        self._stopping.set()
        if self._acceptor is not None:
            # A thread blocked in accept() would keep the closed socket listening until a client came,
            # so the accept loop polls, ends when told to, and closes the listener itself.
            self._acceptor.join()
            self._acceptor = None
        with self._lock:
            self._listener = None
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket, stopping: threading.Event) -> None:
        # selectors (epoll), not select.select: a test process may hold more than 1,024 descriptors,
        # and select() refuses any numbered above that ("filedescriptor out of range").
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            try:
                while not stopping.is_set():
                    if selector.select(timeout=0.05):
                        self._forward(listener.accept()[0])
            finally:
                selector.unregister(listener)
                listener.close()

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets.update((client, upstream))
        threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        pair = {a: b, b: a}
        selector = selectors.DefaultSelector()
        try:
            selector.register(a, selectors.EVENT_READ)
            selector.register(b, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select(timeout=1.0):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            selector.close()
            for sock in (a, b):
                try:
                    sock.close()
                except OSError:
                    pass


@contextmanager
def proxied(upstream: URL) -> Iterator[tuple[TcpProxy, URL]]:
    """A started proxy to ``upstream``'s server and the URL that reaches it through the proxy; stopped afterwards."""
    port = upstream.port or _DEFAULT_PORTS[upstream.get_backend_name()]
    proxy = TcpProxy(upstream.host or "127.0.0.1", port)
    proxy.start()
    try:
        yield proxy, upstream.set(host="127.0.0.1", port=proxy.port)
    finally:
        proxy.stop()
