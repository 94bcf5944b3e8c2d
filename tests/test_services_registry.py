"""The registry's core and its metrics (services/registry), and every table metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_aspects.testing import counter_value, histogram_data, metric_points
from services._sim import Simulation
from services.auth_server.core.service import AuthError
from services.registry.core.mcp import SimulatedMCPServer, Tool, demo_backends, template_matches
from services.registry.core.registry import Registry, RegistryError
from services.workload import OPERATIONS, build_world, run_workload

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


async def _ok(header: str) -> object:
    if header != "Bearer good":
        raise AuthError("bad_credentials")
    return "user"


@pytest.fixture
async def registry(registry_metrics) -> Registry:  # type: ignore[no-untyped-def]
    sim = Simulation(seed=3, latency_scale=0, failure_rate=0)
    reg = Registry(
        backends=demo_backends(sim), metrics=registry_metrics, simulation=sim, authenticator=_ok
    )
    for name in ("weather", "files"):
        await reg.register_server(name, f"mem://{name}", tags=("demo",))
    return reg


def _labels(reader: Any, name: str) -> list[dict[str, Any]]:
    return [dict(p.attributes) for p in metric_points(reader, name)]


class TestCatalogue:
    async def test_concurrent_delete_and_register_of_one_name(
        self, registry: Registry, metrics_reader
    ) -> None:  # type: ignore[no-untyped-def]
        """Two clients racing on one name: one wins, the other gets a RegistryError
        recorded as a failure -- never a KeyError out of the core (the demo once died so)."""
        import anyio

        outcomes: list[str] = []

        async def attempt(call: Any) -> None:
            try:
                await call()
                outcomes.append("ok")
            except RegistryError as exc:
                outcomes.append(str(exc))

        async with anyio.create_task_group() as tg:
            tg.start_soon(attempt, lambda: registry.delete_server("files"))
            tg.start_soon(attempt, lambda: registry.delete_server("files"))
        assert sorted(outcomes) == ["ok", "unknown_server"]
        async with anyio.create_task_group() as tg:
            tg.start_soon(attempt, lambda: registry.register_server("files", "mem://files"))
            tg.start_soon(attempt, lambda: registry.register_server("files", "mem://files"))
        assert sorted(outcomes[2:]) == ["already_registered", "ok"]
        deletes = {
            d["status"]: p.value
            for p in metric_points(metrics_reader, "registry_operations_total")
            if (d := dict(p.attributes))["operation"] == "delete"
        }
        assert deletes == {"success": 1, "failure": 1}

    async def test_crud(self, registry: Registry, metrics_reader) -> None:  # type: ignore[no-untyped-def]
        """Register, list, read, search, delete: each counted by operation and type."""
        assert [s.name for s in await registry.list_servers()] == ["weather", "files"]
        assert (await registry.get_server("files")).tools.keys() >= {"read_file"}
        assert [s.name for s in await registry.search_servers("wea")] == ["weather"]
        with pytest.raises(RegistryError, match="unknown_server"):
            await registry.get_server("nope")
        with pytest.raises(RegistryError, match="already_registered"):
            await registry.register_server("files", "mem://files")
        with pytest.raises(RegistryError, match="unreachable"):
            await registry.register_server("ghost", "mem://ghost")
        await registry.delete_server("files")
        ops = {
            (d["operation"], d["resource_type"], d["status"])
            for d in _labels(metrics_reader, "registry_operations_total")
        }
        assert ops == {
            ("create", "server", "success"),
            ("create", "server", "failure"),
            ("list", "server", "success"),
            ("read", "server", "success"),
            ("read", "server", "failure"),
            ("search", "server", "success"),
            ("delete", "server", "success"),
        }
        attrs = {"operation": "create", "resource_type": "server", "status": "success"}
        assert counter_value(metrics_reader, "registry_operations_total", attrs) == 2
        hist = histogram_data(metrics_reader, "registry_operation_duration_seconds", attrs)
        assert hist is not None and hist.count == 2 and hist.boundaries[0] == 0.001

    async def test_discovery(self, registry: Registry, metrics_reader) -> None:  # type: ignore[no-untyped-def]
        """Lookups are labelled by tool name, searches by "search" (never the query)."""
        await registry.get_tool("files", "read_file")
        with pytest.raises(RegistryError):
            await registry.get_tool("files", "rm_rf")
        found = await registry.search_tools("forecast")
        assert [t.name for t in found] == ["get_forecast"]
        assert await registry.list_tools("weather")
        got = {
            (d["tool_name"], d["source"], d["status"])
            for d in _labels(metrics_reader, "mcp_tool_discovery_total")
        }
        assert got == {
            ("read_file", "lookup", "success"),
            ("unknown", "lookup", "failure"),
            ("search", "search", "success"),
        }

    async def test_registration_requests_counted(self, registry: Registry, metrics_reader) -> None:  # type: ignore[no-untyped-def]
        """Discovery requests at registration count for the registered server."""
        assert (
            counter_value(metrics_reader, "mcp_server_requests_total", {"server_name": "files"})
            == 5
        )


class TestProxy:
    async def test_execute_read_prompt(self, registry: Registry, metrics_reader) -> None:  # type: ignore[no-untyped-def]
        """Execute, read (template matched), prompt: counted and timed with bounded labels."""
        await registry.execute_tool("weather", "get_forecast", {"city": "Oslo"})
        await registry.read_resource("weather", "weather://oslo/current")
        await registry.run_prompt("files", "summarize", {"path": "x"})
        with pytest.raises(RegistryError):
            await registry.read_resource("weather", "weather://oslo/history?token=s3cr3t")
        with pytest.raises(RegistryError):
            await registry.run_prompt("files", "summarize", {})  # missing argument
        ex = {
            "tool_name": "get_forecast",
            "server_name": "weather",
            "method": "execute",
            "status": "success",
        }
        assert counter_value(metrics_reader, "mcp_tool_execution_total", ex) == 1
        assert histogram_data(metrics_reader, "mcp_tool_execution_duration_seconds", ex).count == 1
        res = {
            "resource_uri": "weather://{city}/current",
            "server_name": "weather",
            "status": "success",
        }
        assert counter_value(metrics_reader, "mcp_resource_access_total", res) == 1
        bad = {"resource_uri": "other", "server_name": "weather", "status": "failure"}
        assert counter_value(metrics_reader, "mcp_resource_access_total", bad) == 1
        pr = {"prompt_name": "summarize", "server_name": "files", "status": "failure"}
        assert (
            histogram_data(metrics_reader, "mcp_prompt_execution_duration_seconds", pr).count == 1
        )

    async def test_proxy_raw_messages(self, registry: Registry, metrics_reader) -> None:  # type: ignore[no-untyped-def]
        """Raw JSON-RPC is relayed; tools/call through the proxy is method="proxy"."""
        pong = await registry.proxy_request("files", {"jsonrpc": "2.0", "id": 7, "method": "ping"})
        assert pong == {"jsonrpc": "2.0", "id": 7, "result": {}}
        msg = {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "read_file"}}
        assert "result" in await registry.proxy_request("files", msg)
        missing = await registry.proxy_request(
            "files", {"jsonrpc": "2.0", "id": 9, "method": "nope"}
        )
        assert missing["error"]["code"] == -32601
        attrs = {
            "tool_name": "read_file",
            "server_name": "files",
            "method": "proxy",
            "status": "success",
        }
        assert counter_value(metrics_reader, "mcp_tool_execution_total", attrs) == 1
        assert (
            counter_value(metrics_reader, "mcp_server_requests_total", {"server_name": "files"})
            == 5 + 3
        )

    async def test_tool_error_is_failure(self, registry_metrics, metrics_reader) -> None:  # type: ignore[no-untyped-def]
        """A tool answering isError, or a server down, is a failed execution."""
        sim = Simulation(seed=1, latency_scale=0, failure_rate=0)
        flaky = SimulatedMCPServer(
            "flaky", tools=(Tool("boom", "always fails", 0, 1.0),), simulation=sim
        )
        reg = Registry(backends={"mem://flaky": flaky}, metrics=registry_metrics, simulation=sim)
        await reg.register_server("flaky", "mem://flaky")
        with pytest.raises(RegistryError, match="tool_error"):
            await reg.execute_tool("flaky", "boom")
        flaky.up = False
        with pytest.raises(ConnectionError):
            await reg.execute_tool("flaky", "boom")
        attrs = {
            "tool_name": "boom",
            "server_name": "flaky",
            "method": "execute",
            "status": "failure",
        }
        assert counter_value(metrics_reader, "mcp_tool_execution_total", attrs) == 2


class TestAuthMiddleware:
    async def test_counts_by_mechanism(self, registry: Registry, metrics_reader) -> None:  # type: ignore[no-untyped-def]
        """The middleware counts auth_requests_total by header scheme and outcome."""
        assert await registry.handle("Bearer good", registry.list_servers)
        for header in ("Bearer bad", "Basic xyz", "Weird scheme", None):
            with pytest.raises((AuthError, RegistryError)):
                await registry.handle(header, registry.list_servers)
        assert (
            counter_value(
                metrics_reader, "auth_requests_total", {"mechanism": "jwt", "status": "success"}
            )
            == 1
        )
        assert (
            counter_value(
                metrics_reader, "auth_requests_total", {"mechanism": "jwt", "status": "failure"}
            )
            == 1
        )
        assert (
            counter_value(
                metrics_reader, "auth_requests_total", {"mechanism": "unknown", "status": "failure"}
            )
            == 2
        )


def test_template_matches() -> None:
    """URI templates match one path segment per variable."""
    assert template_matches("file:///docs/{page}", "file:///docs/usage")
    assert not template_matches("file:///docs/{page}", "file:///docs/a/b")
    assert not template_matches("file:///docs/{page}", "file:///docs/")


# ------------------------------------------------------------------ every table metric

SEED_TABLES = {
    "registry": {
        "registry_operations_total": ("counter", {"operation", "resource_type", "status"}),
        "mcp_server_requests_total": ("counter", {"server_name"}),
        "mcp_tool_discovery_total": ("counter", {"tool_name", "source", "status"}),
        "mcp_tool_execution_total": ("counter", {"tool_name", "server_name", "method", "status"}),
        "mcp_resource_access_total": ("counter", {"resource_uri", "server_name", "status"}),
        "mcp_prompt_execution_total": ("counter", {"prompt_name", "server_name", "status"}),
        "auth_requests_total": ("counter", {"mechanism", "status"}),
        "registry_operation_duration_seconds": (
            "histogram",
            {"operation", "resource_type", "status"},
        ),
        "mcp_tool_execution_duration_seconds": (
            "histogram",
            {"tool_name", "server_name", "method", "status"},
        ),
        "mcp_tool_discovery_duration_seconds": ("histogram", {"tool_name", "source", "status"}),
        "mcp_resource_access_duration_seconds": (
            "histogram",
            {"resource_uri", "server_name", "status"},
        ),
        "mcp_prompt_execution_duration_seconds": (
            "histogram",
            {"prompt_name", "server_name", "status"},
        ),
    },
    "auth_server": {
        "auth_requests_total": ("counter", {"mechanism", "status"}),
        "token_refreshes_total": ("counter", {"status"}),
        "token_generations_total": ("counter", {"status"}),
        "token_revocations_total": ("counter", {"status"}),
        "oauth_callbacks_total": ("counter", {"status"}),
        "oauth_authorizations_total": ("counter", {"status"}),
        "session_creations_total": ("counter", {"status"}),
        "session_validations_total": ("counter", {"status"}),
        "auth_request_duration_seconds": ("histogram", {"mechanism", "status"}),
        "token_generation_duration_seconds": ("histogram", {"status"}),
        "oauth_flow_duration_seconds": ("histogram", {"status"}),
        "session_validation_duration_seconds": ("histogram", {"status"}),
    },
}


@pytest.mark.parametrize("service", sorted(SEED_TABLES))
def test_yaml_matches_seed_table(service: str) -> None:
    """The YAML declares exactly the table's metrics (kinds, units, seconds buckets,
    max_series) and the HTTP middleware's two, with the semantic conventions' units."""
    doc = yaml.safe_load((ROOT / "config" / "metrics" / f"{service}.yml").read_text())
    declared = {m["name"]: ("counter", m) for m in doc["counters"]}
    declared |= {m["name"]: ("histogram", m) for m in doc["histograms"]}
    http = declared.pop("http.server.request.duration")[1]
    assert http["unit"] == "s" and http["max_series"] == 500
    (active,) = doc["up_down_counters"]
    assert active["name"] == "http.server.active_requests" and active["unit"] == "{request}"
    assert set(declared) == set(SEED_TABLES[service])
    for name, (kind, entry) in declared.items():
        assert SEED_TABLES[service][name][0] == kind
        assert entry["unit"] == ("1" if kind == "counter" else "s")
        assert entry["max_series"] == 500
        if kind == "histogram":
            assert entry["buckets"][0] < 0.01 and entry["buckets"][-1] >= 1


async def test_every_table_metric_recorded(registry_metrics, auth_metrics, metrics_reader) -> None:  # type: ignore[no-untyped-def]
    """A short workload records every metric of both tables, with exactly its labels."""
    world = await build_world(
        seed=5,
        latency_scale=0,
        registry_metrics=registry_metrics,
        auth_metrics=auth_metrics,
        password_iterations=1_000,
    )
    stats = await run_workload(world, clients=3, duration=30, max_ops=600, seed=5, think_time=0)
    assert stats.by_op.keys() == OPERATIONS.keys()
    data = metrics_reader.get_metrics_data()
    seen: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                seen[(sm.scope.name, metric.name)] = [
                    dict(p.attributes) for p in metric.data.data_points
                ]
    for service, table in SEED_TABLES.items():
        for name, (_kind, labels) in table.items():
            points = seen.get((service, name))
            assert points, f"{service}: {name} has no data"
            for attrs in points:
                assert set(attrs) == labels, (service, name, attrs)
                assert attrs.get("status", "success") in {"success", "failure", "cancelled"}


async def test_registration_losing_the_last_slot_admits_no_label(
    registry: Registry, metrics_reader
) -> None:  # type: ignore[no-untyped-def]
    """Two registrations race for the last free slot: one wins, the other fails with
    ``registry_full`` after its discovery awaits -- and, a failed registration, its
    discovery requests are labelled ``unknown`` and its name is never admitted as a label."""
    import anyio

    registry.max_servers = 3  # weather and files are registered: one slot left
    outcomes: dict[str, str] = {}

    async def attempt(name: str, url: str) -> None:
        try:
            await registry.register_server(name, url)
            outcomes[name] = "ok"
        except RegistryError as exc:
            outcomes[name] = str(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(attempt, "alpha", "mem://github")
        tg.start_soon(attempt, "beta", "mem://database")
    assert sorted(outcomes.values()) == ["ok", "registry_full"]
    loser = next(n for n, o in outcomes.items() if o != "ok")
    winner = next(n for n, o in outcomes.items() if o == "ok")
    labels = {
        dict(p.attributes)["server_name"]: p.value
        for p in metric_points(metrics_reader, "mcp_server_requests_total")
    }
    assert loser not in labels and labels["unknown"] == 5 and labels[winner] == 5
    assert registry.server_labels(loser) == loser  # not admitted before: still room now
    creates = {
        d["status"]: p.value
        for p in metric_points(metrics_reader, "registry_operations_total")
        if (d := dict(p.attributes))["operation"] == "create"
    }
    assert creates == {"success": 3, "failure": 1}


async def test_tool_call_in_flight_when_its_server_is_deleted(
    registry: Registry, metrics_reader
) -> None:  # type: ignore[no-untyped-def]
    """A call already forwarded when its server is deleted completes against the record
    it started with (no KeyError, one success); the next call is ``unknown_server``."""
    import anyio

    results: list[object] = []

    async def call() -> None:
        results.append(await registry.execute_tool("weather", "get_forecast"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        tg.start_soon(registry.delete_server, "weather")
    assert len(results) == 1 and "content" in results[0]  # type: ignore[operator]
    with pytest.raises(RegistryError, match="unknown_server"):
        await registry.execute_tool("weather", "get_forecast")
    statuses = {
        dict(p.attributes)["status"]: p.value
        for p in metric_points(metrics_reader, "mcp_tool_execution_total")
    }
    assert statuses == {"success": 1, "failure": 1}
