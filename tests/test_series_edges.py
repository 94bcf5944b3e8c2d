"""otel_aspects.series on its own: what each kind of series holds after given measurements
(mutation survivors, docs/MUTATION.md).  Expected values are worked out by hand from the
measurements (OpenTelemetry's explicit buckets: a bucket holds the values up to and
including its upper bound); tests/test_engine_differential.py checks the same against the
SDK's own aggregation."""

from __future__ import annotations

import math
import time
from typing import Any

from otel_aspects.engine import Generation
from otel_aspects.series import GaugeSeries, HistogramSeries, Series, SumSeries

INF = math.inf


def test_a_new_series_is_empty_and_started_now() -> None:
    before = time.time_ns()
    series = Series({"route": "/"})
    after = time.time_ns()
    assert before <= series.start <= after
    assert (series.n, series.exemplar, series.pending) == (0, None, [])


def test_mixed_means_some_value_is_not_a_str() -> None:
    assert Series({}).mixed is False
    assert Series({"a": "x", "b": "y"}).mixed is False
    assert Series({"a": "x", "b": 1}).mixed is True
    assert Series({"a": True}).mixed is True
    assert Series({"a": 1.0, "b": "y"}).mixed is True


def test_same_types_tells_1_true_and_1_0_apart() -> None:
    series = Series({"n": 1, "s": "x"})
    assert series.same_types((("n", 1), ("s", "x")))
    assert series.same_types((("n", 2),))  # the type matters, not the value
    assert not series.same_types((("n", True),))
    assert not series.same_types((("n", 1.0),))
    assert not series.same_types((("s", "x"), ("n", 1.0)))  # not only the first item
    assert series.same_types((("other", 1.0),))  # a key it does not have: nothing to differ
    assert series.same_types(())


def test_a_gauge_has_nothing_pending_and_nothing_per_reader() -> None:
    gauge = GaugeSeries({}, readers=2)
    assert gauge.value == 0
    gauge.pending.append(5)
    gauge.fold(Generation())
    assert gauge.pending == [] and gauge.value == 0
    gauge.add_reader()
    assert not hasattr(gauge, "sums")


class TestSums:
    def test_one_measurement_at_a_time(self) -> None:
        series = SumSeries({}, readers=2)
        assert (series.value, series.sums, series.n) == (0, [0, 0], 0)
        assert series.add(3) == 0
        assert series.measure(4) == 0
        assert (series.value, series.sums, series.n) == (7, [7, 7], 2)
        series.sums[0] = 0  # reader 0 collected: its sum starts again
        series.add(2)
        assert (series.value, series.sums, series.n) == (9, [2, 9], 3)
        assert series.value.__class__ is int

    def test_many_at_once_in_order(self) -> None:
        series = SumSeries({}, readers=1)
        series.add_all([1e16, 1.0, 1.0])  # in order: each 1.0 is lost against 1e16
        assert series.value == 1e16 and series.sums == [1e16] and series.n == 3
        series = SumSeries({}, readers=3)
        series.add(1)
        series.sums[1] = 0
        series.add_all([2, 3])
        assert (series.value, series.sums, series.n) == (6, [6, 5, 6], 3)

    def test_fold_adds_what_is_pending(self) -> None:
        series = SumSeries({}, readers=2)
        series.pending.extend([1, 2, 3])
        series.fold(Generation())
        assert (series.pending, series.value, series.sums, series.n) == ([], 6, [6, 6], 3)
        series.fold_locked()  # nothing pending: nothing changes
        assert (series.value, series.n) == (6, 3)

    def test_a_new_reader_starts_with_everything_so_far(self) -> None:
        series = SumSeries({}, readers=1)
        series.add(5)
        series.sums[0] = 0
        series.add(1)
        series.add_reader()
        assert series.sums == [1, 6]
        series.add(1)
        assert series.sums == [2, 7]


def histogram(readers: int = 1) -> HistogramSeries:
    return HistogramSeries({}, (1.0, 5.0), readers)


