"""The Prometheus ``/metrics`` endpoint: bounded threads, backlog and idle connections.

``prometheus_client.start_http_server`` listens with a backlog of 5 and starts a
thread per connection, with no idle timeout: 300 idle connections make 300
threads.  :class:`PrometheusServer` serves the same WSGI app
(``prometheus_client.make_wsgi_app``: content negotiation, ``name[]`` filters,
gzip) with

* a listen backlog of :data:`LISTEN_BACKLOG`;
* one selector loop that accepts connections and waits for their request
  without a thread: only a connection with bytes to read is handed to a handler
  thread, at most :data:`MAX_HANDLER_THREADS` of them (daemon threads, started
  when needed);
* at most :data:`MAX_CONNECTIONS` open connections (beyond: the oldest idle one
  is closed), each closed when idle for :data:`IDLE_TIMEOUT_SECONDS`, and a
  socket timeout of the same length while a request is read or answered.

So a misbehaving scraper costs file descriptors up to a bound, never threads,
and a real scrape arriving meanwhile is still answered.

Example::

    server = PrometheusServer(("127.0.0.1", 0), make_wsgi_app(registry))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ...
    server.shutdown(); server.server_close()
"""

from __future__ import annotations

import logging
import queue
import selectors
import socket
import threading
import time
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

__all__ = (
    "IDLE_TIMEOUT_SECONDS",
    "LISTEN_BACKLOG",
    "MAX_CONNECTIONS",
    "MAX_HANDLER_THREADS",
    "PrometheusServer",
    "start_server",
)

_log = logging.getLogger("otel_aspects.sdk")

LISTEN_BACKLOG: Final = 128
MAX_HANDLER_THREADS: Final = 4
MAX_CONNECTIONS: Final = 256
IDLE_TIMEOUT_SECONDS: Final = 10.0


class _Handler(WSGIRequestHandler):
    """One request per connection, quiet, with a socket timeout."""

    timeout = IDLE_TIMEOUT_SECONDS  # applied to the socket by StreamRequestHandler.setup

    def handle(self) -> None:
        try:
            super().handle()
        except (OSError, ValueError):  # timed out, reset, or a garbled request line
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


class PrometheusServer(WSGIServer):
    """A WSGI server for ``/metrics`` whose threads and connections are bounded."""

    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], app: Any) -> None:
        host, port = address
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        self.address_family = infos[0][0]
        self._closing = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._lock = threading.Lock()
        self._waiting: dict[socket.socket, tuple[Any, float]] = {}
        self._work: queue.SimpleQueue[tuple[socket.socket, Any] | None] = queue.SimpleQueue()
        self._open = 0  # connections accepted and not closed yet
        self._threads = 0
        self._busy = 0  # requests handed to the handler threads and not finished
        super().__init__((host, port), _Handler)
        self.set_app(app)

    # -- the selector loop ---------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._stopped.clear()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.socket, selectors.EVENT_READ, None)
                while not self._closing.is_set():
                    for key, _events in selector.select(poll_interval):
                        if key.data is None:
                            self._accept(selector)
                        else:
                            conn: socket.socket = key.fileobj  # type: ignore[assignment]
                            selector.unregister(conn)
                            address, _deadline = self._waiting.pop(conn)
                            self._dispatch(conn, address)
                    self._expire(selector)
                for conn in list(self._waiting):
                    selector.unregister(conn)
                    self._close(conn)
                self._waiting.clear()
        finally:
            self._stopped.set()

    def _accept(self, selector: selectors.BaseSelector) -> None:
        try:
            conn, address = self.socket.accept()
        except OSError:  # the client went away already, or too many open files
            return
        with self._lock:
            self._open += 1
            full = self._open > MAX_CONNECTIONS
        if full:
            if not self._waiting:  # every connection is being answered: refuse this one
                self._close(conn)
                return
            oldest = next(iter(self._waiting))
            selector.unregister(oldest)
            del self._waiting[oldest]
            self._close(oldest)
        conn.setblocking(False)
        self._waiting[conn] = (address, time.monotonic() + IDLE_TIMEOUT_SECONDS)
        selector.register(conn, selectors.EVENT_READ, True)

    def _expire(self, selector: selectors.BaseSelector) -> None:
        now = time.monotonic()
        for conn, (_address, deadline) in list(self._waiting.items()):
            if deadline > now:
                break  # insertion order is age order
            selector.unregister(conn)
            del self._waiting[conn]
            self._close(conn)

    # -- handler threads ------------------------------------------------------

    def _dispatch(self, conn: socket.socket, address: Any) -> None:
        conn.setblocking(True)
        with self._lock:
            self._busy += 1
            start = self._busy > self._threads and self._threads < MAX_HANDLER_THREADS
            if start:
                self._threads += 1
        if start:
            threading.Thread(
                target=self._work_loop, name="otel_aspects-prometheus", daemon=True
            ).start()
        self._work.put((conn, address))

    def _work_loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            conn, address = item
            try:
                self.finish_request(conn, address)
            except Exception:  # a broken client or a failing collector: next request
                _log.debug("otel_aspects: Prometheus request failed", exc_info=True)
            finally:
                self._close(conn)
                with self._lock:
                    self._busy -= 1

    def _close(self, conn: socket.socket) -> None:
        self.shutdown_request(conn)
        with self._lock:
            self._open -= 1

    # -- lifecycle ------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop the loop (from another thread) and the handler threads; waits for the loop."""
        self._closing.set()
        self._stopped.wait()
        with self._lock:
            threads = self._threads
        for _ in range(threads):
            self._work.put(None)

    def server_close(self) -> None:
        """Close the listening socket and idle connections (also a forked child's copies)."""
        super().server_close()
        for conn in list(self._waiting):
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        _log.debug("otel_aspects: Prometheus request from %s failed", client_address)


def start_server(host: str, port: int, registry: Any) -> tuple[PrometheusServer, threading.Thread]:
    """Serve *registry* on *host*:*port* from a daemon thread; raises ``OSError`` if taken."""
    from prometheus_client import make_wsgi_app

    server = PrometheusServer((host, port), make_wsgi_app(registry))
    thread = threading.Thread(
        target=server.serve_forever, name="otel_aspects-prometheus-accept", daemon=True
    )
    thread.start()
    return server, thread
