"""Simulated MCP servers: JSON-RPC 2.0 over an in-memory "network".

Each :class:`SimulatedMCPServer` answers the MCP methods the registry uses --
``initialize``, ``ping``, ``tools/list``, ``tools/call``, ``resources/list``,
``resources/templates/list``, ``resources/read``, ``prompts/list``, ``prompts/get`` --
with simulated latency (``anyio.sleep``) and occasional failures, from a
:class:`~services._sim.Simulation`.  :func:`demo_backends` builds the catalogue the
demo registers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services._sim import Simulation

__all__ = (
    "Prompt",
    "Resource",
    "SimulatedMCPServer",
    "Tool",
    "demo_backends",
    "template_matches",
)

JSON = dict[str, Any]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    mean_latency: float = 0.01
    failure_rate: float = 0.03


@dataclass(frozen=True)
class Resource:
    """A static resource (``uri``) or a resource template (``uri`` with ``{params}``)."""

    uri: str
    name: str
    mean_latency: float = 0.004

    @property
    def is_template(self) -> bool:
        return "{" in self.uri


@dataclass(frozen=True)
class Prompt:
    name: str
    description: str
    template: str
    arguments: tuple[str, ...] = ()


def template_matches(template: str, uri: str) -> bool:
    """Whether *uri* is an instance of the RFC 6570 level-1 *template* (``{x}`` = one
    non-empty path segment)."""
    parts = re.split(r"\{[^{}]+\}", template)
    pattern = "[^/?#]+".join(re.escape(p) for p in parts)
    return re.fullmatch(pattern, uri) is not None


@dataclass
class SimulatedMCPServer:
    """One in-memory MCP server."""

    name: str
    tools: tuple[Tool, ...] = ()
    resources: tuple[Resource, ...] = ()
    prompts: tuple[Prompt, ...] = ()
    simulation: Simulation = field(default_factory=Simulation)
    #: When false the server is "down": every request raises ``ConnectionError``.
    up: bool = True

    async def handle(self, request: Mapping[str, Any]) -> JSON:
        """Answer one JSON-RPC request (a response object, never an exception, except
        ``ConnectionError`` when the server is down or the simulated network fails)."""
        sim = self.simulation
        await sim.delay(0.002)  # network round trip
        if not self.up:
            raise ConnectionError(f"MCP server {self.name} is unreachable")
        sim.maybe_fail(f"connection to {self.name}", rate=sim.failure_rate / 3)
        rid = request.get("id")
        method = request.get("method")
        params = request.get("params") or {}
        if not isinstance(params, Mapping):
            return _error(rid, -32602, "params must be an object")
        handler = _HANDLERS.get(method) if isinstance(method, str) else None
        if handler is None:
            return _error(rid, -32601, "method not found")
        try:
            result = await handler(self, params)
        except _RPCError as exc:
            return _error(rid, exc.code, exc.message)
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    async def _initialize(self, params: Mapping[str, Any]) -> JSON:
        return {
            "protocolVersion": "2025-06-18",
            "serverInfo": {"name": self.name, "version": "1.0"},
            "capabilities": {"tools": {}, "resources": {}, "prompts": {}},
        }

    async def _ping(self, params: Mapping[str, Any]) -> JSON:
        return {}

    async def _tools_list(self, params: Mapping[str, Any]) -> JSON:
        return {"tools": [{"name": t.name, "description": t.description} for t in self.tools]}

    async def _tools_call(self, params: Mapping[str, Any]) -> JSON:
        tool = next((t for t in self.tools if t.name == params.get("name")), None)
        if tool is None:
            raise _RPCError(-32602, "unknown tool")
        await self.simulation.delay(tool.mean_latency)
        if self.simulation.fails(tool.failure_rate):
            return {"content": [{"type": "text", "text": "tool failed"}], "isError": True}
        args = params.get("arguments") or {}
        text = f"{tool.name} ok ({len(args) if isinstance(args, Mapping) else 0} arguments)"
        return {"content": [{"type": "text", "text": text}], "isError": False}

    async def _resources_list(self, params: Mapping[str, Any]) -> JSON:
        return {
            "resources": [
                {"uri": r.uri, "name": r.name} for r in self.resources if not r.is_template
            ]
        }

    async def _templates_list(self, params: Mapping[str, Any]) -> JSON:
        return {
            "resourceTemplates": [
                {"uriTemplate": r.uri, "name": r.name} for r in self.resources if r.is_template
            ]
        }

    async def _resources_read(self, params: Mapping[str, Any]) -> JSON:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise _RPCError(-32602, "uri must be a string")
        for resource in self.resources:
            if resource.uri == uri or (
                resource.is_template and template_matches(resource.uri, uri)
            ):
                await self.simulation.delay(resource.mean_latency)
                if self.simulation.fails():
                    raise _RPCError(-32603, "resource backend failed")
                return {"contents": [{"uri": uri, "mimeType": "text/plain", "text": "..."}]}
        raise _RPCError(-32002, "resource not found")

    async def _prompts_list(self, params: Mapping[str, Any]) -> JSON:
        return {
            "prompts": [
                {"name": p.name, "description": p.description, "arguments": list(p.arguments)}
                for p in self.prompts
            ]
        }

    async def _prompts_get(self, params: Mapping[str, Any]) -> JSON:
        prompt = next((p for p in self.prompts if p.name == params.get("name")), None)
        if prompt is None:
            raise _RPCError(-32602, "unknown prompt")
        args = params.get("arguments") or {}
        if not isinstance(args, Mapping) or any(a not in args for a in prompt.arguments):
            raise _RPCError(-32602, "missing prompt arguments")
        await self.simulation.delay(0.006)
        text = prompt.template.format_map({a: str(args[a])[:200] for a in prompt.arguments})
        return {"messages": [{"role": "user", "content": {"type": "text", "text": text}}]}


class _RPCError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _error(rid: object, code: int, message: str) -> JSON:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


_HANDLERS = {
    "initialize": SimulatedMCPServer._initialize,
    "ping": SimulatedMCPServer._ping,
    "tools/list": SimulatedMCPServer._tools_list,
    "tools/call": SimulatedMCPServer._tools_call,
    "resources/list": SimulatedMCPServer._resources_list,
    "resources/templates/list": SimulatedMCPServer._templates_list,
    "resources/read": SimulatedMCPServer._resources_read,
    "prompts/list": SimulatedMCPServer._prompts_list,
    "prompts/get": SimulatedMCPServer._prompts_get,
}


def demo_backends(simulation: Simulation) -> dict[str, SimulatedMCPServer]:
    """The demo's MCP servers, by URL (``mem://<name>``)."""
    servers = [
        SimulatedMCPServer(
            "weather",
            tools=(
                Tool("get_forecast", "Forecast for a city", 0.02),
                Tool("get_alerts", "Weather alerts for a region", 0.01),
            ),
            resources=(
                Resource("weather://stations", "Station list"),
                Resource("weather://{city}/current", "Current conditions"),
            ),
            prompts=(
                Prompt("daily_briefing", "Morning briefing", "Weather for {city}", ("city",)),
            ),
            simulation=simulation,
        ),
        SimulatedMCPServer(
            "files",
            tools=(
                Tool("read_file", "Read a file", 0.005),
                Tool("write_file", "Write a file", 0.008, 0.05),
                Tool("search_files", "Grep the tree", 0.03),
            ),
            resources=(
                Resource("file:///README.md", "Readme"),
                Resource("file:///docs/{page}", "Documentation page"),
            ),
            prompts=(Prompt("summarize", "Summarize a file", "Summarize {path}", ("path",)),),
            simulation=simulation,
        ),
        SimulatedMCPServer(
            "github",
            tools=(
                Tool("create_issue", "Open an issue", 0.04, 0.06),
                Tool("list_pull_requests", "List open pull requests", 0.025),
            ),
            resources=(Resource("github://repos/{owner}/{repo}", "Repository"),),
            prompts=(
                Prompt("review_pr", "Review a pull request", "Review PR #{number}", ("number",)),
            ),
            simulation=simulation,
        ),
        SimulatedMCPServer(
            "database",
            tools=(
                Tool("run_query", "Run a read-only SQL query", 0.05, 0.04),
                Tool("describe_table", "Describe a table", 0.01),
            ),
            resources=(
                Resource("postgres://analytics/schema", "Schema"),
                Resource("postgres://analytics/tables/{table}", "Table"),
            ),
            prompts=(Prompt("explain_query", "Explain a query plan", "Explain {sql}", ("sql",)),),
            simulation=simulation,
        ),
    ]
    return {f"mem://{s.name}": s for s in servers}
