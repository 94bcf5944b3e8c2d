"""OTLP/HTTP export against a real loopback receiver, decoded with opentelemetry-proto."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_aspects import setup_metrics, shutdown_metrics
from otel_aspects.client import create_metrics_client
from otel_aspects.config import load_metrics_config
from tests.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
CHILDREN = Path(__file__).resolve().parent / "_children"

CONFIG = """\
service_name: {service}
counters:
  - name: jobs_total
    description: Jobs done
    unit: "1"
histograms:
  - name: job_duration_seconds
    description: Job duration
    unit: s
    buckets: [0.1, 1, 10]
"""


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    """A loopback OTLP/HTTP receiver on a free port."""
    with OtlpReceiver() as rx:
        yield rx
        shutdown_metrics()  # flush while the receiver is still up


@pytest.fixture(autouse=True)
def _clean_sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OTEL_* variable leaks in; every test ends with the SDK shut down."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    yield
    shutdown_metrics()


def _config(tmp_path: Path, service: str) -> Path:
    path = tmp_path / f"{service}.yml"
    path.write_text(CONFIG.format(service=service))
    return path


def _child_env(receiver: OtlpReceiver) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _check_exported(receiver: OtlpReceiver, service: str) -> None:
    jobs = receiver.points("jobs_total", {"queue": "q1"}, latest=True)
    assert len(jobs) == 1
    assert jobs[0].value == 7
    assert jobs[0].unit == "1"
    assert jobs[0].kind == "sum" and jobs[0].monotonic
    assert jobs[0].resource["service.name"] == service
    assert jobs[0].resource["service.instance.id"]
    (hist,) = receiver.points("job_duration_seconds", {"queue": "q1"}, latest=True)
    assert hist.unit == "s"
    assert hist.count == 3
    assert hist.sum == pytest.approx(5.55)
    assert hist.boundaries == (0.1, 1.0, 10.0)
    assert hist.bucket_counts == (1, 1, 1, 0)


class TestExport:
    def test_names_units_attributes_sums_buckets(
        self, receiver: OtlpReceiver, tmp_path: Path
    ) -> None:
        """A forced flush delivers names, units, attributes, sums, counts and buckets."""
        setup = setup_metrics(
            "otlp_svc", otlp_endpoint=receiver.endpoint, export_interval_millis=600_000
        )
        assert setup.exporters == ("otlp",)
        assert setup.otlp_endpoint == receiver.metrics_url
        client = create_metrics_client(
            "otlp_svc", load_metrics_config("otlp_svc", _config(tmp_path, "otlp_svc"))
        )
        for _ in range(7):
            client.record_counter("jobs_total", 1, {"queue": "q1"})
        for value in (0.05, 0.5, 5.0):
            client.record_histogram("job_duration_seconds", value, {"queue": "q1"})
        assert setup.force_flush()
        _check_exported(receiver, "otlp_svc")

    def test_data_recorded_before_exit_is_delivered(
        self, receiver: OtlpReceiver, tmp_path: Path
    ) -> None:
        """A process that records and exits without calling shutdown loses nothing."""
        proc = subprocess.run(
            [
                sys.executable,
                str(CHILDREN / "record_and_exit.py"),
                receiver.endpoint,
                str(_config(tmp_path, "exit_svc")),
            ],
            env=_child_env(receiver),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        assert "recorded" in proc.stdout
        _check_exported(receiver, "exit_svc")

    def test_forked_workers_export_once_each(self, receiver: OtlpReceiver) -> None:
        """Workers forked after setup export their own counts under their own instance id."""
        proc = subprocess.run(
            [sys.executable, str(CHILDREN / "prefork.py"), receiver.endpoint],
            env=_child_env(receiver),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        ids = dict(
            (line.split()[1], line.split()[2])
            for line in proc.stdout.splitlines()
            if line.startswith("ID ")
        )
        assert set(ids) == {"parent", "w1", "w2"}
        assert len(set(ids.values())) == 3
        by_instance = {
            p.resource["service.instance.id"]: p.value
            for p in receiver.points("work_total", {"who": "any"}, latest=True)
        }
        # Each worker counts only its own work; the parent's 5 + 1 is not duplicated.
        assert by_instance == {ids["parent"]: 6, ids["w1"]: 10, ids["w2"]: 20}
        assert receiver.total("work_total") == 36


class TestOutage:
    def test_down_then_503_then_up(
        self,
        receiver: OtlpReceiver,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """One warning per outage, one recovery line, fast recording, bounded memory, no loss."""
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.5")  # seconds, read by the exporter
        setup = setup_metrics(
            "outage_svc", otlp_endpoint=receiver.endpoint, export_interval_millis=600_000
        )
        from opentelemetry import metrics

        counter = metrics.get_meter("outage").create_counter("beats_total")
        caplog.set_level(logging.DEBUG)
        receiver.stop()
        recorded = 0

        # Phase 1: the collector is down (connection refused).
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(2000):
                counter.add(1, {"k": "v"})
            recorded += 2000
            assert time.perf_counter() - start < 1.0  # recording never waits on export
            t0 = time.monotonic()
            setup.force_flush()
            assert time.monotonic() - t0 < 3.0  # the export gives up promptly

        # Phase 2: the collector answers 503 (same outage, no new warning).
        receiver.status = 503
        receiver.start()
        tracemalloc.start()
        setup.force_flush()
        before = tracemalloc.take_snapshot()
        for _ in range(30):
            counter.add(1, {"k": "v"})
            recorded += 1
            setup.force_flush()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
        assert growth < 256 * 1024, growth
        assert receiver.rejected >= 30
        assert receiver.metrics_requests == []

        # Phase 3: the collector is back; the cumulative total arrives whole.
        receiver.status = 200
        assert setup.force_flush()
        assert receiver.total("beats_total", {"k": "v"}) == recorded

        ours = [r for r in caplog.records if r.name == "otel_aspects.sdk"]
        warnings = [r for r in ours if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert receiver.metrics_url in warnings[0].getMessage()
        recoveries = [r for r in ours if "recovered" in r.getMessage()]
        assert len(recoveries) == 1
        sdk_noise = [r for r in caplog.records if r.name.startswith("opentelemetry.exporter")]
        assert sdk_noise == []

        # A second outage is reported again, once.
        receiver.stop()
        setup.force_flush()
        setup.force_flush()
        warnings = [
            r
            for r in caplog.records
            if r.name == "otel_aspects.sdk" and r.levelno == logging.WARNING
        ]
        assert len(warnings) == 2


class TestOutageStatus:
    @pytest.mark.parametrize(
        ("status", "retry_after", "expected"),
        [
            (503, None, "HTTP 503 Service Unavailable"),
            (429, "30", "HTTP 429 Too Many Requests, Retry-After '30'"),
        ],
    )
    def test_outage_warning_names_the_http_status(
        self,
        receiver: OtlpReceiver,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
        status: int,
        retry_after: str | None,
        expected: str,
    ) -> None:
        """The one outage WARNING says which HTTP status the collector answered with."""
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.5")
        setup = setup_metrics(
            "status_svc", otlp_endpoint=receiver.endpoint, export_interval_millis=600_000
        )
        from opentelemetry import metrics

        metrics.get_meter("status").create_counter("beats_total").add(1)
        receiver.status = status
        receiver.retry_after = retry_after
        setup.force_flush()  # fails; the SDK's force_flush reports only timeouts
        warnings = [
            r
            for r in caplog.records
            if r.name == "otel_aspects.sdk" and r.levelno == logging.WARNING
        ]
        assert len(warnings) == 1
        assert expected in warnings[0].getMessage()
        receiver.status = 200
        assert setup.force_flush()
        assert receiver.total("beats_total") == 1


class TestProtocolAndExporterEnv:
    @pytest.mark.parametrize(
        ("variables", "named"),
        [
            ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'"),
            (
                {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
                "OTEL_EXPORTER_OTLP_PROTOCOL='http/json'",
            ),
            (
                {
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc",
                },
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL='grpc'",
            ),
        ],
    )
    def test_unsupported_protocol_one_error_then_http_protobuf(
        self,
        receiver: OtlpReceiver,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
        variables: dict[str, str],
        named: str,
    ) -> None:
        """grpc / http/json are refused with one ERROR naming the variable, and the data
        still goes out as http/protobuf (before: silently ignored)."""
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        setup = setup_metrics(
            "proto_svc", otlp_endpoint=receiver.endpoint, export_interval_millis=600_000
        )
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert named in errors[0].getMessage() and "http/protobuf" in errors[0].getMessage()
        from opentelemetry import metrics

        metrics.get_meter("proto").create_counter("beats_total").add(2)
        assert setup.force_flush()
        assert receiver.total("beats_total") == 2

    def test_http_protobuf_is_quiet(
        self,
        receiver: OtlpReceiver,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        setup_metrics("proto_svc", otlp_endpoint=receiver.endpoint)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    @pytest.mark.parametrize(
        ("value", "exporters"), [("bogus", ("otlp",)), ("bogus,console", ("console", "otlp"))]
    )
    def test_bogus_exporter_keeps_the_endpoints_otlp(
        self,
        receiver: OtlpReceiver,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
        value: str,
        exporters: tuple[str, ...],
    ) -> None:
        """OTEL_METRICS_EXPORTER=bogus with an OTLP endpoint set: one ERROR, the valid
        exporters kept and OTLP to the endpoint (before: no exporter at all)."""
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", value)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        setup = setup_metrics("bogus_svc", export_interval_millis=600_000)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "'bogus'" in errors[0].getMessage()
        assert setup.exporters == exporters
        from opentelemetry import metrics

        metrics.get_meter("bogus").create_counter("beats_total").add(3)
        assert setup.force_flush()
        assert receiver.total("beats_total") == 3
