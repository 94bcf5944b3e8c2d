"""End to end with a real Prometheus server scraping both services' /metrics.

The demo runs in a subprocess (``--json --keep-running --prometheus on``): it starts the
auth server and the registry under uvicorn, each serving Prometheus ``/metrics`` on its
own port, and a real ``prometheus`` (Debian's package) on loopback scraping both every
second; it prints what it did as JSON, and keeps serving.  The test asks Prometheus'
HTTP API, with PromQL, for counter values, ``_bucket`` counts and ``histogram_quantile``,
and compares them with what the workload counted itself (``payload["workload"]``: calls
per metric and label set, timed from outside), never with a metrics reader of the
library.  A missing ``prometheus`` binary fails the test (``make system-deps`` installs it).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from _servers import require_prometheus, wait_until
from _workload_checks import (
    Key,
    assert_buckets_consistent,
    assert_same_series,
    assert_sum_bounded,
    expected_counts,
    expected_seconds,
    key,
    only,
)

from services._prometheus import free_port
from services._summary import bucket_quantile
from services.workload import COUNTED

# Helpers other e2e tests import from here (tests/test_multiprocess_servers.py).
prometheus_binary = require_prometheus
__all__ = ("free_port", "prometheus_binary", "query", "wait_until")

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
IGNORED = {"job", "instance", "otel_scope_name", "otel_scope_version", "otel_scope_schema_url"}


def query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def rows(result: list[dict[str, Any]], metric: str, drop: tuple[str, ...] = ()) -> dict[Key, float]:
    """PromQL rows of *metric* by (scope, metric, labels): the target's and the scope's
    own labels (``job``, ``instance``, ``otel_scope_*``) and *drop* left out."""
    out: dict[Key, float] = {}
    for row in result:
        labels = row["metric"]
        scope = labels["otel_scope_name"]
        mine = {n: v for n, v in labels.items() if n not in IGNORED and n != "__name__"}
        mine = {n: v for n, v in mine.items() if n not in drop}
        k = key(scope, metric, mine)
        assert k not in out, k  # one row per series
        out[k] = float(row["value"][1])
    return out


def test_prometheus_scrapes_what_the_workload_recorded() -> None:
    """PromQL returns exactly the workload's series and counts; buckets, sums and
    histogram_quantile agree with its own timings."""
    require_prometheus()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(PYTHONPATH=str(ROOT))
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
            "--prometheus",
            "on",
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
        reader.join(60)
        assert lines and lines[0].strip(), (
            f"no JSON from the demo; stderr: {demo.stderr and demo.stderr.read()}"
        )
        payload = json.loads(lines[0])
        prom_port = payload["prometheus_port"]
        assert prom_port and payload["ops"] > 100
        workload = payload["workload"]
        expected = expected_counts(workload)
        outside = expected_seconds(workload)

        # The exporter's names, on each service's own port: counters keep `_total`,
        # seconds histograms `_seconds_bucket`.
        port = payload["ports"]["registry"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert "\nauth_requests_total{" in text
        assert "\nmcp_tool_execution_duration_seconds_bucket{" in text

        total_ops = sum(n for k, n in expected.items() if k[1] == "registry_operations_total")
        # The demo prints its JSON after the workload has ended: a scrape of both services
        # that started later holds every final count (one metric at its final value is not
        # enough: other clients may still have been at work when it got there).
        printed = time.time()

        def scraped_final() -> bool | tuple[float, float]:
            got = query(prom_port, "sum(registry_operations_total)")
            value = float(got[0]["value"][1]) if got else -1.0
            up = query(prom_port, "min(timestamp(up))")
            scraped_at = float(up[0]["value"][1]) if up else 0.0
            both = len(query(prom_port, "up == 1")) == 2
            return (both and value == total_ops and scraped_at > printed + 0.1) or (
                value,
                scraped_at,
            )

        wait_until(scraped_final, 20, "Prometheus to scrape the final counts")

        # Every counted metric: PromQL returns exactly the workload's label sets, each
        # with the workload's count (counters: the value; histograms: `_count` and the
        # `+Inf` bucket), buckets and sums consistent with the workload's own timings.
        counters = sorted({m for _, m in COUNTED if not m.endswith("_seconds")})
        histograms = sorted({m for _, m in COUNTED if m.endswith("_seconds")})
        for metric in counters:
            assert_same_series(metric, rows(query(prom_port, metric), metric), expected)
        for metric in histograms:
            assert_same_series(metric, rows(query(prom_port, f"{metric}_count"), metric), expected)
            sums = rows(query(prom_port, f"{metric}_sum"), metric)
            assert set(sums) == set(only(metric, expected)), metric
            for k, total in sums.items():
                assert_sum_bounded(k, total, outside[k])
            buckets: dict[Key, dict[float, float]] = {}
            bucket_rows = query(prom_port, f"{metric}_bucket")
            for row in bucket_rows:
                le = float(row["metric"]["le"])
                (k,) = rows([row], metric, drop=("le",))
                buckets.setdefault(k, {})[le] = float(row["value"][1])
            assert set(buckets) == set(only(metric, expected)), metric
            for k, by_le in buckets.items():
                assert_buckets_consistent(k, by_le, outside[k])
            # histogram_quantile over the scraped buckets: the demo's arithmetic
            # (services._summary.bucket_quantile) agrees with Prometheus', and the median
            # is not above the bucket edge of the workload's own median duration.
            medians = rows(query(prom_port, f"histogram_quantile(0.5, {metric}_bucket)"), metric)
            assert set(medians) == set(buckets), metric
            for k, median in medians.items():
                bounds = sorted(le for le in buckets[k] if le != math.inf)
                cumulative = [buckets[k][le] for le in [*bounds, math.inf]]
                counts = [
                    int(c - p) for c, p in zip(cumulative, [0.0, *cumulative[:-1]], strict=True)
                ]
                assert median == pytest.approx(bucket_quantile(0.5, bounds, counts), rel=1e-9), k
                mine = sorted(outside[k])[(len(outside[k]) - 1) // 2]
                edge = next((b for b in bounds if b >= mine), bounds[-1])
                assert median <= edge * (1 + 1e-9), (k, median, mine)

        # The HTTP middleware beside the domain metrics: the registry's requests by status
        # code are those the workload's client got answers for; the auth server's are the
        # workload's own plus one authentication per registry request (its middleware).
        # The demo's /healthz and /metrics requests, and Prometheus' scrapes, are left out.
        api = 'http_route!~"/metrics|/healthz"'
        by_code = {
            row["metric"]["http_response_status_code"]: float(row["value"][1])
            for row in query(
                prom_port,
                "sum by (http_response_status_code) "
                f'(http_server_request_duration_seconds_count{{job="registry",{api}}})',
            )
        }
        http = payload["http"]
        assert by_code == {code: float(n) for code, n in http["registry"].items()}
        auth_total = query(
            prom_port, f'sum(http_server_request_duration_seconds_count{{job="auth_server",{api}}})'
        )
        registry_requests = sum(http["registry"].values())
        assert float(auth_total[0]["value"][1]) == sum(http["auth_server"].values()) + (
            registry_requests
        )
    finally:
        demo.terminate()
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()
