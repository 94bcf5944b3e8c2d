"""Metrics client and domain recording functions of the MCP registry.

The client comes from ``config/metrics/registry.yml`` (see :mod:`services._config` for how
the file is found).  The domain functions are the only place that builds label sets; the
labels are exactly those of the seed's "Standard Metrics Reference" table (each histogram
has the labels of the counter of its domain):

- ``registry_operations_total`` / ``registry_operation_duration_seconds``:
  operation, resource_type, status
- ``mcp_server_requests_total``: server_name
- ``mcp_tool_discovery_total`` / ``mcp_tool_discovery_duration_seconds``:
  tool_name, source, status
- ``mcp_tool_execution_total`` / ``mcp_tool_execution_duration_seconds``:
  tool_name, server_name, method, status
- ``mcp_resource_access_total`` / ``mcp_resource_access_duration_seconds``:
  resource_uri, server_name, status
- ``mcp_prompt_execution_total`` / ``mcp_prompt_execution_duration_seconds``:
  prompt_name, server_name, status
- ``auth_requests_total``: mechanism, status (the registry's auth middleware)

Label hygiene: fixed vocabularies (:data:`OPERATIONS`, :data:`RESOURCE_TYPES`,
:data:`SOURCES`, :data:`METHODS`, :data:`MECHANISMS`, ``status``) are enforced here;
names (servers, tools, prompts, resources) must already be bounded by the caller -- the
registry passes only registered names, through a capped :class:`BoundedNames` -- and
are checked again here against :data:`NAME_PATTERN` (anything else: ``"unknown"``).

Production code uses the module-level :data:`metrics` / functions (global meter
provider); tests build an isolated instance with :func:`build_metrics`.
"""

from __future__ import annotations

import re
import threading

from opentelemetry.metrics import MeterProvider

from services._labels import OTHER, UNKNOWN, one_of, outcome
from services._metrics import Clock, DomainMetrics, build_client

__all__ = (
    "MECHANISMS",
    "METHODS",
    "NAME_PATTERN",
    "OPERATIONS",
    "RESOURCE_TYPES",
    "SERVICE_NAME",
    "SOURCES",
    "BoundedNames",
    "RegistryMetrics",
    "build_metrics",
    "default_metrics",
    "metrics",
    "record_auth_request",
    "record_prompt_execution",
    "record_registry_operation",
    "record_resource_access",
    "record_server_request",
    "record_tool_discovery",
    "record_tool_execution",
)

SERVICE_NAME = "registry"

OPERATIONS: frozenset[str] = frozenset({"create", "read", "list", "search", "delete"})
RESOURCE_TYPES: frozenset[str] = frozenset({"server", "tool"})
#: How a tool was discovered: by a search query, or by a direct lookup of its name.
SOURCES: frozenset[str] = frozenset({"search", "lookup"})
#: How a tool was executed: the registry's execute API, or a ``tools/call`` message
#: relayed by the proxy endpoint.
METHODS: frozenset[str] = frozenset({"execute", "proxy"})
MECHANISMS: frozenset[str] = frozenset({"jwt", "api_key", "basic"})

#: What a name label value may look like (registered names match it by construction).
#: Resource labels (registered URIs or URI templates) get a wider alphabet.
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,63}")
_RESOURCE_PATTERN = re.compile(r"[a-z][a-z0-9+.\-]*://[A-Za-z0-9_.\-/{}]{0,100}")


def _name(value: str) -> str:
    if value in (UNKNOWN, OTHER) or NAME_PATTERN.fullmatch(value):
        return value
    return UNKNOWN


def _resource(value: str) -> str:
    if value in (UNKNOWN, OTHER) or _RESOURCE_PATTERN.fullmatch(value):
        return value
    return OTHER


