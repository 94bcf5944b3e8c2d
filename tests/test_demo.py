"""``python -m services.demo`` (``make demo``) and its summary arithmetic."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services._summary import bucket_quantile
from services.workload import COUNTED

ROOT = Path(__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


class TestBucketQuantile:
    def test_interpolates_like_histogram_quantile(self) -> None:
        """Linear interpolation inside the bucket holding the rank; first bucket from 0."""
        bounds = [0.1, 0.2, 0.4]
        assert bucket_quantile(0.5, bounds, [10, 10, 0, 0]) == pytest.approx(0.1)
        assert bucket_quantile(0.75, bounds, [10, 10, 0, 0]) == pytest.approx(0.15)
        assert bucket_quantile(0.25, bounds, [10, 10, 0, 0]) == pytest.approx(0.05)
        assert bucket_quantile(0.9, bounds, [0, 0, 10, 0]) == pytest.approx(0.38)

    def test_edges(self) -> None:
        """Empty -> NaN; a rank in +Inf -> the highest finite bound."""
        assert math.isnan(bucket_quantile(0.5, [1.0], [0, 0]))
        assert bucket_quantile(0.99, [1.0, 2.0], [1, 0, 99]) == 2.0


def test_demo_runs_from_any_directory(tmp_path: Path) -> None:
    """From another cwd, the demo starts both services over HTTP (each finds its config),
    prints progress and a summary read from their /metrics, and ends."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.demo",
            "--duration",
            "2.2",
            "--clients",
            "4",
            "--seed",
            "7",
            "--prometheus",
            "off",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for service in ("auth_server", "registry"):
        assert f"{service}: http://127.0.0.1:" in out
    assert "/metrics on the same port" in out and "operations over HTTP" in out
    progress = [line for line in out.splitlines() if line.startswith("[") and "operations:" in line]
    assert len(progress) >= 2
    assert "done:" in out and "p50 ms" in out and "p99 ms" in out
    assert "[registry]" in out and "[auth_server]" in out  # each service's own /metrics
    for name in (
        "oauth_flow_duration_seconds{",
        "mcp_tool_execution_duration_seconds{",
        "auth_requests_total{",
        "http_server_request_duration_seconds{",  # the HTTP middleware, beside them
        "http_route=/servers/{server}/tools/{tool}",  # route templates, never raw paths
    ):
        assert name in out
    assert "WARNING" not in proc.stderr, proc.stderr


def test_demo_json_mode() -> None:
    """--json: progress on stderr, one JSON line on stdout whose counts add up."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.demo",
            "--duration",
            "1",
            "--clients",
            "2",
            "--seed",
            "1",
            "--json",
            "--prometheus",
            "off",
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout.strip().splitlines()[-1])
    assert payload["ops"] == sum(payload["by_op"].values()) > 0
    assert set(payload["ports"]) == {"registry", "auth_server"}
    assert payload["prometheus_port"] is None
    assert "operations:" in proc.stderr
    # The workload's own count: one authorization request and one flow per oauth_flow
    # operation; one outside duration per histogram call, each positive.
    workload = payload["workload"]
    assert {(e["scope"], e["metric"]) for e in workload} <= COUNTED
    per_metric: dict[str, int] = {}
    for e in workload:
        per_metric[e["metric"]] = per_metric.get(e["metric"], 0) + e["count"]
        if e["metric"].endswith("_seconds"):
            assert len(e["seconds"]) == e["count"] and min(e["seconds"]) > 0
    flows = payload["by_op"]["oauth_flow"]
    assert per_metric["oauth_authorizations_total"] == flows > 0
    assert per_metric["oauth_flow_duration_seconds"] == flows