class TestHistograms:
    def test_new(self) -> None:
        series = histogram(readers=2)
        assert series.counts == [0, 0, 0]
        assert (series.n, series.sum, series.sums) == (0, 0, [0, 0])
        assert (series.min, series.max, series.windows) == (INF, -INF, [[INF, -INF], [INF, -INF]])
        assert series.exemplars is None and series.bounds == (1.0, 5.0)

    def test_a_bound_belongs_to_the_bucket_below_it(self) -> None:
        series = histogram()
        indexes = [series.observe(v) for v in (0.5, 1.0, 1.5, 5.0, 5.5)]
        assert indexes == [0, 0, 1, 1, 2]
        assert series.counts == [2, 2, 1]
        assert series.measure(-3) == 0

    def test_count_sum_min_max(self) -> None:
        series = histogram(readers=2)
        for value in (3, 0.5, 7):
            series.observe(value)
        assert (series.n, series.sum, series.sums) == (3, 10.5, [10.5, 10.5])
        assert (series.min, series.max) == (0.5, 7)
        assert series.windows == [[0.5, 7], [0.5, 7]]
        series.windows[0] = [INF, -INF]  # reader 0 collected (a delta point's window)
        series.sums[0] = 0
        series.observe(2)
        assert series.windows == [[2, 2], [0.5, 7]] and series.sums == [2, 12.5]
        assert (series.min, series.max) == (0.5, 7)

    def test_min_and_max_of_one_value(self) -> None:
        series = histogram()
        series.observe(4)
        assert (series.min, series.max, series.windows) == (4, 4, [[4, 4]])

    def test_many_at_once_as_one_at_a_time(self) -> None:
        values = [6, 1.0, 0.25, 5.0, 3, 9]
        one, many = histogram(readers=2), histogram(readers=2)
        for value in values:
            one.observe(value)
        many.observe_all(values)
        expected: dict[str, Any] = {
            "n": 6,
            "counts": [2, 2, 2],
            "sum": 24.25,
            "sums": [24.25, 24.25],
            "min": 0.25,
            "max": 9,
            "windows": [[0.25, 9], [0.25, 9]],
        }
        for series in (one, many):
            assert {name: getattr(series, name) for name in expected} == expected

    def test_many_at_once_widen_each_window_only(self) -> None:
        series = histogram(readers=2)
        series.observe_all([2, 3])
        series.windows[1] = [INF, -INF]
        series.observe_all([2.5])  # inside reader 0's window, all of reader 1's
        assert series.windows == [[2, 3], [2.5, 2.5]] and (series.min, series.max) == (2, 3)
        series.observe_all([0.5, 4])
        assert series.windows == [[0.5, 4], [0.5, 4]] and (series.min, series.max) == (0.5, 4)
        series.observe_all([1.0])
        assert series.windows == [[0.5, 4], [0.5, 4]] and (series.min, series.max) == (0.5, 4)

    def test_fold_observes_what_is_pending(self) -> None:
        series = histogram()
        series.pending.extend([0.5, 2, 8])
        series.fold(Generation())
        assert series.pending == [] and series.counts == [1, 1, 1] and series.n == 3
        series.fold_locked()
        assert series.n == 3

    def test_a_new_reader_starts_with_everything_so_far(self) -> None:
        series = histogram()
        series.observe(2)
        series.observe(4)
        series.sums[0] = 0
        series.windows[0] = [INF, -INF]
        series.add_reader()
        assert series.sums == [0, 6] and series.windows == [[INF, -INF], [2, 4]]
        series.observe(3)
        assert series.sums == [3, 9] and series.windows == [[3, 3], [2, 4]]

    def test_of_equal_values_min_and_max_keep_the_first(self) -> None:
        """As the SDK's ``min()`` and ``max()`` do: 1 then 1.0 stays the int 1, 0.0 then -0.0
        stays 0.0 (the point's min and max, the delta windows' too)."""
        for one_at_a_time in (True, False):
            ints, zeros = histogram(), histogram()
            for series, values in ((ints, (1, 1.0)), (zeros, (0.0, -0.0))):
                for value in values:
                    if one_at_a_time:
                        series.observe(value)
                    else:
                        series.observe_all([value])
            kept = [ints.min, ints.max, *ints.windows[0]]
            assert kept == [1, 1, 1, 1] and {v.__class__ for v in kept} == {int}
            kept = [zeros.min, zeros.max, *zeros.windows[0]]
            assert [math.copysign(1.0, v) for v in kept] == [1.0] * 4, (one_at_a_time, kept)
