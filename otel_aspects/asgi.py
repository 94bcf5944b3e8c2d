"""ASGI middleware: every HTTP request as ``http.server.request.duration`` and active requests.

A pure ASGI middleware (no Starlette import), for Starlette, FastAPI or any ASGI app::

    from otel_aspects.asgi import MetricsMiddleware

    app = FastAPI()
    app.add_middleware(MetricsMiddleware, client=metrics)   # or MetricsMiddleware(app, client=...)

Each request is timed from receipt to its last body byte (a streaming response to its end;
background tasks that run after it are not counted), with the OpenTelemetry HTTP semantic
conventions' attributes and outcome rule (:mod:`otel_aspects._http`; README "HTTP services").
While the application handles it, the request is the innermost ``set_label`` scope: endpoint
code, dependencies (sync ones run in a thread with a copy of the context) and nested helpers
label its measurement.

Nothing the middleware does raises into the application, and the application's exceptions
pass through unchanged.  WebSocket and lifespan scopes are passed on untouched.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from time import perf_counter
from typing import Any

from . import _http
from ._warn import warn_once
from .labels import ACTIVE, is_cancellation

__all__ = ("MetricsMiddleware",)

logger = logging.getLogger("otel_aspects.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_set_active = ACTIVE.set
_reset_active = ACTIVE.reset
#: Messages that end a response (extensions), beside the last body or trailers message.
_FINALS = frozenset(("http.response.pathsend", "http.response.zerocopysend"))


class MetricsMiddleware:
    """Measure every HTTP request of an ASGI application.

    ``MetricsMiddleware(app, client=None, *, fastapi_metrics=False)``

    - *client*: the service's metrics client (``create_metrics_client(...)``).  The metrics
      are declared in its YAML like any other (``capture``, ``max_series``, ``buckets``); those
      it does not declare get the semantic conventions' defaults.  Without a client, a
      client of service ``otel_aspects.http`` with the defaults.
    - *fastapi_metrics*: FastAPI 0.16x records HTTP metrics of the same names itself once a
      meter provider is set up.  By default this middleware turns them off for the FastAPI
      application it serves (FastAPI's tracing and logs are untouched), so no request is
      counted twice under one name; ``True`` keeps both.

    Both metrics ``capture: false``: the middleware passes requests through untouched.
    Configuration errors (a client that is not one, a metric declared as another kind, the
    duration not in seconds) raise here.
    """

    def __init__(self, app: ASGIApp, client: Any = None, *, fastapi_metrics: bool = False) -> None:
        self.app = app
        self._metrics = _http.HttpMetrics(client, "ASGI MetricsMiddleware")
        self._off = not self._metrics.enabled
        #: Turn FastAPI's own HTTP metrics off at the first scope that shows its application.
        self._fastapi_pending = not fastapi_metrics and self._metrics.duration is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._off:
            if self._fastapi_pending:
                self._fastapi_off(scope)
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        if self._fastapi_pending:
            self._fastapi_off(scope)
        metrics = self._metrics
        request = metrics.start(scope.get("method"), scope.get("scheme"), scope.get("http_version"))
        root_path = scope.get("root_path", "")
        top = scope.get("app", self.app)
        code: object = None
        ending = False  # the last body message is being sent
        disconnected = False
        trailers = False

        def finish(exc: BaseException | None, cancelled: bool, complete: bool = True) -> None:
            end = perf_counter()
            try:
                route = _http.asgi_route(scope, root_path, top)
            except Exception:
                route = None
            metrics.finish(request, end - start, route, code, exc, cancelled, complete)

        async def receive_() -> Message:
            # The server's receive, watching for the client going away.
            nonlocal disconnected
            message = await receive()
            if message.get("type") == "http.disconnect" and not ending:
                disconnected = True
            return message

        async def send_(message: Message) -> None:
            nonlocal code, ending, trailers
            kind = message.get("type")
            if kind == "http.response.start":
                code = message.get("status")
                trailers = bool(message.get("trailers", False))
            elif (
                (
                    kind == "http.response.body"
                    and not message.get("more_body", False)
                    and not trailers
                )
                or (kind == "http.response.trailers" and not message.get("more_trailers", False))
                or kind in _FINALS
            ):
                ending = True
                try:
                    await send(message)
                except OSError as exc:  # the client is gone (ASGI 2.4 servers raise)
                    finish(exc, True)
                    raise
                except BaseException as exc:
                    finish(exc, False)
                    raise
                finish(None, disconnected)  # the last byte is out: timed to here
                return
            try:
                await send(message)
            except OSError as exc:
                finish(exc, True)
                raise

        token = _set_active(request)
        try:
            await self.app(scope, receive_, send_)
        except BaseException as exc:
            if not request._done:
                if code is None and not disconnected and not is_cancellation(exc):
                    code = 500  # raised before the response started: the server sends a 500
                finish(exc, disconnected)
            raise
        finally:
            try:
                _reset_active(token)
            except (ValueError, RuntimeError):  # pragma: no cover - entered elsewhere
                pass
        if not request._done:
            if disconnected:
                finish(None, True)
            elif code is None:
                code = 500  # returned without a response: the server sends a 500
                finish(None, False, complete=False)
            else:
                finish(None, False, complete=False)

    def _fastapi_off(self, scope: Scope) -> None:
        """Turn FastAPI's own HTTP metrics off for the app of *scope* (once; never raises)."""
        self._fastapi_pending = False
        app = scope.get("app") or self.app
        if not _is_fastapi(app):
            return
        config = getattr(app, "_telemetry", None)
        if isinstance(config, dict) and "metrics" in config:
            if config["metrics"]:
                config["metrics"] = False
                logger.info(
                    "otel_aspects: MetricsMiddleware records http.server.request.duration for "
                    "this FastAPI app; FastAPI's own HTTP metrics of the same names are turned "
                    "off (its tracing and logs are not). To keep FastAPI's instead, remove the "
                    "middleware; to keep both, MetricsMiddleware(..., fastapi_metrics=True)"
                )
        elif "fastapi.telemetry" in sys.modules:
            warn_once(
                logger,
                ("fastapi-telemetry", type(app).__qualname__),
                "otel_aspects: this FastAPI version's built-in telemetry could not be turned "
                "off by MetricsMiddleware; if it records HTTP metrics, each request is counted "
                "twice under http.server.request.duration: pass "
                "FastAPI(telemetry={'metrics': False})",
                budget="config",
            )


def _is_fastapi(app: object) -> bool:
    fastapi = sys.modules.get("fastapi")  # never imported here: an app of it exists or not
    cls = getattr(fastapi, "FastAPI", None)
    return isinstance(cls, type) and isinstance(app, cls)
