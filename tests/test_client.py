"""Tests for otel_aspects.client: recording, protection, silence of disabled metrics."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import test_default_buckets
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_aspects._attributes import MAX_VALUE_LENGTH, clean_attributes
from otel_aspects.client import OTelMetricsClient, create_metrics_client
from otel_aspects.config import DEFAULT_SECONDS_BUCKETS, MetricsConfig, MetricSpec
from otel_aspects.metrics_client import (
    OTelMetricsClient as SeedClient,
)
from otel_aspects.metrics_client import (
    create_metrics_client as seed_create,
)
from otel_aspects.metrics_client import (
    load_metrics_config as seed_load,
)
from otel_aspects.testing import (
    MetricsClientFactory,
    counter_value,
    gauge_value,
    histogram_data,
    metric_points,
)


def make_config(*specs: MetricSpec) -> MetricsConfig:
    return MetricsConfig("svc", {s.name: s for s in specs})


CONFIG = make_config(
    MetricSpec("counter", "requests_total"),
    MetricSpec("counter", "off_total", capture=False),
    MetricSpec("histogram", "latency_seconds", unit="s"),
    MetricSpec("histogram", "size_bytes", unit="By", buckets=(10.0, 100.0)),
    MetricSpec("gauge", "temperature"),
    MetricSpec("up_down_counter", "in_flight"),
)


@pytest.fixture
def client(metrics_client_factory: MetricsClientFactory) -> OTelMetricsClient:
    return metrics_client_factory("svc", CONFIG)


def warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


class TestRecording:
    def test_counter(self, client: OTelMetricsClient, metrics_reader: InMemoryMetricReader) -> None:
        """record_counter adds per attribute set; the default increment is 1."""
        client.record_counter("requests_total", attributes={"status": "success"})
        client.record_counter("requests_total", 2, {"status": "success"})
        client.record_counter("requests_total", 0.5, {"status": "failure"})
        assert counter_value(metrics_reader, "requests_total", {"status": "success"}) == 3
        assert counter_value(metrics_reader, "requests_total") == 3.5

    def test_histogram_seconds_buckets(
        self, client: OTelMetricsClient, metrics_reader: InMemoryMetricReader
    ) -> None:
        """PITFALL: a histogram in seconds uses seconds buckets, not the SDK's ms ones."""
        for v in (0.003, 0.2, 0.2, 3.0):
            client.record_histogram("latency_seconds", v)
        data = histogram_data(metrics_reader, "latency_seconds")
        assert data is not None
        assert data.boundaries == DEFAULT_SECONDS_BUCKETS == test_default_buckets.EXPECTED
        assert data.count == 4 and data.sum == pytest.approx(3.403)
        # 0.003 <= 0.005; 0.2 in (0.1, 0.25]; 3.0 in (2.5, 5]
        assert data.bucket_counts == (1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0, 0, 0)

    def test_histogram_custom_buckets(
        self, client: OTelMetricsClient, metrics_reader: InMemoryMetricReader
    ) -> None:
        """Buckets from the config reach the SDK through the advisory parameter."""
        client.record_histogram("size_bytes", 50)
        data = histogram_data(metrics_reader, "size_bytes")
        assert data is not None
        assert data.boundaries == (10.0, 100.0)
        assert data.bucket_counts == (0, 1, 0)

    def test_gauge_and_up_down_counter(
        self, client: OTelMetricsClient, metrics_reader: InMemoryMetricReader
    ) -> None:
        """Gauges keep the last value, up-down counters accept negative steps."""
        client.record_gauge("temperature", 20)
        client.record_gauge("temperature", -3.5)
        client.record_up_down_counter("in_flight", 1)
        client.record_up_down_counter("in_flight", 1)
        client.record_up_down_counter("in_flight", -1)
        assert gauge_value(metrics_reader, "temperature") == -3.5
        assert counter_value(metrics_reader, "in_flight") == 1

    def test_record_metric_dispatches_by_kind(
        self, client: OTelMetricsClient, metrics_reader: InMemoryMetricReader
    ) -> None:
        """record_metric picks the kind from the config."""
        client.record_metric("requests_total", 2)
        client.record_metric("latency_seconds", 0.1)
        client.record_metric("temperature", 7)
        client.record_metric("in_flight", -2)
        client.record_metric("never_declared", 1)
        assert counter_value(metrics_reader, "requests_total") == 2
        data = histogram_data(metrics_reader, "latency_seconds")
        assert data is not None and data.count == 1
        assert gauge_value(metrics_reader, "temperature") == 7
        assert counter_value(metrics_reader, "in_flight") == -2

    def test_numeric_subtypes_are_accepted(
        self, client: OTelMetricsClient, metrics_reader: InMemoryMetricReader
    ) -> None:
        """numbers.Real values (Fraction, Decimal-like) are converted, not dropped."""
        from fractions import Fraction

        client.record_counter("requests_total", Fraction(1, 2))  # type: ignore[arg-type]
        assert counter_value(metrics_reader, "requests_total") == 0.5

    def test_spec_and_is_enabled(self, client: OTelMetricsClient) -> None:
        """spec() returns the declared spec; is_enabled() is false for capture: false."""
        assert client.spec("off_total") == CONFIG.metrics["off_total"]
        assert client.spec("nope") is None
        assert client.is_enabled("requests_total")
        assert not client.is_enabled("off_total")
        assert not client.is_enabled("nope")
        assert not client.is_enabled([])  # type: ignore[arg-type]


