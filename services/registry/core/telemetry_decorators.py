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
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from services._labels import UNKNOWN
from services._metrics import TimedContext
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


class HasMetrics(Protocol):
    metrics: RegistryMetrics


S = TypeVar("S", bound=HasMetrics)
AsyncMethod = Callable[Concatenate[S, P], Coroutine[Any, Any, R]]


class _ServerContext(TimedContext):
    """A context whose ``server_name`` label is the registered server the request
    resolves to, set inside the block."""

    def set_server_name(self, name: str) -> None:
        """The registered server the request resolved to."""
        self._set("server_name", name)


def _get(labels: dict[str, Any], key: str) -> str:
    value = labels.get(key, UNKNOWN)
    return value if isinstance(value, str) else UNKNOWN


class RegistryOperationContext(TimedContext):
    """``registry_operations_total`` / ``registry_operation_duration_seconds``."""

    def __init__(self, metrics: RegistryMetrics, operation: str, resource_type: str) -> None:
        def record(duration: float, labels: dict[str, Any]) -> None:
            metrics.record_registry_operation(
                _get(labels, "operation"), _get(labels, "resource_type"), labels["status"], duration
            )

        super().__init__(
            record, {"operation": operation, "resource_type": resource_type}, metrics.clock
        )


class ToolDiscoveryContext(TimedContext):
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
        super().__init__(record, {"tool_name": tool_name, "source": source}, metrics.clock)

    def set_tool_name(self, name: str) -> None:
        """The registered name of the tool found (bounded by the caller)."""
        self._set("tool_name", name)


class ToolExecutionContext(_ServerContext):
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

        super().__init__(
            record,
            {"tool_name": UNKNOWN, "server_name": UNKNOWN, "method": method},
            metrics.clock,
        )

    def set_tool_name(self, name: str) -> None:
        """The registered tool executed."""
        self._set("tool_name", name)


class ResourceAccessContext(_ServerContext):
    """``mcp_resource_access_total`` / ``mcp_resource_access_duration_seconds``."""

    def __init__(self, metrics: RegistryMetrics) -> None:
        def record(duration: float, labels: dict[str, Any]) -> None:
            metrics.record_resource_access(
                _get(labels, "resource_uri"),
                _get(labels, "server_name"),
                labels["status"],
                duration,
            )

        super().__init__(record, {"resource_uri": "other", "server_name": UNKNOWN}, metrics.clock)

    def set_resource(self, bounded_uri: str) -> None:
        """The bounded form of the URI (a registered URI or template), never the raw URI."""
        self._set("resource_uri", bounded_uri)


class PromptExecutionContext(_ServerContext):
    """``mcp_prompt_execution_total`` / ``mcp_prompt_execution_duration_seconds``."""

    def __init__(self, metrics: RegistryMetrics) -> None:
        def record(duration: float, labels: dict[str, Any]) -> None:
            metrics.record_prompt_execution(
                _get(labels, "prompt_name"), _get(labels, "server_name"), labels["status"], duration
            )

        super().__init__(record, {"prompt_name": UNKNOWN, "server_name": UNKNOWN}, metrics.clock)

    def set_prompt_name(self, name: str) -> None:
        """The registered prompt run."""
        self._set("prompt_name", name)


class AuthMiddlewareContext(TimedContext):
    """``auth_requests_total`` of the registry's auth middleware."""

    def __init__(self, metrics: RegistryMetrics, mechanism: str) -> None:
        def record(duration: float, labels: dict[str, Any]) -> None:
            metrics.record_auth_request(_get(labels, "mechanism"), labels["status"])

        super().__init__(record, {"mechanism": mechanism}, metrics.clock)


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
