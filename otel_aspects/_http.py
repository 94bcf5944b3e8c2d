"""HTTP semantics shared by the ASGI and WSGI middlewares.

What a request is measured as, whatever the server (see ``docs/DESIGN.md``, "HTTP"):

- **Metrics** (OpenTelemetry HTTP semantic conventions): ``http.server.request.duration``
  (histogram, seconds, the semconv's recommended buckets) and ``http.server.active_requests``
  (up-down counter), declared in the service's YAML like any metric; when the YAML does not
  declare them, :func:`instruments` registers them with those defaults.
- **Attributes**: ``http.request.method`` (one of :data:`KNOWN_METHODS`, else ``_OTHER``),
  ``url.scheme`` (``http``/``https``, else ``_OTHER``), ``network.protocol.version`` (when
  known), ``http.route`` (the route *template*, :data:`UNMATCHED_ROUTE` when no route matched,
  :data:`OTHER` past :data:`MAX_ROUTES` distinct templates), ``http.response.status_code``,
  ``error.type`` on a failure, and ``status``, otel_aspects' outcome label.
- **Outcome** (:func:`outcome`): a client disconnect before the last body byte is
  ``cancelled``; an exception is ``failure`` (``error.type`` its class); a 5xx is ``failure``
  (``error.type`` the code); a 4xx is not; ``set_success`` from the request's code wins over
  the status code, never over an exception or a disconnect.
- **Scope**: a :class:`Request` is the ``set_label`` scope of the request, like a ``timed``
  block's run: endpoint code, dependencies and nested helpers label the request's
  measurement.

The raw path never becomes an attribute, and every value that does is bounded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Final

from ._warn import warn_once
from .config import DEFAULT_SECONDS_BUCKETS
from .labels import ACTIVE, CANCELLED, FAILURE, RESERVED_LABELS, STATUS, SUCCESS, is_cancellation
from .run import _IGNORE, _checked_key

__all__ = (
    "ACTIVE_REQUESTS",
    "DURATION",
    "DURATION_BUCKETS",
    "KNOWN_METHODS",
    "MAX_ROUTES",
    "OTHER",
    "UNMATCHED_ROUTE",
    "HttpMetrics",
    "Request",
    "current_request",
    "exception_type",
    "normalize_method",
    "outcome",
)

logger = logging.getLogger("otel_aspects.http")

#: The request-duration histogram (seconds).
DURATION: Final = "http.server.request.duration"
#: Requests being handled now (up-down counter).
ACTIVE_REQUESTS: Final = "http.server.active_requests"
#: The semantic conventions' recommended boundaries for ``http.server.request.duration``.
DURATION_BUCKETS: Final = DEFAULT_SECONDS_BUCKETS

#: Methods kept as they are (RFC 9110, PATCH, QUERY); any other is ``_OTHER``. Case-sensitive,
#: as the semantic conventions say (``get`` is not ``GET``).
KNOWN_METHODS: Final = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE")
)
#: The value standing for anything outside a bounded set (methods, schemes, routes).
OTHER: Final = "_OTHER"
#: ``http.route`` of a request that matched no route (a 404 from the router, a redirect).
UNMATCHED_ROUTE: Final = "_unmatched"
#: Distinct ``http.route`` values kept per middleware; later new ones are :data:`OTHER`.
MAX_ROUTES: Final = 1000

METHOD: Final = "http.request.method"
SCHEME: Final = "url.scheme"
VERSION: Final = "network.protocol.version"
ROUTE: Final = "http.route"
STATUS_CODE: Final = "http.response.status_code"
ERROR_TYPE: Final = "error.type"

_SCHEMES: Final = {"http": "http", "https": "https"}
_VERSIONS: Final = {"1.0": "1.0", "1.1": "1.1", "2": "2", "2.0": "2", "3": "3", "3.0": "3"}
#: An error type for a request whose response never completed, without an exception.
INCOMPLETE: Final = "incomplete_response"


def normalize_method(method: object) -> str:
    """The ``http.request.method`` of *method*: itself if known, else ``_OTHER``.

    >>> normalize_method("GET"), normalize_method("get"), normalize_method("BREW\\udcff")
    ('GET', '_OTHER', '_OTHER')
    """
    return method if method.__class__ is str and method in KNOWN_METHODS else OTHER


def base_attributes(method: object, scheme: object, version: object) -> dict[str, Any]:
    """The attributes known at receipt, each from a bounded set."""
    attrs: dict[str, Any] = {
        METHOD: method if method.__class__ is str and method in KNOWN_METHODS else OTHER,
        SCHEME: _SCHEMES.get(scheme, OTHER) if scheme.__class__ is str else OTHER,
    }
    if version.__class__ is str:
        known = _VERSIONS.get(version)
        if known is not None:
            attrs[VERSION] = known
    return attrs


def exception_type(exc: BaseException) -> str:
    """``error.type`` of an exception: its class, qualified by its module unless a builtin.

    >>> exception_type(ValueError()), exception_type(OSError())
    ('ValueError', 'OSError')
    """
    cls = type(exc)
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", None) or cls.__name__
    return name if module in (None, "builtins") else f"{module}.{name}"


def outcome(
    code: int | None,
    exc: BaseException | None,
    success: bool | None,
    cancelled: bool,
    complete: bool = True,
) -> tuple[str, str | None]:
    """``(status, error.type or None)`` of a request (the rule in the module docstring).

    >>> outcome(200, None, None, False), outcome(404, None, None, False)
    (('success', None), ('success', None))
    >>> outcome(503, None, None, False), outcome(200, None, None, True)
    (('failure', '503'), ('cancelled', None))
    >>> outcome(500, KeyError("k"), None, False)
    ('failure', 'KeyError')
    """
    if cancelled or (exc is not None and is_cancellation(exc)):
        return CANCELLED, None
    if exc is not None:
        return FAILURE, exception_type(exc)
    if not complete:  # the application ended without finishing its response
        return FAILURE, INCOMPLETE
    if success is not None:
        if success:
            return SUCCESS, None
        return FAILURE, str(code) if code is not None and code >= 500 else OTHER
    if code is None or code >= 500:
        return FAILURE, INCOMPLETE if code is None else str(code)
    return SUCCESS, None


_lock = threading.Lock()


class Request:
    """One HTTP request being measured: the ``set_label`` scope of its measurement.

    Made by a middleware at receipt and made the innermost scope (``labels.ACTIVE``) while
    the application runs; closed when the request is recorded, after which labels set by
    stragglers (a background task) are ignored, as for a ``timed`` run.
    """

    __slots__ = ("_done", "_labels", "_success", "active", "base", "route")

    def __init__(self, base: dict[str, Any], active: dict[str, Any]) -> None:
        self.base = base
        #: The attributes of its ``http.server.active_requests`` +1 and -1 (one dict).
        self.active = active
        #: A route template named by code (``set_label("http.route", ...)``, the Django
        #: middleware), or ``None``.
        self.route: object = None
        self._labels: dict[str, Any] | None = None
        self._success: bool | None = None
        self._done = False

    def set_label(self, key: str, value: object) -> None:
        """Add a label to the request's measurement (``status``/``error_type`` are reserved)."""
        if self._done:
            return
        if key.__class__ is not str or key in RESERVED_LABELS:
            key = _checked_key(key)
            if key is _IGNORE:
                return
        if key == ROUTE:
            self.route = value
            return
        labels = self._labels
        if labels is None:
            with _lock:  # a thread of the request may set the first label concurrently
                labels = self._labels
                if labels is None:
                    labels = self._labels = {}
        labels[key] = value

    def set_success(self, success: bool) -> None:
        """Decide the outcome by hand (an exception or a disconnect still wins)."""
        if not self._done:
            self._success = bool(success)

    @property
    def labels(self) -> dict[str, Any]:
        """The request's attributes known so far and the labels set, without the outcome."""
        labels = dict(self.base)
        if self._labels:
            labels.update(self._labels)
        if self.route is not None:
            labels[ROUTE] = self.route
        return labels


