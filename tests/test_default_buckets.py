"""The default seconds buckets, pinned by value, and where the SDK puts values with them.

Comparing a histogram's boundaries with ``DEFAULT_SECONDS_BUCKETS`` itself cannot catch a
wrong constant (a dropped ``0.075`` compares equal to itself); these tests spell the
boundaries out and check the bucket every value lands in, end to end through a client.
"""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import otel_aspects
from otel_aspects.client import OTelMetricsClient
from otel_aspects.config import DEFAULT_SECONDS_BUCKETS, MetricsConfig, MetricSpec
from otel_aspects.testing import MetricsClientFactory, histogram_data

#: Written out: 5 ms ... 10 s, with the 75 ms, 750 ms and 7.5 s steps.
EXPECTED = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


def test_default_seconds_buckets_by_value() -> None:
    """Every boundary, in order; the top-level re-export is the same tuple."""
    assert DEFAULT_SECONDS_BUCKETS == EXPECTED
    assert type(DEFAULT_SECONDS_BUCKETS) is tuple
    assert otel_aspects.DEFAULT_SECONDS_BUCKETS == EXPECTED


def test_seconds_spec_gets_the_literal_buckets() -> None:
    """A seconds histogram without buckets gets exactly these; others get none."""
    assert MetricSpec("histogram", "t_seconds", unit="s").buckets == EXPECTED
    assert MetricSpec("histogram", "size_bytes", unit="By").buckets is None
    assert MetricSpec("counter", "n_total", unit="s").buckets is None
    assert MetricSpec("up_down_counter", "busy_seconds", unit="s").buckets is None
    assert MetricSpec("gauge", "lag_seconds", unit="s").buckets is None
    assert MetricSpec("histogram", "t_micros", unit="us").buckets is None  # only "s" itself
    assert MetricSpec("histogram", "t", unit="s", buckets=(1.0,)).buckets == (1.0,)


@pytest.fixture
def client(metrics_client_factory: MetricsClientFactory) -> OTelMetricsClient:
    config = MetricsConfig("svc", {"t_seconds": MetricSpec("histogram", "t_seconds", unit="s")})
    return metrics_client_factory("svc", config)


def test_every_boundary_is_an_inclusive_upper_edge(
    client: OTelMetricsClient, metrics_reader: InMemoryMetricReader
) -> None:
    """A value at a boundary lands in that bucket, one just above in the next; 10 s+ in +Inf."""
    for bound in EXPECTED:
        client.record_histogram("t_seconds", bound)
        client.record_histogram("t_seconds", bound * 1.001)
    data = histogram_data(metrics_reader, "t_seconds")
    assert data is not None
    assert data.boundaries == EXPECTED
    # bucket 0: 0.005; bucket i (1..13): EXPECTED[i-1]*1.001 and EXPECTED[i]; +Inf: 10.01
    assert data.bucket_counts == (1, *([2] * (len(EXPECTED) - 1)), 1)
    assert data.count == 2 * len(EXPECTED)
    assert data.sum == pytest.approx(sum(EXPECTED) * 2.001)


@pytest.mark.parametrize(
    ("value", "index"),
    [
        (0.0, 0),
        (0.004, 0),
        (0.06, 4),  # (0.05, 0.075]: without 0.075 it would land with 0.1
        (0.08, 5),
        (0.6, 8),  # (0.5, 0.75]
        (0.9, 9),
        (6.0, 12),  # (5, 7.5]
        (8.0, 13),
        (11.0, 14),  # +Inf
    ],
)
def test_value_lands_in_its_bucket(
    client: OTelMetricsClient, metrics_reader: InMemoryMetricReader, value: float, index: int
) -> None:
    """One recorded value: exactly one bucket counts it, the one the literal edges say."""
    client.record_histogram("t_seconds", value)
    data = histogram_data(metrics_reader, "t_seconds")
    assert data is not None
    expected = [0] * (len(EXPECTED) + 1)
    expected[index] = 1
    assert data.bucket_counts == tuple(expected)
    assert data.sum == value
