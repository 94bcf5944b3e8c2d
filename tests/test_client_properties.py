"""Property tests: no client method raises, and what is recorded is exactly the valid input."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_aspects._attributes import clean_attributes
from otel_aspects.client import OTelMetricsClient
from otel_aspects.config import MetricsConfig, MetricSpec
from otel_aspects.testing import counter_value, histogram_data

CONFIG = MetricsConfig(
    "svc",
    {
        "c": MetricSpec("counter", "c"),
        "h": MetricSpec("histogram", "h", unit="s"),
        "g": MetricSpec("gauge", "g"),
        "u": MetricSpec("up_down_counter", "u"),
        "off": MetricSpec("counter", "off", capture=False),
    },
)

primitives = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),
    st.binary(max_size=20),
)
anything = st.recursive(
    primitives | st.builds(object),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
keys = st.one_of(st.text(max_size=300), st.integers(), st.none(), st.booleans(), st.binary())
attribute_maps = st.one_of(
    st.none(),
    st.dictionaries(keys, anything, max_size=5),
    anything,
)
values = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    primitives,
    st.builds(object),
    st.lists(st.integers(), max_size=2),
)
names = st.one_of(st.sampled_from(["c", "h", "g", "u", "off"]), st.text(max_size=20), anything)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fresh() -> tuple[OTelMetricsClient, InMemoryMetricReader, MeterProvider]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    return OTelMetricsClient("svc", CONFIG, meter_provider=provider), reader, provider


def exact_sum(values: list[Any]) -> float:
    """The correctly rounded sum (``inf`` when it overflows a float, as the SDK's does)."""
    try:
        return math.fsum(values)
    except OverflowError:
        return math.inf


def is_valid_non_negative(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int):
        return 0 <= value <= 2**63 - 1
    return math.isfinite(value) and value >= 0


@SETTINGS
@given(calls=st.lists(st.tuples(names, values, attribute_maps), max_size=10))
def test_no_method_raises(calls: list[tuple[Any, Any, Any]]) -> None:
    """Whatever name, value and attributes, no client method raises, and what reaches the
    SDK is sane: nothing under the ``capture: false`` name, only declared or created
    names, OTel-valid attribute sets, finite non-negative counter and histogram data;
    a getter returns ``None`` or the instrument of exactly that name."""
    client, reader, provider = fresh()
    try:
        for name, value, attributes in calls:
            client.record_counter(name, value, attributes)
            client.record_histogram(name, value, attributes)
            client.record_gauge(name, value, attributes)
            client.record_up_down_counter(name, value, attributes)
            client.record_metric(name, value, attributes)
            for got in (
                client.get_counter(name),
                client.get_histogram(name),
                client.get_gauge(name),
                client.get_up_down_counter(name),
            ):
                assert got is None or got.name == name  # type: ignore[attr-defined]
            spec = client.spec(name)
            assert client.is_enabled(name) is (spec is not None and spec.capture)
            client.create_counter(name, value, attributes)
            client.create_histogram(name, value, attributes, value)
        assert not client.is_enabled("off") and client.get_counter("off") is None
        allowed = {"c", "h", "g", "u"} | {n for n, _, _ in calls if isinstance(n, str)}
        data = reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    assert metric.name != "off" and metric.name in allowed, metric.name
                    for point in metric.data.data_points:
                        assert_valid_attributes(dict(point.attributes or {}))
                        if metric.name in ("c", "h"):
                            number = getattr(point, "value", getattr(point, "sum", 0))
                            # finite inputs only, but a sum may overflow to inf
                            assert number >= 0, (metric.name, number)  # NaN fails too
    finally:
        provider.shutdown()


def assert_valid_attributes(attributes: dict[str, Any]) -> None:
    for key, value in attributes.items():
        assert type(key) is str and 0 < len(key) <= 256
        if isinstance(value, tuple):
            assert len(value) <= 32 and len({type(v) for v in value}) <= 1
        else:
            assert type(value) in (str, bool, int, float) and value == value  # no NaN
            assert not isinstance(value, str) or len(value) <= 256


@SETTINGS
@given(calls=st.lists(st.tuples(values, attribute_maps), max_size=15))
def test_counter_total_is_sum_of_valid_inputs(calls: list[tuple[Any, Any]]) -> None:
    """The counter total equals the sum of the finite, non-negative increments."""
    client, reader, provider = fresh()
    try:
        for value, attributes in calls:
            client.record_counter("c", value, attributes)
        expected = sum(v for v, _ in calls if is_valid_non_negative(v))
        assert math.isclose(counter_value(reader, "c"), expected, rel_tol=1e-9, abs_tol=1e-9)
    finally:
        provider.shutdown()


@SETTINGS
@given(calls=st.lists(st.tuples(values, attribute_maps), max_size=15))
def test_histogram_count_and_sum_match_valid_inputs(calls: list[tuple[Any, Any]]) -> None:
    """The histogram count is the number of finite, non-negative values, and its sum is
    their sum (a value recorded twice, truncated, or a rejected value recorded anyway
    changes one or the other)."""
    client, reader, provider = fresh()
    try:
        for value, attributes in calls:
            client.record_histogram("h", value, attributes)
        valid = [v for v, _ in calls if is_valid_non_negative(v)]
        data = histogram_data(reader, "h")
        assert (data.count if data else 0) == len(valid)
        assert (data.sum if data else 0.0) == pytest.approx(exact_sum(valid), rel=1e-9)
    finally:
        provider.shutdown()


#: Interleaved ints and floats, at least one of each: valid ones (int64 ints, finite
#: non-negative floats) and invalid ones (negative, beyond int64, NaN, infinite).
valid_ints = st.integers(min_value=0, max_value=2**63 - 1)
valid_floats = st.floats(min_value=0.0, allow_nan=False, allow_infinity=False)
mixed_numbers = st.tuples(
    st.lists(valid_ints | st.integers(max_value=-1) | st.integers(min_value=2**63), min_size=1),
    st.lists(
        valid_floats | st.floats(max_value=-(2**-1074)) | st.floats(allow_nan=True), min_size=1
    ),
    st.randoms(use_true_random=False),
).map(lambda t: t[2].sample(t[0] + t[1], len(t[0]) + len(t[1])))


@SETTINGS
@given(numbers=mixed_numbers)
def test_counter_mixed_ints_and_floats(numbers: list[int | float]) -> None:
    """Ints and floats added to the same counter (and the same series) in any order:
    the total is the exact sum of the valid ones, so neither kind is dropped nor
    truncated (an int-only or float-only path that lost the other kind would fail)."""
    assert any(type(v) is int for v in numbers) and any(type(v) is float for v in numbers)
    client, reader, provider = fresh()
    try:
        for value in numbers:
            client.record_counter("c", value, {"k": "v"})
        valid = [v for v in numbers if is_valid_non_negative(v)]
        assert counter_value(reader, "c") == pytest.approx(exact_sum(valid), rel=1e-9)
        assert counter_value(reader, "c", {"k": "v"}) == counter_value(reader, "c")
    finally:
        provider.shutdown()


@SETTINGS
@given(attributes=attribute_maps)
def test_clean_attributes_is_valid_and_idempotent(attributes: Any) -> None:
    """clean_attributes gives str keys and OTel values, and is a fixed point on its output."""
    cleaned = clean_attributes(attributes, "m")
    assert isinstance(cleaned, dict)
    for key, value in cleaned.items():
        assert type(key) is str and 0 < len(key) <= 256
        if isinstance(value, tuple):
            assert len({type(v) for v in value}) <= 1
        else:
            assert type(value) in (str, bool, int, float)
            assert value == value  # no NaN
    assert clean_attributes(cleaned, "m") == cleaned
