"""Exit paths that skip atexit, and exit time with a collector that never answers.

Real child processes, real signals, real multiprocessing start methods, and the
loopback OTLP/HTTP receiver (or a TCP server that accepts and never answers).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_aspects import _exit, setup_metrics, shutdown_metrics
from tests.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
CHILDREN = Path(__file__).resolve().parent / "_children"


@pytest.fixture(autouse=True)
def _clean_sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    yield
    shutdown_metrics()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as rx:
        yield rx


class HangingCollector:
    """Accepts TCP connections on loopback, reads what is sent, never answers."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)  # held open, never answered

    def close(self) -> None:
        self._closed.set()
        self._sock.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture
def hanging() -> Iterator[HangingCollector]:
    collector = HangingCollector()
    yield collector
    collector.close()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _start(script: str, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILDREN / script), *args],
        env=_env(**env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _signal_child(
    receiver: OtlpReceiver, mode: str, sig: int, handler: str = "none", **env: str
) -> tuple[subprocess.Popen[str], str, str]:
    proc = _start("on_signal.py", receiver.endpoint, mode, handler, **env)
    # A child that never prints "ready" must fail the test, not stall the run.
    watchdog = threading.Timer(30, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc, out, err


class TestSignalFlush:
    @pytest.mark.parametrize("mode", ["idle", "busy", "recording"])
    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
    def test_every_count_delivered_and_the_signal_still_kills(
        self, receiver: OtlpReceiver, mode: str, sig: signal.Signals
    ) -> None:
        """SIGTERM/SIGHUP with the default handler: the 37 counts arrive, and the process
        still ends killed by that signal (before: 0 of 37 delivered). "recording": the
        signal lands while the main thread records (maybe holding an SDK lock): no
        deadlock, since the flush runs in another thread after the handler returned."""
        proc, _out, err = _signal_child(receiver, mode, sig)
        assert proc.returncode == -sig, err
        assert receiver.total("jobs_total", {"queue": "q1"}) == 37

    def test_application_handler_is_called_after_the_flush(self, receiver: OtlpReceiver) -> None:
        """A handler the application installed before setup still runs, after the flush:
        it ends the process with os._exit(7), so only the flush can have delivered."""
        proc, out, err = _signal_child(receiver, "idle", signal.SIGTERM, "app")
        assert proc.returncode == 7, err
        assert "app handler" in out
        assert receiver.total("jobs_total", {"queue": "q1"}) == 37

    def test_ignored_signal_is_left_alone(self, receiver: OtlpReceiver) -> None:
        """SIG_IGN set by the application stays: the process keeps running."""
        proc = _start("on_signal.py", receiver.endpoint, "idle", "ignore")
        watchdog = threading.Timer(30, proc.kill)
        watchdog.start()
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        finally:
            watchdog.cancel()
            proc.kill()
            proc.communicate()
        assert proc.returncode == -signal.SIGKILL

    def test_can_be_turned_off(self, receiver: OtlpReceiver) -> None:
        """OTEL_ASPECTS_FLUSH_ON_SIGNALS=false: Python's default, nothing flushed."""
        proc, _out, err = _signal_child(
            receiver, "idle", signal.SIGTERM, OTEL_ASPECTS_FLUSH_ON_SIGNALS="false"
        )
        assert proc.returncode == -signal.SIGTERM, err
        assert receiver.metrics_requests == []

    def test_argument_off_restores_the_previous_handler(self) -> None:
        """setup_metrics(flush_on_signals=False) after a setup that installed the handler
        puts the previous handler back."""
        setup_metrics("svc", flush_on_signals=False)  # whatever earlier tests installed
        before = signal.getsignal(signal.SIGTERM)
        assert before is not _exit._handle
        setup_metrics("svc")
        assert signal.getsignal(signal.SIGTERM) is _exit._handle
        setup_metrics("svc", flush_on_signals=False)
        assert signal.getsignal(signal.SIGTERM) is before


class TestMultiprocessingWorkers:
    @pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
    @pytest.mark.parametrize("shape", ["process", "pool", "terminate"])
    def test_worker_counts_delivered(self, receiver: OtlpReceiver, method: str, shape: str) -> None:
        """Short-lived children (2 x 10) and long-lived pool workers (20 x 3), closed and
        joined or terminated by `with Pool`, deliver every count on the way out."""
        proc = _start("mp_workers.py", receiver.endpoint, method, shape)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "done" in out
        expected = 20 if shape == "process" else 60
        assert receiver.total("work_total", {"who": "worker"}) == expected, err

    def test_spawn_child_without_setup_says_so_once(self) -> None:
        """A spawn child that never calls setup_metrics: one WARNING, and only there."""
        proc = _start("mp_no_setup.py")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "exitcode 0" in out, err


class TestExitTimeBound:
    def test_shutdown_timeout_caps_a_long_exporter_timeout(self, hanging: HangingCollector) -> None:
        """shutdown_metrics(timeout_millis=1000) returns in about 1 s even with
        OTEL_EXPORTER_OTLP_TIMEOUT=30 (before: 31 s)."""
        proc = _start("hang_exit.py", hanging.endpoint, "shutdown", OTEL_EXPORTER_OTLP_TIMEOUT="30")
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        (line,) = [line for line in out.splitlines() if line.startswith("elapsed")]
        assert float(line.split()[1]) < 5.0, out
        assert "did not finish within 1000 ms" in err

    def test_exit_flush_bounded_and_ms_timeout_reported(self, hanging: HangingCollector) -> None:
        """OTEL_EXPORTER_OTLP_TIMEOUT=10000 (the spec's milliseconds, seconds to the Python
        exporter): one ERROR, and the process still exits (before: hung over 150 s)."""
        proc = _start("hang_exit.py", hanging.endpoint, "exit", OTEL_EXPORTER_OTLP_TIMEOUT="10000")
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "exiting" in out
        errors = [line for line in err.splitlines() if "OTEL_EXPORTER_OTLP_TIMEOUT" in line]
        assert len(errors) == 1, err

    @pytest.mark.parametrize(
        ("raw", "seconds"), [("10000", 10.0), ("500", 60.0), ("abc", 2.0), ("-1", 2.0)]
    )
    def test_absurd_timeout_variable_one_error_and_a_sane_value(
        self,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
        raw: str,
        seconds: float,
    ) -> None:
        """An absurd timeout variable: one ERROR naming it, and a sane timeout used."""
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", raw)
        setup = setup_metrics("svc", otlp_endpoint="http://127.0.0.1:9", enable_logs=True)
        errors = [r for r in caplog.records if "OTEL_EXPORTER_OTLP_TIMEOUT" in r.getMessage()]
        assert len(errors) == 1 and errors[0].levelno == logging.ERROR
        assert setup._plan is not None
        assert setup._plan.otlp_timeout == seconds == setup._plan.logs_timeout
        shutdown_metrics(timeout_millis=100)

    def test_sane_timeout_variable_is_used_quietly(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "0.5")
        setup = setup_metrics("svc", otlp_endpoint="http://127.0.0.1:9")
        assert setup._plan is not None and setup._plan.otlp_timeout == 0.5
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    @pytest.mark.parametrize("millis", [0, -1, float("nan"), True])
    def test_bad_exit_timeout_argument_raises(self, millis: float) -> None:
        with pytest.raises(ValueError, match="exit_timeout_millis"):
            setup_metrics("svc", exit_timeout_millis=millis)
