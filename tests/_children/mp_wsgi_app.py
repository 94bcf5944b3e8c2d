"""A small WSGI app for the pre-fork tests: a `@timed` handler with a dynamic label.

Served by real gunicorn (tests/test_multiprocess_servers.py) whose gunicorn.conf.py uses
``otel_aspects.gunicorn.hooks``; each worker records into the folder the master set in
``OTEL_ASPECTS_MULTIPROCESS_DIR``.  ``/slow`` sleeps 0.1 s inside the handler, ``/fast``
does not: their durations fall in known buckets.  The body is the worker's pid.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from otel_aspects import create_metrics_client, set_label, setup_metrics, timed

client = create_metrics_client(
    "mpweb",
    config={
        "service_name": "mpweb",
        "counters": [{"name": "requests_total"}],
        "histograms": [{"name": "request_duration_seconds", "unit": "s", "buckets": [0.05, 5.0]}],
    },
)
setup_metrics("mpweb")


@timed("request_duration_seconds", counter="requests_total", client=client)
def handle(route: str) -> None:
    set_label("route", route)
    if route == "slow":
        time.sleep(0.1)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    route = environ.get("PATH_INFO", "/").strip("/")
    handle(route if route in ("fast", "slow") else "other")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
