"""The ASGI middleware against real parts: uvicorn on loopback, FastAPI, Starlette.

What each test expects comes from the requests it made (how many, to which route, with
which outcome), never from the library.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from otel_aspects import MetricsConfig, Run, set_label, timed
from otel_aspects._http import ACTIVE_REQUESTS, DURATION, DURATION_BUCKETS, KNOWN_METHODS
from otel_aspects.asgi import MetricsMiddleware
from otel_aspects.testing import counter_value, metric_points
from tests._http_support import call_asgi, raw_request, status_of, uvicorn_server, wait_for

STREAM_CHUNKS = 3
STREAM_DELAY = 0.05
BACKGROUND_DELAY = 0.3


def points(reader: InMemoryMetricReader) -> list[tuple[dict[str, Any], int, float]]:
    """``(attributes, count, sum)`` of every duration series."""
    return [(dict(p.attributes), p.count, p.sum) for p in metric_points(reader, DURATION)]


_KEYS = {"route": "http.route", "code": "http.response.status_code", "status": "status"}


def count(reader: InMemoryMetricReader, **attrs: Any) -> int:
    """Requests recorded whose attributes include *attrs* (``route``, ``code``, ``status``)."""
    wanted = {_KEYS[k]: v for k, v in attrs.items()}
    return sum(n for a, n, _ in points(reader) if all(a.get(k) == v for k, v in wanted.items()))


#: What the ``/run`` dependency's block recorded (cleared per app).
BLOCKS: list[dict[str, Any]] = []


async def db_block() -> AsyncIterator[Run]:
    """A yield dependency opening a timed block and handing its ``Run`` to the endpoint."""
    with timed(record_func=lambda d, labels: BLOCKS.append(labels)) as run:
        yield run


def make_app(client: Any) -> FastAPI:
    """A FastAPI app with the routes the tests call, measured by the middleware."""
    BLOCKS.clear()
    app = FastAPI()
    api = APIRouter()

    @api.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        if item_id == 404:
            raise HTTPException(404)
        if item_id == 500:
            raise RuntimeError("boom")
        return {"id": item_id}

    app.include_router(api, prefix="/api/{version}")

    @app.get("/stream")
    async def stream(background: BackgroundTasks) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(STREAM_CHUNKS):
                await asyncio.sleep(STREAM_DELAY)
                yield b"x" * 10

        background.add_task(asyncio.sleep, BACKGROUND_DELAY)
        return StreamingResponse(body(), background=background)

    @app.get("/forever")
    async def forever() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            while True:
                yield b"y" * 100
                await asyncio.sleep(0.01)

        return StreamingResponse(body())

    def helper() -> None:
        set_label("helper", "yes")

    def sync_dep() -> str:
        set_label("sync_dep", "yes")
        return "a"

    def sync_yield_dep() -> Iterator[str]:
        set_label("sync_yield_dep", "yes")
        yield "b"

    async def async_yield_dep() -> AsyncIterator[str]:
        set_label("async_yield_dep", "yes")
        yield "c"

    @app.get("/labels")
    def labels(
        a: str = Depends(sync_dep),
        b: str = Depends(sync_yield_dep),
        c: str = Depends(async_yield_dep),
    ) -> str:
        helper()  # a sync endpoint: Starlette runs it in a thread, with a copy of the context
        set_label("endpoint", a + b + c)
        return "ok"

    app.state.blocks = BLOCKS

    @app.get("/run")
    async def with_run(run: Annotated[Run, Depends(db_block)]) -> str:
        run.set_label("rows", 3)  # the documented form: the dependency's block, injected
        set_label("request_label", "r")  # the request's measurement
        return "ok"

    app.add_middleware(MetricsMiddleware, client=client)
    return app


@pytest.fixture
def http_client(metrics_client_factory: Any) -> Any:
    """A client with no HTTP metrics declared: the middleware's defaults."""
    return metrics_client_factory("svc")


