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


def test_max_series_caps_series_with_the_production_sdk(monkeypatch: Any) -> None:
    """With the SDK built as in production (the services' YAML loaded first, then
    ``setup_metrics``, whose Views carry ``max_series``), a metric fed more distinct
    label values than its ``max_series`` keeps at most ``max_series`` + 1 series (the
    last one the overflow series), and no event is lost: counter total, histogram count
    and histogram sum are those of everything recorded.

    Fails if ``max_series`` stops reaching the SDK (no View, or a View not matching the
    service's meter): all ``max_series + 100`` series would then be exported.
    """
    import math
    import os

    import otel_aspects
    from otel_aspects.config import loaded_configs
    from otel_aspects.testing import histogram_data, metric_points

    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    # Production order: importing a service's metrics module loads its YAML, then
    # the process calls setup_metrics.
    build_registry_metrics(MeterProvider())
    build_auth_metrics(MeterProvider())
    reader = InMemoryMetricReader()
    try:
        setup = otel_aspects.setup_metrics("registry", exporters=[], extra_readers=[reader])
        metrics = build_registry_metrics(setup.meter_provider)
        config = [c for c in loaded_configs() if c.service_name == "registry"][-1]
        counter = "mcp_server_requests_total"
        histogram = "mcp_tool_execution_duration_seconds"
        cap = config.metrics[counter].max_series
        assert cap is not None and cap == config.metrics[histogram].max_series
        n = cap + 100
        durations = [i / 1000 for i in range(n)]
        for i, duration in enumerate(durations):
            # Valid, distinct names: the domain layer lets them through (bounding them
            # is the registry's BoundedNames), so only max_series can cap them here.
            metrics.record_server_request(f"srv-{i}")
            metrics.record_tool_execution(f"tool-{i}", "srv", "execute", True, duration)

        for name in (counter, histogram, "mcp_tool_execution_total"):
            points = metric_points(reader, name)
            overflow = [p for p in points if p.attributes.get("otel.metric.overflow")]
            assert cap <= len(points) <= cap + 1, (name, len(points))
            assert len(overflow) == 1, name
        assert sum(p.value for p in metric_points(reader, counter)) == n
        assert sum(p.value for p in metric_points(reader, "mcp_tool_execution_total")) == n
        data = histogram_data(reader, histogram)
        assert data is not None and data.count == n
        assert math.isclose(data.sum, math.fsum(durations), rel_tol=1e-9)
    finally:
        otel_aspects.shutdown_metrics()
