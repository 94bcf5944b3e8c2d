"""Both services as ASGI apps under real uvicorn on loopback, called over HTTP.

Each app's lifespan calls ``setup_metrics`` (captured by ``app_metrics``); the registry
authenticates every call against the auth server over HTTP.  Expected values are the
requests made here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from _servers import uvicorn_thread

from otel_aspects.sdk import MetricsCapture
from services._clients import AuthClient, RegistryClient
from services._sim import Simulation
from services.auth_server.__main__ import build_server
from services.auth_server.app import create_app as auth_app
from services.auth_server.core.service import AuthError, basic_header
from services.registry.app import AuthServerAuthenticator
from services.registry.app import create_app as registry_app
from services.registry.core.mcp import demo_backends
from services.registry.core.registry import Registry, RegistryError
from services.workload import demo_accounts

pytestmark = pytest.mark.anyio
KEY = "ak_test_key_0123456789"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def by_scope(capture: MetricsCapture, scope: str, name: str) -> dict[tuple[Any, ...], Any]:
    """``{sorted label pairs: value (count for histograms)}`` of *name* in *scope*."""
    out: dict[tuple[Any, ...], Any] = {}
    for rm in capture.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            if sm.scope.name != scope:
                continue
            for metric in sm.metrics:
                if metric.name == name:
                    for p in metric.data.data_points:
                        value = getattr(p, "count", None) if hasattr(p, "bucket_counts") else None
                        out[tuple(sorted(p.attributes.items()))] = (
                            value if value is not None else p.value
                        )
    return out


def http_requests(capture: MetricsCapture, scope: str) -> dict[tuple[str, str, int], int]:
    """Requests measured by the HTTP middleware in *scope*, by (method, route, status code)."""
    out: dict[tuple[str, str, int], int] = {}
    for attrs, count in by_scope(capture, scope, "http.server.request.duration").items():
        a = dict(attrs)
        k = (a["http.request.method"], a["http.route"], a["http.response.status_code"])
        out[k] = out.get(k, 0) + count
    return out


def labels(**kw: str) -> tuple[Any, ...]:
    return tuple(sorted(kw.items()))


@asynccontextmanager
async def services() -> AsyncIterator[tuple[AuthClient, RegistryClient, str]]:
    sim = Simulation(1, latency_scale=0.0, failure_rate=0.0)
    auth = build_server(demo_accounts({"ci-bot": KEY}), sim, password_iterations=1_000)
    with uvicorn_thread(auth_app(auth)) as auth_url:
        authenticator = AuthServerAuthenticator(auth_url)
        registry = Registry(
            backends=demo_backends(sim), authenticator=authenticator, simulation=sim
        )
        with uvicorn_thread(registry_app(registry, authenticator=authenticator)) as registry_url:
            async with (
                httpx.AsyncClient(base_url=auth_url) as a,
                httpx.AsyncClient(base_url=registry_url) as r,
            ):
                yield AuthClient(a), RegistryClient(r), registry_url


async def test_auth_server_over_http(
    app_metrics: MetricsCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Authentications, token generation and sessions: counted by mechanism and status."""
    monkeypatch.setenv("OTEL_PROMETHEUS_ENABLED", "true")
    async with services() as (auth, _registry, _url):
        for _ in range(2):
            principal = await auth.authenticate(basic_header("alice", "correct horse"))
        with pytest.raises(AuthError, match="bad_credentials"):
            await auth.authenticate(basic_header("alice", "wrong"))
        with pytest.raises(AuthError, match="unsupported_mechanism"):
            await auth.authenticate("Digest abc")
        pair = await auth.generate_token(principal)
        with pytest.raises(AuthError, match="insufficient_scope"):
            await auth.generate_token(principal, ["admin"])
        assert (await auth.authenticate(f"Bearer {pair.access_token}")).subject == "alice"
        session = await auth.create_session(principal)
        assert (await auth.validate_session(session)).subject == "alice"
        assert await auth.end_session(session)
        text = (await auth.http.get("/metrics")).text
    requests = by_scope(app_metrics, "auth_server", "auth_requests_total")
    assert requests == {
        labels(mechanism="basic", status="success"): 2,
        labels(mechanism="basic", status="failure"): 1,
        labels(mechanism="unknown", status="failure"): 1,
        labels(mechanism="jwt", status="success"): 1,
    }
    assert by_scope(app_metrics, "auth_server", "token_generations_total") == {
        labels(status="success"): 1,
        labels(status="failure"): 1,
    }
    assert by_scope(app_metrics, "auth_server", "session_validation_duration_seconds") == {
        labels(status="success"): 1
    }
    assert 'auth_requests_total{mechanism="basic"' in text  # /metrics on the app's port
    # The HTTP layer, by route template, beside the domain metrics, in the service's scope.
    assert http_requests(app_metrics, "auth_server") == {
        ("POST", "/authenticate", 200): 3,
        ("POST", "/authenticate", 401): 2,
        ("POST", "/tokens", 200): 1,
        ("POST", "/tokens", 403): 1,
        ("POST", "/sessions", 201): 1,
        ("POST", "/sessions/validate", 200): 1,
        ("POST", "/sessions/end", 200): 1,
        ("GET", "/metrics", 200): 1,
    }


