"""HTTP clients of the two services, with the method names of their cores.

:class:`AuthClient` and :class:`RegistryClient` call the HTTP APIs of
:mod:`services.auth_server.app` and :mod:`services.registry.app` (one shared
``httpx.AsyncClient`` each) and answer what the in-process cores answer: the same
dataclasses (:class:`Principal`, :class:`TokenPair`; JSON for servers and tools) and
the same exceptions, raised from the ``{"error": reason}`` bodies -- ``AuthError`` /
``RegistryError`` with the reason, ``SimulatedFailure`` for a 502 (a dependency of the
service failed).  So :mod:`services.workload` drives either form with one code path.
Any other answer (a 500, a body that is not the API's) raises ``httpx.HTTPStatusError``
or ``ValueError``: a bug, never swallowed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx

from services._sim import SimulatedFailure
from services.auth_server.core.service import AuthError, Principal, TokenPair
from services.registry.core.registry import RegistryError

__all__ = ("AUTH_FAILURES", "AuthClient", "RegistryClient", "RemotePrincipal")

T = TypeVar("T")
JSON = dict[str, Any]

#: The registry's reasons for refusing a call at its auth middleware.
AUTH_FAILURES = frozenset({"unauthenticated", "auth_unavailable"})


@dataclass(frozen=True)
class RemotePrincipal(Principal):
    """A principal the auth server authenticated, with its ticket (the proof of it)."""

    ticket: str = ""


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        response.raise_for_status()
        raise
    reason = body.get("error") if isinstance(body, dict) else None
    if not isinstance(reason, str):
        response.raise_for_status()
        raise ValueError(f"HTTP {response.status_code} without an error reason")
    return reason


def _ok(response: httpx.Response, error: Callable[[str], Exception]) -> Any:
    """The JSON body of a 2xx answer; else the exception its reason maps to."""
    if response.is_success:
        return response.json()
    if response.status_code >= 500 and response.status_code not in (502, 503):
        response.raise_for_status()  # a bug in the service: surfaces
    reason = _reason(response)
    if response.status_code == 502:
        raise SimulatedFailure(reason)
    raise error(reason)


class AuthClient:
    """The auth server over HTTP, answering as its core
    (:class:`~services.auth_server.core.service.AuthServer`)."""

    def __init__(self, client: httpx.AsyncClient, idp_name: str = "example-idp") -> None:
        self.http = client
        self.idp = _IdentityProvider(client, idp_name)

    async def _post(self, path: str, body: JSON, headers: Mapping[str, str] | None = None) -> Any:
        return _ok(await self.http.post(path, json=body, headers=headers), AuthError)

    async def authenticate(self, authorization: str) -> RemotePrincipal:
        body = _ok(
            await self.http.post("/authenticate", headers={"authorization": authorization}),
            AuthError,
        )
        return RemotePrincipal(
            body["subject"], tuple(body["scopes"]), body["mechanism"], body["ticket"]
        )

    async def generate_token(
        self, principal: Principal, scopes: Iterable[str] | None = None
    ) -> TokenPair:
        ticket = principal.ticket if isinstance(principal, RemotePrincipal) else ""
        wanted = None if scopes is None else list(scopes)
        return TokenPair(**await self._post("/tokens", {"ticket": ticket, "scopes": wanted}))

    async def refresh_token(self, refresh_token: str) -> TokenPair:
        return TokenPair(**await self._post("/tokens/refresh", {"refresh_token": refresh_token}))

    async def revoke_token(self, token: str) -> None:
        await self._post("/tokens/revoke", {"token": token})

    async def create_session(self, principal: Principal) -> str:
        ticket = principal.ticket if isinstance(principal, RemotePrincipal) else ""
        session_id: str = (await self._post("/sessions", {"ticket": ticket}))["session_id"]
        return session_id

    async def validate_session(self, session_id: str) -> Principal:
        body = await self._post("/sessions/validate", {"session_id": session_id})
        return Principal(body["subject"], tuple(body["scopes"]), body["mechanism"])

    async def end_session(self, session_id: str) -> bool:
        ended: bool = (await self._post("/sessions/end", {"session_id": session_id}))["ended"]
        return ended

    async def oauth_authorize(self, provider: str) -> str:
        response = await self.http.get("/oauth/authorize", params={"provider": provider})
        if response.status_code == 302:
            return response.headers["location"]
        _ok(response, AuthError)
        raise ValueError(f"/oauth/authorize answered {response.status_code} without a redirect")

    async def oauth_callback(
        self, provider: str, *, state: str, code: str | None = None, error: str | None = None
    ) -> str:
        params = {"provider": provider, "state": state}
        params.update({k: v for k, v in (("code", code), ("error", error)) if v is not None})
        response = await self.http.get("/oauth/callback", params=params)
        session_id: str = _ok(response, AuthError)["session_id"]
        return session_id

    def callback_params(self, redirect_url: str) -> dict[str, str]:
        """The ``code``/``state``/``error`` query parameters of a provider's redirect."""
        query = parse_qs(urlsplit(redirect_url).query)
        return {k: v[0] for k, v in query.items() if k in ("code", "state", "error") and v}


