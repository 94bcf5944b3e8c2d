"""A concurrent workload against both services, shared by the demo and the tests.

:func:`build_world` wires an :class:`~services.auth_server.core.service.AuthServer` and
a :class:`~services.registry.core.registry.Registry` (whose auth middleware calls the
auth server) with the demo's simulated MCP servers.  :func:`run_workload` runs simulated
clients in an anyio task group until a deadline (or an operation budget): each client
first runs every operation once (so every metric of both tables gets data), then picks
operations at random with a seeded ``random.Random`` -- including some bad input
(wrong passwords, unknown tools, forged tokens) so failures show up too.

The same clients drive the services over HTTP (:func:`http_world`: the services'
ASGI apps, reached through :mod:`services._clients`, whose methods and exceptions are
the cores'), as ``python -m services.demo`` does.

The workload counts what it did itself, in a :class:`Tally` (``World.tally``): per
metric and label set the calls it made and how each ended, and for duration histograms
how long each call took as seen from outside -- without any metrics reader.  The
end-to-end tests compare what Prometheus and an OTLP receiver got with that count.
"""

from __future__ import annotations

import functools
import inspect
import random
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeVar

import anyio

from services._clients import AUTH_FAILURES, AuthClient, RegistryClient
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

__all__ = (
    "COUNTED",
    "OPERATIONS",
    "Stats",
    "Tally",
    "World",
    "build_world",
    "demo_accounts",
    "http_world",
    "run_workload",
)

T = TypeVar("T")

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


REGISTRY, AUTH = "registry", "auth_server"  # the services' meter (scope) names

#: The instruments of each counted domain: a counter, and its histogram when it has one.
REGISTRY_OP = ("registry_operations_total", "registry_operation_duration_seconds")
DISCOVERY = ("mcp_tool_discovery_total", "mcp_tool_discovery_duration_seconds")
EXECUTION = ("mcp_tool_execution_total", "mcp_tool_execution_duration_seconds")
AUTH_REQUEST = ("auth_requests_total", "auth_request_duration_seconds")
MIDDLEWARE = ("auth_requests_total",)
TOKEN_GENERATION = ("token_generations_total", "token_generation_duration_seconds")
SESSION_VALIDATION = ("session_validations_total", "session_validation_duration_seconds")

#: (scope, metric) pairs the :class:`Tally` counts completely: every call of the workload
#: that the service records in them, with the labels and outcome the workload expects.
COUNTED: frozenset[tuple[str, str]] = frozenset(
    [(REGISTRY, m) for m in (*REGISTRY_OP, *DISCOVERY, *EXECUTION, *MIDDLEWARE)]
    + [
        (AUTH, m)
        for m in (
            *AUTH_REQUEST,
            *TOKEN_GENERATION,
            *SESSION_VALIDATION,
            "token_refreshes_total",
            "token_revocations_total",
            "oauth_authorizations_total",
            "oauth_callbacks_total",
            "oauth_flow_duration_seconds",
        )
    ]
)

_MECHANISMS = {"Bearer": "jwt", "ApiKey": "api_key", "Basic": "basic"}

Key = tuple[str, str, tuple[tuple[str, str], ...]]


class Tally:
    """What the workload did, counted by the workload: per ``(scope, metric, labels)``
    the calls it made, and for ``*_seconds`` histograms each call's duration measured
    around the call (so never less than what the service measured inside it)."""

    def __init__(self) -> None:
        self.counts: Counter[Key] = Counter()
        self.seconds: defaultdict[Key, list[float]] = defaultdict(list)

    def add(
        self, scope: str, metrics: tuple[str, ...], labels: Mapping[str, str], seconds: float
    ) -> None:
        for metric in metrics:
            key = (scope, metric, tuple(sorted(labels.items())))
            self.counts[key] += 1
            if metric.endswith("_seconds"):
                self.seconds[key].append(seconds)

    def op(self, scope: str, metrics: tuple[str, ...], **labels: str) -> _Op:
        """``with tally.op(...) as op:`` around one call: ``status`` is ``failure`` if it
        raises or ``op.fail()`` was called, ``cancelled`` if cancelled, else ``success``."""
        return _Op(self, scope, metrics, labels)

    def snapshot(self) -> list[dict[str, Any]]:
        """JSON-ready, sorted: ``scope``, ``metric``, ``labels``, ``count`` (and
        ``seconds``, the list of outside durations, for histograms)."""
        return [
            {
                "scope": scope,
                "metric": metric,
                "labels": dict(labels),
                "count": count,
                **({"seconds": self.seconds[key]} if metric.endswith("_seconds") else {}),
            }
            for key, count in sorted(self.counts.items())
            for scope, metric, labels in [key]
        ]


