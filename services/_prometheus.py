"""A real Prometheus server on loopback, for the demo (and the end-to-end tests).

:class:`Prometheus` starts Debian's ``prometheus`` binary (when installed) on a free
loopback port with a scrape configuration of the given targets (one job each, scraped
every second, from a temporary directory removed at the end), waits until it is ready,
answers PromQL instant queries (:meth:`Prometheus.query`) and stops it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ("Prometheus", "free_port", "prometheus_binary")


def prometheus_binary() -> str | None:
    """The ``prometheus`` server binary, or ``None`` when it is not installed."""
    found = shutil.which("prometheus")
    if found is None and os.path.exists("/usr/bin/prometheus"):
        found = "/usr/bin/prometheus"
    return found


def free_port() -> int:
    """A free loopback port (bound, read, closed): Prometheus cannot be given port 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    """``with Prometheus(binary, {"job": "127.0.0.1:port"}) as prom: prom.query(...)``."""

    def __init__(self, binary: str, targets: Mapping[str, str], *, interval: str = "1s") -> None:
        self.binary = binary
        self.targets = dict(targets)
        self.interval = interval
        self.port = free_port()
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Prometheus:
        self._dir = tempfile.TemporaryDirectory(prefix="otel-aspects-prometheus-")
        root = Path(self._dir.name)
        jobs = "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            for job, target in self.targets.items()
        )
        (root / "prometheus.yml").write_text(
            f"global:\n  scrape_interval: {self.interval}\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n{jobs}"
        )
        with open(root / "prometheus.log", "wb") as log:
            self._proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={root / 'prometheus.yml'}",
                    f"--storage.tsdb.path={root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            self._wait_ready(30.0)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready after {timeout:.0f} s: {self.log()[-2000:]}")

    def log(self) -> str:
        if self._dir is None:
            return ""
        path = Path(self._dir.name) / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query (raises when Prometheus refuses it)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"PromQL {promql!r}: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def scalar(self, promql: str) -> float | None:
        """The value of a query giving one sample (``None`` for an empty result)."""
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
