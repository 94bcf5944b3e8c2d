"""otel_aspects._values at its edges: which values a metric takes, and the reason given for
each one it drops (mutation survivors, docs/MUTATION.md).  Expected values are literals:
int64 is 9223372036854775807 at most, -9223372036854775808 at least (OTLP's
``as_int``)."""

from __future__ import annotations

import logging
import numbers
from decimal import Decimal
from fractions import Fraction

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_aspects._values import INT64_MAX, INT64_MIN, checked_value
from otel_aspects.config import MetricsConfig, MetricSpec
from otel_aspects.testing import MetricsClientFactory, counter_value

TOP = 9223372036854775807
BOTTOM = -9223372036854775808
HITS = MetricSpec("counter", "hits_total")


def test_the_int64_bounds_are_the_literal_ones() -> None:
    assert (INT64_MAX, INT64_MIN) == (TOP, BOTTOM)


@pytest.mark.parametrize("non_negative", [False, True])
def test_ints_up_to_int64_are_kept(non_negative: bool) -> None:
    assert checked_value(TOP, non_negative=non_negative) == TOP
    assert checked_value(TOP + 1, non_negative=non_negative) == "out of int64 range"
    assert checked_value(2**64, non_negative=non_negative) == "out of int64 range"


def test_negative_ints_down_to_int64() -> None:
    assert checked_value(BOTTOM, non_negative=False) == BOTTOM
    assert checked_value(BOTTOM - 1, non_negative=False) == "out of int64 range"
    assert checked_value(BOTTOM, non_negative=True) == "negative"


def test_negative_means_below_zero() -> None:
    for kept in (0, 0.0, -0.0, 0.5, 1, 5e-324):
        assert checked_value(kept, non_negative=True) == kept
    for dropped in (-1, -0.5, -5e-324, -(10**6)):
        assert checked_value(dropped, non_negative=True) == "negative"
        assert checked_value(dropped, non_negative=False) == dropped


def test_what_is_kept_is_a_plain_int_or_float() -> None:
    class MyInt(int):
        pass

    class MyFloat(float):
        pass

    big = MyInt(2**53 + 1)  # not exact as a float: an Integral goes through int()
    for value, expected in [
        (big, 2**53 + 1),
        (MyInt(TOP), TOP),
        (MyFloat(2.5), 2.5),
        (Fraction(3, 2), 1.5),
        (Fraction(6, 3), 2.0),
    ]:
        checked = checked_value(value, non_negative=True)
        assert checked == expected and checked.__class__ is expected.__class__, value
    assert checked_value(MyInt(TOP + 1), non_negative=False) == "out of int64 range"
    assert checked_value(MyInt(-1), non_negative=True) == "negative"
    assert checked_value(Fraction(-1, 2), non_negative=True) == "negative"


def test_not_finite() -> None:
    class FloatLike:
        def __init__(self, value: float) -> None:
            self.value = value

        def __float__(self) -> float:
            return self.value

    numbers.Real.register(FloatLike)
    for value in (float("nan"), float("inf"), float("-inf"), FloatLike(float("inf"))):
        assert checked_value(value, non_negative=False) == "not finite", value
    assert checked_value(FloatLike(float("nan")), non_negative=True) == "not finite"
    assert checked_value(FloatLike(-2.0), non_negative=False) == -2.0


def test_not_numbers_say_their_type() -> None:
    assert checked_value(True, non_negative=False) == "of type bool"
    assert checked_value(False, non_negative=True) == "of type bool"
    assert checked_value("3", non_negative=False) == "of type str"
    assert checked_value(None, non_negative=False) == "of type NoneType"
    assert checked_value(1j, non_negative=False) == "of type complex"
    assert checked_value(b"1", non_negative=False) == "of type bytes"
    # Decimal is no numbers.Real (it does not mix with floats): dropped, not converted
    assert checked_value(Decimal("1.5"), non_negative=False) == "of type Decimal"


def test_not_convertible() -> None:
    class Broken:
        def __float__(self) -> float:
            raise ZeroDivisionError("a broken __float__")

    numbers.Real.register(Broken)

    class NoClass:
        @property  # type: ignore[misc]
        def __class__(self) -> type:
            raise RuntimeError("nothing can be asked of this value")

    assert checked_value(Broken(), non_negative=False) == "not convertible"
    assert checked_value(Fraction(10**400), non_negative=False) == "not convertible"
    assert checked_value(NoClass(), non_negative=True) == "not convertible"


def test_a_dropped_value_is_named_with_its_reason(
    metrics_client_factory: MetricsClientFactory,
    metrics_reader: InMemoryMetricReader,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through a client: the reason is the one the WARNING gives, the rest is recorded."""
    metrics = metrics_client_factory("svc", MetricsConfig("svc", {"hits_total": HITS}))
    with caplog.at_level(logging.WARNING, logger="otel_aspects"):
        for value in (TOP - 2, TOP + 1, -1, 2):
            metrics.record_counter("hits_total", value)
    assert counter_value(metrics_reader, "hits_total") == TOP
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "out of int64 range" in messages[0] and "negative" in messages[1]
