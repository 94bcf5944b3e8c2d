"""The MCP registry's in-memory core.

:class:`Registry` keeps a catalogue of MCP servers (registered by name and URL), their
tools, resources and prompts (discovered from the servers at registration), answers
list / read / search queries over it, and proxies requests to the servers: raw JSON-RPC
messages (:meth:`Registry.proxy_request`) and the convenience calls
:meth:`~Registry.execute_tool`, :meth:`~Registry.read_resource` and
:meth:`~Registry.run_prompt`.  :class:`AuthMiddleware` authenticates each API call
against the auth server (:meth:`Registry.handle`).

The servers are :class:`~services.registry.core.mcp.SimulatedMCPServer` objects reached
through ``backends`` (URL -> server), the registry's in-memory "network".

Label hygiene: every name that reaches a metric label is a registered one, admitted
through capped :class:`~services.registry.utils.otel_metrics.BoundedNames` sets;
unknown names are labelled ``"unknown"``, names past the cap ``"other"``, resource URIs
by the registered URI or URI template they match (else ``"other"``), search queries
never.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from services._labels import UNKNOWN
from services._sim import Simulation
from services.registry.core.mcp import SimulatedMCPServer, template_matches
from services.registry.core.telemetry_decorators import (
    AuthMiddlewareContext,
    PromptExecutionContext,
    ResourceAccessContext,
    ToolDiscoveryContext,
    ToolExecutionContext,
    track_registry_operation,
)
from services.registry.utils.otel_metrics import (
    NAME_PATTERN,
    BoundedNames,
    RegistryMetrics,
    default_metrics,
)

__all__ = (
    "AuthMiddleware",
    "Authenticator",
    "Registry",
    "RegistryError",
    "ServerRecord",
    "ToolRecord",
)

T = TypeVar("T")
JSON = dict[str, Any]
#: ``authenticator(authorization_header) -> principal``; raises on failure.
Authenticator = Callable[[str], Awaitable[object]]


class RegistryError(Exception):
    """A registry call failed; ``reason`` is one of a small fixed set."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class ToolRecord:
    server_name: str
    name: str
    description: str


@dataclass
class ServerRecord:
    name: str
    url: str
    description: str = ""
    tags: tuple[str, ...] = ()
    tools: dict[str, ToolRecord] = field(default_factory=dict)
    resources: tuple[str, ...] = ()  # static URIs
    resource_templates: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()

    def resource_label(self, uri: str) -> str | None:
        """The registered URI or template *uri* matches, or ``None``."""
        if uri in self.resources:
            return uri
        for template in self.resource_templates:
            if template_matches(template, uri):
                return template
        return None


_SCHEMES = {"bearer": "jwt", "apikey": "api_key", "basic": "basic"}


class AuthMiddleware:
    """Authenticates each registry API call; records the registry's
    ``auth_requests_total`` by mechanism (from the header's scheme) and status."""

    def __init__(self, authenticator: Authenticator, metrics: RegistryMetrics) -> None:
        self.authenticator = authenticator
        self.metrics = metrics

    async def __call__(self, authorization: str | None) -> object:
        scheme = (authorization or "").strip().partition(" ")[0].lower()
        async with AuthMiddlewareContext(self.metrics, _SCHEMES.get(scheme, UNKNOWN)):
            if not authorization:
                raise RegistryError("unauthenticated")
            return await self.authenticator(authorization)


