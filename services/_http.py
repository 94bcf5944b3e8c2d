"""What both services' HTTP apps share: error bodies, request bodies, metrics set-up, serving.

The HTTP layer is thin on purpose: each endpoint parses its input, calls the service's
core (which records the domain metrics, as in process), and maps the core's exceptions
to a status code and ``{"error": reason}`` -- ``reason`` from the core's small fixed set,
never request input.

- :func:`lifespan`: ``setup_metrics(<service>, prometheus_server=False)`` at startup
  (exporters from the ``OTEL_*`` variables; Prometheus, when enabled, is served on the
  app's own port at ``/metrics``), ``shutdown_metrics()`` at shutdown.
- :func:`add_http_metrics`: the HTTP middleware, recording through the service's client.
- :func:`serve`: uvicorn on a listening socket the caller made (``--fd``) or on a port.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from otel_aspects import setup_metrics, shutdown_metrics
from otel_aspects.asgi import MetricsMiddleware
from otel_aspects.metrics_client import OTelMetricsClient
from services._sim import SimulatedFailure

__all__ = (
    "BadRequest",
    "add_http_metrics",
    "error",
    "lifespan",
    "read_json",
    "serve",
    "service_parser",
    "text",
    "upstream_failure",
)


class BadRequest(Exception):
    """The request body or parameters are not what the endpoint takes (HTTP 400)."""


def error(reason: str, status: int) -> JSONResponse:
    """``{"error": reason}`` with *status*."""
    return JSONResponse({"error": reason}, status_code=status)


def upstream_failure(exc: SimulatedFailure | ConnectionError) -> JSONResponse:
    """A dependency (an MCP server, the identity provider) failed: 502."""
    return error("upstream_failure", 502)


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object body (``BadRequest`` when it is not one)."""
    try:
        body = json.loads(await request.body() or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("body is not JSON") from exc
    if not isinstance(body, dict):
        raise BadRequest("body is not a JSON object")
    return body


def text(body: Mapping[str, Any], key: str, default: str | None = None) -> str:
    """``body[key]`` as a string (``BadRequest`` when missing and no *default*)."""
    value = body.get(key, default)
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    return value


def lifespan(service_name: str) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """The app's lifespan: metrics set up at startup, flushed and shut down at shutdown."""

    @asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[None]:
        setup_metrics(service_name, prometheus_server=False)
        try:
            yield
        finally:
            shutdown_metrics()

    return run


def add_http_metrics(app: Starlette, client: OTelMetricsClient) -> None:
    """HTTP-level metrics for *app*: ``http.server.request.duration`` and
    ``http.server.active_requests`` by route template, method and status code
    (:class:`otel_aspects.asgi.MetricsMiddleware`), declared in the service's YAML and
    recorded through its *client*, beside its domain metrics.  The request is a
    ``set_label`` scope: the cores' own timed blocks keep their scopes inside it."""
    app.add_middleware(MetricsMiddleware, client=client)


def service_parser(prog: str) -> argparse.ArgumentParser:
    """The options every service's ``__main__`` takes (more are added by the caller)."""
    parser = argparse.ArgumentParser(prog=prog)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--fd", type=int, help="serve on this listening socket (inherited)")
    where.add_argument("--port", type=int, default=0, help="port on --host (0: a free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--latency-scale", type=float, default=1.0)
    parser.add_argument("--failure-rate", type=float, default=0.03)
    return parser


def serve(app: Starlette, *, fd: int | None, host: str, port: int) -> None:
    """Run *app* under uvicorn until SIGINT/SIGTERM (quiet: warnings only, no access log;
    the process's own log lines on stderr as ``LEVEL logger: message``).

    With *fd*, on that listening socket (the demo makes it, so it knows the port before
    the process starts); else on *host*:*port*, printing the URL once bound.
    """
    import uvicorn

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if fd is not None:
        sock = socket.socket(fileno=fd)
    else:
        sock = socket.create_server((host, port))
        bound = sock.getsockname()
        print(f"listening on http://{bound[0]}:{bound[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
