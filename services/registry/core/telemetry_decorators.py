"""The registry's context managers and decorators, in the seed's pattern.

They are built on :func:`otel_aspects.timed`, so they share the library's outcome
convention: ``success`` unless an exception leaves the block (``failure``), the task is
cancelled (``cancelled``), or ``set_success(False)`` is called.  Labels that are known
only inside the block (the server a request resolves to, the tool it names) are set on
the context (``ctx.set_server_name(...)``) and default to ``"unknown"``; the record
functions pick exactly the labels of the seed's table (``error_type`` is dropped) and
call the domain functions of :mod:`services.registry.utils.otel_metrics`, which bound
every value.

>>> async with ToolExecutionContext(registry.metrics, method="execute") as ctx:  # doctest: +SKIP
...     record = registry.lookup(server)
...     ctx.set_server_name(record.name)
...     ctx.set_tool_name(tool)
...     result = await call(...)
...     if result.get("isError"):
...         ctx.set_success(False)

The decorator :func:`track_registry_operation` is for methods of an object with a
``metrics`` attribute (a :class:`~services.registry.utils.otel_metrics.RegistryMetrics`),
so a test can give each registry its own isolated metrics.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Literal, ParamSpec, Protocol, TypeVar

from otel_aspects import timed
from otel_aspects.timing import Run, Timed
from services._labels import UNKNOWN
from services.registry.utils.otel_metrics import RegistryMetrics

__all__ = (
    "AuthMiddlewareContext",
    "PromptExecutionContext",
    "RegistryOperationContext",
    "ResourceAccessContext",
    "ToolDiscoveryContext",
    "ToolExecutionContext",
    "track_registry_operation",
)

P = ParamSpec("P")
R = TypeVar("R")
Record = Callable[[float, dict[str, Any]], None]


class HasMetrics(Protocol):
    metrics: RegistryMetrics


S = TypeVar("S", bound=HasMetrics)
AsyncMethod = Callable[Concatenate[S, P], Coroutine[Any, Any, R]]


class _MetricsContext:
    """``with`` / ``async with`` over one :class:`~otel_aspects.Timed` run whose labels
    start as *labels* and can be changed inside the block."""

    def __init__(self, record: Record, labels: dict[str, str]) -> None:
        self._timed: Timed = timed(record_func=record, labels=labels)
        self._run: Run | None = None

    def _set(self, key: str, value: str) -> None:
        if self._run is not None:
            self._run.set_label(key, value)

    def set_success(self, success: bool) -> None:
        """Mark the outcome (an exception still wins: it is always a failure)."""
        if self._run is not None:
            self._run.set_success(success)

    def __enter__(self) -> Any:
        self._run = self._timed.__enter__()
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> Literal[False]:
        self._timed.__exit__(exc_type, exc, tb)
        return False

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: object, exc: BaseException | None, tb: object
    ) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)


def _get(labels: dict[str, Any], key: str) -> str:
    value = labels.get(key, UNKNOWN)
    return value if isinstance(value, str) else UNKNOWN


class RegistryOperationContext(_MetricsContext):
    """``registry_operations_total`` / ``registry_operation_duration_seconds``."""

    def __init__(self, metrics: RegistryMetrics, operation: str, resource_type: str) -> None:
        def record(duration: float, labels: dict[str, Any]) -> None:
            metrics.record_registry_operation(
                _get(labels, "operation"), _get(labels, "resource_type"), labels["status"], duration
            )

        super().__init__(record, {"operation": operation, "resource_type": resource_type})


class ToolDiscoveryContext(_MetricsContext):
    """``mcp_tool_discovery_total`` / ``mcp_tool_discovery_duration_seconds``.

    *source* is ``"search"`` (``tool_name`` is then ``"search"``, never the query) or
    ``"lookup"`` (``tool_name`` set with :meth:`set_tool_name` once the tool is found).
    """

    def __init__(self, metrics: RegistryMetrics, source: str) -> None:
        def record(duration: float, labels: dict[str, Any]) -> None:
            metrics.record_tool_discovery(
                _get(labels, "tool_name"), _get(labels, "source"), labels["status"], duration
            )

        tool_name = "search" if source == "search" else UNKNOWN
        super().__init__(record, {"tool_name": tool_name, "source": source})

    def set_tool_name(self, name: str) -> None:
        """The registered name of the tool found (bounded by the caller)."""
        self._set("tool_name", name)


class ToolExecutionContext(_MetricsContext):
    """``mcp_tool_execution_total`` / ``mcp_tool_execution_duration_seconds``."""

    def __init__(self, metrics: RegistryMetrics, method: str) -> None:
        def record(duration: float, labels: dict[str, Any]) -> None:
            metrics.record_tool_execution(
                _get(labels, "tool_name"),
                _get(labels, "server_name"),
                _get(labels, "method"),
                labels["status"],
                duration,
            )

        super().__init__(record, {"tool_name": UNKNOWN, "server_name": UNKNOWN, "method": method})

    def set_server_name(self, name: str) -> None:
        """The registered server the request resolved to."""
        self._set("server_name", name)

    def set_tool_name(self, name: str) -> None:
        """The registered tool executed."""
        self._set("tool_name", name)


class ResourceAccessContext(_MetricsContext):
    """``mcp_resource_access_total`` / ``mcp_resource_access_duration_seconds``."""

    def __init__(self, metrics: RegistryMetrics) -> None:
        def record(duration: float, labels: dict[str, Any]) -> None:
            metrics.record_resource_access(
                _get(labels, "resource_uri"),
                _get(labels, "server_name"),
                labels["status"],
                duration,
            )

        super().__init__(record, {"resource_uri": "other", "server_name": UNKNOWN})

    def set_server_name(self, name: str) -> None:
        """The registered server the request resolved to."""
        self._set("server_name", name)

    def set_resource(self, bounded_uri: str) -> None:
        """The bounded form of the URI (a registered URI or template), never the raw URI."""
        self._set("resource_uri", bounded_uri)


class PromptExecutionContext(_MetricsContext):
    """``mcp_prompt_execution_total`` / ``mcp_prompt_execution_duration_seconds``."""

    def __init__(self, metrics: RegistryMetrics) -> None:
        def record(duration: float, labels: dict[str, Any]) -> None:
            metrics.record_prompt_execution(
                _get(labels, "prompt_name"), _get(labels, "server_name"), labels["status"], duration
            )

        super().__init__(record, {"prompt_name": UNKNOWN, "server_name": UNKNOWN})

    def set_server_name(self, name: str) -> None:
        """The registered server the request resolved to."""
        self._set("server_name", name)

    def set_prompt_name(self, name: str) -> None:
        """The registered prompt run."""
        self._set("prompt_name", name)


class AuthMiddlewareContext(_MetricsContext):
    """``auth_requests_total`` of the registry's auth middleware."""

    def __init__(self, metrics: RegistryMetrics, mechanism: str) -> None:
        def record(duration: float, labels: dict[str, Any]) -> None:
            metrics.record_auth_request(_get(labels, "mechanism"), labels["status"])

        super().__init__(record, {"mechanism": mechanism})


def track_registry_operation(
    operation: str, resource_type: str
) -> Callable[[AsyncMethod[S, P, R]], AsyncMethod[S, P, R]]:
    """Measure each call of the decorated async method as a registry operation, into
    ``self.metrics``.

    >>> class Registry:                                             # doctest: +SKIP
    ...     @track_registry_operation("list", "server")
    ...     async def list_servers(self): ...
    """

    def decorate(method: AsyncMethod[S, P, R]) -> AsyncMethod[S, P, R]:
        @functools.wraps(method)
        async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            with RegistryOperationContext(self.metrics, operation, resource_type):
                return await method(self, *args, **kwargs)

        return wrapper

    return decorate
