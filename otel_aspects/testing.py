"""Pytest plugin and helpers to read recorded metrics in tests.

Installed as a ``pytest11`` plugin, so the fixtures need no import::

    def test_hits(metrics_client_factory, metrics_reader):
        client = metrics_client_factory("svc", "config/metrics/svc.yml")
        client.record_counter("hits_total", 2, {"route": "/"})
        assert counter_value(metrics_reader, "hits_total", {"route": "/"}) == 2

Each test gets a fresh ``MeterProvider`` with an ``InMemoryMetricReader``
(cumulative temporality, so reading twice is harmless); the global provider is
never touched.  The helpers are plain functions and work with any
``MetricReader`` whose ``get_metrics_data()`` returns data, such as the
in-memory reader ``setup_metrics`` installs by default.

A whole application -- clients created at import on the global provider,
decorators, HTTP middleware, a lifespan calling ``setup_metrics`` -- is read with
the ``app_metrics`` fixture instead: :func:`otel_aspects.sdk.capture_metrics` for one
test, so nothing is exported, no port is bound, whatever ``OTEL_*`` variables are set::

    def test_home(app_metrics):
        with TestClient(app) as client:
            client.get("/")
        assert counter_value(app_metrics, "requests_total", {"endpoint": "/"}) == 1
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)

from .client import OTelMetricsClient
from .config import MetricsConfig, load_metrics_config
from .sdk import MetricsCapture, capture_metrics

__all__ = (
    "HistogramData",
    "MetricsCapture",
    "MetricsClientFactory",
    "counter_value",
    "gauge_value",
    "histogram_data",
    "metric_points",
)

MetricsClientFactory = Callable[..., OTelMetricsClient]


@dataclass(frozen=True)
class HistogramData:
    """One histogram data point, or the merge of several with the same boundaries."""

    count: int
    sum: float
    bucket_counts: tuple[int, ...]
    boundaries: tuple[float, ...]


def metric_points(reader: Any, name: str) -> list[Any]:
    """All data points of metric *name* collected by *reader* (every scope).

    >>> metrics.record_counter("hits_total", 2)
    >>> metric_points(reader, "hits_total")[0].value
    2
    """
    data = reader.get_metrics_data()
    points: list[Any] = []
    if data is None:
        return points
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == name:
                    points.extend(metric.data.data_points)
    return points


def _matching(points: list[Any], attributes: Mapping[str, Any] | None) -> list[Any]:
    if attributes is None:
        return points
    wanted = dict(attributes)
    return [p for p in points if dict(p.attributes or {}) == wanted]


def counter_value(
    reader: Any, name: str, attributes: Mapping[str, Any] | None = None
) -> int | float:
    """The sum of counter (or up-down counter) *name* for exactly *attributes*.

    With ``attributes=None``, the sum over all attribute sets; 0 if nothing recorded.

    >>> metrics.record_counter("hits_total", 2, {"route": "/"})
    >>> counter_value(reader, "hits_total", {"route": "/"})
    2
    """
    points = _matching(metric_points(reader, name), attributes)
    total: int | float = 0
    for point in points:
        if isinstance(point, NumberDataPoint):
            total += point.value
    return total


def gauge_value(
    reader: Any, name: str, attributes: Mapping[str, Any] | None = None
) -> int | float | None:
    """The last value of gauge *name* for exactly *attributes* (``None`` if never set).

    With ``attributes=None`` and several attribute sets, the most recent point wins.
    """
    points = [
        p
        for p in _matching(metric_points(reader, name), attributes)
        if isinstance(p, NumberDataPoint)
    ]
    if not points:
        return None
    value: int | float = max(points, key=lambda p: p.time_unix_nano).value
    return value


def histogram_data(
    reader: Any, name: str, attributes: Mapping[str, Any] | None = None
) -> HistogramData | None:
    """Count, sum and buckets of histogram *name* for exactly *attributes*.

    With ``attributes=None`` the points of every attribute set are merged.
    ``None`` if nothing was recorded.

    >>> metrics.record_histogram("latency_seconds", 0.2)
    >>> histogram_data(reader, "latency_seconds").boundaries[:2]
    (0.005, 0.01)
    """
    points = [
        p
        for p in _matching(metric_points(reader, name), attributes)
        if isinstance(p, HistogramDataPoint)
    ]
    if not points:
        return None
    boundaries = tuple(points[0].explicit_bounds)
    buckets = [0] * len(points[0].bucket_counts)
    count, total = 0, 0.0
    for point in points:
        if tuple(point.explicit_bounds) != boundaries:
            raise ValueError(f"histogram {name!r}: points with different boundaries")
        count += point.count
        total += point.sum
        buckets = [a + b for a, b in zip(buckets, point.bucket_counts, strict=True)]
    return HistogramData(count, total, tuple(buckets), boundaries)


# ---------------------------------------------------------------------- fixtures


@pytest.fixture
def _otel_aspects_metrics() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        yield provider, reader
    finally:
        provider.shutdown()


@pytest.fixture
def metrics_reader(
    _otel_aspects_metrics: tuple[MeterProvider, InMemoryMetricReader],
) -> InMemoryMetricReader:
    """An ``InMemoryMetricReader`` on a fresh ``MeterProvider`` (shut down afterwards)."""
    return _otel_aspects_metrics[1]


@pytest.fixture
def meter_provider(
    _otel_aspects_metrics: tuple[MeterProvider, InMemoryMetricReader],
) -> MeterProvider:
    """The fresh ``MeterProvider`` that ``metrics_reader`` reads."""
    return _otel_aspects_metrics[0]


@pytest.fixture
def metrics_client_factory(meter_provider: MeterProvider) -> MetricsClientFactory:
    """Build clients on this test's provider: ``factory(service, config_or_path=None)``.

    *config_or_path* is a :class:`MetricsConfig`, a path to a YAML file (loaded
    with ``strict=True``, so a broken test config fails the test), or ``None``
    for an empty config (metrics then come from ``create_*``).
    """

    def factory(
        service_name: str,
        config_or_path: MetricsConfig | str | os.PathLike[str] | None = None,
    ) -> OTelMetricsClient:
        if config_or_path is None:
            config = MetricsConfig(service_name)
        elif isinstance(config_or_path, MetricsConfig):
            config = config_or_path
        else:
            config = load_metrics_config(service_name, config_or_path, strict=True)
        return OTelMetricsClient(service_name, config, meter_provider=meter_provider)

    return factory


@pytest.fixture
def app_metrics() -> Iterator[MetricsCapture]:
    """Everything the process records during this test (:func:`~otel_aspects.sdk.capture_metrics`).

    Module-level clients bound to the global provider at import, aspects and HTTP
    middleware all record into it; ``setup_metrics`` called by the application (its
    lifespan or startup) keeps it installed and exports nothing, binds no port, whatever
    the ``OTEL_*`` variables say; ``shutdown_metrics`` does not end it.  Read it with the
    helpers: ``counter_value(app_metrics, "requests_total")``.  Each test starts from
    zero; the setup active before the test (if any) is back after it.
    """
    with capture_metrics() as captured:
        yield captured