class TestDisabledAndUndeclared:
    def test_capture_false_is_silent(
        self,
        client: OTelMetricsClient,
        metrics_reader: InMemoryMetricReader,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """PITFALL: 1000 records to a capture: false metric log nothing above DEBUG."""
        with caplog.at_level(logging.DEBUG):
            for i in range(1000):
                client.record_counter("off_total", 1, {"i": i % 3})
                client.record_metric("off_total", 1)
                client.record_counter("undeclared_total")
        assert warnings(caplog) == []
        ours = [r.getMessage() for r in caplog.records if r.name.startswith("otel_aspects")]
        assert len(ours) == 2  # one DEBUG line per name, not per call
        assert "'off_total'" in ours[0] and "'undeclared_total'" in ours[1]
        assert metric_points(metrics_reader, "off_total") == []
        assert client.get_counter("off_total") is None

    def test_create_respects_capture_false(self, client: OTelMetricsClient) -> None:
        """create_* cannot re-enable a metric the config turned off."""
        assert client.create_counter("off_total") is None
        assert not client.is_enabled("off_total")

    def test_create_registers_undeclared(
        self, client: OTelMetricsClient, metrics_reader: InMemoryMetricReader
    ) -> None:
        """create_* registers a metric that is not in the config (seed API)."""
        created = [
            (client.create_counter("extra_total", "extra", "1"), "add"),
            (client.create_histogram("extra_seconds"), "record"),
            (client.create_gauge("extra_gauge"), "set"),
            (client.create_up_down_counter("extra_udc"), "add"),
        ]
        for instrument, method in created:  # an instrument of that kind, whatever engine
            assert callable(getattr(instrument, method, None)), instrument
        names = [getattr(instrument, "name", None) for instrument, _ in created]
        assert names == ["extra_total", "extra_seconds", "extra_gauge", "extra_udc"]
        client.record_counter("extra_total", 4)
        client.record_histogram("extra_seconds", 0.01)
        assert counter_value(metrics_reader, "extra_total") == 4
        data = histogram_data(metrics_reader, "extra_seconds")
        assert data is not None and data.boundaries == test_default_buckets.EXPECTED
        assert client.spec("extra_udc") == MetricSpec("up_down_counter", "extra_udc")

    def test_create_returns_the_existing_instrument(self, client: OTelMetricsClient) -> None:
        """create_* of a declared metric returns its instrument."""
        assert client.create_counter("requests_total") is client.get_counter("requests_total")

    def test_create_rejects_bad_input(
        self, client: OTelMetricsClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Invalid names, kinds, units and buckets give None and a warning, never raise."""
        with caplog.at_level(logging.WARNING):
            assert client.create_counter("9bad") is None
            assert client.create_counter(None) is None  # type: ignore[arg-type]
            assert client.create_counter("latency_seconds") is None
            assert client.create_histogram("h2", buckets=[2, 1]) is None
            assert client.create_gauge("g2", unit=3) is None  # type: ignore[arg-type]
        assert len(warnings(caplog)) == 5


class TestProtection:
    BAD_VALUES: tuple[Any, ...] = (
        "1",
        None,
        [1],
        True,
        math.nan,
        math.inf,
        -math.inf,
        -1,
        10**40,
        object(),
    )

    def test_bad_values_never_raise_and_warn_once_per_cause(
        self,
        client: OTelMetricsClient,
        metrics_reader: InMemoryMetricReader,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Bad values are dropped with one WARNING per cause, however often they come."""
        with caplog.at_level(logging.WARNING):
            for _ in range(50):
                for value in self.BAD_VALUES:
                    client.record_counter("requests_total", value)
                    client.record_histogram("latency_seconds", value)
        assert counter_value(metrics_reader, "requests_total") == 0
        assert histogram_data(metrics_reader, "latency_seconds") is None
        messages = [r.getMessage() for r in warnings(caplog)]
        assert len(messages) == len(set(messages))
        # str, NoneType, list, bool, object, non-finite, negative, int64 range; per metric
        assert len(messages) == 2 * 8

    def test_gauge_and_up_down_counter_reject_non_finite(
        self, client: OTelMetricsClient, metrics_reader: InMemoryMetricReader
    ) -> None:
        """Gauges and up-down counters drop NaN and infinities but keep negatives."""
        client.record_gauge("temperature", math.nan)
        client.record_up_down_counter("in_flight", math.inf)
        client.record_up_down_counter("in_flight", -4)
        assert gauge_value(metrics_reader, "temperature") is None
        assert counter_value(metrics_reader, "in_flight") == -4

    def test_wrong_kind_warns_once(
        self,
        client: OTelMetricsClient,
        metrics_reader: InMemoryMetricReader,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A histogram name given to record_counter warns once and records nothing."""
        with caplog.at_level(logging.WARNING):
            for _ in range(100):
                client.record_counter("latency_seconds", 1)
        (record,) = warnings(caplog)
        assert "is a histogram, not a counter" in record.getMessage()
        assert histogram_data(metrics_reader, "latency_seconds") is None

    @pytest.mark.parametrize("name", [None, 3, ["a"], {"a": 1}, b"requests_total"])
    def test_bad_names(self, client: OTelMetricsClient, name: Any) -> None:
        """Non-string and unhashable names never raise, in any method."""
        for method in (
            client.record_counter,
            client.record_histogram,
            client.record_gauge,
            client.record_up_down_counter,
            client.record_metric,
        ):
            method(name, 1)
        for getter in (
            client.get_counter,
            client.get_histogram,
            client.get_gauge,
            client.get_up_down_counter,
        ):
            assert getter(name) is None
        assert client.spec(name) is None

    def test_getters_are_protected(
        self, client: OTelMetricsClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        """PITFALL: get_* return None (never raise) for disabled, undeclared, wrong kind."""
        got = [
            (client.get_counter("requests_total"), "add", "requests_total"),
            (client.get_histogram("latency_seconds"), "record", "latency_seconds"),
            (client.get_gauge("temperature"), "set", "temperature"),
            (client.get_up_down_counter("in_flight"), "add", "in_flight"),
        ]
        for instrument, method, name in got:  # that kind (its method) and that name
            assert callable(getattr(instrument, method, None)), instrument
            assert getattr(instrument, "name", None) == name
        kinds = [getattr(instrument, "kind", None) for instrument, _, _ in got]
        assert kinds in (
            ["counter", "histogram", "gauge", "up_down_counter"],  # otel_aspects' engine
            [None, None, None, None],  # the SDK's own instruments
        )
        with caplog.at_level(logging.DEBUG):
            assert client.get_counter("off_total") is None
            assert client.get_counter("nope") is None
            assert client.get_histogram("requests_total") is None
            assert client.get_gauge([]) is None  # type: ignore[arg-type]
        assert len(warnings(caplog)) == 2  # wrong kind, unhashable name

    def test_bad_attributes_are_coerced(
        self, client: OTelMetricsClient, metrics_reader: InMemoryMetricReader
    ) -> None:
        """Bad attribute mappings are cleaned and the value still recorded."""
        client.record_counter("requests_total", 1, {1: "a", "b": None, "c": {"x": [1]}})
        client.record_counter("requests_total", 1, ["not", "a", "mapping"])  # type: ignore[arg-type]
        client.record_counter("requests_total", 1, {"n": math.nan})
        assert counter_value(metrics_reader, "requests_total", {"1": "a", "c": "{'x': [1]}"}) == 1
        assert counter_value(metrics_reader, "requests_total", {}) == 1
        assert counter_value(metrics_reader, "requests_total", {"n": "nan"}) == 1

    def test_sdk_failure_is_swallowed(self, caplog: pytest.LogCaptureFixture) -> None:
        """An instrument of the user's provider that raises is logged once, never raised."""
        from opentelemetry.metrics import NoOpMeterProvider

        class BrokenCounter:
            def add(self, *args: object) -> None:
                raise RuntimeError("boom")

        class BrokenProvider(NoOpMeterProvider):
            # Another MeterProvider implementation: the engine records through its instruments.
            def get_meter(self, *args: Any, **kwargs: Any) -> Any:
                meter = super().get_meter(*args, **kwargs)
                meter.create_counter = lambda *a, **k: BrokenCounter()  # type: ignore[method-assign]
                return meter

        config = MetricsConfig("svc", {"requests_total": MetricSpec("counter", "requests_total")})
        client = create_metrics_client("svc", config, meter_provider=BrokenProvider())
        with caplog.at_level(logging.WARNING):
            client.record_counter("requests_total", 1)
            client.record_counter("requests_total", 2)
        (record,) = warnings(caplog)
        assert "boom" in record.getMessage()


class TestAttributes:
    def test_fast_path_returns_same_dict(self) -> None:
        """A clean dict is returned as is (no copy)."""
        attrs = {"a": "x", "b": 1, "c": 2.5, "d": True}
        assert clean_attributes(attrs, "m") is attrs

    def test_none_and_non_mapping(self) -> None:
        """None and non-mappings give an empty dict."""
        assert clean_attributes(None, "m") == {}
        assert clean_attributes(42, "m") == {}

    def test_long_strings_are_truncated(self) -> None:
        """Keys and values longer than MAX_VALUE_LENGTH are cut."""
        cleaned = clean_attributes({"k" * 1000: "v" * 10_000}, "m")
        ((key, value),) = cleaned.items()
        assert len(key) == MAX_VALUE_LENGTH and len(value) == MAX_VALUE_LENGTH

    def test_sequences(self) -> None:
        """Homogeneous primitive sequences become tuples; mixed ones become strings."""
        cleaned = clean_attributes({"a": [1, 2], "b": ("x",), "c": [1, "x"], "d": []}, "m")
        assert cleaned == {"a": (1, 2), "b": ("x",), "c": "[1, 'x']", "d": ()}

    def test_enum_values_become_plain(self) -> None:
        """str/int subclasses (enums) become plain values without a warning."""
        import enum

        class Color(enum.StrEnum):
            RED = "red"

        cleaned = clean_attributes({"c": Color.RED, "n": enum.IntEnum("N", "A").A}, "m")
        assert cleaned == {"c": "red", "n": 1}
        assert type(cleaned["c"]) is str and type(cleaned["n"]) is int

    def test_broken_mapping(self) -> None:
        """A mapping whose iteration raises gives an empty dict."""
        from collections.abc import Mapping

        class Bad(Mapping[str, str]):
            def __getitem__(self, key: str) -> str:
                raise KeyError(key)

            def __iter__(self) -> Any:
                raise RuntimeError("nope")

            def __len__(self) -> int:
                return 1

        assert clean_attributes(Bad(), "m") == {}

    def test_one_warning_per_cause(self, caplog: pytest.LogCaptureFixture) -> None:
        """The same bad key type logs once, not once per call."""
        with caplog.at_level(logging.WARNING):
            for i in range(100):
                clean_attributes({i: "v"}, "m")
        assert len(warnings(caplog)) == 1


class TestConstruction:
    def test_seed_import_path(self) -> None:
        """The seed's import path exposes the same objects."""
        assert SeedClient is OTelMetricsClient
        assert seed_create is create_metrics_client
        from otel_aspects.config import load_metrics_config

        assert seed_load is load_metrics_config

    def test_config_none_loads_from_default_place(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, meter_provider: MeterProvider
    ) -> None:
        """create_metrics_client(service) loads config/metrics/<service>.yml."""
        monkeypatch.delenv("OTEL_METRICS_CONFIG_PATH", raising=False)
        monkeypatch.chdir(tmp_path)
        (tmp_path / "config" / "metrics").mkdir(parents=True)
        (tmp_path / "config" / "metrics" / "svc.yml").write_text("counters:\n  - name: a\n")
        client = create_metrics_client("svc", meter_provider=meter_provider)
        assert client.is_enabled("a")

    def test_client_from_yaml_file_with_one_bad_entry(
        self, tmp_path: Path, meter_provider: MeterProvider, metrics_reader: InMemoryMetricReader
    ) -> None:
        """PITFALL: a bad entry does not cost the client its other metrics."""
        from otel_aspects.config import load_metrics_config

        path = tmp_path / "svc.yml"
        path.write_text("counters:\n  - name: a\n  -\n  - name: b\nhistograms:\n  - name: h\n")
        client = create_metrics_client(
            "svc", load_metrics_config("svc", path), meter_provider=meter_provider
        )
        for name in ("a", "b"):
            client.record_counter(name)
        client.record_histogram("h", 1)
        assert counter_value(metrics_reader, "a") == counter_value(metrics_reader, "b") == 1
        data = histogram_data(metrics_reader, "h")
        assert data is not None and data.count == 1

    def test_client_before_global_setup_records_after(self, tmp_path: Path) -> None:
        """A client made before the global provider exists records once it is set."""
        script = textwrap.dedent(
            """
            from opentelemetry import metrics
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
            from otel_aspects.client import create_metrics_client
            from otel_aspects.config import MetricsConfig, MetricSpec
            from otel_aspects.testing import counter_value, histogram_data

            cfg = MetricsConfig("svc", {
                "c": MetricSpec("counter", "c"),
                "h_seconds": MetricSpec("histogram", "h_seconds", unit="s"),
            })
            client = create_metrics_client("svc", cfg)   # global proxy meter
            client.record_counter("c", 5)                 # before setup: dropped
            reader = InMemoryMetricReader()
            metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
            client.record_counter("c", 2)
            client.record_histogram("h_seconds", 0.02)
            print(counter_value(reader, "c"), histogram_data(reader, "h_seconds").boundaries[0])
            """
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
        )
        assert out.stdout.split() == ["2", "0.005"]

    def test_repr(self, client: OTelMetricsClient) -> None:
        """repr shows the service and how many metrics are enabled."""
        assert repr(client) == "<OTelMetricsClient 'svc': 5 of 6 metrics enabled>"


class TestEdges:
    def test_int64_bounds_of_up_down_counter(
        self, client: OTelMetricsClient, metrics_reader: InMemoryMetricReader
    ) -> None:
        """-2**63 is a valid int64 and is recorded; one past either end is dropped."""
        client.record_up_down_counter("in_flight", -(2**63), {"k": "min"})
        client.record_up_down_counter("in_flight", 2**63 - 1, {"k": "max"})
        client.record_up_down_counter("in_flight", -(2**63) - 1, {"k": "under"})
        client.record_up_down_counter("in_flight", 2**63, {"k": "over"})
        assert counter_value(metrics_reader, "in_flight", {"k": "min"}) == -(2**63)
        assert counter_value(metrics_reader, "in_flight", {"k": "max"}) == 2**63 - 1
        kept = {p.attributes["k"] for p in metric_points(metrics_reader, "in_flight")}
        assert kept == {"min", "max"}

    def test_create_histogram_with_huge_bucket_never_raises(
        self, client: OTelMetricsClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A boundary too large for a float is refused with a WARNING, not an OverflowError."""
        with caplog.at_level(logging.WARNING):
            assert client.create_histogram("huge_seconds", buckets=[1, 10**400]) is None
        assert any("too large" in r.getMessage() for r in warnings(caplog))
