"""The WSGI middleware against real parts: gunicorn on loopback serving Flask, and Django.

gunicorn runs ``tests/_children/wsgi_app.py`` (one sync worker, on a socket this test
made); the worker's recorded points are read back over HTTP (``/_points``, outside the
middleware).  Expected values come from the requests the test made.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import httpx
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_aspects._http import ACTIVE_REQUESTS, DURATION, KNOWN_METHODS
from otel_aspects.testing import counter_value, metric_points
from otel_aspects.wsgi import MetricsMiddleware
from tests._http_support import raw_request, status_of, wait_for

ROOT = Path(__file__).resolve().parent.parent
ITEM = "/items/<int:item_id>"


@pytest.fixture(scope="module")
def gunicorn() -> Iterator[int]:
    """A real gunicorn (one sync worker) serving the measured Flask app; its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"fd://{listener.fileno()}",
            "--workers",
            "1",
            "--log-level",
            "warning",
            "tests._children.wsgi_app:application",
        ],
        cwd=ROOT,
        pass_fds=(listener.fileno(),),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    listener.close()
    try:
        wait_for(lambda: _up(port), timeout=20)
        yield port
    finally:
        child.terminate()
        child.wait(10)


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/_points", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def read(port: int) -> tuple[list[dict[str, Any]], int]:
    """The worker's duration points and its active-requests total."""
    data = httpx.get(f"http://127.0.0.1:{port}/_points", timeout=5).json()
    return data["points"], data["active"]


def total(port: int, **attrs: Any) -> int:
    """Requests recorded by the worker whose attributes include *attrs*."""
    keys = {"route": "http.route", "code": "http.response.status_code", "status": "status"}
    wanted = {keys[k]: v for k, v in attrs.items()}
    return sum(
        p["count"]
        for p in read(port)[0]
        if all(p["attributes"].get(k) == v for k, v in wanted.items())
    )