class _Op:
    def __init__(
        self, tally: Tally, scope: str, metrics: tuple[str, ...], labels: dict[str, str]
    ) -> None:
        self.tally, self.scope, self.metrics, self.labels = tally, scope, metrics, labels
        self.failed = False
        self.started = 0.0

    def fail(self) -> None:
        self.failed = True

    def __enter__(self) -> _Op:
        self.started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        seconds = time.perf_counter() - self.started
        if isinstance(exc, RegistryError) and exc.reason in AUTH_FAILURES:
            # Refused by the registry's auth middleware: the service never ran it.  (In
            # process the call is not even made; over HTTP only the answer tells.)
            return False
        if exc_type is not None and issubclass(exc_type, anyio.get_cancelled_exc_class()):
            status = "cancelled"
        else:
            status = "failure" if exc_type is not None or self.failed else "success"
        self.tally.add(self.scope, self.metrics, {**self.labels, "status": status}, seconds)
        return False


async def through_registry(
    registry: Registry | RegistryClient,
    tally: Tally,
    header: str,
    call: Callable[[], Awaitable[T]],
) -> T:
    """``registry.handle(header, call)``, counting the authentication it does: in the
    registry's middleware and in the auth server behind it, a success exactly when the
    middleware lets the call through (timed from the start to that moment; over HTTP,
    where that moment is not seen, to the end of the call)."""
    mechanism = _MECHANISMS.get(header.partition(" ")[0], "unknown")
    if isinstance(registry, RegistryClient):
        return await _through_remote(registry, tally, mechanism, header, call)
    reached: float | None = None

    async def inner() -> T:
        nonlocal reached
        reached = time.perf_counter()
        return await call()

    started = time.perf_counter()
    try:
        return await registry.handle(header, inner)
    finally:
        seconds = (reached if reached is not None else time.perf_counter()) - started
        labels = {"mechanism": mechanism, "status": "success" if reached is not None else "failure"}
        tally.add(REGISTRY, MIDDLEWARE, labels, seconds)
        tally.add(AUTH, AUTH_REQUEST, labels, seconds)


async def _through_remote(
    registry: RegistryClient,
    tally: Tally,
    mechanism: str,
    header: str,
    call: Callable[[], Awaitable[T]],
) -> T:
    passed = True
    started = time.perf_counter()
    try:
        return await registry.handle(header, call)
    except RegistryError as exc:
        passed = exc.reason not in AUTH_FAILURES
        raise
    finally:
        seconds = time.perf_counter() - started
        labels = {"mechanism": mechanism, "status": "success" if passed else "failure"}
        tally.add(REGISTRY, MIDDLEWARE, labels, seconds)
        tally.add(AUTH, AUTH_REQUEST, labels, seconds)


async def _end_session(auth: AuthServer | AuthClient, session_id: str) -> None:
    """Log out (not measured): a plain call in process, a request over HTTP."""
    ended = auth.end_session(session_id)
    if inspect.isawaitable(ended):
        await ended


@dataclass
class World:
    auth: AuthServer | AuthClient
    registry: Registry | RegistryClient
    api_keys: dict[str, str]
    rng: random.Random
    tally: Tally = field(default_factory=Tally)
    #: The demo servers whose registration succeeded.
    servers: tuple[str, ...] = ()


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
    world = World(auth, registry, api_keys, rng)
    await _register_demo_servers(world)
    return world


def demo_accounts(api_keys: Mapping[str, str]) -> dict[str, list[dict[str, object]]]:
    """The demo's accounts in the auth server's ``AUTH_SERVER_ACCOUNTS`` shape: the
    :data:`USERS` (scopes read, write) and *api_keys* (owner -> key; scope read)."""
    return {
        "users": [
            {"name": user, "password": password, "scopes": ["read", "write"]}
            for user, password in USERS.items()
        ],
        "api_keys": [
            {"owner": owner, "key": key, "scopes": ["read"]} for owner, key in api_keys.items()
        ],
    }