class TestOverUvicorn:
    def test_streaming_response_is_timed_to_its_last_byte(
        self, http_client: Any, metrics_reader: InMemoryMetricReader
    ) -> None:
        """A streamed body is measured to its last chunk, without the background task after it."""
        with uvicorn_server(make_app(http_client)) as port:
            start = time.perf_counter()
            response = httpx.get(f"http://127.0.0.1:{port}/stream", timeout=10)
            elapsed = time.perf_counter() - start
            assert response.content == b"x" * 10 * STREAM_CHUNKS
            wait_for(lambda: count(metrics_reader, route="/stream") == 1)
        [(attrs, _, seconds)] = [
            p for p in points(metrics_reader) if p[0]["http.route"] == "/stream"
        ]
        assert attrs["http.response.status_code"] == 200 and attrs["status"] == "success"
        assert STREAM_CHUNKS * STREAM_DELAY <= seconds <= elapsed
        assert seconds < STREAM_CHUNKS * STREAM_DELAY + BACKGROUND_DELAY

    def test_disconnect_mid_stream_is_cancelled(
        self, http_client: Any, metrics_reader: InMemoryMetricReader
    ) -> None:
        """A client that goes away mid-stream: one ``cancelled`` record, active back to 0."""
        with uvicorn_server(make_app(http_client)) as port:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
                assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            wait_for(lambda: count(metrics_reader, route="/forever") == 1)
        assert count(metrics_reader, route="/forever", status="cancelled") == 1
        assert counter_value(metrics_reader, ACTIVE_REQUESTS) == 0

    def test_errors_are_counted_under_the_route_template(
        self, http_client: Any, metrics_reader: InMemoryMetricReader
    ) -> None:
        """422, 404 and 500 of a route carry its template; an unknown path is ``_unmatched``."""
        made = {200: 3, 422: 2, 404: 4, 500: 1}
        with uvicorn_server(make_app(http_client)) as port:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=10) as web:
                codes = [web.get(f"/api/v{i}/items/{i}").status_code for i in range(made[200])]
                codes += [web.get(f"/api/v1/items/x{i}").status_code for i in range(made[422])]
                codes += [web.get("/api/v2/items/404").status_code for _ in range(made[404])]
                codes.append(web.get("/no/such/path").status_code)
            # The app raises: Starlette sends the 500 and re-raises, uvicorn then closes.
            codes += [status_of(raw_request(port, b"GET", b"/api/v3/items/500"))]
            assert sorted(codes) == sorted([c for c, n in made.items() for _ in range(n)] + [404])
            wait_for(lambda: sum(n for _, n, _ in points(metrics_reader)) == len(codes))
        template = "/api/{version}/items/{item_id}"
        for code, n in made.items():
            assert count(metrics_reader, route=template, code=code) == n
        assert count(metrics_reader, route=template, status="failure") == made[500]
        [(failed, _, _)] = [p for p in points(metrics_reader) if p[0]["status"] == "failure"]
        assert failed["error.type"] == "RuntimeError"
        assert count(metrics_reader, route="_unmatched", code=404) == 1
        assert counter_value(metrics_reader, ACTIVE_REQUESTS) == 0

    def test_set_label_from_dependencies_and_helpers_reaches_the_request(
        self, http_client: Any, metrics_reader: InMemoryMetricReader
    ) -> None:
        """Sync, yield and async-yield dependencies and a nested helper label the request."""
        with uvicorn_server(make_app(http_client)) as port:
            assert httpx.get(f"http://127.0.0.1:{port}/labels", timeout=10).status_code == 200
            wait_for(lambda: count(metrics_reader, route="/labels") == 1)
        [(attrs, _, _)] = [p for p in points(metrics_reader) if p[0]["http.route"] == "/labels"]
        for label in ("sync_dep", "sync_yield_dep", "async_yield_dep", "helper"):
            assert attrs[label] == "yes", label
        assert attrs["endpoint"] == "abc"

    def test_an_injected_run_labels_the_dependencys_block(
        self, http_client: Any, metrics_reader: InMemoryMetricReader
    ) -> None:
        """Yield-dependency form: ``run.set_label`` labels its block, ``set_label`` the request."""
        app = make_app(http_client)
        with uvicorn_server(app) as port:
            assert httpx.get(f"http://127.0.0.1:{port}/run", timeout=10).status_code == 200
            wait_for(lambda: count(metrics_reader, route="/run") == 1 and app.state.blocks)
        assert app.state.blocks == [{"rows": 3, "status": "success"}]
        [(attrs, _, _)] = [p for p in points(metrics_reader) if p[0]["http.route"] == "/run"]
        assert attrs["request_label"] == "r" and "rows" not in attrs

    def test_hostile_methods_and_paths(
        self, http_client: Any, metrics_reader: InMemoryMetricReader
    ) -> None:
        """Unknown methods are ``_OTHER``; non-UTF-8 and random paths never become attributes."""
        rng = random.Random(11)
        methods = [b"GET", b"get", b"BREW", b"PROPFIND", b"X" * 200, b"DELETE"]
        targets = [
            b"/api/v1/items/1",
            b"/%ff%fe/../../etc/passwd",
            b"/api/v1/items/\xff\xfe",
            b"/\xc3\x28/" + bytes(rng.randrange(0x21, 0x7F) for _ in range(300)),
        ] + [b"/" + bytes(rng.choice(b"abc/%-._~") for _ in range(40)) for _ in range(30)]
        sent = 0
        with uvicorn_server(make_app(http_client)) as port:
            for method in methods:
                for target in targets:
                    # uvicorn's parser answers 400 itself (the app never sends one)
                    if status_of(raw_request(port, method, target)) not in (None, 400):
                        sent += 1
            wait_for(lambda: sum(n for _, n, _ in points(metrics_reader)) == sent)
        assert sent >= len(targets) * 3  # most reach the app: the test is not vacuous
        attrs = [a for a, _, _ in points(metrics_reader)]
        assert {a["http.request.method"] for a in attrs} <= KNOWN_METHODS | {"_OTHER"}
        assert {a["http.route"] for a in attrs} <= {"/api/{version}/items/{item_id}", "_unmatched"}
        for a in attrs:
            for value in a.values():
                if isinstance(value, str):
                    value.encode("utf-8")  # every exported string is valid UTF-8