async def test_registry_over_http_authenticates_through_the_auth_server(
    app_metrics: MetricsCapture,
) -> None:
    """Every registry call passes its middleware (an HTTP call to the auth server): a
    forged token is a 401 counted as a failure in both services; the operations behind
    it are counted with their outcome."""
    async with services() as (_auth, registry, _url):
        admin = f"ApiKey {KEY}"
        await registry.handle(admin, lambda: registry.register_server("weather", "mem://weather"))
        assert "get_forecast" in registry.tool_names("weather")
        with pytest.raises(RegistryError, match="already_registered"):
            await registry.handle(
                admin, lambda: registry.register_server("weather", "mem://weather")
            )
        tool = await registry.handle(admin, lambda: registry.get_tool("weather", "get_alerts"))
        assert tool["name"] == "get_alerts"
        with pytest.raises(RegistryError, match="unknown_tool"):
            await registry.handle(admin, lambda: registry.get_tool("weather", "nope"))
        result = await registry.handle(
            admin, lambda: registry.execute_tool("weather", "get_forecast", {"city": "Oslo"})
        )
        assert result["isError"] is False
        with pytest.raises(RegistryError) as refused:
            await registry.handle("Bearer forged", registry.list_servers)
        assert refused.value.reason == "unauthenticated"
    assert by_scope(app_metrics, "registry", "registry_operations_total") == {
        labels(operation="create", resource_type="server", status="success"): 1,
        labels(operation="create", resource_type="server", status="failure"): 1,
        labels(operation="read", resource_type="tool", status="success"): 1,
        labels(operation="read", resource_type="tool", status="failure"): 1,
    }
    assert by_scope(app_metrics, "registry", "mcp_tool_execution_total") == {
        labels(
            method="execute", server_name="weather", status="success", tool_name="get_forecast"
        ): 1
    }
    middleware = by_scope(app_metrics, "registry", "auth_requests_total")
    assert middleware == {
        labels(mechanism="api_key", status="success"): 5,
        labels(mechanism="jwt", status="failure"): 1,
    }
    # The auth server saw the same six authentications.
    assert by_scope(app_metrics, "auth_server", "auth_requests_total") == middleware
    assert http_requests(app_metrics, "auth_server") == {
        ("POST", "/authenticate", 200): 5,
        ("POST", "/authenticate", 401): 1,
    }
    assert http_requests(app_metrics, "registry") == {
        ("POST", "/servers", 201): 1,
        ("POST", "/servers", 409): 1,
        ("GET", "/servers/{server}/tools/{tool}", 200): 1,
        ("GET", "/servers/{server}/tools/{tool}", 404): 1,
        ("POST", "/servers/{server}/tools/{tool}/call", 200): 1,
        ("GET", "/servers", 401): 1,
    }