async def http_world(
    auth: AuthClient, registry: RegistryClient, api_keys: Mapping[str, str], *, seed: int | None
) -> World:
    """The services over HTTP (their apps serving :func:`demo_accounts` with *api_keys*),
    with the four demo MCP servers registered through the registry's API."""
    world = World(auth, registry, dict(api_keys), random.Random(seed))
    await _register_demo_servers(world)
    return world


async def _register_demo_servers(world: World) -> None:
    registry, tally = world.registry, world.tally
    admin = world.api_keys["ci-bot"]
    registered: list[str] = []
    for name in SERVERS:
        register = functools.partial(
            registry.register_server,
            name,
            f"mem://{name}",
            description=f"{name} MCP server",
            tags=(name, "demo"),
        )

        async def counted_register(register: Callable[[], Awaitable[object]] = register) -> None:
            with tally.op(REGISTRY, REGISTRY_OP, operation="create", resource_type="server"):
                await register()

        for _attempt in range(5):  # registration may hit a simulated failure
            try:
                await through_registry(registry, tally, f"ApiKey {admin}", counted_register)
                registered.append(name)
                break
            except EXPECTED_ERRORS:
                continue
    world.servers = tuple(registered)


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

    async def _reg(self, call: Callable[[], Awaitable[object]], header: str | None = None) -> None:
        header = header or await self._header()
        await through_registry(self.w.registry, self.w.tally, header, call)

    def _registry_op(
        self, operation: str, resource_type: str, call: Callable[[], Awaitable[object]]
    ) -> Callable[[], Awaitable[None]]:
        """*call*, counted as one registry operation."""

        async def counted() -> None:
            with self.w.tally.op(
                REGISTRY, REGISTRY_OP, operation=operation, resource_type=resource_type
            ):
                await call()

        return counted

    # ------------------------------------------------------------ auth server operations

    async def _authenticate(self, header: str) -> Principal:
        mechanism = _MECHANISMS[header.partition(" ")[0]]
        with self.w.tally.op(AUTH, AUTH_REQUEST, mechanism=mechanism):
            return await self.w.auth.authenticate(header)

    async def _generate(
        self, principal: Principal, scopes: tuple[str, ...] | None = None
    ) -> TokenPair:
        with self.w.tally.op(AUTH, TOKEN_GENERATION):
            return await self.w.auth.generate_token(principal, scopes)

    async def login(self) -> None:
        password = USERS[self.user] if self.rng.random() > 0.05 else "wrong password"
        self.principal = await self._authenticate(basic_header(self.user, password))
        self.tokens = await self._generate(self.principal)

    async def api_key_auth(self) -> None:
        key = self.rng.choice(list(self.w.api_keys.values()))
        if self.rng.random() < 0.05:
            key = "ak_" + secrets.token_urlsafe(32)
        await self._authenticate(f"ApiKey {key}")

    async def generate_scoped(self) -> None:
        if self.principal is None:
            await self.login()
        assert self.principal is not None
        scopes = ("read",) if self.rng.random() > 0.1 else ("admin",)
        await self._generate(self.principal, scopes)

    async def refresh(self) -> None:
        if self.tokens is None:
            await self.login()
        assert self.tokens is not None
        with self.w.tally.op(AUTH, ("token_refreshes_total",)):
            self.tokens = await self.w.auth.refresh_token(self.tokens.refresh_token)

    async def revoke(self) -> None:
        if self.tokens is None:
            await self.login()
        assert self.tokens is not None
        token, self.tokens = self.tokens.access_token, None
        if self.rng.random() < 0.1:
            token = token[:-4] + "AAAA"  # tampered: the revocation fails
        with self.w.tally.op(AUTH, ("token_revocations_total",)):
            await self.w.auth.revoke_token(token)

    async def session_login(self) -> None:
        principal = await self._authenticate(basic_header(self.user, USERS[self.user]))
        if self.session is not None and self.rng.random() < 0.7:
            await _end_session(self.w.auth, self.session)
        self.session = await self.w.auth.create_session(principal)

    async def validate_session(self) -> None:
        if self.session is None:
            await self.session_login()
        assert self.session is not None
        session = self.session if self.rng.random() > 0.05 else secrets.token_urlsafe(32)
        with self.w.tally.op(AUTH, SESSION_VALIDATION):
            await self.w.auth.validate_session(session)

    async def oauth_flow(self) -> None:
        auth, tally = self.w.auth, self.w.tally
        provider = auth.idp.name if self.rng.random() > 0.03 else "no-such-provider"
        # The flow is timed from the authorization request to the end of the callback.
        with tally.op(AUTH, ("oauth_flow_duration_seconds",)):
            with tally.op(AUTH, ("oauth_authorizations_total",)):
                url = await auth.oauth_authorize(provider)
            await anyio.sleep(0.0)  # the browser follows the redirect
            password = USERS[self.user] if self.rng.random() > 0.05 else "guess"
            redirect = await auth.idp.login(url, self.user, password)
            params = auth.callback_params(redirect)
            with tally.op(AUTH, ("oauth_callbacks_total",)):
                session = await auth.oauth_callback(
                    provider,
                    state=params.get("state", ""),
                    code=params.get("code"),
                    error=params.get("error"),
                )
        await _end_session(auth, session)

    # ------------------------------------------------------------ registry operations

    async def list_servers(self) -> None:
        await self._reg(self._registry_op("list", "server", self.w.registry.list_servers))

    async def get_server(self) -> None:
        name = self._server() if self.rng.random() > 0.05 else "no-such-server"
        await self._reg(
            self._registry_op("read", "server", lambda: self.w.registry.get_server(name))
        )

    async def search_servers(self) -> None:
        query = self.rng.choice(("wea", "file", "demo", "git", "zzz"))
        search = self._registry_op(
            "search", "server", lambda: self.w.registry.search_servers(query)
        )
        await self._reg(search)

    async def list_tools(self) -> None:
        server = self._server() if self.rng.random() > 0.5 else None
        await self._reg(
            self._registry_op("list", "tool", lambda: self.w.registry.list_tools(server))
        )

    async def get_tool(self) -> None:
        server = self._server()
        tools = self.w.registry.tool_names(server)
        tool = self.rng.choice(tools) if tools and self.rng.random() > 0.05 else "no_such_tool"

        async def lookup() -> None:
            # Found: labelled with its name; not found (or no such server): "unknown".
            with self.w.tally.op(REGISTRY, DISCOVERY, tool_name="unknown", source="lookup") as op:
                await self.w.registry.get_tool(server, tool)
                op.labels["tool_name"] = tool

        await self._reg(self._registry_op("read", "tool", lookup))

    async def search_tools(self) -> None:
        query = self.rng.choice(("read", "issue", "query", "forecast", "nothing"))

        async def search() -> None:
            with self.w.tally.op(REGISTRY, DISCOVERY, tool_name="search", source="search"):
                await self.w.registry.search_tools(query)

        await self._reg(self._registry_op("search", "tool", search))

    def _tool(self, server: str) -> str:
        tools = self.w.registry.tool_names(server)
        return self.rng.choice(tools) if tools and self.rng.random() > 0.03 else "no_such_tool"

    def _execution(self, server: str, tool: str, method: str) -> _Op:
        """One tool execution, labelled as the registry must: names it has registered,
        else ``unknown``."""
        registered = server in self.w.servers
        return self.w.tally.op(
            REGISTRY,
            EXECUTION,
            tool_name=tool
            if registered and tool in self.w.registry.tool_names(server)
            else "unknown",
            server_name=server if registered else "unknown",
            method=method,
        )

    async def execute_tool(self) -> None:
        server = self._server()
        tool = self._tool(server)

        async def execute() -> None:
            with self._execution(server, tool, "execute"):
                await self.w.registry.execute_tool(server, tool, {"q": "x"})

        await self._reg(execute)

    async def proxy_call(self) -> None:
        server = self._server()
        tool = self._tool(server)
        message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool}}

        async def call() -> None:
            with self._execution(server, tool, "proxy") as op:
                response = await self.w.registry.proxy_request(server, message)
                if "error" in response or (response.get("result") or {}).get("isError"):
                    op.fail()  # relayed as is; a failed execution all the same

        await self._reg(call)

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
        await self._reg(
            self._registry_op("create", "server", lambda: registry.register_server(name, url)),
            header,
        )
        await self._reg(
            self._registry_op("delete", "server", lambda: registry.delete_server(name)), header
        )


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
