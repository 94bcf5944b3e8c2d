"""Bucket placement and sums of the services' duration histograms, with a scripted clock.

Each service's metrics take a ``clock`` (``build_metrics(..., clock=...)``) that every
timed block reads.  Here that clock only moves when a simulated delay runs (by the
scripted duration, without sleeping) or when the test moves it, so every recorded
duration is known exactly: the tests assert the bucket each one lands in and the sum,
not only how many were recorded.
"""

from __future__ import annotations

from collections.abc import Iterable

import anyio.lowlevel
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_aspects.testing import histogram_data
from services._sim import Simulation
from services.auth_server.core.service import (
    AuthError,
    AuthServer,
    SimulatedIdentityProvider,
    basic_header,
)
from services.auth_server.utils import otel_metrics as auth_otel
from services.registry.core.mcp import demo_backends
from services.registry.core.registry import Registry
from services.registry.utils import otel_metrics as registry_otel

pytestmark = pytest.mark.anyio

#: config/metrics/*.yml, written out.
MS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
FLOW_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SESSION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
SESSION_BUCKETS += (0.25, 0.5, 1)


class ScriptedClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ScriptedSimulation(Simulation):
    """Each simulated delay advances *clock* by the next scripted duration (0 once the
    script is used up) instead of sleeping; nothing fails."""

    def __init__(self, clock: ScriptedClock) -> None:
        super().__init__(seed=0, latency_scale=0.0, failure_rate=0.0)
        self.clock = clock
        self.script: list[float] = []

    def run(self, *durations: float) -> ScriptedSimulation:
        assert not self.script, f"unused scripted delays: {self.script}"
        self.script = list(durations)
        return self

    async def delay(self, mean_seconds: float) -> None:
        if self.script:
            self.clock.now += self.script.pop(0)
        await anyio.lowlevel.checkpoint()

    def fails(self, rate: float | None = None) -> bool:
        return False


def buckets(bounds: tuple[float, ...], *indices: int) -> tuple[int, ...]:
    """Bucket counts with one observation per index (``len(bounds)`` is +Inf)."""
    counts = [0] * (len(bounds) + 1)
    for i in indices:
        counts[i] += 1
    return tuple(counts)


def assert_histogram(
    reader: InMemoryMetricReader,
    name: str,
    labels: dict[str, str],
    bounds: tuple[float, ...],
    indices: Iterable[int],
    total: float,
) -> None:
    indices = list(indices)
    data = histogram_data(reader, name, labels)
    assert data is not None, (name, labels)
    assert data.boundaries == tuple(float(b) for b in bounds)
    assert data.bucket_counts == buckets(bounds, *indices), (name, labels)
    assert data.count == len(indices)
    assert data.sum == pytest.approx(total, rel=1e-9, abs=1e-12)


class TestRegistry:
    @pytest.fixture
    async def world(self, meter_provider) -> tuple[Registry, ScriptedSimulation]:  # type: ignore[no-untyped-def]
        clock = ScriptedClock()
        sim = ScriptedSimulation(clock)
        metrics = registry_otel.build_metrics(meter_provider, clock=clock)
        registry = Registry(backends=demo_backends(sim), metrics=metrics, simulation=sim)
        await registry.register_server("weather", "mem://weather")
        return registry, sim

    async def test_operation_durations_land_in_their_buckets(
        self, world: tuple[Registry, ScriptedSimulation], metrics_reader: InMemoryMetricReader
    ) -> None:
        """registry_operation_duration_seconds: one delay per list_servers, each scripted."""
        registry, sim = world
        for seconds in (0.0007, 0.003, 0.2, 0.2, 7.0, 12.0):
            sim.run(seconds)
            await registry.list_servers()
        labels = {"operation": "list", "resource_type": "server", "status": "success"}
        # <=1ms | (2.5ms, 5ms] | (100ms, 250ms] x2 | (5s, 10s] | +Inf
        assert_histogram(
            metrics_reader,
            "registry_operation_duration_seconds",
            labels,
            MS_BUCKETS,
            [0, 2, 7, 7, 12, 13],
            19.4037,
        )

    async def test_tool_execution_spans_network_and_tool_time(
        self, world: tuple[Registry, ScriptedSimulation], metrics_reader: InMemoryMetricReader
    ) -> None:
        """mcp_tool_execution_duration_seconds: the round trip plus the tool's own time."""
        registry, sim = world
        sim.run(0.002, 0.02)  # network, then the tool: 22 ms
        await registry.execute_tool("weather", "get_forecast", {"city": "Oslo"})
        sim.run(0.03, 0.5)  # 530 ms
        await registry.execute_tool("weather", "get_forecast", {"city": "Rome"})
        sim.run()
        labels = {
            "tool_name": "get_forecast",
            "server_name": "weather",
            "method": "execute",
            "status": "success",
        }
        # (10ms, 25ms] | (500ms, 1s]
        assert_histogram(
            metrics_reader, "mcp_tool_execution_duration_seconds", labels, MS_BUCKETS, [4, 9], 0.552
        )


