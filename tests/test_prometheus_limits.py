"""The Prometheus endpoint bounds its backlog, threads and idle connections."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry import metrics

from otel_aspects import setup_metrics, shutdown_metrics
from otel_aspects._prometheus import LISTEN_BACKLOG, MAX_CONNECTIONS, MAX_HANDLER_THREADS


@pytest.fixture(autouse=True)
def _clean_sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    yield
    shutdown_metrics()


@pytest.fixture
def port() -> int:
    setup = setup_metrics("svc", exporters="prometheus", prometheus_port=0)
    assert setup.prometheus_port
    metrics.get_meter("svc").create_counter("hits_total").add(4)
    return setup.prometheus_port


def _scrape(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        body: bytes = response.read()
    return body


def _threads() -> int:
    return threading.active_count()


def test_idle_connections_make_no_threads_and_scrapes_still_work(port: int) -> None:
    """300 connections that never send a request: no thread each (before: 300 threads),
    and a real scrape made meanwhile is answered."""
    _scrape(port)  # the handler threads a scrape needs exist already
    before = _threads()
    with contextlib.ExitStack() as stack:
        for _ in range(300):
            stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
        # The accept loop has taken every connection made before this scrape (FIFO).
        assert re.search(rb"hits_total\{[^}]*\} 4\.0", _scrape(port))
        assert _threads() - before <= MAX_HANDLER_THREADS


def test_open_connections_are_capped(port: int) -> None:
    """Beyond MAX_CONNECTIONS, the oldest idle connection is closed by the server."""
    conns = [
        socket.create_connection(("127.0.0.1", port), timeout=10)
        for _ in range(MAX_CONNECTIONS + 20)
    ]
    try:
        _scrape(port)  # every connection above has been accepted by now
        oldest = conns[0]
        assert oldest.recv(1) == b""  # closed by the server: end of file
        newest = conns[-1]
        newest.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        assert newest.recv(12).startswith(b"HTTP/1.0 200")
    finally:
        for conn in conns:
            conn.close()


def test_concurrent_scrapes_all_succeed(port: int) -> None:
    """Many scrapes at once (more than the handler threads) are all answered."""
    with ThreadPoolExecutor(max_workers=64) as pool:
        bodies = list(pool.map(lambda _: _scrape(port), range(200)))
    assert all(re.search(rb"hits_total\{[^}]*\} 4\.0", body) for body in bodies)


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_listen_backlog(port: int) -> None:
    """The listening socket's backlog (ss's Send-Q) is LISTEN_BACKLOG (before: 5)."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    (line,) = out.splitlines()
    assert int(line.split()[2]) == LISTEN_BACKLOG


def test_slow_request_is_cut_and_garbage_answered(port: int) -> None:
    """A half-sent request or garbage costs one handler thread for a bounded time,
    and the endpoint keeps answering."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as garbage:
        garbage.sendall(b"\x00\xff garbage\r\n\r\n")
        garbage.recv(100)  # answered with an error, or closed
    assert _scrape(port)
