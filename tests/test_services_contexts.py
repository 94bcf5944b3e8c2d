"""The services' context managers and decorators default to ``success``.

Pitfall closed here: the services' context managers once defaulted to ``failure``
(success had to be set explicitly) while the library's generic one defaulted to
``success``.  For every public context manager and decorator of
``services.registry.core.telemetry_decorators`` and
``services.auth_server.core.telemetry_decorators``:

- entering and leaving it without calling ``set_success`` records exactly one event with
  ``status="success"`` (a failure default would record ``status="failure"``);
- an exception raised inside records exactly one ``status="failure"`` event and still
  propagates (a success default that ignored exceptions would record ``success``, a
  context that swallowed the exception would make ``pytest.raises`` fail).

Each case checks every series of the metric(s) by ``status``, in the service's own meter
(both services declare ``auth_requests_total``), both through ``with`` and ``async with``.
Only public names of the ``telemetry_decorators`` modules are imported.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from services.auth_server.core import telemetry_decorators as auth_td
from services.registry.core import telemetry_decorators as registry_td


class Boom(Exception):
    """The failure raised inside the blocks."""


def statuses(reader: InMemoryMetricReader, scope: str, name: str) -> dict[str, int]:
    """Events of metric *name* in meter *scope*, by ``status`` label (counter sums,
    histogram counts)."""
    found: Counter[str] = Counter()
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            if sm.scope.name != scope:
                continue
            for metric in sm.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    amount = point.count if isinstance(point, HistogramDataPoint) else point.value
                    found[str(point.attributes.get("status"))] += amount
    return dict(found)


def assert_recorded(
    reader: InMemoryMetricReader, scope: str, names: tuple[str, ...], status: str
) -> None:
    for name in names:
        assert statuses(reader, scope, name) == {status: 1}, name


def run_block(make: Callable[[], Any], how: str, fail: bool) -> None:
    """Enter and leave ``make()`` with ``with`` or ``async with``, raising inside when
    *fail*; the block never calls ``set_success``."""

    def body() -> None:
        if fail:
            raise Boom

    if how == "with":
        with make():
            body()
        return

    async def main() -> None:
        async with make():
            body()

    anyio.run(main)


@contextmanager
def expect(fail: bool) -> Iterator[None]:
    if fail:
        with pytest.raises(Boom):
            yield
    else:
        yield


# (id, factory given the service's metrics, metrics it records)
REGISTRY_CONTEXTS: list[tuple[str, Callable[[Any], Any], tuple[str, ...]]] = [
    (
        "RegistryOperationContext",
        lambda m: registry_td.RegistryOperationContext(m, "list", "server"),
        ("registry_operations_total", "registry_operation_duration_seconds"),
    ),
    (
        "ToolDiscoveryContext-search",
        lambda m: registry_td.ToolDiscoveryContext(m, "search"),
        ("mcp_tool_discovery_total", "mcp_tool_discovery_duration_seconds"),
    ),
    (
        "ToolDiscoveryContext-lookup",
        lambda m: registry_td.ToolDiscoveryContext(m, "lookup"),
        ("mcp_tool_discovery_total", "mcp_tool_discovery_duration_seconds"),
    ),
    (
        "ToolExecutionContext",
        lambda m: registry_td.ToolExecutionContext(m, "execute"),
        ("mcp_tool_execution_total", "mcp_tool_execution_duration_seconds"),
    ),
    (
        "ResourceAccessContext",
        lambda m: registry_td.ResourceAccessContext(m),
        ("mcp_resource_access_total", "mcp_resource_access_duration_seconds"),
    ),
    (
        "PromptExecutionContext",
        lambda m: registry_td.PromptExecutionContext(m),
        ("mcp_prompt_execution_total", "mcp_prompt_execution_duration_seconds"),
    ),
    (
        "AuthMiddlewareContext",
        lambda m: registry_td.AuthMiddlewareContext(m, "jwt"),
        ("auth_requests_total",),
    ),
]

AUTH_CONTEXTS: list[tuple[str, Callable[[Any], Any], tuple[str, ...]]] = [
    (
        "AuthRequestContext",
        lambda m: auth_td.AuthRequestContext(m, "jwt"),
        ("auth_requests_total", "auth_request_duration_seconds"),
    ),
    (
        "AuthRequestContext-no-mechanism",
        lambda m: auth_td.AuthRequestContext(m),
        ("auth_requests_total", "auth_request_duration_seconds"),
    ),
    (
        "OAuthCallbackContext",
        lambda m: auth_td.OAuthCallbackContext(m),
        ("oauth_callbacks_total",),
    ),
    (
        "oauth_flow_timer",
        lambda m: auth_td.oauth_flow_timer(m),
        ("oauth_flow_duration_seconds",),
    ),
]

OUTCOMES = pytest.mark.parametrize(
    ("fail", "status"), [(False, "success"), (True, "failure")], ids=["clean", "raises"]
)
HOW = pytest.mark.parametrize("how", ["with", "async with"])


def test_every_public_context_is_covered() -> None:
    """A context manager added to either module without a case here fails this test."""
    registry_contexts = {n for n in registry_td.__all__ if n.endswith("Context")}
    auth_contexts = {n for n in auth_td.__all__ if n.endswith("Context")}
    assert registry_contexts == {case[0].split("-")[0] for case in REGISTRY_CONTEXTS}
    assert auth_contexts == {case[0].split("-")[0] for case in AUTH_CONTEXTS} - {"oauth_flow_timer"}
    auth_decorators = {n for n in auth_td.__all__ if n.startswith("track_")}
    assert auth_decorators == {case[0].split("-")[0] for case in AUTH_DECORATORS}
    assert {n for n in registry_td.__all__ if n.startswith("track_")} == {
        "track_registry_operation"
    }


@OUTCOMES
@HOW
@pytest.mark.parametrize(
    ("make", "names"), [c[1:] for c in REGISTRY_CONTEXTS], ids=[c[0] for c in REGISTRY_CONTEXTS]
)
def test_registry_context_default_outcome(
    registry_metrics: Any,
    metrics_reader: InMemoryMetricReader,
    make: Callable[[Any], Any],
    names: tuple[str, ...],
    how: str,
    fail: bool,
    status: str,
) -> None:
    """Registry contexts: no set_success -> success; an exception -> failure."""
    with expect(fail):
        run_block(lambda: make(registry_metrics), how, fail)
    assert_recorded(metrics_reader, "registry", names, status)


@OUTCOMES
@HOW
@pytest.mark.parametrize(
    ("make", "names"), [c[1:] for c in AUTH_CONTEXTS], ids=[c[0] for c in AUTH_CONTEXTS]
)
def test_auth_context_default_outcome(
    auth_metrics: Any,
    metrics_reader: InMemoryMetricReader,
    make: Callable[[Any], Any],
    names: tuple[str, ...],
    how: str,
    fail: bool,
    status: str,
) -> None:
    """Auth server contexts (and the flow timer used as one): no set_success ->
    success; an exception -> failure."""
    with expect(fail):
        run_block(lambda: make(auth_metrics), how, fail)
    assert_recorded(metrics_reader, "auth_server", names, status)


@OUTCOMES
def test_oauth_callback_ends_its_flow_with_its_status(
    auth_metrics: Any, metrics_reader: InMemoryMetricReader, fail: bool, status: str
) -> None:
    """A flow started at the authorization request and ended by its callback gets the
    callback's default status: success when the callback block is left cleanly."""
    flow = auth_td.oauth_flow_timer(auth_metrics).start()
    with expect(fail), auth_td.OAuthCallbackContext(auth_metrics) as ctx:
        ctx.set_flow(flow)
        if fail:
            raise Boom
    assert_recorded(
        metrics_reader,
        "auth_server",
        ("oauth_callbacks_total", "oauth_flow_duration_seconds"),
        status,
    )


