"""End to end with a real Prometheus server scraping the demo's /metrics.

The demo runs in a subprocess (``--json --keep-running`` with the Prometheus exporter on
a free loopback port), prints what it recorded as JSON, and keeps serving.  A real
``prometheus`` (Debian's package) on loopback scrapes it every second; the test then
asks Prometheus' HTTP API, with PromQL, for counter values, ``_bucket`` counts and
``histogram_quantile``, and compares them with the demo's own numbers.  A missing
``prometheus`` binary fails the test (``make system-deps`` installs it).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from services._summary import bucket_quantile

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
IGNORED = {"job", "instance", "otel_scope_name", "otel_scope_version", "otel_scope_schema_url"}


def free_port() -> int:
    """A free loopback port (bind to 0, read it, close): Prometheus has no port 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prometheus_binary() -> str:
    path = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None
    )
    if path is None:
        pytest.fail(
            "the prometheus server binary is missing: "
            "run `make system-deps` (apt-get install prometheus)"
        )
    return path


def query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last is True:
                return
        except OSError as exc:  # not up yet
            last = exc
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}: {last!r}")


def key(scope: str, metric: str, labels: dict[str, Any]) -> tuple[Any, ...]:
    return (
        scope,
        metric,
        tuple(sorted((k, str(v)) for k, v in labels.items() if k not in IGNORED)),
    )


def test_prometheus_scrapes_what_the_workload_recorded(tmp_path: Path) -> None:
    """Counter values, bucket counts and histogram_quantile in Prometheus match the demo."""
    binary = prometheus_binary()
    prom_port, demo_port = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: demo\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{demo_port}']\n"
    )
    prom = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "prometheus.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        PYTHONPATH=str(ROOT), OTEL_PROMETHEUS_ENABLED="true", OTEL_PROMETHEUS_PORT=str(demo_port)
    )
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.demo",
            "--duration",
            "4",
            "--clients",
            "4",
            "--seed",
            "11",
            "--json",
            "--keep-running",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(demo.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(30)
        assert lines and lines[0].strip(), (
            f"no JSON from the demo; stderr: {demo.stderr and demo.stderr.read()}"
        )
        payload = json.loads(lines[0])
        assert payload["prometheus_port"] == demo_port and payload["ops"] > 100
        expected = {key(s["scope"], s["metric"], s["labels"]): s for s in payload["series"]}

        # The exporter's names: counters keep `_total`, seconds histograms `_seconds_bucket`.
        with urllib.request.urlopen(f"http://127.0.0.1:{demo_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert "\nauth_requests_total{" in text
        assert "\nmcp_tool_execution_duration_seconds_bucket{" in text

        total_ops = sum(
            s["value"] for s in payload["series"] if s["metric"] == "registry_operations_total"
        )

        def scraped_final() -> bool | float:
            got = query(prom_port, "sum(registry_operations_total)")
            value = float(got[0]["value"][1]) if got else -1.0
            return value == total_ops or value

        wait_until(scraped_final, 20, "Prometheus to scrape the final counts")

        # Every counter series, value for value.
        checked = 0
        for metric in (
            "registry_operations_total",
            "auth_requests_total",
            "mcp_tool_execution_total",
            "oauth_callbacks_total",
        ):
            for row in query(prom_port, metric):
                labels = row["metric"]
                k = key(
                    labels["otel_scope_name"],
                    metric,
                    {n: v for n, v in labels.items() if n != "__name__"},
                )
                assert k in expected, k
                assert float(row["value"][1]) == expected[k]["value"], k
                checked += 1
        assert checked >= 10

        # Histograms: _count, every _bucket (cumulative, `le`), and histogram_quantile.
        for metric in (
            "mcp_tool_execution_duration_seconds",
            "oauth_flow_duration_seconds",
            "auth_request_duration_seconds",
        ):
            mine = [s for s in payload["series"] if s["metric"] == metric]
            assert mine
            for row in query(prom_port, f"{metric}_count"):
                labels = {n: v for n, v in row["metric"].items() if n != "__name__"}
                exp = expected[key(labels["otel_scope_name"], metric, labels)]
                assert float(row["value"][1]) == exp["value"]
            buckets: dict[tuple[Any, ...], dict[float, float]] = {}
            for row in query(prom_port, f"{metric}_bucket"):
                labels = {n: v for n, v in row["metric"].items() if n not in ("__name__", "le")}
                k = key(labels["otel_scope_name"], metric, labels)
                buckets.setdefault(k, {})[float(row["metric"]["le"])] = float(row["value"][1])
            for k, by_le in buckets.items():
                exp = expected[k]
                cumulative = 0
                for bound, count in zip(
                    [*exp["bounds"], math.inf], exp["bucket_counts"], strict=True
                ):
                    cumulative += count
                    assert by_le[float(bound)] == cumulative, (k, bound)
            for row in query(prom_port, f"histogram_quantile(0.5, {metric}_bucket)"):
                labels = {n: v for n, v in row["metric"].items() if n != "__name__"}
                exp = expected[key(labels["otel_scope_name"], metric, labels)]
                mine_q = bucket_quantile(0.5, exp["bounds"], exp["bucket_counts"])
                assert float(row["value"][1]) == pytest.approx(mine_q, rel=1e-9), labels
    finally:
        demo.terminate()
        prom.terminate()
        for proc in (demo, prom):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
