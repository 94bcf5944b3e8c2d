"""Comparing what a backend holds with what the workload says it did (services.workload.Tally).

The expected side is the workload's own count -- calls made, per metric and label set,
with their outcome, and each call's duration measured around it -- never a metrics
reader of the library.  What can be known that way:

- counters and histogram counts: exactly, per label set (no set missing, none extra);
- histogram buckets: each duration the service measured lies inside the workload's
  outside duration, so for every ``le`` at least as many observations are at or below
  ``le`` as outside durations are; ``+Inf`` holds every call;
- histogram sums: above 0, at most the sum of the outside durations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from services.workload import COUNTED

Key = tuple[str, str, tuple[tuple[str, str], ...]]


def key(scope: str, metric: str, labels: Mapping[str, Any]) -> Key:
    return (scope, metric, tuple(sorted((k, str(v)) for k, v in labels.items())))


def expected_counts(workload: Iterable[Mapping[str, Any]]) -> dict[Key, int]:
    """``{key: count}`` of a :meth:`Tally.snapshot`."""
    return {key(e["scope"], e["metric"], e["labels"]): int(e["count"]) for e in workload}


def expected_seconds(workload: Iterable[Mapping[str, Any]]) -> dict[Key, list[float]]:
    """``{key: outside durations}`` of the histograms of a :meth:`Tally.snapshot`."""
    return {
        key(e["scope"], e["metric"], e["labels"]): list(e["seconds"])
        for e in workload
        if "seconds" in e
    }


def only(metric: str, counts: Mapping[Key, float]) -> dict[Key, float]:
    return {k: v for k, v in counts.items() if k[1] == metric}


def assert_same_series(metric: str, got: Mapping[Key, float], expected: Mapping[Key, int]) -> None:
    """Exactly the expected label sets of *metric*, each with exactly its count."""
    want = only(metric, expected)
    have = only(metric, got)
    assert want, f"the workload made no call recorded in {metric}"
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    assert not missing and not extra, f"{metric}: missing {missing}, unexpected {extra}"
    wrong = {k: (have[k], want[k]) for k in want if have[k] != want[k]}
    assert not wrong, f"{metric}: (got, expected) {wrong}"


def assert_buckets_consistent(
    k: Key, cumulative: Mapping[float, float], seconds: list[float]
) -> None:
    """Cumulative bucket counts by upper bound (``math.inf`` included) against the
    workload's outside durations of the same label set."""
    assert math.inf in cumulative, k
    assert cumulative[math.inf] == len(seconds), k
    previous = 0.0
    for le in sorted(cumulative):
        assert cumulative[le] >= previous, (k, le)  # cumulative: never decreasing
        previous = cumulative[le]
        at_most = sum(1 for s in seconds if s <= le)
        assert cumulative[le] >= at_most, (k, le, cumulative[le], at_most)


def assert_sum_bounded(k: Key, total: float, seconds: list[float]) -> None:
    """The recorded sum: positive, and not more than the time the calls took outside."""
    assert 0 < total <= math.fsum(seconds) * (1 + 1e-9) + 1e-9, (k, total, math.fsum(seconds))


def counted_metrics() -> list[tuple[str, str]]:
    return sorted(COUNTED)
