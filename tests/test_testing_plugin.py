"""Tests for the otel_aspects.testing pytest plugin and its readers."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_aspects.config import MetricsConfig, MetricsConfigError, MetricSpec
from otel_aspects.testing import (
    HistogramData,
    MetricsClientFactory,
    counter_value,
    gauge_value,
    histogram_data,
    metric_points,
)

pytest_plugins = ["pytester"]


class TestFixtures:
    def test_reader_is_attached_to_provider(
        self, metrics_reader: InMemoryMetricReader, meter_provider: MeterProvider
    ) -> None:
        """meter_provider is the fresh provider metrics_reader reads, not the global one."""
        assert meter_provider is not metrics.get_meter_provider()
        meter_provider.get_meter("t").create_counter("x").add(3)
        assert counter_value(metrics_reader, "x") == 3

    def test_factory_with_config_and_path(
        self,
        metrics_client_factory: MetricsClientFactory,
        metrics_reader: InMemoryMetricReader,
        tmp_path: Path,
    ) -> None:
        """The factory takes a MetricsConfig, a YAML path, or nothing."""
        path = tmp_path / "svc.yml"
        path.write_text("counters:\n  - name: from_file\n")
        a = metrics_client_factory("svc", MetricsConfig("svc", {"c": MetricSpec("counter", "c")}))
        b = metrics_client_factory("svc", path)
        c = metrics_client_factory("svc")
        a.record_counter("c")
        b.record_counter("from_file", 2)
        c.create_counter("made")
        c.record_counter("made", 4)
        assert counter_value(metrics_reader, "c") == 1
        assert counter_value(metrics_reader, "from_file") == 2
        assert counter_value(metrics_reader, "made") == 4

    def test_factory_path_is_strict(
        self, metrics_client_factory: MetricsClientFactory, tmp_path: Path
    ) -> None:
        """A broken test config fails the test instead of silently dropping metrics."""
        path = tmp_path / "svc.yml"
        path.write_text("counters:\n")
        with pytest.raises(MetricsConfigError):
            metrics_client_factory("svc", path)

    def test_isolation_between_tests(self, pytester: pytest.Pytester) -> None:
        """Two tests recording the same counter each see only their own value."""
        pytester.makepyfile(
            """
            from otel_aspects.testing import counter_value

            def test_one(meter_provider, metrics_reader):
                meter_provider.get_meter("t").create_counter("n").add(1)
                assert counter_value(metrics_reader, "n") == 1

            def test_two(meter_provider, metrics_reader):
                meter_provider.get_meter("t").create_counter("n").add(5)
                assert counter_value(metrics_reader, "n") == 5
            """
        )
        pytester.runpytest_inprocess().assert_outcomes(passed=2)


class TestReaders:
    @pytest.fixture
    def meter(self, meter_provider: MeterProvider) -> metrics.Meter:
        return meter_provider.get_meter("t")

    def test_counter_value_by_attributes(
        self, meter: metrics.Meter, metrics_reader: InMemoryMetricReader
    ) -> None:
        """counter_value sums the exact attribute set, or all of them with None."""
        c = meter.create_counter("c")
        c.add(1, {"a": "x"})
        c.add(2, {"a": "y"})
        c.add(4, {"a": "x", "b": "z"})
        assert counter_value(metrics_reader, "c", {"a": "x"}) == 1
        assert counter_value(metrics_reader, "c") == 7
        assert counter_value(metrics_reader, "c", {"a": "nope"}) == 0
        assert counter_value(metrics_reader, "c") == 7  # reading twice is harmless
        assert counter_value(metrics_reader, "missing") == 0

    def test_histogram_data(
        self, meter: metrics.Meter, metrics_reader: InMemoryMetricReader
    ) -> None:
        """histogram_data gives count, sum, buckets and boundaries, merged over sets."""
        h = meter.create_histogram("h", explicit_bucket_boundaries_advisory=[1.0, 10.0])
        h.record(0.5, {"k": "a"})
        h.record(5, {"k": "b"})
        h.record(50, {"k": "b"})
        assert histogram_data(metrics_reader, "h", {"k": "a"}) == HistogramData(
            1, 0.5, (1, 0, 0), (1.0, 10.0)
        )
        assert histogram_data(metrics_reader, "h") == HistogramData(3, 55.5, (1, 1, 1), (1.0, 10.0))
        assert histogram_data(metrics_reader, "missing") is None

    def test_gauge_value(self, meter: metrics.Meter, metrics_reader: InMemoryMetricReader) -> None:
        """gauge_value gives the last value set, or None."""
        g = meter.create_gauge("g")
        assert gauge_value(metrics_reader, "g") is None
        g.set(3, {"k": "a"})
        g.set(9, {"k": "a"})
        assert gauge_value(metrics_reader, "g", {"k": "a"}) == 9

    def test_metric_points(
        self, meter: metrics.Meter, metrics_reader: InMemoryMetricReader
    ) -> None:
        """metric_points lists the data points of one metric only."""
        meter.create_counter("one").add(1, {"k": "a"})
        meter.create_counter("one").add(1, {"k": "b"})
        meter.create_counter("two").add(1)
        assert len(metric_points(metrics_reader, "one")) == 2
        assert metric_points(metrics_reader, "three") == []