class TestBoundedCardinality:
    def test_ten_thousand_hostile_paths_give_a_bounded_number_of_series(
        self, http_client: Any, metrics_reader: InMemoryMetricReader
    ) -> None:
        """10,000 random paths (bytes of every value, percent-escapes, long): few series."""
        app = make_app(http_client)
        rng = random.Random(2024)
        paths = []
        for i in range(10_000):
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 120)))
            if i % 3 == 0:
                raw = b"/api/v" + raw[:5] + b"/items/" + raw[5:]
            paths.append("/" + raw.decode("latin-1"))

        async def run_all() -> list[int]:
            return [await call_asgi(app, "GET", path) for path in paths]

        codes = asyncio.run(run_all())
        attrs = [a for a, _, _ in points(metrics_reader)]
        assert sum(n for _, n, _ in points(metrics_reader)) == len(paths)
        assert {a["http.route"] for a in attrs} <= {"/api/{version}/items/{item_id}", "_unmatched"}
        assert len(attrs) <= 2 * len(set(codes))  # (route, status code) pairs, no more


class TestFastAPIBuiltinTelemetry:
    """FastAPI 0.16x records HTTP metrics of the same names into the global provider."""

    def _run(self, app: FastAPI, n: int) -> InMemoryMetricReader:
        with TestClient(app) as web:
            for _ in range(n):
                assert web.get("/api/v1/items/1").status_code == 200
        from otel_aspects import current_setup

        setup = current_setup()
        assert setup is not None and setup.memory_reader is not None
        return setup.memory_reader

    def _global_client(self) -> Any:
        from otel_aspects import create_metrics_client

        return create_metrics_client("svc", config=MetricsConfig("svc"))

    def test_no_request_is_counted_twice_under_one_name(self, clean_sdk: None) -> None:
        """With setup_metrics, FastAPI's own telemetry and the middleware: each request once."""
        from otel_aspects import setup_metrics

        setup_metrics("svc")
        reader = self._run(make_app(self._global_client()), 5)
        assert sum(n for _, n, _ in points(reader)) == 5
        assert counter_value(reader, ACTIVE_REQUESTS) == 0

    def test_fastapi_metrics_true_keeps_both(self, clean_sdk: None) -> None:
        """Asked to keep FastAPI's too, both record (so the test above can fail)."""
        from otel_aspects import setup_metrics

        setup_metrics("svc")
        app = FastAPI()

        @app.get("/api/v1/items/1")
        async def one() -> int:
            return 1

        app.add_middleware(MetricsMiddleware, client=self._global_client(), fastapi_metrics=True)
        assert sum(n for _, n, _ in points(self._run(app, 3))) == 6

    def test_fastapi_alone_records_its_own(self, clean_sdk: None) -> None:
        """Without the middleware FastAPI's telemetry is the one source, untouched."""
        from otel_aspects import setup_metrics

        setup_metrics("svc")
        app = FastAPI()

        @app.get("/api/v1/items/1")
        async def one() -> int:
            return 1

        assert sum(n for _, n, _ in points(self._run(app, 3))) == 3


