"""``/metrics`` on the application's own port: the Prometheus exposition as ASGI and WSGI apps.

What is served is what :func:`~otel_aspects.sdk.setup_metrics` collects for Prometheus:
the registry of its Prometheus reader (:attr:`MetricsSetup.prometheus_registry`).  So the
setup needs ``prometheus`` among its exporters; ``prometheus_server=False`` keeps it from
binding a port of its own, the point being to serve on the application's port::

    from otel_aspects import setup_metrics
    from otel_aspects.exposition import metrics_app

    app.mount("/metrics", metrics_app())          # Starlette / FastAPI (any ASGI router)
    setup_metrics("my_service", exporters="prometheus", prometheus_server=False)

    # Flask / Django (WSGI): werkzeug's DispatcherMiddleware, or a URL route, to
    metrics_wsgi_app()

Both answer as ``prometheus_client.make_wsgi_app`` does: content negotiation by the
``Accept`` header (the text format 0.0.4, or OpenMetrics), ``name[]`` query
parameters selecting metric names, gzip when the client accepts it, ``OPTIONS`` and
``GET`` (``HEAD`` too), 405 for other methods.  With no active setup, or one without a
Prometheus reader, they answer 503 with a line saying what to configure (and log it
once).  The apps are built before :func:`setup_metrics` runs (at import, typically) and
serve whichever setup is current at each request.

Every response body comes from :func:`render`, the one place that decides what a scrape
sees.  In multi-process mode a worker (which has no Prometheus reader of its own)
serves the whole server's total, the folder's
(:func:`otel_aspects.multiprocess.prometheus_registry`): any worker's ``/metrics``
answers what the exporting process would.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final
from urllib.parse import parse_qs

from ._warn import warn_once
from .sdk import current_setup

__all__ = (
    "NotCollecting",
    "metrics_app",
    "metrics_wsgi_app",
    "render",
)

_log = logging.getLogger("otel_aspects.exposition")

_ALLOW: Final = "OPTIONS, GET, HEAD"
_TEXT: Final = "text/plain; charset=utf-8"


class NotCollecting(RuntimeError):
    """No active setup collects for Prometheus; the message says what to configure."""


def _registry() -> Any:
    setup = current_setup()
    if setup is None:
        raise NotCollecting(
            "otel_aspects: metrics are not set up in this process; call "
            "setup_metrics(..., exporters='prometheus', prometheus_server=False) at startup"
        )
    registry = setup.prometheus_registry
    folder = setup.multiprocess_folder
    if folder is not None and (registry is None or not setup.exports_folder):
        # A multi-process worker: serve the whole server's total, as the exporter does.
        from .multiprocess import prometheus_registry

        return prometheus_registry(folder)
    if registry is None:
        raise NotCollecting(
            "otel_aspects: the metrics setup has no Prometheus reader (exporters: "
            f"{', '.join(setup.exporters) or 'none'}); add 'prometheus' "
            "(setup_metrics(exporters=...) or OTEL_PROMETHEUS_ENABLED=true), with "
            "prometheus_server=False to serve it on this port only"
        )
    return registry


def render(accept: str | None = None, names: Iterable[str] | None = None) -> tuple[bytes, str]:
    """Collect now and encode for a scrape: ``(body, content_type)``.

    *accept* is the request's ``Accept`` header (OpenMetrics when it asks for
    ``application/openmetrics-text``, else the text format 0.0.4); *names*, when given,
    keeps only those metric names (a scrape's ``name[]`` parameters; a sample name such
    as ``requests_total`` or ``latency_seconds_bucket``).  Raises :class:`NotCollecting`
    when no active setup has a Prometheus reader.
    """
    registry = _registry()  # first: prometheus_client is there when a registry is
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept or "")
    wanted = frozenset(names) if names is not None else frozenset()
    body: bytes = encoder(_Only(registry, wanted) if wanted else registry)
    return body, content_type


class _Only:
    """A registry's families restricted to *names*: a family named so, whole; else its
    samples named so.  (``CollectorRegistry.restricted_registry`` finds collectors by
    the names they described when registered, and the OpenTelemetry Prometheus
    reader's collector describes none: its metrics come and go with the SDK's.)"""

    def __init__(self, registry: Any, names: frozenset[str]) -> None:
        self._registry = registry
        self._names = names

    def collect(self) -> Iterator[Any]:
        from prometheus_client.metrics_core import Metric

        for family in self._registry.collect():
            if family.name in self._names:
                yield family
                continue
            samples = [s for s in family.samples if s.name in self._names]
            if samples:
                kept = Metric(family.name, family.documentation, family.type, family.unit)
                kept.samples = samples
                yield kept


def _respond(
    method: str, query: str, accept: str | None, accept_encoding: str | None
) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of one request: the logic both apps share."""
    if method == "OPTIONS":
        return 200, [("Allow", _ALLOW)], b""
    if method not in ("GET", "HEAD"):
        body = f"# HTTP 405 Method Not Allowed: {method[:16]}; use OPTIONS or GET\n".encode(
            "utf-8", "replace"
        )
        return 405, [("Allow", _ALLOW), ("Content-Type", _TEXT)], body
    names = parse_qs(query).get("name[]")
    try:
        body, content_type = render(accept, names)
    except NotCollecting as exc:
        warn_once(_log, ("not-collecting", str(exc)), "%s", exc)
        return 503, [("Content-Type", _TEXT)], f"# {exc}\n".encode()
    from prometheus_client.exposition import gzip_accepted

    headers = [("Content-Type", content_type)]
    if gzip_accepted(accept_encoding or ""):
        body = gzip.compress(body)
        headers.append(("Content-Encoding", "gzip"))
    headers.append(("Content-Length", str(len(body))))
    return 200, headers, (b"" if method == "HEAD" else body)