def test_oauth_flow_stopped_without_status_is_success(
    auth_metrics: Any, metrics_reader: InMemoryMetricReader
) -> None:
    """``flow.stop()`` with no ``success=`` records success; ``success=False`` failure."""
    timer = auth_td.oauth_flow_timer(auth_metrics)
    timer.start().stop()
    assert statuses(metrics_reader, "auth_server", "oauth_flow_duration_seconds") == {"success": 1}
    timer.start().stop(success=False)
    assert statuses(metrics_reader, "auth_server", "oauth_flow_duration_seconds") == {
        "success": 1,
        "failure": 1,
    }


# ---------------------------------------------------------------- decorators


class Holder:
    """An object with a ``metrics`` attribute, as the decorators expect."""

    def __init__(self, metrics: Any) -> None:
        self.metrics = metrics


def call_decorated(decorator: Callable[[Any], Any], metrics: Any, fail: bool) -> Any:
    @decorator
    async def method(self: Holder, value: int) -> int:
        await anyio.sleep(0)
        if fail:
            raise Boom
        return value * 2

    return anyio.run(method, Holder(metrics), 21)


AUTH_DECORATORS: list[tuple[str, Callable[[Any], Any], tuple[str, ...]]] = [
    (
        "track_token_generation",
        auth_td.track_token_generation,
        ("token_generations_total", "token_generation_duration_seconds"),
    ),
    (
        "track_session_validation",
        auth_td.track_session_validation,
        ("session_validations_total", "session_validation_duration_seconds"),
    ),
    (
        "track_oauth_authorization",
        auth_td.track_oauth_authorization,
        ("oauth_authorizations_total",),
    ),
    (
        "track_outcome-token_refresh",
        auth_td.track_outcome("record_token_refresh"),
        ("token_refreshes_total",),
    ),
    (
        "track_outcome-token_revocation",
        auth_td.track_outcome("record_token_revocation"),
        ("token_revocations_total",),
    ),
    (
        "track_outcome-session_creation",
        auth_td.track_outcome("record_session_creation"),
        ("session_creations_total",),
    ),
]


@OUTCOMES
def test_track_registry_operation_default_outcome(
    registry_metrics: Any, metrics_reader: InMemoryMetricReader, fail: bool, status: str
) -> None:
    """A decorated method that returns -> success (and its result); raises -> failure."""
    with expect(fail):
        assert (
            call_decorated(
                registry_td.track_registry_operation("create", "server"), registry_metrics, fail
            )
            == 42
        )
    assert_recorded(
        metrics_reader,
        "registry",
        ("registry_operations_total", "registry_operation_duration_seconds"),
        status,
    )


@OUTCOMES
@pytest.mark.parametrize(
    ("decorator", "names"), [c[1:] for c in AUTH_DECORATORS], ids=[c[0] for c in AUTH_DECORATORS]
)
def test_auth_decorator_default_outcome(
    auth_metrics: Any,
    metrics_reader: InMemoryMetricReader,
    decorator: Callable[[Any], Any],
    names: tuple[str, ...],
    fail: bool,
    status: str,
) -> None:
    """A decorated method that returns -> success (and its result); raises -> failure."""
    with expect(fail):
        assert call_decorated(decorator, auth_metrics, fail) == 42
    assert_recorded(metrics_reader, "auth_server", names, status)
