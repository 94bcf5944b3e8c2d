"""Multi-process mode under real gunicorn, scraped by a real Prometheus, and over OTLP.

gunicorn runs ``_children/mp_wsgi_app.py`` with 4 sync workers and a low
``max_requests``, so workers restart many times during a test; its
``gunicorn.conf.py`` has the README's two lines (``otel_aspects.gunicorn.hooks``).
The master serves the workers' total on one Prometheus port and exports it over
OTLP to the loopback receiver.  Expected values are the requests the test made and
the answers it got, never a reader of the library.  A missing ``prometheus`` binary
fails the test (``make system-deps`` installs it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from otlp_receiver import OtlpReceiver
from test_prometheus_e2e import free_port, prometheus_binary, query, wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
CHILDREN = ROOT / "tests" / "_children"


class Gunicorn:
    """A gunicorn master on loopback running the test app, with the metrics hooks."""

    def __init__(self, tmp: Path, *, preload: bool, max_requests: int, env: dict[str, str]) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        self.folder = tmp / "metrics"
        conf = tmp / "gunicorn.conf.py"
        conf.write_text(
            "import otel_aspects.gunicorn\n"
            "when_ready, child_exit = otel_aspects.gunicorn.hooks(\n"
            f"    'mpweb', directory={str(self.folder)!r}, prometheus_port={self.metrics_port},\n"
            "    export_interval_millis=300,\n"
            ")\n"
            f"bind = '127.0.0.1:{self.port}'\n"
            "workers = 4\n"
            f"max_requests = {max_requests}\n"
            f"max_requests_jitter = {max_requests // 2}\n"
            f"preload_app = {preload}\n"
            "graceful_timeout = 5\n"
        )
        self.log = tmp / "gunicorn.log"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        environment.update(env, PYTHONPATH=f"{ROOT}{os.pathsep}{CHILDREN}")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(conf), "mp_wsgi_app:app"],
            cwd=CHILDREN,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "wb"),  # noqa: SIM115 - closed with the process
        )
        wait_until(lambda: self.get("/fast") is not None, 30, "gunicorn to answer")

    def get(self, path: str) -> int | None:
        """The pid of the worker that answered, or ``None`` (no answer)."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}{path}", timeout=10
            ) as response:
                return int(response.read())
        except (urllib.error.URLError, ConnectionError, OSError, ValueError):
            return None

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    binary = prometheus_binary()
    state: dict[str, Any] = {}

    def start(target_port: int) -> int:
        port = free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: web\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n"
        )
        state["process"] = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "prometheus.log", "wb"),  # noqa: SIM115
        )
        return port

    yield start
    if "process" in state:
        state["process"].terminate()
        state["process"].wait(timeout=10)


def load(server: Gunicorn, paths: list[str], threads: int = 6) -> list[int | None]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(server.get, paths))


def scalar(prom_port: int, promql: str) -> float | None:
    result = query(prom_port, promql)
    return float(result[0]["value"][1]) if result else None


def test_one_prometheus_endpoint_for_all_workers_across_restarts_and_a_sigkill(
    tmp_path: Path, prometheus: Any
) -> None:
    server = Gunicorn(tmp_path, preload=False, max_requests=30, env={})
    try:
        prom_port = prometheus(server.metrics_port)
        paths = ["/slow" if i % 10 == 0 else "/fast" for i in range(400)]
        answers = load(server, paths)
        assert all(pid is not None for pid in answers), server.log.read_text()[-2000:]
        assert len(set(answers)) > 4  # workers were restarted during the load
        n = len(paths) + 1  # and the first request, waiting for gunicorn
        slow = paths.count("/slow")

        def counted() -> bool | tuple[Any, ...]:
            total = scalar(prom_port, "sum(requests_total)")
            count = scalar(prom_port, "sum(request_duration_seconds_count)")
            return (total, count) == (n, n) or (total, count)

        wait_until(counted, 30, "Prometheus to scrape every request")
        buckets = {
            (row["metric"]["route"], row["metric"]["le"]): float(row["value"][1])
            for row in query(prom_port, "request_duration_seconds_bucket")
        }
        assert buckets == {
            ("fast", "0.05"): n - slow,
            ("fast", "5.0"): n - slow,
            ("fast", "+Inf"): n - slow,
            ("slow", "0.05"): 0,  # every slow call slept 0.1 s inside the handler
            ("slow", "5.0"): slow,
            ("slow", "+Inf"): slow,
        }

        # A worker SIGKILLed mid-load (an OOM kill) loses nothing it had recorded.
        answered: list[int | None] = []
        stop = threading.Event()

        def more() -> None:
            while not stop.is_set() and len(answered) < 2000:
                answered.extend(load(server, ["/fast"] * 12, threads=4))

        loader = threading.Thread(target=more)
        loader.start()
        time.sleep(0.5)
        victim = next(pid for pid in reversed(answered) if pid is not None)
        os.kill(victim, signal.SIGKILL)
        time.sleep(0.5)
        stop.set()
        loader.join()
        ok = sum(pid is not None for pid in answered)
        failed = len(answered) - ok
        assert ok > 20 and failed <= 1, (ok, failed)

        def after_kill() -> bool | float | None:
            total = scalar(prom_port, "sum(requests_total)")
            # Every answered request was counted; at most the one in flight in the
            # killed worker was counted without an answer.
            return (total is not None and n + ok <= total <= n + ok + 1) or total

        wait_until(after_kill, 30, "Prometheus to scrape the requests around the kill")

        # No counter ever went down between two scrapes, across every restart.
        assert query(prom_port, "resets(requests_total[10m]) > 0") == []
        for row in query(prom_port, "requests_total[10m]"):
            values = [float(v) for _, v in row["values"]]
            assert values == sorted(values), row["metric"]
    finally:
        server.stop()


