"""The whole-app fixture: ``app_metrics`` (``otel_aspects.sdk.capture_metrics``).

A FastAPI app as users write it (``tests/_app_fastapi.py``: a client created at import on
the global provider, ``@timed`` endpoints, a lifespan calling ``setup_metrics`` and
``shutdown_metrics``) is driven through its ``TestClient``; what the tests expect comes
from the requests they made.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _app_fastapi import app
from fastapi.testclient import TestClient
from otlp_receiver import OtlpReceiver

from otel_aspects import create_metrics_client, current_setup, setup_metrics, shutdown_metrics
from otel_aspects.sdk import MetricsCapture, capture_metrics
from otel_aspects.testing import counter_value, histogram_data, metric_points

SMALL_OK = {"shop": "main", "size": "small", "status": "success"}
LARGE_OK = {"shop": "main", "size": "large", "status": "success"}
pytest_plugins = ["pytester"]

NOT_FOUND = {"shop": "main", "size": "small", "status": "failure", "error_type": "HTTPException"}


def _order(client: TestClient, item: int, times: int = 1) -> None:
    for _ in range(times):
        client.post(f"/orders/{item}")


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def no_setup(clean_sdk: None) -> Iterator[None]:
    """No OTEL_* variable from outside, no setup before or after."""
    yield


class TestAppMetrics:
    def test_lifespan_setup_is_captured(self, app_metrics: MetricsCapture) -> None:
        """The module-level client, the decorators and the lifespan's setup_metrics: every
        request is counted, with its labels, through the TestClient."""
        with TestClient(app) as client:
            _order(client, 1, times=3)
            _order(client, 250, times=2)
            assert client.post("/orders/13").status_code == 404
            setup = current_setup()
            assert setup is not None and setup is app_metrics.setups[-1]
            assert setup.exporters == ("memory",) and setup.prometheus_port is None
        assert counter_value(app_metrics, "orders_total", SMALL_OK) == 3
        assert counter_value(app_metrics, "orders_total", LARGE_OK) == 2
        assert counter_value(app_metrics, "orders_total", NOT_FOUND) == 1
        assert counter_value(app_metrics, "orders_total") == 6
        histogram = histogram_data(app_metrics, "order_duration_seconds", SMALL_OK)
        assert histogram is not None and histogram.count == 3
        # The HTTP middleware: every request once (FastAPI's own metrics are off), by code.
        codes: dict[int, int] = {}
        for point in metric_points(app_metrics, "http.server.request.duration"):
            assert dict(point.attributes)["http.route"] == "/orders/{item}"
            code = dict(point.attributes)["http.response.status_code"]
            codes[code] = codes.get(code, 0) + point.count
        assert codes == {200: 5, 404: 1}
        # The lifespan's shutdown_metrics ended the app's setup, not the capture.
        assert current_setup() is None and app_metrics.active

    def test_without_lifespan(self, app_metrics: MetricsCapture) -> None:
        """A TestClient not used as a context manager runs no lifespan: still captured."""
        _order(TestClient(app), 7, times=4)
        assert app_metrics.setups == []
        assert counter_value(app_metrics, "orders_total", SMALL_OK) == 4

    def test_otel_variables_export_nothing_and_bind_nothing(
        self, app_metrics: MetricsCapture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """OTLP endpoint, Prometheus port, console, a short export interval, a
        multi-process folder, even OTEL_SDK_DISABLED: nothing is sent, no port is bound,
        no series file is written, and /metrics on the app's port shows the counts."""
        monkeypatch.setenv("OTEL_ASPECTS_MULTIPROCESS_DIR", str(tmp_path))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            prom_port = int(s.getsockname()[1])
        with OtlpReceiver() as receiver:
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
            monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp,prometheus,console")
            monkeypatch.setenv("OTEL_PROMETHEUS_ENABLED", "true")
            monkeypatch.setenv("OTEL_PROMETHEUS_PORT", str(prom_port))
            monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "50")
            monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
            with TestClient(app) as client:
                _order(client, 2, times=5)
                setup = current_setup()
                assert setup is not None and setup.exporters == ("prometheus", "memory")
                assert _port_is_free(prom_port)
                scraped = client.get("/metrics").text
                assert setup.force_flush()
                time.sleep(0.3)  # six export intervals, had an exporter been built
            assert receiver.metrics_requests == [] and receiver.rejected == 0
        assert [p.name for p in tmp_path.iterdir() if p.suffix != ".json"] == []
        line = next(x for x in scraped.splitlines() if x.startswith("orders_total{"))
        assert 'size="small"' in line and line.endswith(" 5.0")
        assert counter_value(app_metrics, "orders_total", SMALL_OK) == 5

    def test_isolated_between_tests(self, pytester: pytest.Pytester) -> None:
        """Two tests recording through the same module-level client each see their own
        counts only; a test that records without the fixture does not leak into the next."""
        pytester.makepyfile(
            shop_client="""
            from otel_aspects.metrics_client import create_metrics_client
            metrics = create_metrics_client("s", config={"counters": [{"name": "n_total"}]})
            """,
            test_two="""
            from otel_aspects.testing import counter_value
            from shop_client import metrics

            def test_a(app_metrics):
                metrics.record_counter("n_total", 2)
                assert counter_value(app_metrics, "n_total") == 2

            def test_between():
                metrics.record_counter("n_total", 100)

            def test_b(app_metrics):
                metrics.record_counter("n_total", 3)
                assert counter_value(app_metrics, "n_total") == 3
            """,
        )
        pytester.runpytest_inprocess("-p", "no:randomly").assert_outcomes(passed=3)


class TestCaptureMetrics:
    def test_setup_active_before_comes_back(self, no_setup: None) -> None:
        """A setup made before the capture is set aside, then restored; the engine's
        series start a new generation there (as after a repeated setup_metrics)."""
        client = create_metrics_client("s", config={"counters": [{"name": "c_total"}]})
        before = setup_metrics("outer")  # the in-memory default
        assert before.memory_reader is not None
        client.record_counter("c_total", 1)
        assert counter_value(before.memory_reader, "c_total") == 1
        with capture_metrics() as captured:
            assert current_setup() is None
            client.record_counter("c_total", 2)
            assert counter_value(captured, "c_total") == 2
        assert current_setup() is before
        client.record_counter("c_total", 4)
        assert counter_value(before.memory_reader, "c_total") == 4
        assert counter_value(captured, "c_total") == 2  # its last collection
        shutdown_metrics()

    def test_captures_do_not_nest(self, no_setup: None) -> None:
        """A capture inside a capture is a clear error."""
        with (
            capture_metrics(),
            pytest.raises(RuntimeError, match="already active"),
            capture_metrics(),
        ):
            pass

    def test_bad_arguments_still_fail_at_setup(self, no_setup: None) -> None:
        """The application's setup is still checked: a bad argument raises."""
        with capture_metrics(), pytest.raises(ValueError, match="unknown exporter"):
            setup_metrics("svc", exporters="zipkin")
        with capture_metrics(), pytest.raises(ValueError, match="prometheus_server"):
            setup_metrics("svc", prometheus_server="no")  # type: ignore[arg-type]

    def test_sdk_engine_is_honoured(self, no_setup: None) -> None:
        """setup_metrics(engine="sdk") inside a capture records through SDK instruments."""
        from _app_fastapi import metrics

        with capture_metrics() as captured:
            setup = setup_metrics("shop", engine="sdk")
            assert setup.engine == "sdk"
            metrics.record_counter("orders_total", 3, {"k": "v"})
            assert counter_value(captured, "orders_total", {"k": "v"}) == 3