class TestGunicornFlask:
    def test_streaming_body_is_timed_to_its_last_byte(self, gunicorn: int) -> None:
        """A generator body is measured to its end, and labels its request while it runs."""
        from tests._children.wsgi_app import STREAM_CHUNKS, STREAM_DELAY

        before = total(gunicorn, route="/stream")
        start = time.perf_counter()
        assert httpx.get(f"http://127.0.0.1:{gunicorn}/stream", timeout=10).content == (
            b"x" * 10 * STREAM_CHUNKS
        )
        elapsed = time.perf_counter() - start
        wait_for(lambda: total(gunicorn, route="/stream") == before + 1)
        [point] = [p for p in read(gunicorn)[0] if p["attributes"]["http.route"] == "/stream"]
        assert point["attributes"]["streamed"] == "yes"
        assert point["attributes"]["status"] == "success"
        # one request so far on this route in this worker: its sum is its duration
        assert STREAM_CHUNKS * STREAM_DELAY <= point["sum"] <= elapsed

    def test_disconnect_mid_stream_is_cancelled(self, gunicorn: int) -> None:
        """The client goes away mid-body: gunicorn closes the body early, ``cancelled``."""
        before = total(gunicorn, route="/forever", status="cancelled")
        with socket.create_connection(("127.0.0.1", gunicorn), timeout=5) as sock:
            sock.sendall(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        wait_for(lambda: total(gunicorn, route="/forever", status="cancelled") == before + 1)
        assert read(gunicorn)[1] == 0

    def test_errors_are_counted_under_the_rule(self, gunicorn: int) -> None:
        """404 from the view and 500 from an exception carry the rule; unknown paths do not."""
        before = {code: total(gunicorn, route=ITEM, code=code) for code in (200, 404, 500)} | {
            "unmatched": total(gunicorn, route="_unmatched", code=404)
        }
        with httpx.Client(base_url=f"http://127.0.0.1:{gunicorn}", timeout=10) as web:
            assert [web.get(f"/items/{i}").status_code for i in (1, 2)] == [200, 200]
            assert web.get("/items/404").status_code == 404
            assert web.get("/items/500").status_code == 500
            assert web.get("/nothing/here").status_code == 404
        wait_for(lambda: total(gunicorn, route="_unmatched", code=404) == before["unmatched"] + 1)
        assert total(gunicorn, route=ITEM, code=200) == before[200] + 2
        assert total(gunicorn, route=ITEM, code=404) == before[404] + 1
        assert total(gunicorn, route=ITEM, code=500) == before[500] + 1
        [failed] = [p for p in read(gunicorn)[0] if p["attributes"]["status"] == "failure"]
        # Flask turns the exception into its 500 itself: what reaches the middleware is the code
        assert failed["attributes"]["error.type"] == "500"
        [ok] = [
            p
            for p in read(gunicorn)[0]
            if p["attributes"]["http.route"] == ITEM
            and p["attributes"]["status"] == "success"
            and p["attributes"]["http.response.status_code"] == 200
        ]
        assert ok["attributes"]["helper"] == "yes"

    def test_hostile_methods_and_paths(self, gunicorn: int) -> None:
        """Odd methods are ``_OTHER``; raw paths, non-UTF-8 ones included, never attributes."""
        before = sum(p["count"] for p in read(gunicorn)[0])
        sent = 0
        for method in (b"GET", b"BREW", b"PROPFIND", b"DELETE"):
            for target in (b"/items/7", b"/%ff%fe/..", b"/items/\xff", b"/\xc3\x28/a/b/c" * 20):
                if status_of(raw_request(gunicorn, method, target)) not in (None, 400):
                    sent += 1
        assert sent >= 8
        wait_for(lambda: sum(p["count"] for p in read(gunicorn)[0]) == before + sent)
        attrs = [p["attributes"] for p in read(gunicorn)[0]]
        assert {a["http.request.method"] for a in attrs} <= KNOWN_METHODS | {"_OTHER"}
        assert "_OTHER" in {a["http.request.method"] for a in attrs}
        assert {a["http.route"] for a in attrs} <= {ITEM, "/stream", "/forever", "_unmatched"}


class TestInProcess:
    def _call(self, app: Any, path: str) -> tuple[str, bytes]:
        environ: dict[str, Any] = {"PATH_INFO": path}
        setup_testing_defaults(environ)
        seen: list[str] = []
        body = app(environ, lambda status, headers, exc_info=None: seen.append(status))
        try:
            data = b"".join(body)
        finally:
            getattr(body, "close", lambda: None)()
        return seen[0], data

    def test_django_route_from_resolver_match(
        self, metrics_client_factory: Any, metrics_reader: InMemoryMetricReader
    ) -> None:
        """Django's ``resolver_match.route`` names the request (the route middleware)."""
        import django
        from django.conf import settings
        from django.http import HttpResponse
        from django.urls import path

        def article(request: Any, year: int) -> HttpResponse:
            return HttpResponse(b"ok")

        urls = types.ModuleType("otel_aspects_test_urls")
        urls.urlpatterns = [path("articles/<int:year>/", article)]  # type: ignore[attr-defined]
        if not settings.configured:
            settings.configure(
                ROOT_URLCONF=urls,
                MIDDLEWARE=["otel_aspects.wsgi.django_route_middleware"],
                ALLOWED_HOSTS=["*"],
                DEBUG=False,
            )
            django.setup()
        from django.core.wsgi import get_wsgi_application

        app = MetricsMiddleware(get_wsgi_application(), client=metrics_client_factory("svc"))
        assert self._call(app, "/articles/2024/")[0].startswith("200")
        assert self._call(app, "/articles/1999/")[0].startswith("200")
        assert self._call(app, "/nope")[0].startswith("404")
        got = {
            (p.attributes["http.route"], p.attributes["http.response.status_code"]): p.count
            for p in metric_points(metrics_reader, DURATION)
        }
        assert got == {("/articles/<int:year>/", 200): 2, ("_unmatched", 404): 1}

    def test_the_apps_exception_propagates_unchanged(
        self, metrics_client_factory: Any, metrics_reader: InMemoryMetricReader
    ) -> None:
        """The WSGI app's own exception object reaches the server; recorded as a 500 failure."""
        boom = LookupError("mine")

        def app(environ: Any, start_response: Any) -> Any:
            raise boom

        wrapped = MetricsMiddleware(app, client=metrics_client_factory("svc"))
        with pytest.raises(LookupError) as raised:
            self._call(wrapped, "/x")
        assert raised.value is boom
        [point] = metric_points(metrics_reader, DURATION)
        assert point.attributes["error.type"] == "LookupError"
        assert point.attributes["http.response.status_code"] == 500
        assert counter_value(metrics_reader, ACTIVE_REQUESTS) == 0

    def test_body_closed_early_is_cancelled(
        self, metrics_client_factory: Any, metrics_reader: InMemoryMetricReader
    ) -> None:
        """A server closing the body before its end (client gone): ``cancelled``, once."""

        def app(environ: Any, start_response: Any) -> Any:
            start_response("200 OK", [])
            return iter([b"a", b"b", b"c"])

        wrapped = MetricsMiddleware(app, client=metrics_client_factory("svc"))
        environ: dict[str, Any] = {}
        setup_testing_defaults(environ)
        body = wrapped(environ, lambda *a: None)
        assert next(iter(body)) == b"a"
        body.close()  # type: ignore[attr-defined]
        body.close()  # type: ignore[attr-defined]
        [point] = metric_points(metrics_reader, DURATION)
        assert (point.count, point.attributes["status"]) == (1, "cancelled")
