"""The auth server's context managers and decorators.

All of them are built on :func:`otel_aspects.timed`: it measures with
``perf_counter`` in ``try/finally``, decides the outcome the library's way -- ``success``
unless an exception leaves the block (``failure``) or it is cancelled (``cancelled``), or
``set_success(False)`` is called -- and hands ``(duration, labels)`` to a ``record_func``.
The record functions here only pick the labels of the seed's table out of those
(``error_type`` is dropped: the table has no such label) and call the domain functions
of :mod:`services.auth_server.utils.otel_metrics`.

The decorators are for methods of an object with a ``metrics`` attribute (an
:class:`~services.auth_server.utils.otel_metrics.AuthServerMetrics`), so that a test can
give each server its own isolated metrics.

>>> async with AuthRequestContext(server.metrics, "jwt") as ctx:     # doctest: +SKIP
...     principal = verify(token)
...     if principal.disabled:
...         ctx.set_success(False)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from otel_aspects import timed
from otel_aspects.timing import Run, Timed
from services._metrics import Record, TimedContext
from services.auth_server.utils.otel_metrics import AuthServerMetrics

__all__ = (
    "AuthRequestContext",
    "OAuthCallbackContext",
    "oauth_flow_timer",
    "track_oauth_authorization",
    "track_outcome",
    "track_session_validation",
    "track_token_generation",
)

P = ParamSpec("P")
R = TypeVar("R")


class HasMetrics(Protocol):
    metrics: AuthServerMetrics


S = TypeVar("S", bound=HasMetrics)
AsyncMethod = Callable[Concatenate[S, P], Coroutine[Any, Any, R]]


class AuthRequestContext(TimedContext):
    """One authentication attempt: ``auth_requests_total`` and
    ``auth_request_duration_seconds`` by ``mechanism`` and ``status``."""

    def __init__(self, metrics: AuthServerMetrics, mechanism: str = "unknown") -> None:
        def record(duration: float, labels: dict[str, Any]) -> None:
            metrics.record_auth_request(
                str(labels.get("mechanism", "unknown")), labels["status"], duration
            )

        super().__init__(record, {"mechanism": mechanism}, metrics.clock)

    def set_mechanism(self, mechanism: str) -> None:
        """The mechanism, once known (bounded to jwt/api_key/basic, else ``unknown``)."""
        self._set("mechanism", mechanism)

    def __enter__(self) -> AuthRequestContext:
        super().__enter__()
        return self

    async def __aenter__(self) -> AuthRequestContext:
        return self.__enter__()


#: The label through which the callback hands its status to the flow it ends.
_FLOW_STATUS = "flow_status"


def oauth_flow_timer(metrics: AuthServerMetrics) -> Timed:
    """``oauth_flow_duration_seconds`` by ``status``, a measurement that spans requests:
    ``flow = timer.start()`` at the authorization request, then the flow ends once --
    ``flow.stop(success=False)`` when it cannot start or its state expires, or the end of
    its callback (:meth:`OAuthCallbackContext.set_flow`), with the callback's status."""

    def record(duration: float, labels: dict[str, Any]) -> None:
        metrics.record_oauth_flow(labels.get(_FLOW_STATUS, labels["status"]), duration)

    return timed(record_func=record, clock=metrics.clock)


class OAuthCallbackContext(TimedContext):
    """Step 2 of the OAuth flow: ``oauth_callbacks_total`` by ``status`` and, once the
    flow is known (:meth:`set_flow`), ends that flow (``oauth_flow_duration_seconds``
    from the authorization request to the end of this callback) with the same status."""

    def __init__(self, metrics: AuthServerMetrics) -> None:
        self._flow: Run | None = None

        def record(duration: float, labels: dict[str, Any]) -> None:
            status = labels["status"]
            metrics.record_oauth_callback(status)
            if self._flow is not None:
                self._flow.stop(labels={_FLOW_STATUS: status})

        super().__init__(record, clock=metrics.clock)

    def set_flow(self, flow: Run) -> None:
        """The flow's measurement, started by :func:`oauth_flow_timer` at its
        authorization request."""
        self._flow = flow

    def __enter__(self) -> OAuthCallbackContext:
        super().__enter__()
        return self

    async def __aenter__(self) -> OAuthCallbackContext:
        return self.__enter__()


def _measured(
    make_record: Callable[[AuthServerMetrics], Record],
) -> Callable[[AsyncMethod[S, P, R]], AsyncMethod[S, P, R]]:
    """A decorator for async methods that times each call into ``make_record(self.metrics)``."""

    def decorate(method: AsyncMethod[S, P, R]) -> AsyncMethod[S, P, R]:
        @functools.wraps(method)
        async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            with timed(record_func=make_record(self.metrics), clock=self.metrics.clock):
                return await method(self, *args, **kwargs)

        return wrapper

    return decorate


def track_outcome(recorder: str) -> Callable[[AsyncMethod[S, P, R]], AsyncMethod[S, P, R]]:
    """Count each call of the decorated method by ``status`` with
    ``self.metrics.<recorder>(status)`` (a counter-only domain function)."""

    def make_record(metrics: AuthServerMetrics) -> Record:
        record_status: Callable[[str], None] = getattr(metrics, recorder)
        return lambda duration, labels: record_status(labels["status"])

    return _measured(make_record)


#: ``token_generations_total`` + ``token_generation_duration_seconds`` by status.
track_token_generation = _measured(
    lambda m: lambda duration, labels: m.record_token_generation(labels["status"], duration)
)

#: ``session_validations_total`` + ``session_validation_duration_seconds`` by status.
track_session_validation = _measured(
    lambda m: lambda duration, labels: m.record_session_validation(labels["status"], duration)
)

#: ``oauth_authorizations_total`` by status.
track_oauth_authorization = track_outcome("record_oauth_authorization")