def test_one_otlp_stream_under_one_instance_id_across_worker_restarts(tmp_path: Path) -> None:
    with OtlpReceiver() as receiver:
        server = Gunicorn(
            tmp_path,
            preload=True,
            max_requests=10,
            env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint},
        )
        try:
            answers = load(server, ["/fast"] * 300)
            assert all(pid is not None for pid in answers)
            assert len(set(answers)) > 10  # many worker lifetimes
            n = 301

            def delivered(rx: OtlpReceiver) -> bool:
                return rx.total("requests_total") == n

            assert receiver.wait_for(delivered, timeout=20), receiver.total("requests_total")
            assert receiver.total("request_duration_seconds") == n
            ids = receiver.instance_ids("requests_total")
            assert len(ids) == 1  # one stream for the whole server, whatever the workers
            points = receiver.points("requests_total")
            values = [p.value for p in points]
            assert values == sorted(values)  # cumulative: never reset by a restart
            assert len({p.start_time_unix_nano for p in points}) == 1
        finally:
            server.stop()


def test_uvicorn_workers_with_the_serve_metrics_sidecar(tmp_path: Path) -> None:
    """``uvicorn --workers 2`` has no master hook: the workers record into the folder
    and ``otel-aspects serve-metrics`` serves their total on one port."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    app_port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        PYTHONPATH=f"{ROOT}{os.pathsep}{CHILDREN}",
        OTEL_ASPECTS_MULTIPROCESS_DIR=str(folder),
        OTEL_PROMETHEUS_ENABLED="true",  # ignored by the workers: the sidecar serves
        OTEL_PROMETHEUS_PORT=str(metrics_port),
    )
    log = open(tmp_path / "uvicorn.log", "wb")  # noqa: SIM115 - closed below
    workers = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--workers",
            "2",
            "--port",
            str(app_port),
            "--log-level",
            "warning",
            "mp_asgi_app:app",
        ],
        cwd=CHILDREN,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    sidecar = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "otel_aspects",
            "serve-metrics",
            str(folder),
            "--port",
            str(metrics_port),
            "--service",
            "mpasgi",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    try:

        def get(path: str) -> int | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{app_port}{path}", timeout=5) as r:
                    return int(r.read())
            except (OSError, ValueError):
                return None

        wait_until(lambda: get("/") is not None, 30, "uvicorn to answer")
        answers: list[int | None] = []
        deadline = time.monotonic() + 30
        with ThreadPoolExecutor(4) as pool:
            # Until both workers have answered (the second may still be starting).
            while len(set(answers)) < 2 or len(answers) < 200:
                answers.extend(pool.map(get, ["/"] * 50))
                assert time.monotonic() < deadline, set(answers)
        assert all(answers)
        n = len(answers) + 1

        def scraped() -> bool | str:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
                text = r.read().decode()
            found = {
                line.split(" ")[0].split("{")[0]: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith(("requests_total", "request_duration_seconds_count"))
            }
            return found == {"requests_total": n, "request_duration_seconds_count": n} or text

        wait_until(scraped, 20, "the sidecar to serve every request")
    finally:
        for process in (workers, sidecar):
            process.send_signal(signal.SIGTERM)
        for process in (workers, sidecar):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
    assert sidecar.returncode == 0