def current_request() -> Request | None:
    """The request whose scope is innermost now (``None`` inside a ``timed`` block or outside)."""
    scope = ACTIVE.get()
    return scope if scope.__class__ is Request else None


class HttpMetrics:
    """The two instruments of one middleware and what it records into them (never raises)."""

    def __init__(self, client: Any, where: str) -> None:
        if client is None:
            client = default_client()
        self.duration = _instrument(client, "histogram", DURATION, where)
        self.active = _instrument(client, "up_down_counter", ACTIVE_REQUESTS, where)
        self.enabled = self.duration is not None or self.active is not None
        self._where = where
        self._routes: set[object] = set()
        self._bases: dict[tuple[object, object, object], Request] = {}

    def start(self, method: object, scheme: object, version: object) -> Request:
        """A request was received: count it active; its :class:`Request` (not yet a scope).

        The receipt attributes are shared dicts, one per combination (a bounded set).
        """
        try:
            proto = self._bases[(method, scheme, version)]
        except (KeyError, TypeError):
            proto = self._prototype(method, scheme, version)
        request = Request(proto.base, proto.active)
        active = self.active
        if active is not None:
            active.add(1, proto.active)
        return request

    def _prototype(self, method: object, scheme: object, version: object) -> Request:
        base = base_attributes(method, scheme, version)
        proto = Request(base, {METHOD: base[METHOD], SCHEME: base[SCHEME]})
        if len(self._bases) < 4096:
            try:
                self._bases[(method, scheme, version)] = proto
            except TypeError:  # an unhashable server value
                pass
        return proto

    def bounded_route(self, route: object) -> object:
        """*route* while fewer than :data:`MAX_ROUTES` distinct ones were seen, else ``_OTHER``."""
        routes = self._routes
        try:
            if route in routes:
                return route
            if len(routes) < MAX_ROUTES:
                routes.add(route)
                return route
        except TypeError:  # unhashable, from code's set_label
            return OTHER
        warn_once(
            logger,
            ("routes", self._where),
            "otel_aspects: %s has seen %d distinct http.route values; later new ones are "
            "recorded as %r. Route templates are bounded by the code: check that code "
            "setting http.route passes a template, never the raw path",
            self._where,
            MAX_ROUTES,
            OTHER,
            budget="labels",
        )
        return OTHER

    def finish(
        self,
        request: Request,
        seconds: float,
        route: object,
        code: object,
        exc: BaseException | None,
        cancelled: bool,
        complete: bool = True,
    ) -> None:
        """Record *request* once: its duration with every attribute, and -1 active."""
        if request._done:
            return
        request._done = True
        try:
            base = request.base
            if self.active is not None:
                self.active.add(-1, request.active)
            if self.duration is None:
                return
            if code.__class__ is not int or not 100 <= code <= 599:
                if code is not None:
                    self._bad_status(code)
                code = None
            status, error = outcome(code, exc, request._success, cancelled, complete)
            labels = request._labels
            attrs: dict[str, Any] = {} if not labels else dict(labels)
            attrs.update(base)
            named = request.route
            attrs[ROUTE] = self.bounded_route(
                named if named is not None else UNMATCHED_ROUTE if route is None else route
            )
            if code is not None:
                attrs[STATUS_CODE] = code
            elif labels:
                attrs.pop(STATUS_CODE, None)
            if error is not None:
                attrs[ERROR_TYPE] = error
            elif labels:
                attrs.pop(ERROR_TYPE, None)
            attrs[STATUS] = status
            self.duration.record(seconds if seconds > 0.0 else 0.0, attrs)
        except Exception as exc_:  # pragma: no cover - the engine does not raise
            warn_once(
                logger,
                ("record", self._where, type(exc_).__name__),
                "otel_aspects: %s could not record a request (%s: %.200s); it is missing",
                self._where,
                type(exc_).__name__,
                exc_,
                budget="hooks",
            )

    def _bad_status(self, code: object) -> None:
        warn_once(
            logger,
            ("status-code", self._where, type(code).__name__),
            "otel_aspects: %s: the application sent HTTP status %.40r, not an int in "
            "100..599; recorded without http.response.status_code",
            self._where,
            code,
            budget="values",
        )


