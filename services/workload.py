"""A concurrent workload against both services, shared by the demo and the tests.

:func:`build_world` wires an :class:`~services.auth_server.core.service.AuthServer` and
a :class:`~services.registry.core.registry.Registry` (whose auth middleware calls the
auth server) with the demo's simulated MCP servers.  :func:`run_workload` runs simulated
clients in an anyio task group until a deadline (or an operation budget): each client
first runs every operation once (so every metric of both tables gets data), then picks
operations at random with a seeded ``random.Random`` -- including some bad input
(wrong passwords, unknown tools, forged tokens) so failures show up too.
"""

from __future__ import annotations

import functools
import random
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from services._sim import SimulatedFailure, Simulation
from services.auth_server.core.service import (
    AuthError,
    AuthServer,
    Principal,
    SimulatedIdentityProvider,
    TokenPair,
    basic_header,
)
from services.auth_server.utils.otel_metrics import AuthServerMetrics
from services.registry.core.mcp import demo_backends
from services.registry.core.registry import Registry, RegistryError
from services.registry.utils.otel_metrics import RegistryMetrics

__all__ = ("OPERATIONS", "Stats", "World", "build_world", "run_workload")

#: Errors the services raise by design; anything else is a bug and propagates.
EXPECTED_ERRORS = (AuthError, RegistryError, SimulatedFailure, ConnectionError)

USERS = {"alice": "correct horse", "bob": "battery staple", "carol": "tr0ub4dor&3"}
SERVERS = ("weather", "files", "github", "database")
RESOURCES = {
    "weather": ("weather://stations", "weather://paris/current", "weather://oslo/current"),
    "files": ("file:///README.md", "file:///docs/install", "file:///docs/usage"),
    "github": ("github://repos/octo/demo", "github://repos/acme/api"),
    "database": ("postgres://analytics/schema", "postgres://analytics/tables/events"),
}
PROMPTS: dict[str, tuple[str, dict[str, object]]] = {
    "weather": ("daily_briefing", {"city": "Paris"}),
    "files": ("summarize", {"path": "README.md"}),
    "github": ("review_pr", {"number": 42}),
    "database": ("explain_query", {"sql": "select 1"}),
}


@dataclass
class Stats:
    """Operations done and failed, in total and per operation."""

    ops: int = 0
    errors: int = 0
    by_op: Counter[str] = field(default_factory=Counter)
    errors_by_op: Counter[str] = field(default_factory=Counter)


@dataclass
class World:
    auth: AuthServer
    registry: Registry
    api_keys: dict[str, str]
    rng: random.Random


async def build_world(
    *,
    seed: int | None = None,
    latency_scale: float = 1.0,
    failure_rate: float = 0.03,
    registry_metrics: RegistryMetrics | None = None,
    auth_metrics: AuthServerMetrics | None = None,
    password_iterations: int = 2_000,
) -> World:
    """Both services, wired, with users, API keys and the four demo MCP servers
    registered.  *password_iterations* is low for the demo's speed (production: 600k)."""
    rng = random.Random(seed)
    sim = Simulation(rng.randrange(2**32), latency_scale, failure_rate)
    idp = SimulatedIdentityProvider(users=dict(USERS), simulation=sim)
    auth = AuthServer(
        metrics=auth_metrics,
        simulation=sim,
        identity_provider=idp,
        password_iterations=password_iterations,
        max_sessions_per_subject=8,
    )
    for user, password in USERS.items():
        auth.add_user(user, password, scopes=("read", "write"))
    api_keys = {owner: auth.create_api_key(owner, ("read",)) for owner in ("ci-bot", "indexer")}
    registry = Registry(
        backends=demo_backends(sim),
        authenticator=auth.authenticate,
        metrics=registry_metrics,
        simulation=sim,
    )
    admin = api_keys["ci-bot"]
    for name in SERVERS:
        for _attempt in range(5):  # registration may hit a simulated failure
            try:
                await registry.handle(
                    f"ApiKey {admin}",
                    functools.partial(
                        registry.register_server,
                        name,
                        f"mem://{name}",
                        description=f"{name} MCP server",
                        tags=(name, "demo"),
                    ),
                )
                break
            except EXPECTED_ERRORS:
                continue
    return World(auth, registry, api_keys, rng)


