"""The demo workload exported over OTLP/HTTP to a loopback receiver.

Every metric of both seed tables arrives with its labels; a receiver answering 503, or
down for a while, does not slow the workload, gives one warning per outage, and keeps
memory bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from otlp_receiver import OtlpReceiver
from test_services_registry import SEED_TABLES

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


def outage_warnings(stderr: str) -> list[str]:
    return [
        line for line in stderr.splitlines() if line.startswith("WARNING") and "failing" in line
    ]


def test_every_table_metric_arrives_with_its_labels() -> None:
    """All 23 distinct metric names arrive, each point with exactly its table's labels,
    and the final totals equal what the workload recorded."""
    with OtlpReceiver() as rx:
        payload, err = run_demo(rx.endpoint)
        assert not outage_warnings(err)
        for table in SEED_TABLES.values():
            for name, (_kind, labels) in table.items():
                points = rx.points(name)
                assert points, f"{name} never arrived"
                assert all(set(p.attributes) == labels for p in points), name
        for metric in ("registry_operations_total", "session_validations_total"):
            recorded = sum(s["value"] for s in payload["series"] if s["metric"] == metric)
            assert rx.total(metric) == recorded


def test_receiver_outages_do_not_slow_the_workload() -> None:
    """503s, or a receiver down then back: same speed (loosely), one warning per outage,
    bounded memory, and the totals arrive once it is back."""
    with OtlpReceiver() as rx:
        baseline, _ = run_demo(rx.endpoint)

        rx.status = 503
        rejected, err = run_demo(rx.endpoint)
        assert len(outage_warnings(err)) == 1, err
        assert rx.rejected > 1

        rx.status = 200
        rx.clear()
        rx.stop()
        # Down for longer than one export's retries (the SDK retries within its timeout).
        back, err = run_demo(rx.endpoint, duration="4", during=rx.start, delay=3.5)
        assert len(outage_warnings(err)) == 1, err
        recorded = sum(
            s["value"] for s in back["series"] if s["metric"] == "registry_operations_total"
        )
        assert rx.total("registry_operations_total") == recorded

    for run in (rejected, back):
        assert run["ops"] > 0.5 * baseline["ops"], (run["ops"], baseline["ops"])
        assert run["max_rss_kb"] < 1.5 * baseline["max_rss_kb"] + 20_000
