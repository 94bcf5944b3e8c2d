"""SDK setup: exporter choice, resource, Views, Prometheus, logs, repeated setup, shutdown."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics

import otel_aspects
from otel_aspects import current_setup, setup_metrics, shutdown_metrics
from otel_aspects.client import create_metrics_client
from otel_aspects.config import load_metrics_config
from otel_aspects.testing import counter_value, histogram_data, metric_points
from tests.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.usefixtures("clean_sdk")


def _counter(name: str = "hits_total") -> metrics.Counter:
    return metrics.get_meter("test_sdk").create_counter(name)


class TestExporterChoice:
    def test_nothing_configured_gives_memory_reader(self) -> None:
        """With nothing configured, only the in-memory reader, read through the setup."""
        setup = setup_metrics("svc")
        assert setup.exporters == ("memory",)
        assert setup.memory_reader is not None
        assert setup.readers == (setup.memory_reader,)
        _counter().add(3)
        assert counter_value(setup.memory_reader, "hits_total") == 3

    def test_explicit_endpoint_means_otlp(self) -> None:
        """otlp_endpoint alone selects OTLP (a base URL; /v1/metrics is appended)."""
        setup = setup_metrics("svc", otlp_endpoint="http://127.0.0.1:9/")
        assert setup.exporters == ("otlp",)
        assert setup.otlp_endpoint == "http://127.0.0.1:9/v1/metrics"
        assert setup.memory_reader is None

    def test_env_exporters_and_prometheus_flag(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """OTEL_METRICS_EXPORTER is read; OTEL_PROMETHEUS_ENABLED adds prometheus."""
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "console")
        monkeypatch.setenv("OTEL_PROMETHEUS_ENABLED", "true")
        monkeypatch.setenv("OTEL_PROMETHEUS_PORT", "0")
        setup = setup_metrics("svc", export_interval_millis=600_000)
        assert setup.exporters == ("console", "prometheus")
        assert setup.prometheus_port

    def test_none_means_no_reader(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """OTEL_METRICS_EXPORTER=none installs no reader at all (not even memory)."""
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        setup = setup_metrics("svc")
        assert setup.exporters == ()
        assert setup.readers == ()

    def test_unknown_exporter_argument_raises(self) -> None:
        """A typo in the exporters argument fails loudly, naming the valid choices."""
        with pytest.raises(ValueError, match="otlp, prometheus, console, none"):
            setup_metrics("svc", exporters=["otpl"])

    def test_unknown_exporter_env_logs_error(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A typo in OTEL_METRICS_EXPORTER is logged at ERROR and the service keeps going."""
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otpl")
        setup = setup_metrics("svc")
        assert setup.active
        assert any("otpl" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)

    def test_endpoint_env_variables(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The signal-specific endpoint is used as is; the generic one gets /v1/metrics."""
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318/")
        assert setup_metrics("svc", exporters="otlp").otlp_endpoint == "http://base:4318/v1/metrics"
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:1/custom")
        assert setup_metrics("svc", exporters="otlp").otlp_endpoint == "http://m:1/custom"

    @pytest.mark.parametrize(
        "variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"]
    )
    def test_endpoint_variable_alone_means_otlp(
        self, monkeypatch: pytest.MonkeyPatch, variable: str
    ) -> None:
        """A standard OTLP endpoint variable with no exporter named selects OTLP, not memory."""
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
        setup = setup_metrics("svc")
        assert setup.exporters == ("otlp",)
        assert setup.memory_reader is None

    def test_enable_metrics_false_installs_no_reader(self) -> None:
        """enable_metrics=False means no metric reader at all, not the in-memory default."""
        setup = setup_metrics("svc", enable_metrics=False)
        assert setup.readers == ()
        assert setup.memory_reader is None

    def test_logs_without_otlp_destination_warn_once(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """enable_logs with nowhere to send them says so once, instead of failing exports."""
        setup = setup_metrics("svc", enable_logs=True)
        warnings = [r for r in caplog.records if "enable_logs=True" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
        assert setup.exporters == ("memory",)
        handlers = [type(h).__name__ for h in logging.getLogger().handlers]
        assert "LoggingHandler" not in handlers

    def test_default_endpoint_is_the_seeds(self) -> None:
        """Without argument or variable the seed's collector address is used."""
        setup = setup_metrics("svc", exporters=["otlp"])
        assert setup.otlp_endpoint == "http://otel-collector:4318/v1/metrics"

    def test_sdk_disabled(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """OTEL_SDK_DISABLED=true installs nothing and returns an inactive setup."""
        monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
        setup = setup_metrics("svc")
        assert not setup.active
        assert setup.readers == ()
        assert current_setup() is None
        _counter().add(1)  # a no-op, never an error


class TestResource:
    def test_argument_wins_and_env_attributes_kept(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """service_name beats OTEL_SERVICE_NAME; OTEL_RESOURCE_ATTRIBUTES is merged in."""
        monkeypatch.setenv("OTEL_SERVICE_NAME", "from_env")
        monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,team=a")
        setup = setup_metrics("from_arg", resource_attributes={"team": "b"})
        assert setup.resource is not None
        attrs = setup.resource.attributes
        assert attrs["service.name"] == "from_arg"
        assert attrs["deployment.environment"] == "test"
        assert attrs["team"] == "b"

    def test_instance_id_unique_per_setup(self) -> None:
        """service.instance.id is a uuid4, a new one per process (and per setup)."""
        first = setup_metrics("svc").service_instance_id
        second = setup_metrics("svc").service_instance_id
        assert first and second and first != second
        assert uuid.UUID(first).version == 4


class TestViews:
    def test_max_series_and_buckets_from_loaded_configs(self, tmp_path: Path) -> None:
        """max_series becomes a cardinality limit and buckets a histogram aggregation."""
        path = tmp_path / "svc.yml"
        path.write_text(
            "service_name: svc\n"
            "counters:\n  - name: capped_total\n    max_series: 3\n"
            "histograms:\n  - name: wait_seconds\n    unit: s\n    buckets: [1, 2]\n"
        )
        load_metrics_config("svc", path)
        setup = setup_metrics("svc")
        assert setup.memory_reader is not None
        meter = metrics.get_meter("svc")  # the service's meter, as its client uses
        counter = meter.create_counter("capped_total")
        for i in range(20):
            counter.add(1, {"i": str(i)})
        # No advisory here: the View alone sets the buckets.
        meter.create_histogram("wait_seconds", unit="s").record(1.5)
        points = metric_points(setup.memory_reader, "capped_total")
        overflow = [p for p in points if p.attributes.get("otel.metric.overflow")]
        assert len(points) == 4  # 3 series kept, then one overflow series
        assert overflow and overflow[0].value == 17
        assert sum(p.value for p in points) == 20
        assert histogram_data(setup.memory_reader, "wait_seconds").boundaries == (1.0, 2.0)

    def test_views_are_scoped_to_the_service_meter(self, tmp_path: Path) -> None:
        """Another service's instrument of the same name keeps its own limit."""
        path = tmp_path / "svc.yml"
        path.write_text("service_name: svc\ncounters:\n  - name: shared_total\n    max_series: 2\n")
        load_metrics_config("svc", path)
        setup = setup_metrics("svc")
        assert setup.memory_reader is not None
        other = metrics.get_meter("other_service").create_counter("shared_total")
        for i in range(10):
            other.add(1, {"i": str(i)})
        points = metric_points(setup.memory_reader, "shared_total")
        assert len(points) == 10
        assert not [p for p in points if p.attributes.get("otel.metric.overflow")]


class TestBadSettings:
    @pytest.mark.parametrize("raw", ["abc", "-1", "70000"])
    def test_bad_prometheus_port_variable_logs_and_uses_default(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, raw: str
    ) -> None:
        """A port variable out of range is an ERROR and the default, never an exception."""
        monkeypatch.setenv("OTEL_PROMETHEUS_PORT", raw)
        setup = setup_metrics("svc", exporters="none")
        assert setup.active
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and f"OTEL_PROMETHEUS_PORT={raw!r}" in errors[0].getMessage()

    @pytest.mark.parametrize("port", [70000, -1, True, 1.5])
    def test_bad_prometheus_port_argument_raises_before_touching_the_running_setup(
        self, port: object
    ) -> None:
        """A bad port argument fails at configuration time and the running setup keeps
        serving (the earlier code closed its server, then crashed on bind)."""
        first = setup_metrics("svc", exporters="prometheus", prometheus_port=0)
        assert first.prometheus_port
        first.meter_provider.get_meter("m").create_counter("alive_total").add(3)
        with pytest.raises(ValueError, match="prometheus_port"):
            setup_metrics("svc", exporters="prometheus", prometheus_port=port)  # type: ignore[arg-type]
        assert current_setup() is first and first.active
        body = urllib.request.urlopen(
            f"http://127.0.0.1:{first.prometheus_port}/metrics", timeout=5
        ).read()
        assert re.search(rb"\nalive_total\{[^}]*\} 3\.0\n", body), body  # still serving

    @pytest.mark.parametrize("raw", ["0", "-5", "abc", "inf"])
    def test_bad_export_interval_variable_logs_and_uses_default(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, raw: str
    ) -> None:
        """OTEL_METRIC_EXPORT_INTERVAL that is not a positive number: one ERROR, default used."""
        monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", raw)
        setup = setup_metrics("svc", exporters="console")
        assert setup.active
        errors = [r for r in caplog.records if "OTEL_METRIC_EXPORT_INTERVAL" in r.getMessage()]
        assert len(errors) == 1 and errors[0].levelno == logging.ERROR

    @pytest.mark.parametrize("millis", [0, -1, float("nan"), float("inf")])
    def test_bad_export_interval_argument_raises(self, millis: float) -> None:
        """A bad interval argument is a configuration error naming the parameter."""
        with pytest.raises(ValueError, match="export_interval_millis"):
            setup_metrics("svc", exporters="console", export_interval_millis=millis)

    def test_missing_prometheus_extra_leaves_running_setup_alone(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The extra is checked before the running setup is replaced."""
        first = setup_metrics("svc", exporters="prometheus", prometheus_port=0)
        monkeypatch.setitem(sys.modules, "opentelemetry.exporter.prometheus", None)
        with pytest.raises(ImportError, match=r"otel-aspects\[prometheus\]"):
            setup_metrics("svc", exporters="prometheus", prometheus_port=0)
        assert current_setup() is first and first.active
        urllib.request.urlopen(f"http://127.0.0.1:{first.prometheus_port}/metrics", timeout=5)


class TestConfigAfterSetup:
    def test_late_config_with_max_series_warns_once(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With engine="sdk" a config loaded after setup cannot get its View: one WARNING
        says so and how to fix."""
        path = tmp_path / "late.yml"
        path.write_text("service_name: late\ncounters:\n  - name: late_total\n    max_series: 5\n")
        setup_metrics("svc", engine="sdk")
        load_metrics_config("late", path)
        load_metrics_config("late", path)  # a second load of the same service: no new line
        lines = [r for r in caplog.records if "loaded after setup_metrics" in r.getMessage()]
        assert len(lines) == 1
        assert lines[0].levelno == logging.WARNING
        assert "late_total" in lines[0].getMessage()

    def test_late_config_is_capped_by_the_engine(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With the engine, a config loaded after setup_metrics gets its max_series, silently."""
        setup = setup_metrics("svc")
        path = tmp_path / "late.yml"
        path.write_text("service_name: late\ncounters:\n  - name: late_total\n    max_series: 2\n")
        client = create_metrics_client("late", load_metrics_config("late", path))
        for i in range(5):
            client.record_counter("late_total", 1, {"i": str(i)})
        assert setup.memory_reader is not None
        points = metric_points(setup.memory_reader, "late_total")
        assert sorted((sorted(p.attributes.items()), p.value) for p in points) == [
            ([("i", "0")], 1),
            ([("i", "1")], 1),
            ([("otel.metric.overflow", True)], 3),
        ]
        assert not [r for r in caplog.records if "loaded after setup_metrics" in r.getMessage()]

    def test_config_before_setup_or_without_max_series_is_quiet(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Loaded before setup, or with nothing a View must apply, nothing is logged."""
        early = tmp_path / "early.yml"
        early.write_text("service_name: early\ncounters:\n  - name: e_total\n    max_series: 5\n")
        plain = tmp_path / "plain.yml"
        plain.write_text("service_name: plain\ncounters:\n  - name: p_total\n")
        load_metrics_config("early", early)
        setup_metrics("svc")
        load_metrics_config("plain", plain)
        assert not [r for r in caplog.records if "loaded after setup_metrics" in r.getMessage()]


class TestRepeatedSetup:
    def test_second_setup_replaces_first(self) -> None:
        """A second call replaces the provider; instruments obtained before keep working."""
        first = setup_metrics("svc")
        counter = _counter()
        counter.add(2)
        second = setup_metrics("svc")
        counter.add(5)
        assert not first.active and second.active
        assert second.memory_reader is not None and first.memory_reader is not None
        assert counter_value(second.memory_reader, "hits_total") == 5
        assert current_setup() is second

    def test_old_prometheus_server_closed(self) -> None:
        """Replacing a setup closes its Prometheus server and binds the new one."""
        first = setup_metrics("svc", exporters=["prometheus"], prometheus_port=0)
        port = first.prometheus_port
        assert port
        second = setup_metrics("svc", exporters=["prometheus"], prometheus_port=port)
        assert second.prometheus_port == port  # the port was freed for the new server
        _counter().add(4)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert re.search(rb"hits_total\{[^}]*\} 4\.0", body)

    def test_shutdown_idempotent_and_noop_after(self) -> None:
        """shutdown_metrics can be called twice; instruments become no-ops."""
        setup = setup_metrics("svc")
        counter = _counter()
        counter.add(1)
        shutdown_metrics()
        shutdown_metrics()
        counter.add(1)
        assert not setup.active
        assert current_setup() is None

    def test_global_provider_is_ours(self) -> None:
        """The global API provider is the switching provider handed out by the setup."""
        setup = setup_metrics("svc")
        assert metrics.get_meter_provider() is setup.meter_provider


class TestPrometheus:
    def test_loopback_free_port_and_scrape(self) -> None:
        """Port 0 picks a free port on 127.0.0.1; the metric is scrapable there."""
        setup = setup_metrics("svc", exporters="prometheus", prometheus_port=0)
        port = setup.prometheus_port
        assert port
        from otel_aspects.sdk import current_setup as cs

        active = cs()
        assert active is not None and active._installation is not None
        assert active._installation.prometheus_server.server_address[0] == "127.0.0.1"
        _counter().add(2, {"route": "/"})
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert re.search(rb'hits_total\{[^}]*route="/"[^}]*\} 2\.0', body)

    def test_port_taken_logs_one_error_and_keeps_running(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A taken port gives one clear ERROR; the other readers still get the metrics."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            taken = sock.getsockname()[1]
            monkeypatch.setenv("OTEL_PROMETHEUS_PORT", str(taken))
            setup = setup_metrics(
                "svc", exporters="prometheus", extra_readers=[_memory_reader_factory]
            )
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        message = errors[0].getMessage()
        assert f"127.0.0.1:{taken}" in message and "OTEL_PROMETHEUS_PORT" in message
        assert setup.prometheus_port is None
        _counter().add(1)
        (reader,) = setup.readers
        assert counter_value(reader, "hits_total") == 1

    @pytest.mark.parametrize("occupy", [False, True], ids=["9464-as-found", "9464-held"])
    def test_enabled_without_host_or_port_is_loopback_9464(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, occupy: bool
    ) -> None:
        """OTEL_PROMETHEUS_ENABLED=true alone serves on 127.0.0.1:9464, never 0.0.0.0.

        When 9464 is free, the bound server socket must be 127.0.0.1:9464 and the
        machine's non-loopback address must be refused.  When it is taken (by another
        process, or by this test in the "9464-held" case), the single ERROR must name
        127.0.0.1:9464: a 0.0.0.0 default or another default port would fail either way.
        """
        monkeypatch.setenv("OTEL_PROMETHEUS_ENABLED", "true")
        with contextlib.ExitStack() as stack:
            if occupy:
                holder = stack.enter_context(socket.socket())
                # SO_REUSEADDR as the server's own: a TIME_WAIT left by an earlier
                # scrape must not keep the holder from binding.
                holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                with contextlib.suppress(OSError):  # already taken: the same case
                    holder.bind(("127.0.0.1", 9464))
                    holder.listen()
            setup = setup_metrics("svc")
            assert setup.exporters == ("prometheus",)
            server = _prometheus_server()
            if server is not None:
                assert not occupy
                assert server.socket.getsockname()[:2] == ("127.0.0.1", 9464)
                assert setup.prometheus_port == 9464
                _counter().add(3)
                body = urllib.request.urlopen("http://127.0.0.1:9464/metrics", timeout=5).read()
                assert re.search(rb"hits_total\{[^}]*\} 3\.0", body)
                for address in _non_loopback_addresses():
                    with pytest.raises(ConnectionRefusedError):
                        socket.create_connection((address, 9464), timeout=5).close()
            else:
                assert setup.prometheus_port is None
                errors = [r for r in caplog.records if r.levelno == logging.ERROR]
                assert len(errors) == 1
                assert "127.0.0.1:9464" in errors[0].getMessage()

    def test_default_host_refuses_non_loopback_address(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With no host given (port 0, so this runs whatever holds 9464), the endpoint is
        bound on 127.0.0.1: reachable there, refused on the machine's other address.

        Would fail with a 0.0.0.0 default: the socket name would be 0.0.0.0 and the
        connection to the non-loopback address would be accepted.
        """
        monkeypatch.setenv("OTEL_PROMETHEUS_ENABLED", "true")
        monkeypatch.setenv("OTEL_PROMETHEUS_PORT", "0")
        setup = setup_metrics("svc")
        port = setup.prometheus_port
        assert port
        server = _prometheus_server()
        assert server is not None
        assert server.socket.getsockname()[:2] == ("127.0.0.1", port)
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        addresses = _non_loopback_addresses()
        for address in addresses:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((address, port), timeout=5).close()

    def test_two_workers_with_port_zero_get_different_ports(self) -> None:
        """Two processes configured alike (OTEL_PROMETHEUS_ENABLED=true,
        OTEL_PROMETHEUS_PORT=0), alive at the same time, serve on two different ports,
        each its own values.  If 0 were treated as "unset" (the fixed default port), the
        second worker would print None (port taken) and this would fail."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(OTEL_PROMETHEUS_ENABLED="true", OTEL_PROMETHEUS_PORT="0")
        root = Path(__file__).resolve().parent.parent
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _WORKER, str(amount)],
                cwd=root,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for amount in (1, 2)
        ]
        # A worker that hangs before printing must fail the test, not stall the run.
        watchdog = threading.Timer(30, lambda: [proc.kill() for proc in procs])
        watchdog.start()
        try:
            lines = [proc.stdout.readline().strip() for proc in procs]  # type: ignore[union-attr]
            assert all(line.isdigit() and int(line) > 0 for line in lines), lines
            ports = [int(line) for line in lines]
            assert ports[0] != ports[1]
            for amount, port in zip((1, 2), ports, strict=True):
                url = f"http://127.0.0.1:{port}/metrics"
                body = urllib.request.urlopen(url, timeout=5).read()
                assert re.search(rb"worker_total\{[^}]*\} %d\.0" % amount, body)
        finally:
            watchdog.cancel()
            for proc in procs:
                proc.communicate("\n", timeout=30)
        assert [proc.returncode for proc in procs] == [0, 0]

    def test_missing_package_says_how_to_install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without opentelemetry-exporter-prometheus the error names the extra to install."""
        monkeypatch.setitem(sys.modules, "opentelemetry.exporter.prometheus", None)
        with pytest.raises(ImportError, match=r"otel-aspects\[prometheus\]"):
            setup_metrics("svc", exporters="prometheus", prometheus_port=0)


#: A worker: sets up from the environment, records argv[1], prints its Prometheus port,
#: and keeps serving until a line arrives on stdin.
_WORKER = """
import sys
from opentelemetry import metrics
from otel_aspects import setup_metrics
setup = setup_metrics("worker")
metrics.get_meter("worker").create_counter("worker_total").add(int(sys.argv[1]))
print(setup.prometheus_port, flush=True)
sys.stdin.readline()
"""


def _prometheus_server() -> Any:
    """The Prometheus HTTP server of the active setup, or None when it could not bind."""
    active = current_setup()
    assert active is not None and active._installation is not None
    return active._installation.prometheus_server


def _non_loopback_addresses() -> list[str]:
    """This machine's IPv4 addresses outside 127/8: the host name's address, and the
    address of the default route (a UDP connect sends nothing)."""
    found = set()
    with contextlib.suppress(OSError):
        found.add(socket.gethostbyname(socket.gethostname()))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe, contextlib.suppress(OSError):
        probe.connect(("198.51.100.1", 9))
        found.add(probe.getsockname()[0])
    return sorted(a for a in found if not a.startswith("127.") and a != "0.0.0.0")


def _memory_reader_factory() -> otel_aspects.sdk.MetricReader:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    return InMemoryMetricReader()


class TestLogs:
    def test_enable_logs_ships_logging_over_otlp(self) -> None:
        """enable_logs=True (the seed's documented parameter) sends log records to /v1/logs."""
        with OtlpReceiver() as rx:
            setup = setup_metrics("log_svc", otlp_endpoint=rx.endpoint, enable_logs=True)
            logging.getLogger("app").warning("hello %s", "collector")
            assert setup.force_flush()
            shutdown_metrics()
            bodies = rx.log_bodies()
        assert ("hello collector") in [body for _, body in bodies]
        assert all(resource["service.name"] == "log_svc" for resource, _ in bodies)

    def test_handler_removed_on_shutdown(self) -> None:
        """Shutdown detaches the logging handler from the root logger."""
        before = list(logging.getLogger().handlers)
        setup_metrics("svc", otlp_endpoint="http://127.0.0.1:9", enable_logs=True)
        assert len(logging.getLogger().handlers) == len(before) + 1
        shutdown_metrics(timeout_millis=100)
        assert logging.getLogger().handlers == before


class TestClientIntegration:
    def test_client_created_before_setup_follows_it(self, tmp_path: Path) -> None:
        """A client made before setup_metrics records into the provider installed later."""
        path = tmp_path / "svc.yml"
        path.write_text("service_name: svc\ncounters:\n  - name: early_total\n")
        client = create_metrics_client("svc", load_metrics_config("svc", path))
        setup = setup_metrics("svc")
        client.record_counter("early_total", 2)
        assert setup.memory_reader is not None
        assert counter_value(setup.memory_reader, "early_total") == 2


class TestEngineChoice:
    def test_default_is_engine(self) -> None:
        """Without argument or variable, client recordings go through the engine."""
        assert setup_metrics("svc").engine == "engine"

    def test_argument_wins_over_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """engine= beats OTEL_ASPECTS_ENGINE; the variable is read when no argument is given."""
        monkeypatch.setenv("OTEL_ASPECTS_ENGINE", "sdk")
        assert setup_metrics("svc").engine == "sdk"
        assert setup_metrics("svc", engine="engine").engine == "engine"

    def test_bad_argument_raises_naming_the_choices(self) -> None:
        """A bad engine argument is a configuration error listing the accepted values."""
        with pytest.raises(ValueError, match="'engine', 'sdk'"):
            setup_metrics("svc", engine="fast")

    def test_bad_env_logs_one_error_and_uses_default(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A bad OTEL_ASPECTS_ENGINE: one ERROR with the value cut short, the default used."""
        monkeypatch.setenv("OTEL_ASPECTS_ENGINE", "x" * 5000)
        setup = setup_metrics("svc")
        assert setup.engine == "engine" and setup.active
        errors = [r for r in caplog.records if "OTEL_ASPECTS_ENGINE" in r.getMessage()]
        assert len(errors) == 1 and errors[0].levelno == logging.ERROR
        assert len(errors[0].getMessage()) < 300


class TestSwitchingDelegates:
    def test_every_instrument_kind_follows_a_switch(self) -> None:
        """Each delegating kind, created before setup, records into the provider set up later."""
        meter = metrics.get_meter("delegates")
        counter = meter.create_counter("d_counter")
        updown = meter.create_up_down_counter("d_updown")
        histogram = meter.create_histogram("d_histogram")
        gauge = meter.create_gauge("d_gauge")
        seen: list[object] = []
        meter.create_observable_gauge("d_observed", [lambda _opts: seen.append(1) or []])
        setup = setup_metrics("svc")
        counter.add(2)
        updown.add(-3)
        histogram.record(0.5)
        gauge.set(7)
        reader = setup.memory_reader
        assert reader is not None
        assert counter_value(reader, "d_counter") == 2
        assert counter_value(reader, "d_updown") == -3
        data = histogram_data(reader, "d_histogram")
        assert data is not None and data.count == 1
        assert seen  # the observable's callback was called by the new provider


def test_a_taken_prometheus_port_says_where_metrics_still_go(
    clean_sdk: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The second of two workers on one fixed port (uvicorn --workers 2) is told the
    truth: with no other exporter its metrics go nowhere, and how to serve one port."""
    import socket

    from otel_aspects import setup_metrics

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="otel_aspects"):
            alone = setup_metrics("svc", exporters="prometheus", prometheus_port=port)
            with_otlp = setup_metrics(
                "svc",
                exporters="prometheus,otlp",
                prometheus_port=port,
                otlp_endpoint="http://127.0.0.1:9",
            )
    assert alone.prometheus_port is None and with_otlp.prometheus_port is None
    first, second = [r.getMessage() for r in caplog.records if "cannot serve" in r.getMessage()]
    assert "no other exporter, so this process's metrics are not exported" in first
    assert "OTEL_ASPECTS_MULTIPROCESS_DIR" in first
    assert "its metrics still go to otlp" in second
