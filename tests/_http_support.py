"""Real servers on loopback for the HTTP middleware tests, and a raw-socket client.

- :func:`uvicorn_server`: a real uvicorn serving an ASGI app in a thread, on port 0.
- :func:`raw_request`: one HTTP/1.1 request over a plain socket, bytes as given (hostile
  methods and paths that no HTTP client library would send).
- :func:`call_asgi`: one request straight into an ASGI app (for thousands of requests).
- :func:`wait_for`: poll a condition (servers record after the response is out).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def uvicorn_server(app: Any, **config: Any) -> Iterator[int]:
    """Serve *app* with uvicorn on 127.0.0.1 (a free port, yielded) until the block ends."""
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="critical", lifespan="off", **config
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port: int = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def raw_request(port: int, method: bytes, target: bytes, timeout: float = 5.0) -> bytes:
    """Send one request with exactly these bytes; the whole response (connection closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(
            method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def status_of(response: bytes) -> int | None:
    """The status code of a raw response (``None`` if there was none)."""
    try:
        return int(response.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


async def call_asgi(app: Any, method: str, path: str, raw_path: bytes | None = None) -> int:
    """One HTTP request straight into *app*; the status it sent (0 if none)."""
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": raw_path if raw_path is not None else path.encode("utf-8", "surrogateescape"),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    done = False

    async def receive() -> dict[str, Any]:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}  # pragma: no cover

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    try:
        await app(scope, receive, send)
    except Exception:
        pass
    starts = [m for m in sent if m["type"] == "http.response.start"]
    return int(starts[0]["status"]) if starts else 0


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Return once *condition()* is truthy; fail the test after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)