class TestAuthServer:
    @pytest.fixture
    def world(self, meter_provider) -> tuple[AuthServer, ScriptedSimulation, ScriptedClock]:  # type: ignore[no-untyped-def]
        clock = ScriptedClock()
        sim = ScriptedSimulation(clock)
        idp = SimulatedIdentityProvider(users={"alice": "wonderland"}, simulation=sim)
        server = AuthServer(
            metrics=auth_otel.build_metrics(meter_provider, clock=clock),
            simulation=sim,
            identity_provider=idp,
            password_iterations=1_000,
        )
        server.add_user("alice", "wonderland", scopes=("read",))
        return server, sim, clock

    async def test_auth_request_durations_by_outcome(
        self,
        world: tuple[AuthServer, ScriptedSimulation, ScriptedClock],
        metrics_reader: InMemoryMetricReader,
    ) -> None:
        """auth_request_duration_seconds: the key-store delay, per status."""
        server, sim, _ = world
        key = server.create_api_key("ci", ("read",))
        sim.run(0.0004)
        await server.authenticate(f"ApiKey {key}")
        sim.run(0.04)
        await server.authenticate(f"ApiKey {key}")
        sim.run(0.3)
        with pytest.raises(AuthError):
            await server.authenticate("ApiKey ak_not-a-key")
        ok = {"mechanism": "api_key", "status": "success"}
        bad = {"mechanism": "api_key", "status": "failure"}
        # <=1ms | (25ms, 50ms]; the failure in (250ms, 500ms]
        assert_histogram(
            metrics_reader, "auth_request_duration_seconds", ok, MS_BUCKETS, [0, 5], 0.0404
        )
        assert_histogram(metrics_reader, "auth_request_duration_seconds", bad, MS_BUCKETS, [8], 0.3)

    async def test_session_validation_durations(
        self,
        world: tuple[AuthServer, ScriptedSimulation, ScriptedClock],
        metrics_reader: InMemoryMetricReader,
    ) -> None:
        """session_validation_duration_seconds, on its sub-millisecond buckets."""
        server, sim, _ = world
        principal = await server.authenticate(basic_header("alice", "wonderland"))
        session = await server.create_session(principal)
        for seconds in (0.0003, 0.07):
            sim.run(seconds)
            await server.validate_session(session)
        labels = {"status": "success"}
        # (0.25ms, 0.5ms] | (50ms, 100ms]
        assert_histogram(
            metrics_reader,
            "session_validation_duration_seconds",
            labels,
            SESSION_BUCKETS,
            [2, 9],
            0.0703,
        )

    async def test_oauth_flow_spans_the_user_at_the_provider(
        self,
        world: tuple[AuthServer, ScriptedSimulation, ScriptedClock],
        metrics_reader: InMemoryMetricReader,
    ) -> None:
        """oauth_flow_duration_seconds runs from the authorization request to the end of
        the callback: the 40 s the user spends at the provider's login page included."""
        server, sim, clock = world
        url = await server.oauth_authorize(server.idp.name)
        clock.now += 40.0  # the user types a password
        sim.run(0.02, 0.03, 0.001)  # login page, token endpoint, session store
        redirect = await server.idp.login(url, "alice", "wonderland")
        params = server.callback_params(redirect)
        await server.oauth_callback(server.idp.name, state=params["state"], code=params["code"])
        sim.run()
        # (30s, 60s]
        assert_histogram(
            metrics_reader,
            "oauth_flow_duration_seconds",
            {"status": "success"},
            FLOW_BUCKETS,
            [12],
            40.051,
        )
