"""WSGI middleware: every HTTP request as ``http.server.request.duration`` and active requests.

For Flask, Django or any WSGI application::

    from otel_aspects.wsgi import MetricsMiddleware

    app.wsgi_app = MetricsMiddleware(app.wsgi_app, client=metrics)   # Flask
    application = MetricsMiddleware(get_wsgi_application(), client=metrics)   # Django

The same metrics, attributes and outcome rule as :mod:`otel_aspects.asgi`
(:mod:`otel_aspects._http`).  A request is timed from the call to the end of its body
iterable (the server asks for the next chunk after writing the last: the last byte); a
body closed by the server before its end (the client went away) is ``cancelled``.  While
the application and its body iterable run, the request is the innermost ``set_label``
scope of that thread.

Route templates: Flask's ``request.url_rule`` (read when the application calls
``start_response``); Django's ``resolver_match.route`` through
:func:`django_route_middleware`; any other framework names it with
``set_label("http.route", template)``.  Unnamed: ``_unmatched``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from time import perf_counter
from typing import Any

from . import _http
from .labels import ACTIVE, is_cancellation

__all__ = ("MetricsMiddleware", "django_route_middleware")

logger = logging.getLogger("otel_aspects.http")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_set_active = ACTIVE.set
_reset_active = ACTIVE.reset
_PROTOCOLS = {"HTTP/1.0": "1.0", "HTTP/1.1": "1.1", "HTTP/2": "2", "HTTP/2.0": "2", "HTTP/3": "3"}


class MetricsMiddleware:
    """Measure every HTTP request of a WSGI application.

    ``MetricsMiddleware(app, client=None)``: *client* as for
    :class:`otel_aspects.asgi.MetricsMiddleware` (the metrics declared in its YAML, the
    semantic conventions' defaults otherwise).  Both metrics ``capture: false``: requests
    pass through untouched.
    """

    def __init__(self, app: WSGIApp, client: Any = None) -> None:
        self.app = app
        self._metrics = _http.HttpMetrics(client, "WSGI MetricsMiddleware")
        self._off = not self._metrics.enabled

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self._off:
            return self.app(environ, start_response)
        start = perf_counter()
        metrics = self._metrics
        request = metrics.start(
            environ.get("REQUEST_METHOD"),
            environ.get("wsgi.url_scheme"),
            _PROTOCOLS.get(environ.get("SERVER_PROTOCOL")),  # type: ignore[arg-type]
        )
        exchange = _Exchange(metrics, request, start, start_response, environ)
        token = _set_active(request)
        try:
            body = self.app(environ, exchange.start_response)
        except BaseException as exc:
            if exchange.code is None and not is_cancellation(exc):
                exchange.code = 500  # raised before a response: the server sends a 500
            exchange.finish(exc, False)
            raise
        finally:
            _reset_active(token)
        exchange.body = body
        return exchange


class _Exchange:
    """One request's response: its ``start_response`` and its body iterable, measured."""

    __slots__ = ("_iter", "_sr", "body", "code", "environ", "metrics", "request", "route", "start")

    def __init__(
        self,
        metrics: _http.HttpMetrics,
        request: _http.Request,
        start: float,
        start_response: StartResponse,
        environ: dict[str, Any],
    ) -> None:
        self.metrics = metrics
        self.request = request
        self.start = start
        self._sr = start_response
        self.environ = environ
        self.code: object = None
        self.route: object = None
        self.body: Iterable[bytes] = ()
        self._iter: Iterator[bytes] | None = None

    def start_response(self, status: str, headers: Any, exc_info: Any = None) -> Any:
        try:
            self.code = int(status[:3])
        except Exception:
            self.code = status
        try:
            # Flask: the request (werkzeug's key) is still in the environ while it responds.
            rule = getattr(self.environ.get("werkzeug.request"), "url_rule", None)
            route = getattr(rule, "rule", None)
            if route.__class__ is str:
                self.route = route
        except Exception:
            pass
        if exc_info is None:
            return self._sr(status, headers)
        return self._sr(status, headers, exc_info)

    def finish(self, exc: BaseException | None, cancelled: bool, complete: bool = True) -> None:
        self.metrics.finish(
            self.request,
            perf_counter() - self.start,
            self.route,
            self.code,
            exc,
            cancelled,
            complete,
        )

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        it = self._iter
        if it is None:
            it = self._iter = iter(self.body)
        token = _set_active(self.request)  # a generator body labels its request
        try:
            return next(it)
        except StopIteration:
            self.finish(None, False, complete=self.code is not None)
            raise
        except BaseException as exc:
            self.finish(exc, False)
            raise
        finally:
            _reset_active(token)

    def close(self) -> None:
        """The server is done with the body: before its end, the client went away."""
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            self.finish(exc, False)
            raise
        self.finish(None, True)


def django_route_middleware(get_response: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Django middleware naming each request's route (``resolver_match.route``).

    Add ``"otel_aspects.wsgi.django_route_middleware"`` to ``MIDDLEWARE``, with the WSGI (or
    ASGI) ``MetricsMiddleware`` around the Django application.  Works for sync views; the
    route is read after the view, so a 404 from an unknown path stays ``_unmatched``.
    """

    def middleware(request: Any) -> Any:
        try:
            return get_response(request)
        finally:
            match = getattr(request, "resolver_match", None)
            route = getattr(match, "route", None)
            current = _http.current_request()
            if current is not None and route.__class__ is str:
                current.set_label(_http.ROUTE, "/" + route.lstrip("/"))

    return middleware
