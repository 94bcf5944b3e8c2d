"""A small FastAPI application as users write them, for the whole-app fixture tests.

Its client is created at import on the global provider (the seed's pattern), its
endpoints are decorated with ``@timed`` under the route decorator, the HTTP middleware
measures every request, and its lifespan calls
``setup_metrics`` (exporters from the ``OTEL_*`` environment) and ``shutdown_metrics``.
``/metrics`` is served on the app's own port by :mod:`otel_aspects.exposition`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException

from otel_aspects import set_label, setup_metrics, shutdown_metrics, timed
from otel_aspects.asgi import MetricsMiddleware
from otel_aspects.exposition import metrics_app
from otel_aspects.metrics_client import create_metrics_client

CONFIG = {
    "service_name": "shop",
    "counters": [{"name": "orders_total", "description": "orders placed"}],
    "histograms": [{"name": "order_duration_seconds", "unit": "s"}],
}

metrics = create_metrics_client("shop", config=CONFIG)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    setup_metrics("shop", prometheus_server=False)
    yield
    shutdown_metrics()


app = FastAPI(lifespan=lifespan)
app.add_middleware(MetricsMiddleware, client=metrics)
app.mount("/metrics", metrics_app())


def _lookup(item: int) -> str:
    set_label("size", "large" if item >= 100 else "small")  # labels the enclosing call
    if item == 13:
        raise HTTPException(status_code=404, detail="no such item")
    return f"item-{item}"


@app.post("/orders/{item}")
@timed("order_duration_seconds", counter="orders_total", client=metrics, labels={"shop": "main"})
async def order(item: int) -> dict[str, str]:
    return {"ordered": _lookup(item)}