class _Client:
    """One simulated user: logs in, keeps tokens and a session, calls both services."""

    def __init__(self, world: World, rng: random.Random, user: str) -> None:
        self.w = world
        self.rng = rng
        self.user = user
        self.tokens: TokenPair | None = None
        self.session: str | None = None
        self.principal: Principal | None = None

    def _server(self) -> str:
        return self.rng.choice(SERVERS)

    async def _header(self) -> str:
        """An Authorization header for the registry: mostly the bearer token."""
        roll = self.rng.random()
        if roll < 0.15:
            return "ApiKey " + self.rng.choice(list(self.w.api_keys.values()))
        if roll < 0.18:
            return "Bearer " + secrets.token_urlsafe(20)  # a forged token
        if self.tokens is None:
            await self.login()
        assert self.tokens is not None
        return "Bearer " + self.tokens.access_token

    async def _reg(self, call: Callable[[], Awaitable[object]]) -> None:
        await self.w.registry.handle(await self._header(), call)

    # ------------------------------------------------------------ auth server operations

    async def login(self) -> None:
        password = USERS[self.user] if self.rng.random() > 0.05 else "wrong password"
        self.principal = await self.w.auth.authenticate(basic_header(self.user, password))
        self.tokens = await self.w.auth.generate_token(self.principal)

    async def api_key_auth(self) -> None:
        key = self.rng.choice(list(self.w.api_keys.values()))
        if self.rng.random() < 0.05:
            key = "ak_" + secrets.token_urlsafe(32)
        await self.w.auth.authenticate(f"ApiKey {key}")

    async def generate_scoped(self) -> None:
        if self.principal is None:
            await self.login()
        assert self.principal is not None
        scopes = ("read",) if self.rng.random() > 0.1 else ("admin",)
        await self.w.auth.generate_token(self.principal, scopes)

    async def refresh(self) -> None:
        if self.tokens is None:
            await self.login()
        assert self.tokens is not None
        self.tokens = await self.w.auth.refresh_token(self.tokens.refresh_token)

    async def revoke(self) -> None:
        if self.tokens is None:
            await self.login()
        assert self.tokens is not None
        token, self.tokens = self.tokens.access_token, None
        if self.rng.random() < 0.1:
            token = token[:-4] + "AAAA"  # tampered: the revocation fails
        await self.w.auth.revoke_token(token)

    async def session_login(self) -> None:
        principal = await self.w.auth.authenticate(basic_header(self.user, USERS[self.user]))
        if self.session is not None and self.rng.random() < 0.7:
            self.w.auth.end_session(self.session)
        self.session = await self.w.auth.create_session(principal)

    async def validate_session(self) -> None:
        if self.session is None:
            await self.session_login()
        assert self.session is not None
        session = self.session if self.rng.random() > 0.05 else secrets.token_urlsafe(32)
        await self.w.auth.validate_session(session)

    async def oauth_flow(self) -> None:
        auth = self.w.auth
        provider = auth.idp.name if self.rng.random() > 0.03 else "no-such-provider"
        url = await auth.oauth_authorize(provider)
        await anyio.sleep(0.0)  # the browser follows the redirect
        password = USERS[self.user] if self.rng.random() > 0.05 else "guess"
        redirect = await auth.idp.login(url, self.user, password)
        params = auth.callback_params(redirect)
        session = await auth.oauth_callback(
            provider,
            state=params.get("state", ""),
            code=params.get("code"),
            error=params.get("error"),
        )
        auth.end_session(session)

    # ------------------------------------------------------------ registry operations

    async def list_servers(self) -> None:
        await self._reg(self.w.registry.list_servers)

    async def get_server(self) -> None:
        name = self._server() if self.rng.random() > 0.05 else "no-such-server"
        await self._reg(lambda: self.w.registry.get_server(name))

    async def search_servers(self) -> None:
        query = self.rng.choice(("wea", "file", "demo", "git", "zzz"))
        await self._reg(lambda: self.w.registry.search_servers(query))

    async def list_tools(self) -> None:
        server = self._server() if self.rng.random() > 0.5 else None
        await self._reg(lambda: self.w.registry.list_tools(server))

    async def get_tool(self) -> None:
        server = self._server()
        tools = self.w.registry.tool_names(server)
        tool = self.rng.choice(tools) if tools and self.rng.random() > 0.05 else "no_such_tool"
        await self._reg(lambda: self.w.registry.get_tool(server, tool))

    async def search_tools(self) -> None:
        query = self.rng.choice(("read", "issue", "query", "forecast", "nothing"))
        await self._reg(lambda: self.w.registry.search_tools(query))

    def _tool(self, server: str) -> str:
        tools = self.w.registry.tool_names(server)
        return self.rng.choice(tools) if tools and self.rng.random() > 0.03 else "no_such_tool"

    async def execute_tool(self) -> None:
        server = self._server()
        tool = self._tool(server)
        await self._reg(lambda: self.w.registry.execute_tool(server, tool, {"q": "x"}))

    async def proxy_call(self) -> None:
        server = self._server()
        tool = self._tool(server)
        message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool}}
        await self._reg(lambda: self.w.registry.proxy_request(server, message))

    async def proxy_ping(self) -> None:
        server = self._server()
        message = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        await self._reg(lambda: self.w.registry.proxy_request(server, message))

    async def read_resource(self) -> None:
        server = self._server()
        uri = self.rng.choice(RESOURCES[server])
        if self.rng.random() < 0.05:
            uri = f"file:///tmp/{secrets.token_hex(6)}"  # not a resource of the server
        await self._reg(lambda: self.w.registry.read_resource(server, uri))

    async def run_prompt(self) -> None:
        server = self._server()
        name, args = PROMPTS[server]
        await self._reg(lambda: self.w.registry.run_prompt(server, name, args))

    async def register_cycle(self) -> None:
        name = f"scratch-{self.rng.randrange(4)}"
        url = f"mem://{self._server()}" if self.rng.random() > 0.1 else "mem://offline"
        registry = self.w.registry
        header = "ApiKey " + self.w.api_keys["ci-bot"]
        await registry.handle(header, lambda: registry.register_server(name, url))
        await registry.handle(header, lambda: registry.delete_server(name))


