"""``/metrics`` on the application's port: otel_aspects.exposition.

What is expected comes from what each test recorded; the end-to-end test has a real
uvicorn serving a Starlette app that mounts the ASGI app, scraped by a real Prometheus.
"""

from __future__ import annotations

import gzip
import io
import socket
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from _servers import Prometheus, require_prometheus, uvicorn_thread, wait_until
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from otel_aspects import create_metrics_client, setup_metrics, shutdown_metrics
from otel_aspects.exposition import metrics_wsgi_app, render

CONFIG = {
    "counters": [{"name": "hits_total"}],
    "histograms": [{"name": "work_seconds", "unit": "s"}],
}


@pytest.fixture
def collecting(clean_sdk: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A setup collecting for Prometheus without a server; a client on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    monkeypatch.setenv("OTEL_PROMETHEUS_PORT", str(port))
    client = create_metrics_client("expo", config=CONFIG)
    setup = setup_metrics("expo", exporters="prometheus", prometheus_server=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nobody took OTEL_PROMETHEUS_PORT
    assert setup.prometheus_port is None and setup.prometheus_registry is not None
    yield client


def wsgi(environ: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        got["status"], got["headers"] = status, dict(headers)

    base = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "wsgi.input": io.BytesIO()}
    body = b"".join(metrics_wsgi_app()({**base, **environ}, start_response))
    return got["status"], got["headers"], body


def sample(text: str, prefix: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(prefix))


class TestWsgi:
    def test_text_format_with_what_was_recorded(self, collecting: Any) -> None:
        """The 0.0.4 text format carries the counts recorded."""
        collecting.record_counter("hits_total", 3, {"route": "/a"})
        collecting.record_histogram("work_seconds", 0.2)
        status, headers, body = wsgi({})
        assert status == "200 OK" and headers["Content-Type"].startswith(
            "text/plain; version=0.0.4"
        )
        text = body.decode()
        assert sample(text, "hits_total{").endswith(" 3.0") and 'route="/a"' in text
        assert sample(text, "work_seconds_count{").endswith(" 1.0")

    def test_openmetrics_names_and_gzip(self, collecting: Any) -> None:
        """OpenMetrics by Accept, name[] filters, gzip by Accept-Encoding."""
        collecting.record_counter("hits_total", 2)
        collecting.record_histogram("work_seconds", 0.3)
        _, headers, body = wsgi({"HTTP_ACCEPT": "application/openmetrics-text; version=1.0.0"})
        assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
        assert body.decode().endswith("# EOF\n")
        _, _, only = wsgi({"QUERY_STRING": "name[]=hits_total"})
        assert "hits_total{" in only.decode() and "work_seconds" not in only.decode()
        _, _, one = wsgi({"QUERY_STRING": "name[]=work_seconds_count"})
        assert "work_seconds_count{" in one.decode() and "work_seconds_bucket" not in one.decode()
        _, headers, zipped = wsgi({"HTTP_ACCEPT_ENCODING": "gzip, br"})
        assert headers["Content-Encoding"] == "gzip"
        assert sample(gzip.decompress(zipped).decode(), "hits_total{").endswith(" 2.0")

    def test_methods(self, collecting: Any) -> None:
        """HEAD: headers only; OPTIONS: Allow; POST: 405."""
        collecting.record_counter("hits_total", 1)
        _, got, body = wsgi({})
        status, head, empty = wsgi({"REQUEST_METHOD": "HEAD"})
        assert status == "200 OK" and empty == b""
        assert int(head["Content-Length"]) == len(body) == int(got["Content-Length"]) > 0
        assert wsgi({"REQUEST_METHOD": "OPTIONS"})[1]["Allow"] == "OPTIONS, GET, HEAD"
        assert wsgi({"REQUEST_METHOD": "POST"})[0] == "405 Method Not Allowed"

    def test_not_collecting_is_503_with_the_fix(
        self, clean_sdk: None, caplog: pytest.LogCaptureFixture
    ) -> None:
        """No setup, or one without Prometheus: 503 saying what to configure, logged once."""
        status, _, body = wsgi({})
        assert status == "503 Service Unavailable" and b"setup_metrics" in body
        setup_metrics("expo", exporters="otlp", otlp_endpoint="http://127.0.0.1:9")
        for _ in range(3):
            status, _, body = wsgi({})
        assert status == "503 Service Unavailable" and b"'prometheus'" in body
        assert sum("no Prometheus reader" in r.getMessage() for r in caplog.records) == 1
        shutdown_metrics(timeout_millis=100)

    def test_render_is_the_one_place(self, collecting: Any) -> None:
        """render() gives the body and content type both apps send."""
        collecting.record_counter("hits_total", 5)
        body, content_type = render(None)
        assert content_type.startswith("text/plain") and b"hits_total{" in body
        assert wsgi({})[2] == body


def _app(hits: Callable[[], None]) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        setup_metrics("expo", exporters="prometheus", prometheus_server=False)
        yield
        shutdown_metrics()

    async def hit(request: Request) -> PlainTextResponse:
        hits()
        return PlainTextResponse("ok")

    from otel_aspects.exposition import metrics_app

    return Starlette(
        routes=[Route("/hit", hit), Mount("/metrics", app=metrics_app())], lifespan=lifespan
    )


@pytest.mark.e2e
def test_prometheus_scrapes_metrics_on_the_app_port(clean_sdk: None) -> None:
    """A Starlette app under uvicorn mounts /metrics; Prometheus scrapes the app's own
    port and PromQL returns the number of requests made."""
    binary = require_prometheus()
    client = create_metrics_client("expo", config=CONFIG)
    app = _app(lambda: client.record_counter("hits_total", 1, {"route": "/hit"}))
    with uvicorn_thread(app) as url:
        for _ in range(7):
            assert httpx.get(f"{url}/hit").text == "ok"
        scraped = httpx.get(f"{url}/metrics/").text
        assert sample(scraped, "hits_total{").endswith(" 7.0")
        target = url.removeprefix("http://")
        with Prometheus(binary, {"app": target}) as prom:
            # A mount answers /metrics with a redirect to /metrics/: Prometheus follows it.
            wait_until(
                lambda: (
                    prom.scalar('sum(hits_total{job="app",route="/hit"})') == 7.0
                    or prom.query("up")
                ),
                20,
                "Prometheus to scrape 7 hits from the app's port",
            )
            up = prom.query('up{job="app"}')
            assert up and up[0]["value"][1] == "1"
