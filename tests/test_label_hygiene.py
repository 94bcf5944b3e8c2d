"""Label hygiene of the services: no credential in a label value, bounded series.

Hostile input (random endpoints, huge strings, secret-looking values) is fed through
every entry point of both services by hypothesis; afterwards no exported label value
contains any secret that was sent, and the number of series stays under a bound that
does not grow with the number of examples.
"""

from __future__ import annotations

import string
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from services._sim import Simulation
from services.auth_server.core.service import AuthServer, SimulatedIdentityProvider, basic_header
from services.auth_server.utils.otel_metrics import build_metrics as build_auth_metrics
from services.registry.core.mcp import demo_backends
from services.registry.core.registry import Registry
from services.registry.utils.otel_metrics import build_metrics as build_registry_metrics
from services.workload import EXPECTED_ERRORS

SECRET_ALPHABET = string.ascii_letters + string.digits
secrets_st = st.text(SECRET_ALPHABET, min_size=12, max_size=40).map(lambda s: "sk_" + s)
junk_st = st.one_of(
    st.text(max_size=50),
    st.text(min_size=1000, max_size=5000),
    st.from_regex(r"[a-z][a-z0-9_.\-]{0,20}", fullmatch=True),
)


def _label_values(reader: InMemoryMetricReader) -> tuple[list[str], dict[str, int]]:
    values: list[str] = []
    series: dict[str, int] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                key = f"{sm.scope.name}:{metric.name}"
                series[key] = series.get(key, 0) + len(metric.data.data_points)
                for point in metric.data.data_points:
                    values.extend(str(v) for v in point.attributes.values())
    return values, series


def test_hostile_input_never_leaks_nor_explodes() -> None:
    """Secrets in headers, passwords, tokens, URIs, queries and arguments never reach a
    label; random names become "unknown"/"other"; series stay bounded."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    sim = Simulation(seed=9, latency_scale=0, failure_rate=0.0)
    auth = AuthServer(
        metrics=build_auth_metrics(provider),
        simulation=sim,
        identity_provider=SimulatedIdentityProvider(users={"bob": "pw"}, simulation=sim),
        password_iterations=1_000,
    )
    auth.add_user("alice", "pw", ("read",))
    registry = Registry(
        backends=demo_backends(sim),
        metrics=build_registry_metrics(provider),
        simulation=sim,
        authenticator=auth.authenticate,
        max_servers=8,
        max_label_names=16,
    )
    sent: list[str] = []

    async def setup() -> None:
        for name in ("weather", "files"):
            await registry.register_server(name, f"mem://{name}")

    anyio.run(setup)
    sim.failure_rate = 0.05  # failures too, once the servers are registered

    async def attack(secret: str, junk: str, server: str, register: bool) -> None:
        calls: list[Any] = [
            lambda: auth.authenticate(f"Bearer {secret}"),
            lambda: auth.authenticate(f"ApiKey {secret}"),
            lambda: auth.authenticate(basic_header("alice", secret)),
            lambda: auth.authenticate(basic_header(secret, secret)),
            lambda: auth.authenticate(f"{junk} {secret}"),
            lambda: auth.refresh_token(secret),
            lambda: auth.revoke_token(secret),
            lambda: auth.validate_session(secret),
            lambda: auth.oauth_authorize(junk or "x", redirect_uri=f"https://x/?t={secret}"),
            lambda: auth.oauth_callback(junk, state=secret, code=secret),
            lambda: registry.handle(f"Bearer {secret}", registry.list_servers),
            lambda: registry.handle(f"{secret} {junk}", registry.list_servers),
            lambda: registry.get_server(junk),
            lambda: registry.search_servers(secret),
            lambda: registry.search_tools(secret),
            lambda: registry.get_tool(server, secret),
            lambda: registry.get_tool(junk, junk),
            lambda: registry.execute_tool(server, junk, {"api_key": secret}),
            lambda: registry.execute_tool(server, "get_forecast", {"token": secret}),
            lambda: registry.read_resource(server, f"weather://{secret}/current"),
            lambda: registry.read_resource(server, f"file:///etc/{secret}?token={secret}"),
            lambda: registry.read_resource(junk, junk),
            lambda: registry.run_prompt(server, junk, {"city": secret}),
            lambda: registry.run_prompt(server, "daily_briefing", {"city": secret}),
            lambda: registry.proxy_request(
                server,
                {"jsonrpc": "2.0", "id": 1, "method": junk, "params": {"name": secret}},
            ),
            lambda: registry.proxy_request(
                server,
                {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": secret}},
            ),
        ]
        if register:
            # Churn: register a random valid name, then delete it.
            async def churn() -> None:
                await registry.register_server(junk, "mem://weather")
                await registry.delete_server(junk)

            calls.append(churn)
        for call in calls:
            try:
                await call()
            except EXPECTED_ERRORS:
                pass

    @settings(
        max_examples=80,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    @given(
        secret=secrets_st,
        junk=junk_st,
        server=st.sampled_from(["weather", "files", "nope"]),
        register=st.booleans(),
    )
    def run(secret: str, junk: str, server: str, register: bool) -> None:
        sent.append(secret)
        anyio.run(attack, secret, junk, server, register)

    run()

    values, series = _label_values(reader)
    for secret in sent:
        leaked = [v for v in values if secret in v]
        assert not leaked, f"secret {secret!r} leaked into labels {leaked[:3]}"
    for value in values:
        assert len(value) <= 120
    # Names admitted as labels are capped at 16 per kind; every other label has a fixed
    # vocabulary.  The widest metric (tool executions) has at most 18 tool labels x
    # 18 server labels x 2 methods x 3 outcomes, far below that in practice; 500 is the
    # YAML's max_series, the SDK's last line of defence, never reached here.
    assert max(series.values()) < 200, series
    assert len(registry.server_labels) <= 16
    provider.shutdown()