# ----------------------------------------------------------------------------- ASGI

Scope = Mapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class MetricsApp:
    """A pure ASGI app serving :func:`render`; mount it (``app.mount("/metrics", ...)``).

    The collection runs in a worker thread (``anyio.to_thread``), so a scrape of many
    series never blocks the event loop.  Handles ``lifespan`` too, so it can also be
    served on its own (``uvicorn otel_aspects.exposition:app`` style).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # a websocket: refuse it
            await send({"type": "websocket.close", "code": 1003})
            return
        import anyio.to_thread

        headers = _headers(scope.get("headers") or ())
        query = bytes(scope.get("query_string") or b"").decode("latin-1")
        status, response_headers, body = await anyio.to_thread.run_sync(
            _respond,
            str(scope.get("method", "GET")),
            query,
            headers.get("accept"),
            headers.get("accept-encoding"),
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in response_headers],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _headers(raw: Iterable[Sequence[bytes]]) -> dict[str, str]:
    """ASGI header pairs -> a dict of lowercase names (repeated headers joined by ``,``)."""
    out: dict[str, str] = {}
    for name, value in raw:
        key = bytes(name).decode("latin-1").lower()
        text = bytes(value).decode("latin-1")
        out[key] = f"{out[key]},{text}" if key in out else text
    return out


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def metrics_app() -> MetricsApp:
    """The ASGI ``/metrics`` app: ``app.mount("/metrics", metrics_app())``.

    >>> callable(metrics_app())
    True
    """
    return MetricsApp()


# ----------------------------------------------------------------------------- WSGI

_REASONS: Final = {200: "OK", 405: "Method Not Allowed", 503: "Service Unavailable"}

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def metrics_wsgi_app() -> WsgiApp:
    """The WSGI ``/metrics`` app (Flask, Django, any WSGI server or dispatcher).

    >>> app = metrics_wsgi_app()
    >>> callable(app)
    True
    """

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        status, headers, body = _respond(
            str(environ.get("REQUEST_METHOD", "GET")),
            str(environ.get("QUERY_STRING", "")),
            environ.get("HTTP_ACCEPT"),
            environ.get("HTTP_ACCEPT_ENCODING"),
        )
        start_response(f"{status} {_REASONS[status]}", headers)
        return [body]

    return app
