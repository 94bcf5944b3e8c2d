"""Wrong stacking: an aspect above a route decorator, which then records nothing.

``@app.get("/x")`` registers the function it is given and returns it unchanged; a
``@timed(...)`` written above it wraps the function *after* the route took the original,
so requests call the undecorated function and nothing is recorded -- silently, until
now.  :func:`check` runs once per decoration (never per call): it looks, in the
namespace where the decoration happens, for a FastAPI/Starlette router or a Flask
application whose most recently registered endpoint is the very function being
decorated, and then warns once with the fix.  Frameworks not imported cost nothing.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from ._warn import warn_once

__all__ = ("check",)

logger = logging.getLogger("otel_aspects.aspects")

#: Namespace entries looked at per decoration (a module's globals are rarely more).
_MAX_NAMES = 2000


def check(aspect: Any, func: Any, depth: int) -> None:
    """Warn once if *func* is already a route's endpoint in the decorating frame's namespace.

    *depth* is the decorating frame's depth from the caller of this function.  Never raises.
    """
    try:
        routers = _classes(("starlette.routing", "Router"), ("starlette.applications", "Starlette"))
        flasks = _classes(("flask.sansio.app", "App"), ("flask.app", "Flask"))
        if not routers and not flasks:
            return
        frame = sys._getframe(depth + 1)
        namespaces = [frame.f_locals]
        if frame.f_globals is not frame.f_locals:
            namespaces.append(frame.f_globals)
        for namespace in namespaces:
            for i, value in enumerate(namespace.values()):
                if i >= _MAX_NAMES:
                    break
                route = None
                if routers and isinstance(value, routers):
                    route = _starlette_route(value, func)
                elif flasks and isinstance(value, flasks):
                    route = _flask_route(value, func)
                if route is not None:
                    _warn(aspect, func, route)
                    return
    except Exception:  # a namespace or router of another shape: no check
        return


def _classes(*where: tuple[str, str]) -> tuple[type, ...]:
    """The classes named, from modules already imported (none is imported here)."""
    found = []
    for module, name in where:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type):
            found.append(cls)
    return tuple(found)


def _starlette_route(owner: Any, func: object) -> str | None:
    """The path of the route *owner* registered last, if its endpoint is *func*."""
    registered = owner.routes
    if registered and getattr(registered[-1], "endpoint", None) is func:
        return str(getattr(registered[-1], "path", "?"))
    return None


def _flask_route(owner: Any, func: object) -> str | None:
    """The rule of the view *owner* registered last, if it is *func*."""
    views = owner.view_functions
    if not views:
        return None
    endpoint = next(reversed(views))
    if views[endpoint] is not func:
        return None
    for rule in owner.url_map.iter_rules():
        if rule.endpoint == endpoint:
            return str(rule.rule)
    return str(endpoint)


_NAMES = {
    "Timed": "timed",
    "ExceptionCounter": "count_exceptions",
    "InProgress": "track_inprogress",
}


def _warn(aspect: Any, func: Any, route: str) -> None:
    kind = _NAMES.get(type(aspect).__name__, type(aspect).__name__)
    name = getattr(func, "__qualname__", repr(func))
    warn_once(
        logger,
        ("stacking", id(func)),
        "otel_aspects: @%s on %.100s is placed above the route decorator of %.100r: the "
        "route was registered with the undecorated function, so this decorator records "
        "nothing. Put the route decorator on top:\n    @app.<method>(%.100r)\n    @%s(...)\n"
        "    def %.60s(...)",
        kind,
        name,
        route,
        route,
        kind,
        getattr(func, "__name__", "handler"),
        budget="config",
    )