#: Operation name -> weight.
OPERATIONS: dict[str, int] = {
    "login": 4,
    "api_key_auth": 4,
    "generate_scoped": 3,
    "refresh": 3,
    "revoke": 2,
    "session_login": 2,
    "validate_session": 8,
    "oauth_flow": 2,
    "list_servers": 4,
    "get_server": 4,
    "search_servers": 3,
    "list_tools": 4,
    "get_tool": 5,
    "search_tools": 5,
    "execute_tool": 12,
    "proxy_call": 5,
    "proxy_ping": 3,
    "read_resource": 8,
    "run_prompt": 5,
    "register_cycle": 1,
}


async def run_workload(
    world: World,
    *,
    clients: int = 8,
    duration: float = 8.0,
    max_ops: int | None = None,
    seed: int | None = None,
    stats: Stats | None = None,
    think_time: float = 0.002,
) -> Stats:
    """Run *clients* simulated clients until *duration* seconds have passed (or
    *max_ops* operations are done); returns the :class:`Stats` (also updated live in
    *stats*, for progress reports)."""
    stats = stats or Stats()
    deadline = time.monotonic() + duration
    names = list(OPERATIONS)
    weights = list(OPERATIONS.values())
    users = list(USERS)

    def budget_left() -> bool:
        return time.monotonic() < deadline and (max_ops is None or stats.ops < max_ops)

    async def client(index: int) -> None:
        rng = random.Random(None if seed is None else seed * 1000 + index)
        c = _Client(world, rng, users[index % len(users)])
        plan = iter(names if index == 0 else [])  # client 0 starts with every operation once
        while budget_left():
            op = next(plan, None) or rng.choices(names, weights)[0]
            try:
                await getattr(c, op)()
            except EXPECTED_ERRORS:
                stats.errors += 1
                stats.errors_by_op[op] += 1
            stats.ops += 1
            stats.by_op[op] += 1
            await anyio.sleep(rng.expovariate(1 / think_time) if think_time > 0 else 0)

    async with anyio.create_task_group() as tg:
        for i in range(clients):
            tg.start_soon(client, i)
    return stats