class TestConfig:
    def test_yaml_buckets_and_max_series_are_honoured(
        self, metrics_client_factory: Any, metrics_reader: InMemoryMetricReader, tmp_path: Any
    ) -> None:
        """The YAML's buckets and max_series apply to the HTTP metric like any other."""
        path = tmp_path / "svc.yml"
        path.write_text(
            "service_name: svc\nhistograms:\n  - name: http.server.request.duration\n"
            "    unit: s\n    buckets: [0.1, 1]\n    max_series: 2\n"
        )
        app = make_app(metrics_client_factory("svc", path))

        async def run_all() -> None:
            for path_ in ["/api/v1/items/1", "/api/v1/items/x", "/a", "/b", "/labels"]:
                await call_asgi(app, "GET", path_)

        asyncio.run(run_all())
        series = metric_points(metrics_reader, DURATION)
        assert {tuple(p.explicit_bounds) for p in series} == {(0.1, 1.0)}
        assert len(series) == 3  # two series, then the overflow one
        assert sum(p.count for p in series) == 5

    def test_default_buckets_are_the_semantic_conventions(
        self, http_client: Any, metrics_reader: InMemoryMetricReader
    ) -> None:
        """Undeclared, the duration gets the semconv's recommended boundaries."""
        asyncio.run(call_asgi(make_app(http_client), "GET", "/api/v1/items/1"))
        [point] = metric_points(metrics_reader, DURATION)
        assert tuple(point.explicit_bounds) == tuple(
            [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
        )
        assert tuple(point.explicit_bounds) == DURATION_BUCKETS

    def test_capture_false_is_a_true_no_op(
        self,
        metrics_client_factory: Any,
        metrics_reader: InMemoryMetricReader,
        tmp_path: Any,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Both metrics ``capture: false``: requests pass, nothing recorded, nothing logged."""
        path = tmp_path / "svc.yml"
        path.write_text(
            "service_name: svc\nhistograms:\n  - name: http.server.request.duration\n"
            "    unit: s\n    capture: false\nup_down_counters:\n"
            "  - name: http.server.active_requests\n    capture: false\n"
        )
        app = make_app(metrics_client_factory("svc", path))
        assert asyncio.run(call_asgi(app, "GET", "/api/v1/items/1")) == 200  # stack built
        caplog.set_level(logging.DEBUG, logger="otel_aspects")
        caplog.clear()
        codes = asyncio.run(call_asgi(app, "GET", "/api/v1/items/1"))
        assert codes == 200
        assert metric_points(metrics_reader, DURATION) == []
        assert metric_points(metrics_reader, ACTIVE_REQUESTS) == []
        assert [r for r in caplog.records if r.name.startswith("otel_aspects")] == []

    @pytest.mark.parametrize(
        ("yaml", "error"),
        [
            ("counters:\n  - name: http.server.request.duration\n", "declared as a counter"),
            ("histograms:\n  - name: http.server.request.duration\n    unit: ms\n", "unit: s"),
        ],
    )
    def test_bad_declarations_fail_at_construction(
        self, metrics_client_factory: Any, tmp_path: Any, yaml: str, error: str
    ) -> None:
        """A wrong kind or unit is a ValueError with the fix, when the middleware is made."""
        path = tmp_path / "svc.yml"
        path.write_text("service_name: svc\n" + yaml)
        with pytest.raises(ValueError, match=error):
            MetricsMiddleware(make_app, client=metrics_client_factory("svc", path))

    def test_client_must_be_a_metrics_client(self) -> None:
        """Anything else given as client= is a TypeError naming what to pass."""
        with pytest.raises(TypeError, match="create_metrics_client"):
            MetricsMiddleware(make_app, client=object())


class TestApplicationUntouched:
    def test_the_apps_exception_propagates_unchanged(
        self, http_client: Any, metrics_reader: InMemoryMetricReader
    ) -> None:
        """The very exception object the app raised reaches the server; the request is a failure."""
        boom = LookupError("mine")

        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise boom

        wrapped = MetricsMiddleware(app, client=http_client)

        async def call() -> None:
            await wrapped({"type": "http", "method": "GET", "path": "/"}, None, None)  # type: ignore[arg-type]

        with pytest.raises(LookupError) as raised:
            asyncio.run(call())
        assert raised.value is boom
        [(attrs, _, _)] = points(metrics_reader)
        assert (attrs["status"], attrs["error.type"], attrs["http.response.status_code"]) == (
            "failure",
            "LookupError",
            500,
        )

    def test_mounted_apps_get_the_full_template(
        self, http_client: Any, metrics_reader: InMemoryMetricReader
    ) -> None:
        """Through Mounts (with parameters), the route is every template joined."""

        async def leaf(request: Any) -> PlainTextResponse:
            return PlainTextResponse("x")

        inner = Starlette(routes=[Route("/p/{a}", leaf)])
        app = Starlette(routes=[Mount("/t/{tenant}", routes=[Mount("/in", app=inner)])])
        wrapped = MetricsMiddleware(app, client=http_client)
        assert asyncio.run(call_asgi(wrapped, "GET", "/t/acme/in/p/9")) == 200
        assert [a["http.route"] for a, _, _ in points(metrics_reader)] == ["/t/{tenant}/in/p/{a}"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    requests=st.lists(
        st.tuples(
            st.sampled_from([*sorted(KNOWN_METHODS), "get", "BREW", "\udcff", ""]),
            st.text(min_size=0, max_size=30),
            st.sampled_from([200, 204, 301, 404, 422, 500, 503]),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_every_request_is_recorded_once_with_bounded_valid_attributes(
    metrics_client_factory: Any, requests: list[tuple[str, str, int]]
) -> None:
    """Whatever methods, paths and status codes: one record per request, active back to 0,
    only bounded attribute values, 5xx failures and nothing else."""
    from opentelemetry.sdk.metrics import MeterProvider

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    from otel_aspects import create_metrics_client

    client = create_metrics_client("svc", config=MetricsConfig("svc"), meter_provider=provider)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        code = int(scope["path"].rsplit("/", 1)[-1])
        await send({"type": "http.response.start", "status": code, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    wrapped = MetricsMiddleware(app, client=client)

    async def run_all() -> None:
        for method, path, code in requests:
            assert await call_asgi(wrapped, method, f"/{path}/{code}") == code

    asyncio.run(run_all())
    series = points(reader)
    assert sum(n for _, n, _ in series) == len(requests)
    assert counter_value(reader, ACTIVE_REQUESTS) == 0
    for attrs, _, _ in series:
        assert attrs["http.route"] == "_unmatched"
        assert attrs["http.request.method"] in KNOWN_METHODS | {"_OTHER"}
        code = attrs["http.response.status_code"]
        assert attrs["status"] == ("failure" if code >= 500 else "success")
        assert attrs.get("error.type") == (str(code) if code >= 500 else None)
    expected = {(m if m in KNOWN_METHODS else "_OTHER", c) for m, _, c in requests}
    assert {(a["http.request.method"], a["http.response.status_code"]) for a, _, _ in series} == (
        expected
    )
    provider.shutdown()