class Registry:
    """An MCP server registry and proxy, in memory."""

    def __init__(
        self,
        *,
        backends: Mapping[str, SimulatedMCPServer],
        authenticator: Authenticator | None = None,
        metrics: RegistryMetrics | None = None,
        simulation: Simulation | None = None,
        max_servers: int = 64,
        max_tools_per_server: int = 64,
        max_label_names: int = 200,
    ) -> None:
        self.metrics = metrics or default_metrics
        self.backends = dict(backends)
        self.sim = simulation or Simulation()
        self.max_servers = max_servers
        self.max_tools_per_server = max_tools_per_server
        self.auth = AuthMiddleware(authenticator, self.metrics) if authenticator else None
        self._servers: dict[str, ServerRecord] = {}
        self._ids = itertools.count(1)
        # Names admitted as label values (see BoundedNames): servers, tools, prompts, resources.
        self.server_labels = BoundedNames(max_label_names)
        self.tool_labels = BoundedNames(max_label_names)
        self.prompt_labels = BoundedNames(max_label_names)
        self.resource_labels = BoundedNames(max_label_names)

    # ------------------------------------------------------------------ API entry point

    async def handle(self, authorization: str | None, call: Callable[[], Awaitable[T]]) -> T:
        """Run one API *call* behind the auth middleware (if the registry has one)."""
        if self.auth is not None:
            await self.auth(authorization)
        return await call()

    # ------------------------------------------------------------------ servers

    def _server(self, name: object) -> ServerRecord:
        record = self._servers.get(name) if isinstance(name, str) else None
        if record is None:
            raise RegistryError("unknown_server")
        return record

    @track_registry_operation("create", "server")
    async def register_server(
        self, name: str, url: str, description: str = "", tags: Iterable[str] = ()
    ) -> ServerRecord:
        """Register the MCP server at *url* under *name*; discovers its tools, resources
        and prompts.  Names: lowercase ``[a-z0-9_.-]``, at most 64 characters."""
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise RegistryError("invalid_name")
        if name in self._servers:
            raise RegistryError("already_registered")
        if len(self._servers) >= self.max_servers:
            raise RegistryError("registry_full")
        backend = self.backends.get(url)
        if backend is None:
            raise RegistryError("unreachable")
        record = ServerRecord(name, url, description[:500], tuple(str(t)[:32] for t in tags)[:10])
        sent = 0
        ok = False
        try:
            for method, key in (
                ("initialize", None),
                ("tools/list", "tools"),
                ("resources/list", "resources"),
                ("resources/templates/list", "resourceTemplates"),
                ("prompts/list", "prompts"),
            ):
                sent += 1
                result = await self._rpc(backend, method, {})
                if key is not None:
                    self._absorb(record, key, result.get(key) or [])
            # Checked again after the awaits above, with none between check and insert:
            # a concurrent registration may have won the name or the last free slot.
            if name in self._servers:
                raise RegistryError("already_registered")
            if len(self._servers) >= self.max_servers:
                raise RegistryError("registry_full")
            self._servers[name] = record
            ok = True
        finally:
            # Discovery requests count for the server once it is registered; a failed
            # registration's requests (a lost race included) are labelled "unknown":
            # its name is not admitted.
            label = self.server_labels(name) if ok else UNKNOWN
            for _ in range(sent):
                self.metrics.record_server_request(label)
        return record

    def _absorb(self, record: ServerRecord, key: str, items: list[Any]) -> None:
        names = [i for i in items if isinstance(i, Mapping)]
        if key == "tools":
            for item in names[: self.max_tools_per_server]:
                tool = str(item.get("name", ""))
                if NAME_PATTERN.fullmatch(tool):
                    record.tools[tool] = ToolRecord(
                        record.name, tool, str(item.get("description", ""))[:500]
                    )
        elif key == "resources":
            record.resources = tuple(str(i.get("uri", "")) for i in names[:64])
        elif key == "resourceTemplates":
            record.resource_templates = tuple(str(i.get("uriTemplate", "")) for i in names[:64])
        elif key == "prompts":
            record.prompts = tuple(
                p for p in (str(i.get("name", "")) for i in names[:64]) if NAME_PATTERN.fullmatch(p)
            )

    def tool_names(self, server_name: str) -> list[str]:
        """The registered tool names of *server_name* (not measured; ``[]`` if unknown)."""
        record = self._servers.get(server_name)
        return list(record.tools) if record else []

    @track_registry_operation("delete", "server")
    async def delete_server(self, name: str) -> None:
        """Unregister *name*."""
        self._server(name)
        await self.sim.delay(0.001)
        # Another client may have deleted it during the await: no check-then-del.
        if self._servers.pop(name, None) is None:
            raise RegistryError("unknown_server")

    @track_registry_operation("list", "server")
    async def list_servers(self) -> list[ServerRecord]:
        """Every registered server."""
        await self.sim.delay(0.001)  # the catalogue store
        return list(self._servers.values())

    @track_registry_operation("read", "server")
    async def get_server(self, name: str) -> ServerRecord:
        """One server by name (``unknown_server`` if not registered)."""
        await self.sim.delay(0.0005)
        return self._server(name)

    @track_registry_operation("search", "server")
    async def search_servers(self, query: str) -> list[ServerRecord]:
        """Servers whose name, description or tags contain *query* (case-insensitive)."""
        await self.sim.delay(0.002)
        q = str(query).lower()
        return [
            s
            for s in self._servers.values()
            if q in s.name or q in s.description.lower() or any(q in t for t in s.tags)
        ]

    # ------------------------------------------------------------------ tools

    @track_registry_operation("list", "tool")
    async def list_tools(self, server_name: str | None = None) -> list[ToolRecord]:
        """The tools of one server, or of every server."""
        await self.sim.delay(0.001)
        servers = [self._server(server_name)] if server_name else list(self._servers.values())
        return [tool for s in servers for tool in s.tools.values()]

    @track_registry_operation("read", "tool")
    async def get_tool(self, server_name: str, tool_name: str) -> ToolRecord:
        """Direct lookup of one tool (a discovery with ``source="lookup"``)."""
        async with ToolDiscoveryContext(self.metrics, "lookup") as ctx:
            await self.sim.delay(0.0005)
            tool = self._server(server_name).tools.get(tool_name)
            if tool is None:
                raise RegistryError("unknown_tool")
            ctx.set_tool_name(self.tool_labels(tool.name))
            return tool

    @track_registry_operation("search", "tool")
    async def search_tools(self, query: str) -> list[ToolRecord]:
        """Tools whose name or description contains *query* (a discovery with
        ``source="search"``, labelled ``tool_name="search"``: the query is never a label)."""
        async with ToolDiscoveryContext(self.metrics, "search"):
            await self.sim.delay(0.003)
            q = str(query).lower()
            return [
                tool
                for s in self._servers.values()
                for tool in s.tools.values()
                if q in tool.name or q in tool.description.lower()
            ]

    # ------------------------------------------------------------------ proxy

    async def _rpc(self, backend: SimulatedMCPServer, method: str, params: JSON) -> JSON:
        response = await backend.handle(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        )
        if "error" in response:
            raise RegistryError("rpc_error", str(response["error"].get("message", ""))[:100])
        result: JSON = response.get("result") or {}
        return result

    async def _forward(self, record: ServerRecord, message: Mapping[str, Any]) -> JSON:
        """Send one JSON-RPC message to a registered server: ``mcp_server_requests_total``."""
        backend = self.backends.get(record.url)
        self.metrics.record_server_request(self.server_labels(record.name))
        if backend is None:
            raise RegistryError("unreachable")
        return await backend.handle(message)

    async def proxy_request(self, server_name: str, message: Mapping[str, Any]) -> JSON:
        """Relay a raw JSON-RPC *message* to a registered server and return its response.

        ``tools/call``, ``resources/read`` and ``prompts/get`` messages are also measured
        as tool executions (``method="proxy"``), resource accesses and prompt executions.
        """
        method = message.get("method")
        params = message.get("params") if isinstance(message.get("params"), Mapping) else {}
        assert isinstance(params, Mapping)
        if method == "tools/call":
            return await self._call_tool(server_name, params.get("name"), message, "proxy")
        if method == "resources/read":
            return await self._read(server_name, params.get("uri"), message)
        if method == "prompts/get":
            return await self._prompt(server_name, params.get("name"), message)
        return await self._forward(self._server(server_name), message)

    async def _call_tool(
        self, server_name: str, tool_name: object, message: Mapping[str, Any], method: str
    ) -> JSON:
        async with ToolExecutionContext(self.metrics, method) as ctx:
            record = self._server(server_name)
            ctx.set_server_name(self.server_labels(record.name))
            if not isinstance(tool_name, str) or tool_name not in record.tools:
                raise RegistryError("unknown_tool")
            ctx.set_tool_name(self.tool_labels(tool_name))
            response = await self._forward(record, message)
            if "error" in response or (response.get("result") or {}).get("isError"):
                ctx.set_success(False)
            return response

    async def _read(self, server_name: str, uri: object, message: Mapping[str, Any]) -> JSON:
        async with ResourceAccessContext(self.metrics) as ctx:
            record = self._server(server_name)
            ctx.set_server_name(self.server_labels(record.name))
            matched = record.resource_label(uri) if isinstance(uri, str) else None
            if matched is None:
                raise RegistryError("unknown_resource")
            ctx.set_resource(self.resource_labels(matched))
            response = await self._forward(record, message)
            if "error" in response:
                ctx.set_success(False)
            return response

    async def _prompt(self, server_name: str, name: object, message: Mapping[str, Any]) -> JSON:
        async with PromptExecutionContext(self.metrics) as ctx:
            record = self._server(server_name)
            ctx.set_server_name(self.server_labels(record.name))
            if not isinstance(name, str) or name not in record.prompts:
                raise RegistryError("unknown_prompt")
            ctx.set_prompt_name(self.prompt_labels(name))
            response = await self._forward(record, message)
            if "error" in response:
                ctx.set_success(False)
            return response

    def _message(self, method: str, params: JSON) -> JSON:
        return {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}

    async def execute_tool(
        self, server_name: str, tool_name: str, arguments: Mapping[str, Any] | None = None
    ) -> JSON:
        """Execute a tool (``method="execute"``); raises :class:`RegistryError` if the
        server answers with an error or ``isError``."""
        message = self._message(
            "tools/call", {"name": tool_name, "arguments": dict(arguments or {})}
        )
        response = await self._call_tool(server_name, tool_name, message, "execute")
        return _result(response, "tool_error")

    async def read_resource(self, server_name: str, uri: str) -> JSON:
        """Read a resource of a registered server."""
        response = await self._read(server_name, uri, self._message("resources/read", {"uri": uri}))
        return _result(response, "resource_error")

    async def run_prompt(
        self, server_name: str, prompt_name: str, arguments: Mapping[str, Any] | None = None
    ) -> JSON:
        """Render a prompt of a registered server."""
        message = self._message(
            "prompts/get", {"name": prompt_name, "arguments": dict(arguments or {})}
        )
        response = await self._prompt(server_name, prompt_name, message)
        return _result(response, "prompt_error")


def _result(response: JSON, reason: str) -> JSON:
    if "error" in response:
        raise RegistryError(reason, str(response["error"].get("message", ""))[:100])
    result: JSON = response.get("result") or {}
    if result.get("isError"):
        raise RegistryError(reason)
    return result