_default_client: Any = None


def default_client() -> Any:
    """The client of a middleware without ``client=`` (service ``otel_aspects.http``)."""
    global _default_client
    with _lock:
        if _default_client is None:
            from .client import create_metrics_client

            _default_client = create_metrics_client("otel_aspects.http", config=DEFAULT_CONFIG)
        return _default_client


#: The YAML that the defaults correspond to (what the README shows).
DEFAULT_CONFIG: Final[Mapping[str, Any]] = {
    "service_name": "otel_aspects.http",
    "histograms": [
        {
            "name": DURATION,
            "description": "Duration of HTTP server requests.",
            "unit": "s",
            "buckets": list(DURATION_BUCKETS),
        }
    ],
    "up_down_counters": [
        {
            "name": ACTIVE_REQUESTS,
            "description": "Number of active HTTP server requests.",
            "unit": "{request}",
        }
    ],
}
_DEFAULT_SPECS = {
    "histogram": DEFAULT_CONFIG["histograms"][0],
    "up_down_counter": DEFAULT_CONFIG["up_down_counters"][0],
}


def _instrument(client: Any, kind: str, name: str, where: str) -> Any:
    """The client's instrument for *name*: as declared, else registered with the defaults.

    Configuration-time errors (a declaration of the wrong kind, a duration histogram not
    in seconds) raise ``ValueError`` with the fix; ``capture: false`` gives ``None``.
    """
    spec_of = getattr(client, "spec", None)
    if not callable(spec_of) or not callable(getattr(client, "get_" + kind, None)):
        raise TypeError(
            f"otel_aspects: {where}: client= must be an otel_aspects metrics client "
            f"(create_metrics_client(...)), got {type(client).__name__}"
        )
    spec = spec_of(name)
    if spec is None:
        default = _DEFAULT_SPECS[kind]
        create = getattr(client, "create_" + kind)
        if kind == "histogram":
            return create(name, default["description"], default["unit"], default["buckets"])
        return create(name, default["description"], default["unit"])
    if spec.kind != kind:
        raise ValueError(
            f"otel_aspects: {where}: {name!r} is declared as a {spec.kind} in the metrics "
            f"config of {getattr(client, 'service_name', '?')!r}; the HTTP middleware records "
            f"it as a {kind}: declare it under {kind}s (or remove it to get the default)"
        )
    if kind == "histogram" and spec.capture and spec.unit != "s":
        raise ValueError(
            f"otel_aspects: {where}: histogram {name!r} is declared with unit "
            f"{spec.unit!r}; the middleware records seconds: declare it with `unit: s` "
            "(and buckets in seconds, or none for the semantic conventions' ones)"
        )
    return getattr(client, "get_" + kind)(name)


