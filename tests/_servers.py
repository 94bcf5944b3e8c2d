"""Real servers on loopback for the HTTP tests: uvicorn in a thread, Prometheus as a process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from services._prometheus import Prometheus, prometheus_binary


@contextmanager
def uvicorn_thread(app: Any, *, timeout: float = 20.0) -> Iterator[str]:
    """Serve the ASGI *app* with uvicorn on a free loopback port (lifespan on), in a
    daemon thread; yields its base URL; shuts it down (lifespan shutdown included)."""
    import socket

    import uvicorn

    sock = socket.create_server(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def require_prometheus() -> str:
    """The prometheus binary; a test needing it fails (never skips) without it."""
    binary = prometheus_binary()
    if binary is None:
        pytest.fail(
            "the prometheus server binary is missing: "
            "run `make system-deps` (apt-get install prometheus)"
        )
    return binary


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    """Poll *predicate* until it returns ``True`` (its last other answer is reported)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last is True:
                return
        except (OSError, RuntimeError) as exc:  # not up yet
            last = exc
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}: {last!r}")


__all__ = ("Prometheus", "require_prometheus", "uvicorn_thread", "wait_until")
