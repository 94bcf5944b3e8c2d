"""The demo workload exported over OTLP/HTTP to a loopback receiver.

The demo's two services (each in its own process, over HTTP) export there.  Every metric
of both seed tables arrives with its labels; a receiver answering 503, or down for a
while, does not slow the workload, gives one warning per outage and exporting process,
and keeps memory bounded.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from _workload_checks import (
    Key,
    assert_buckets_consistent,
    assert_same_series,
    assert_sum_bounded,
    expected_counts,
    expected_seconds,
    key,
)
from otlp_receiver import OtlpReceiver, Point
from test_services_registry import SEED_TABLES

from services.workload import COUNTED

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
DURATION = "2.5"


def run_demo(
    endpoint: str, *, duration: str = DURATION, during: Any = None, delay: float = 1.0
) -> tuple[dict[str, Any], str]:
    """Run the demo against *endpoint*; *during()* runs in a thread *delay* s in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        PYTHONPATH=str(ROOT),
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_METRIC_EXPORT_INTERVAL="300",
    )
    cmd = [sys.executable, "-m", "services.demo", "--duration", duration, "--clients", "4"]
    cmd += ["--prometheus", "off"]
    proc = subprocess.Popen(
        [*cmd, "--seed", "4", "--json"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if during is not None:
        threading.Timer(delay, during).start()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), err


def latest(rx: OtlpReceiver, metric: str) -> dict[Key, Point]:
    """The last cumulative point of *metric* per (scope, label set): each scope (service)
    comes from one process."""
    points = rx.points(metric, latest=True)
    for scope in {p.scope for p in points}:
        ids = {p.resource.get("service.instance.id") for p in points if p.scope == scope}
        assert len(ids) <= 1, (metric, scope, ids)
    return {key(p.scope, metric, p.attributes): p for p in points}


#: The demo's exporting processes: the auth server and the registry.
PROCESSES = 2


def value(p: Point) -> float:
    return float(p.count if p.kind == "histogram" else p.value)  # type: ignore[arg-type]


def outage_warnings(stderr: str) -> list[str]:
    return [
        line for line in stderr.splitlines() if line.startswith("WARNING") and "failing" in line
    ]


def test_every_table_metric_arrives_with_its_labels() -> None:
    """All 23 distinct metric names arrive, each point with exactly its table's labels;
    every metric the workload counts arrives with exactly its label sets and counts,
    histogram buckets and sums consistent with the workload's own timings."""
    with OtlpReceiver() as rx:
        payload, err = run_demo(rx.endpoint)
        assert not outage_warnings(err)
        for service, table in SEED_TABLES.items():
            for name, (_kind, labels) in table.items():
                points = [p for p in rx.points(name) if p.scope == service]
                assert points, f"{service}: {name} never arrived"
                assert all(set(p.attributes) == labels for p in points), name
        expected = expected_counts(payload["workload"])
        outside = expected_seconds(payload["workload"])
        for metric in sorted({m for _, m in COUNTED}):
            got = latest(rx, metric)
            assert_same_series(metric, {k: value(p) for k, p in got.items()}, expected)
            for k, p in got.items():
                if p.kind != "histogram":
                    continue
                running, cumulative = 0, {}
                for bound, n in zip([*p.boundaries, math.inf], p.bucket_counts, strict=True):
                    running += n
                    cumulative[float(bound)] = running
                assert_buckets_consistent(k, cumulative, outside[k])
                assert_sum_bounded(k, float(p.sum or 0.0), outside[k])


def test_receiver_outages_do_not_slow_the_workload() -> None:
    """503s, or a receiver down then back: same speed (loosely), one warning per outage,
    bounded memory, and the totals arrive once it is back."""
    with OtlpReceiver() as rx:
        baseline, _ = run_demo(rx.endpoint)

        rx.status = 503
        rejected, err = run_demo(rx.endpoint)
        assert len(outage_warnings(err)) == PROCESSES, err
        assert rx.rejected > 1

        rx.status = 200
        rx.clear()
        rx.stop()
        # Down for longer than one export's retries (the SDK retries within its timeout).
        back, err = run_demo(rx.endpoint, duration="4", during=rx.start, delay=3.5)
        # At most one warning per process for the outage; a process whose first export
        # came after the receiver was back (a loaded machine) saw no outage at all.
        assert 1 <= len(outage_warnings(err)) <= PROCESSES, err
        expected = expected_counts(back["workload"])
        recovered = latest(rx, "registry_operations_total")
        got = {k: value(p) for k, p in recovered.items()}
        assert_same_series("registry_operations_total", got, expected)

    for run in (rejected, back):
        assert run["ops"] > 0.5 * baseline["ops"], (run["ops"], baseline["ops"])
        assert run["max_rss_kb"] < 1.5 * baseline["max_rss_kb"] + 20_000
