"""Child process: a Flask app measured by the WSGI middleware, for gunicorn (one worker).

``gunicorn tests._children.wsgi_app:application``.  ``GET /_points`` (outside the
middleware) answers the worker's recorded duration points as JSON, so the test reads
what the worker measured.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, abort
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_aspects import MetricsConfig, create_metrics_client, set_label
from otel_aspects._http import ACTIVE_REQUESTS, DURATION
from otel_aspects.testing import counter_value, metric_points
from otel_aspects.wsgi import MetricsMiddleware

STREAM_CHUNKS = 3
STREAM_DELAY = 0.05

reader = InMemoryMetricReader()
provider = MeterProvider(metric_readers=[reader])
client = create_metrics_client("svc", config=MetricsConfig("svc"), meter_provider=provider)

flask_app = Flask(__name__)


@flask_app.get("/items/<int:item_id>")
def item(item_id: int) -> dict[str, int]:
    if item_id == 404:
        abort(404)
    if item_id == 500:
        raise RuntimeError("boom")
    helper()
    return {"id": item_id}


def helper() -> None:
    set_label("helper", "yes")


@flask_app.get("/stream")
def stream() -> Response:
    def body() -> Iterator[bytes]:
        for _ in range(STREAM_CHUNKS):
            time.sleep(STREAM_DELAY)
            set_label("streamed", "yes")  # the body runs in the request's scope too
            yield b"x" * 10

    return Response(body())


@flask_app.get("/forever")
def forever() -> Response:
    def body() -> Iterator[bytes]:
        while True:
            yield b"y" * 65536
            time.sleep(0.005)

    return Response(body())


measured = MetricsMiddleware(flask_app.wsgi_app, client=client)


def application(environ: dict[str, Any], start_response: Any) -> Any:
    if environ.get("PATH_INFO") == "/_points":
        points = [
            {"attributes": dict(p.attributes), "count": p.count, "sum": p.sum}
            for p in metric_points(reader, DURATION)
        ]
        body = json.dumps(
            {"points": points, "active": counter_value(reader, ACTIVE_REQUESTS)}
        ).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    return measured(environ, start_response)
