"""The namespace of the ``>>>`` examples in otel_aspects/ (``--doctest-modules``, setup.cfg).

Every example gets, fresh for each docstring: ``metrics``, a client of service ``svc``
declaring the metric names the examples use, on its own ``MeterProvider`` whose
``InMemoryMetricReader`` is ``reader`` (never the global provider); and the stand-ins
``run_job()`` and ``text`` the examples call.  Examples that need a config file on disk
or a network stay ``# doctest: +SKIP`` (tests/test_doctests.py lists them, with why).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_aspects import MetricsConfig, MetricSpec, create_metrics_client
from otel_aspects._warn import reset_warned
from otel_aspects.config import clear_loaded_configs

_DECLARED = (
    MetricSpec("counter", "requests_total"),
    MetricSpec("counter", "jobs_total"),
    MetricSpec("counter", "errors_total"),
    MetricSpec("counter", "hits_total"),
    MetricSpec("histogram", "latency_seconds", unit="s"),
    MetricSpec("up_down_counter", "requests_in_flight"),
    MetricSpec("up_down_counter", "jobs_in_flight"),
)


@pytest.fixture(autouse=True)
def _doctest_globals(
    request: pytest.FixtureRequest, doctest_namespace: dict[str, Any]
) -> Iterator[None]:
    if request.node.__class__.__name__ != "DoctestItem":
        yield
        return
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    config = MetricsConfig("svc", {s.name: s for s in _DECLARED})
    doctest_namespace.update(
        metrics=create_metrics_client("svc", config, meter_provider=provider),
        reader=reader,
        run_job=lambda: None,
        text="some text",
    )
    yield
    provider.shutdown()
    clear_loaded_configs()  # examples register configs; later tests start without them
    reset_warned()