# ---------------------------------------------------------------------- route templates


def asgi_route(scope: Mapping[str, Any], root_path: object, top: object) -> str | None:
    """The route template of a handled ASGI request, or ``None`` if no route matched.

    Read after the application has routed the request (Starlette and FastAPI write into
    the scope): FastAPI's effective route of an included router (its full template),
    else Starlette's ``scope["route"]``.  When a ``Mount`` was passed through (the
    ``root_path`` grew since receipt, when it was *root_path*), the mounts' templates
    from *top* (the application's router) down are put in front.  Never the raw path.
    """
    route = scope.get("route")
    leaf = None
    fastapi = scope.get("fastapi")
    if fastapi.__class__ is dict:
        leaf = getattr(fastapi.get("effective_route_context"), "path_format", None)
    if leaf is None:
        if route is None:
            return None
        leaf = getattr(route, "path_format", None) or getattr(route, "path", None)
        if leaf.__class__ is not str:
            return None
    if scope.get("root_path", "") != root_path:
        return _mount_prefix(scope, root_path, top, route) + leaf
    return leaf


#: Deepest chain of mounts followed.
_MAX_MOUNT_DEPTH = 16


def _mount_prefix(scope: Mapping[str, Any], root_path: object, top: object, leaf: object) -> str:
    """The templates of the mounts that routed *scope* to *leaf*, from *top* down ("" if none)."""
    try:
        from starlette.routing import Match, Mount
    except ImportError:  # pragma: no cover - a scope["route"] without Starlette
        return ""
    probe: dict[str, Any] = {
        "type": scope.get("type", "http"),
        "path": scope.get("path", ""),
        "root_path": root_path,
        "method": scope.get("method", "GET"),
    }
    prefix = ""
    routes = getattr(top, "routes", None)
    try:
        for _ in range(_MAX_MOUNT_DEPTH):
            if not isinstance(routes, list):
                break
            for candidate in routes:
                match, child = candidate.matches(probe)
                if match is Match.FULL:
                    break
            else:
                break
            if candidate is leaf or not isinstance(candidate, Mount):
                break
            prefix += candidate.path
            probe.update(child)
            routes = candidate.routes
    except Exception:  # a router of another shape: the leaf alone
        return prefix
    return prefix
