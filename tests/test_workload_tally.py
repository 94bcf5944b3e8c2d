"""The workload's own count (services.workload.Tally) against what the services recorded.

In process, on an isolated provider: every metric the tally claims to count completely
(``COUNTED``) holds exactly the tally's label sets and counts, and its histograms agree
with the tally's outside durations.  The end-to-end tests (Prometheus, OTLP) rely on
that tally as their expected values.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from _workload_checks import (
    assert_buckets_consistent,
    assert_same_series,
    assert_sum_bounded,
    expected_counts,
    expected_seconds,
    key,
)

from services.workload import COUNTED, build_world, run_workload

pytestmark = pytest.mark.anyio


def _read(reader: Any) -> tuple[dict[Any, float], dict[Any, Any]]:
    values: dict[Any, float] = {}
    histograms: dict[Any, Any] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    k = key(sm.scope.name, metric.name, dict(p.attributes))
                    if hasattr(p, "bucket_counts"):
                        values[k] = p.count
                        histograms[k] = p
                    else:
                        values[k] = p.value
    return values, histograms


async def test_tally_matches_what_the_services_recorded(  # type: ignore[no-untyped-def]
    registry_metrics, auth_metrics, metrics_reader
) -> None:
    world = await build_world(
        seed=21,
        latency_scale=0.05,
        registry_metrics=registry_metrics,
        auth_metrics=auth_metrics,
        password_iterations=1_000,
    )
    await run_workload(world, clients=4, duration=30, max_ops=500, seed=21, think_time=0)
    workload = world.tally.snapshot()
    expected = expected_counts(workload)
    seconds = expected_seconds(workload)
    assert {(e["scope"], e["metric"]) for e in workload} == set(COUNTED)
    statuses = {e["labels"]["status"] for e in workload}
    assert statuses == {"success", "failure"}  # the workload makes both happen
    got, histograms = _read(metrics_reader)
    for scope, metric in sorted(COUNTED):
        assert_same_series(
            metric,
            {k: v for k, v in got.items() if k[0] == scope},
            {k: v for k, v in expected.items() if k[0] == scope},
        )
    checked = 0
    for k, outside in seconds.items():
        point = histograms[k]
        cumulative, running = {}, 0
        for bound, count in zip(
            [*point.explicit_bounds, math.inf], point.bucket_counts, strict=True
        ):
            running += count
            cumulative[float(bound)] = running
        assert_buckets_consistent(k, cumulative, outside)
        assert_sum_bounded(k, point.sum, outside)
        checked += 1
    assert checked >= 10
