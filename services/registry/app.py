"""The MCP registry as an ASGI app (Starlette): its HTTP API over :class:`Registry`.

Every API endpoint runs behind the registry's auth middleware
(:meth:`Registry.handle`, which records ``auth_requests_total``), authenticating the
request's ``Authorization`` header against the auth server over HTTP
(:class:`AuthServerAuthenticator`: ``POST <auth server>/authenticate``); then it calls
one operation of the core, which records the domain metrics as in process.

===============================================  =====================================
endpoint                                         core operation
===============================================  =====================================
``POST /servers``  (name, url, description, tags)  ``register_server``
``GET /servers``, ``GET /servers/{name}``          ``list_servers``, ``get_server``
``DELETE /servers/{name}``                         ``delete_server``
``GET /search/servers?q=``                         ``search_servers``
``GET /tools?server=``                             ``list_tools``
``GET /servers/{server}/tools/{tool}``             ``get_tool``
``GET /search/tools?q=``                           ``search_tools``
``POST /servers/{server}/tools/{tool}/call``       ``execute_tool`` (body: arguments)
``POST /servers/{server}/resources/read``          ``read_resource`` (body: uri)
``POST /servers/{server}/prompts/{prompt}``        ``run_prompt`` (body: arguments)
``POST /servers/{server}/mcp``                     ``proxy_request`` (body: JSON-RPC)
===============================================  =====================================

Failures answer ``{"error": reason}`` with the core's reason: 401 ``unauthenticated``
(503 ``auth_unavailable`` when the auth server cannot answer), 404 ``unknown_*``, 409
``already_registered`` / ``registry_full``, 400 ``invalid_name`` and bad requests, 502
when an MCP server fails or answers an error.  Plus ``/metrics`` (Prometheus, on this
port) and ``/healthz``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from otel_aspects.exposition import metrics_app
from services._http import (
    BadRequest,
    add_http_metrics,
    error,
    lifespan,
    read_json,
    text,
    upstream_failure,
)
from services._sim import SimulatedFailure
from services.registry.core.registry import Registry, RegistryError, ServerRecord
from services.registry.utils.otel_metrics import SERVICE_NAME

__all__ = ("STATUS_BY_REASON", "AuthServerAuthenticator", "create_app", "server_json")

STATUS_BY_REASON = {
    "unauthenticated": 401,
    "auth_unavailable": 503,
    "unknown_server": 404,
    "unknown_tool": 404,
    "unknown_resource": 404,
    "unknown_prompt": 404,
    "already_registered": 409,
    "registry_full": 409,
    "invalid_name": 400,
}

Endpoint = Callable[[Request], Awaitable[Response]]


class AuthServerAuthenticator:
    """The registry's authenticator: ``POST <base_url>/authenticate`` with the header.

    :meth:`open` / :meth:`close` (the app's lifespan) hold one ``httpx.AsyncClient``
    (a connection pool) for every request.  A 401 is ``RegistryError("unauthenticated")``;
    no answer, or another status, ``RegistryError("auth_unavailable")``.
    """

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __call__(self, authorization: str) -> object:
        if self._client is None:
            raise RegistryError("auth_unavailable", "authenticator not opened")
        try:
            response = await self._client.post(
                "/authenticate", headers={"authorization": authorization}
            )
        except httpx.HTTPError as exc:
            raise RegistryError("auth_unavailable", type(exc).__name__) from None
        if response.status_code == 401:
            raise RegistryError("unauthenticated")
        if response.status_code != 200:
            raise RegistryError("auth_unavailable", f"HTTP {response.status_code}")
        principal: object = response.json()
        return principal


def server_json(record: ServerRecord) -> dict[str, Any]:
    """A server as JSON: name, url, description, tags, tools (by name), resources, prompts."""
    return asdict(record)


def _arguments(body: dict[str, Any]) -> dict[str, Any]:
    arguments = body.get("arguments", {})
    if not isinstance(arguments, dict):
        raise BadRequest("arguments must be an object")
    return arguments


def create_app(
    registry: Registry,
    *,
    authenticator: AuthServerAuthenticator | None = None,
    set_up_metrics: bool = True,
) -> Starlette:
    """The HTTP app over *registry* (whose ``authenticator`` is *authenticator*, opened and
    closed by the app's lifespan).  The lifespan calls ``setup_metrics("registry",
    prometheus_server=False)`` unless *set_up_metrics* is false."""

    def api(call: Callable[[Request], Awaitable[Any]], status: int = 200) -> Endpoint:
        """One API endpoint: behind the auth middleware, the core's errors as responses."""

        async def run(request: Request) -> Response:
            try:
                result = await registry.handle(
                    request.headers.get("authorization"), lambda: call(request)
                )
            except RegistryError as exc:
                return error(exc.reason, STATUS_BY_REASON.get(exc.reason, 502))
            except BadRequest:
                return error("bad_request", 400)
            except (SimulatedFailure, ConnectionError) as exc:
                return upstream_failure(exc)
            return JSONResponse(result, status_code=status)

        return run

    async def register(request: Request) -> Any:
        body = await read_json(request)
        tags = body.get("tags", [])
        if not isinstance(tags, list):
            raise BadRequest("tags must be a list")
        record = await registry.register_server(
            text(body, "name"),
            text(body, "url"),
            description=text(body, "description", ""),
            tags=[str(t) for t in tags],
        )
        return server_json(record)

    async def list_servers(request: Request) -> Any:
        return [server_json(s) for s in await registry.list_servers()]

    async def get_server(request: Request) -> Any:
        return server_json(await registry.get_server(request.path_params["name"]))

    async def delete_server(request: Request) -> Any:
        await registry.delete_server(request.path_params["name"])
        return {"deleted": True}

    async def search_servers(request: Request) -> Any:
        found = await registry.search_servers(request.query_params.get("q", ""))
        return [server_json(s) for s in found]

    async def list_tools(request: Request) -> Any:
        tools = await registry.list_tools(request.query_params.get("server") or None)
        return [asdict(t) for t in tools]

    async def get_tool(request: Request) -> Any:
        p = request.path_params
        return asdict(await registry.get_tool(p["server"], p["tool"]))

    async def search_tools(request: Request) -> Any:
        return [asdict(t) for t in await registry.search_tools(request.query_params.get("q", ""))]

    async def execute_tool(request: Request) -> Any:
        p, body = request.path_params, await read_json(request)
        return await registry.execute_tool(p["server"], p["tool"], _arguments(body))

    async def read_resource(request: Request) -> Any:
        body = await read_json(request)
        return await registry.read_resource(request.path_params["server"], text(body, "uri"))

    async def run_prompt(request: Request) -> Any:
        p, body = request.path_params, await read_json(request)
        return await registry.run_prompt(p["server"], p["prompt"], _arguments(body))

    async def proxy(request: Request) -> Any:
        return await registry.proxy_request(request.path_params["server"], await read_json(request))

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": SERVICE_NAME})

    routes = [
        Route("/servers", api(register, 201), methods=["POST"]),
        Route("/servers", api(list_servers), methods=["GET"]),
        Route("/servers/{name}", api(get_server), methods=["GET"]),
        Route("/servers/{name}", api(delete_server), methods=["DELETE"]),
        Route("/search/servers", api(search_servers), methods=["GET"]),
        Route("/tools", api(list_tools), methods=["GET"]),
        Route("/servers/{server}/tools/{tool}", api(get_tool), methods=["GET"]),
        Route("/search/tools", api(search_tools), methods=["GET"]),
        Route("/servers/{server}/tools/{tool}/call", api(execute_tool), methods=["POST"]),
        Route("/servers/{server}/resources/read", api(read_resource), methods=["POST"]),
        Route("/servers/{server}/prompts/{prompt}", api(run_prompt), methods=["POST"]),
        Route("/servers/{server}/mcp", api(proxy), methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_app()),  # a Route, not a Mount: no redirect to /metrics/
    ]
    metrics_lifespan = lifespan(SERVICE_NAME) if set_up_metrics else None

    @asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[None]:
        if authenticator is not None:
            await authenticator.open()
        try:
            if metrics_lifespan is None:
                yield
            else:
                async with metrics_lifespan(app):
                    yield
        finally:
            if authenticator is not None:
                await authenticator.close()

    app = Starlette(routes=routes, lifespan=run)
    add_http_metrics(app, registry.metrics.client)
    return app