class _IdentityProvider:
    """The simulated identity provider's login page, served by the auth server."""

    def __init__(self, client: httpx.AsyncClient, name: str) -> None:
        self.http = client
        self.name = name

    async def login(self, authorization_url: str, username: str, password: str) -> str:
        body = {"url": authorization_url, "username": username, "password": password}
        redirect: str = _ok(await self.http.post("/idp/login", json=body), AuthError)["redirect"]
        return redirect


_HEADER: ContextVar[str | None] = ContextVar("registry_authorization", default=None)


class RegistryClient:
    """The registry over HTTP, as :class:`~services.registry.core.registry.Registry`.

    :meth:`handle` sends the calls it runs with its ``Authorization`` header; a call
    the registry's auth middleware refuses raises ``RegistryError`` with a reason in
    :data:`AUTH_FAILURES`.  :meth:`tool_names` answers from the servers this client
    registered (the registration's answer lists their tools), as the core does, unmeasured.
    """

    #: The auth middleware runs in another process: a caller cannot see the moment it
    #: lets a call through, only whether it did (``services.workload.through_registry``).
    remote = True

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.http = client
        self._tools: dict[str, list[str]] = {}

    async def handle(self, authorization: str | None, call: Callable[[], Awaitable[T]]) -> T:
        token = _HEADER.set(authorization)
        try:
            return await call()
        finally:
            _HEADER.reset(token)

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        header = _HEADER.get()
        headers = {"authorization": header} if header else {}
        response = await self.http.request(method, path, headers=headers, **kwargs)
        return _ok(response, RegistryError)

    async def register_server(
        self, name: str, url: str, description: str = "", tags: Iterable[str] = ()
    ) -> JSON:
        body = {"name": name, "url": url, "description": description, "tags": list(tags)}
        record: JSON = await self._call("POST", "/servers", json=body)
        self._tools[name] = list(record.get("tools") or {})
        return record

    async def delete_server(self, name: str) -> None:
        await self._call("DELETE", f"/servers/{name}")
        self._tools.pop(name, None)

    def tool_names(self, server_name: str) -> list[str]:
        return list(self._tools.get(server_name, []))

    async def list_servers(self) -> list[JSON]:
        servers: list[JSON] = await self._call("GET", "/servers")
        return servers

    async def get_server(self, name: str) -> JSON:
        server: JSON = await self._call("GET", f"/servers/{name}")
        return server

    async def search_servers(self, query: str) -> list[JSON]:
        found: list[JSON] = await self._call("GET", "/search/servers", params={"q": query})
        return found

    async def list_tools(self, server_name: str | None = None) -> list[JSON]:
        params = {"server": server_name} if server_name else {}
        tools: list[JSON] = await self._call("GET", "/tools", params=params)
        return tools

    async def get_tool(self, server_name: str, tool_name: str) -> JSON:
        tool: JSON = await self._call("GET", f"/servers/{server_name}/tools/{tool_name}")
        return tool

    async def search_tools(self, query: str) -> list[JSON]:
        found: list[JSON] = await self._call("GET", "/search/tools", params={"q": query})
        return found

    async def execute_tool(
        self, server_name: str, tool_name: str, arguments: Mapping[str, Any] | None = None
    ) -> JSON:
        path = f"/servers/{server_name}/tools/{tool_name}/call"
        result: JSON = await self._call("POST", path, json={"arguments": dict(arguments or {})})
        return result

    async def proxy_request(self, server_name: str, message: Mapping[str, Any]) -> JSON:
        response: JSON = await self._call("POST", f"/servers/{server_name}/mcp", json=message)
        return response

    async def read_resource(self, server_name: str, uri: str) -> JSON:
        path = f"/servers/{server_name}/resources/read"
        result: JSON = await self._call("POST", path, json={"uri": uri})
        return result

    async def run_prompt(
        self, server_name: str, prompt_name: str, arguments: Mapping[str, Any] | None = None
    ) -> JSON:
        path = f"/servers/{server_name}/prompts/{prompt_name}"
        result: JSON = await self._call("POST", path, json={"arguments": dict(arguments or {})})
        return result