class BoundedNames:
    """A capped set of names allowed as label values.

    A name is admitted the first time it is labelled while fewer than *cap* names are
    known, and then stays (a series, once created, lives as long as the process); later
    new names are labelled ``"other"``.  Churn (register, delete, register another name)
    therefore cannot grow the number of series past *cap*.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._names: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, name: str) -> str:
        if name in self._names:
            return name
        with self._lock:
            if len(self._names) < self.cap:
                self._names.add(name)
                return name
        return OTHER

    def __len__(self) -> int:
        return len(self._names)


class RegistryMetrics(DomainMetrics):
    """The registry's domain recording functions over one metrics client."""

    def record_registry_operation(
        self,
        operation: str,
        resource_type: str,
        success: bool | str,
        duration_seconds: float | None = None,
    ) -> None:
        """A CRUD operation on registry resources (servers, tools)."""
        self.count_and_time(
            "registry_operations_total",
            "registry_operation_duration_seconds",
            {
                "operation": one_of(operation, OPERATIONS),
                "resource_type": one_of(resource_type, RESOURCE_TYPES),
                "status": outcome(success),
            },
            duration_seconds,
        )

    def record_server_request(self, server_name: str) -> None:
        """A request proxied to an MCP server."""
        self.client.record_counter(
            "mcp_server_requests_total", 1, {"server_name": _name(server_name)}
        )

    def record_tool_discovery(
        self,
        tool_name: str,
        source: str,
        success: bool | str,
        duration_seconds: float | None = None,
    ) -> None:
        """A tool discovery: ``source="lookup"`` with the registered tool name (or
        ``"unknown"``), ``source="search"`` with ``tool_name="search"`` (never the query)."""
        self.count_and_time(
            "mcp_tool_discovery_total",
            "mcp_tool_discovery_duration_seconds",
            {
                "tool_name": _name(tool_name),
                "source": one_of(source, SOURCES),
                "status": outcome(success),
            },
            duration_seconds,
        )

    def record_tool_execution(
        self,
        tool_name: str,
        server_name: str,
        method: str,
        success: bool | str,
        duration_seconds: float | None = None,
    ) -> None:
        """A tool execution on an MCP server."""
        self.count_and_time(
            "mcp_tool_execution_total",
            "mcp_tool_execution_duration_seconds",
            {
                "tool_name": _name(tool_name),
                "server_name": _name(server_name),
                "method": one_of(method, METHODS),
                "status": outcome(success),
            },
            duration_seconds,
        )

    def record_resource_access(
        self,
        resource_uri: str,
        server_name: str,
        success: bool | str,
        duration_seconds: float | None = None,
    ) -> None:
        """A resource read; *resource_uri* is the bounded form (a registered URI or URI
        template of the server, else ``"other"``), never the raw URI."""
        self.count_and_time(
            "mcp_resource_access_total",
            "mcp_resource_access_duration_seconds",
            {
                "resource_uri": _resource(resource_uri),
                "server_name": _name(server_name),
                "status": outcome(success),
            },
            duration_seconds,
        )

    def record_prompt_execution(
        self,
        prompt_name: str,
        server_name: str,
        success: bool | str,
        duration_seconds: float | None = None,
    ) -> None:
        """A prompt execution on an MCP server."""
        self.count_and_time(
            "mcp_prompt_execution_total",
            "mcp_prompt_execution_duration_seconds",
            {
                "prompt_name": _name(prompt_name),
                "server_name": _name(server_name),
                "status": outcome(success),
            },
            duration_seconds,
        )

    def record_auth_request(self, mechanism: str, success: bool | str) -> None:
        """An authentication attempt handled by the registry's middleware."""
        self.client.record_counter(
            "auth_requests_total",
            1,
            {"mechanism": one_of(mechanism, MECHANISMS), "status": outcome(success)},
        )


def build_metrics(
    meter_provider: MeterProvider | None = None, *, clock: Clock | None = None
) -> RegistryMetrics:
    """A fresh :class:`RegistryMetrics` on *meter_provider* (default: the global one);
    *clock* times its blocks (default ``time.perf_counter``)."""
    return RegistryMetrics(build_client(SERVICE_NAME, meter_provider), clock)


#: The production instance, on the global meter provider (a proxy until setup_metrics).
default_metrics = build_metrics()
#: The seed's name for the service's client.
metrics = default_metrics.client

record_registry_operation = default_metrics.record_registry_operation
record_server_request = default_metrics.record_server_request
record_tool_discovery = default_metrics.record_tool_discovery
record_tool_execution = default_metrics.record_tool_execution
record_resource_access = default_metrics.record_resource_access
record_prompt_execution = default_metrics.record_prompt_execution
record_auth_request = default_metrics.record_auth_request
