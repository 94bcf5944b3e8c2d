"""Hostile label values reach the exporters only in a form they can carry (issue 9, items 1, 4).

A lone surrogate from ``json.loads('"\\ud800"')`` used to make every later Prometheus
scrape answer 500 and every OTLP export log errors; an integer beyond int64 made every
export log errors and send two points with one attribute set.  Both recording paths
(the engine and ``OTEL_ASPECTS_ENGINE=sdk``) are checked against real exporters.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from collections.abc import Iterator

import pytest

from otel_aspects import set_label, setup_metrics, shutdown_metrics, timed
from otel_aspects.client import create_metrics_client
from otel_aspects.config import MetricsConfig, MetricSpec
from tests.otlp_receiver import OtlpReceiver

ENGINES = pytest.mark.parametrize("engine", ["engine", "sdk"])
CONFIG = {
    "counters": [{"name": "requests_total"}],
    "histograms": [{"name": "request_duration_seconds", "unit": "s"}],
}


@pytest.fixture(autouse=True)
def _clean_sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OTEL_* variable leaks in; every test ends with the SDK shut down."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    yield
    shutdown_metrics()


def _handler(service: str) -> object:
    metrics = create_metrics_client(service, CONFIG)

    @timed("request_duration_seconds", counter="requests_total", client=metrics)
    def handle(body: str) -> str:
        set_label("tenant", json.loads(body)["tenant"])
        return "ok"

    return handle


def _scrape(port: int) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.status, response.read().decode("utf-8")


@ENGINES
def test_lone_surrogate_never_breaks_the_prometheus_endpoint(
    engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A tenant label of "\\ud800" is exported with U+FFFD; every scrape answers 200."""
    handle = _handler("hostile_prom")
    setup = setup_metrics("hostile_prom", exporters="prometheus", prometheus_port=0, engine=engine)
    assert setup.prometheus_port
    with caplog.at_level(logging.WARNING):
        handle('{"tenant": "\\ud800"}')  # type: ignore[operator]
        for _ in range(100):
            handle('{"tenant": "good"}')  # type: ignore[operator]
    for _ in range(3):
        status, text = _scrape(setup.prometheus_port)
        assert status == 200
    assert 'tenant="\ufffd"' in text
    good = [line for line in text.splitlines() if line.startswith("requests_total")]
    assert any('tenant="good"' in line and line.endswith(" 100.0") for line in good), good
    unicode_lines = [r for r in caplog.records if "not valid Unicode" in r.getMessage()]
    assert len(unicode_lines) == 1


@ENGINES
def test_lone_surrogate_and_huge_int_over_otlp(
    engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    """OTLP carries the replaced string and the int64-overflowing value as a string, with
    no ERROR logged and one point per attribute set."""
    config = MetricsConfig("hostile_otlp", {"jobs_total": MetricSpec("counter", "jobs_total")})
    metrics = create_metrics_client("hostile_otlp", config)
    with OtlpReceiver() as receiver, caplog.at_level(logging.WARNING):
        setup_metrics("hostile_otlp", otlp_endpoint=receiver.endpoint, engine=engine)
        metrics.record_counter("jobs_total", 1, {"tenant": json.loads('"a\\udfffb"')})
        for _ in range(3):
            metrics.record_counter("jobs_total", 1, {"shard": 2**64})
        metrics.record_counter("jobs_total", 1, {"shard": 2**65})
        shutdown_metrics()
        assert receiver.total("jobs_total", {"tenant": "a\ufffdb"}) == 1
        assert receiver.total("jobs_total", {"shard": str(2**64)}) == 3
        assert receiver.total("jobs_total", {"shard": str(2**65)}) == 1
        latest = receiver.points("jobs_total", latest=True)
        assert len(latest) == 3  # one point per attribute set, no two with the same set
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    int_lines = [r for r in caplog.records if "beyond int64" in r.getMessage()]
    assert len(int_lines) == 1  # one cause (the key), however many values
