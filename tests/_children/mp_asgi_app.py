"""A small ASGI app for the uvicorn --workers test: a `@timed` handler per request.

Each uvicorn worker (spawned: it imports this module) calls ``setup_metrics`` and records
into ``OTEL_ASPECTS_MULTIPROCESS_DIR``; the ``otel-aspects serve-metrics`` sidecar serves
their total.  The body is the worker's pid.
"""

from __future__ import annotations

import os
from typing import Any

from otel_aspects import create_metrics_client, setup_metrics, timed

client = create_metrics_client(
    "mpasgi",
    config={
        "service_name": "mpasgi",
        "counters": [{"name": "requests_total"}],
        "histograms": [{"name": "request_duration_seconds", "unit": "s"}],
    },
)
setup_metrics("mpasgi")


@timed("request_duration_seconds", counter="requests_total", client=client)
async def handle() -> bytes:
    return str(os.getpid()).encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = await handle()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
