"""``python -m services.demo``: both services over real HTTP under load, then a summary.

Starts the auth server and the registry as ASGI apps under uvicorn, each in its own
process on a free loopback port (``python -m services.auth_server`` /
``python -m services.registry``: each calls ``setup_metrics`` in its lifespan and serves
Prometheus ``/metrics`` on its own port), drives simulated clients against them over
HTTP (httpx, an anyio task group) for ``--duration`` seconds with a progress line per
second, and ends with a table per service, metric and label set -- counts, and
p50/p95/p99 durations estimated from the histogram buckets (as Prometheus'
``histogram_quantile``) -- read from the services' ``/metrics``.  HTTP metrics, when the
apps record them, are listed beside the domain metrics.

When Debian's ``prometheus`` is installed (``--prometheus auto``, the default), a real
Prometheus on loopback scrapes both ``/metrics`` every second, and the summary ends with
what PromQL answers.  Exporters otherwise follow the library's environment variables in
both services (``OTEL_EXPORTER_OTLP_ENDPOINT`` exports there too); nothing else is needed:
no collector.  ``--keep-running`` keeps the services (and Prometheus) up until Ctrl-C.

``--json`` prints progress to stderr and, after the workload, one JSON line on stdout:
the operation counts, the ports, and the workload's own count of what it did
(``workload``: per metric and label set, calls and outside durations;
:class:`services.workload.Tally`), which the end-to-end tests compare with Prometheus
and the OTLP receiver -- not what the library recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx

from services._clients import AuthClient, RegistryClient
from services._prometheus import Prometheus, prometheus_binary
from services._summary import Series, format_table, parse_exposition
from services.workload import Stats, World, demo_accounts, http_world, run_workload

__all__ = ("main",)

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("auth_server", "registry")  # started in this order: the registry calls the auth server


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.demo", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds (default 8)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--seed", type=int, default=None, help="seed for a reproducible workload")
    parser.add_argument(
        "--latency-scale", type=float, default=1.0, help="multiply simulated latencies (0: none)"
    )
    parser.add_argument(
        "--failure-rate", type=float, default=0.03, help="simulated failure rate (default 0.03)"
    )
    parser.add_argument("--registry-port", type=int, default=0, help="default: a free port")
    parser.add_argument("--auth-port", type=int, default=0, help="default: a free port")
    parser.add_argument(
        "--prometheus",
        choices=("auto", "on", "off"),
        default="auto",
        help="a real Prometheus scraping both services: when installed (auto), required, none",
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="after the workload, keep the services serving until Ctrl-C (or SIGTERM)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="progress on stderr; one JSON line with the final counts on stdout",
    )
    return parser.parse_args(argv)


# ------------------------------------------------------------------------ the services


class _Service:
    """One service process, serving on a listening socket made here (so its port is
    known before it starts)."""

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.set_inheritable(True)
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, args: list[str], env: dict[str, str]) -> None:
        fd = self.sock.fileno()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}", "--fd", str(fd), *args],
            pass_fds=(fd,),
            env=env,
            cwd=ROOT,
        )
        self.sock.close()  # the child has it

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with status {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer /healthz within {timeout:.0f} s")

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            body: bytes = response.read()
        return body.decode()

    def peak_rss_kb(self) -> int | None:
        """The process's peak resident memory (``VmHWM``), while it runs."""
        if self.proc is None:
            return None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down; the lifespan flushes the metrics), then wait."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def _services(args: argparse.Namespace, api_keys: dict[str, str]) -> Iterator[dict[str, _Service]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # /metrics on each app's port is what the summary and Prometheus read.
    env["OTEL_PROMETHEUS_ENABLED"] = "true"
    env["AUTH_SERVER_ACCOUNTS"] = json.dumps(demo_accounts(api_keys))
    common = ["--latency-scale", str(args.latency_scale), "--failure-rate", str(args.failure_rate)]
    if args.seed is not None:
        common += ["--seed", str(args.seed)]
    services = {
        "auth_server": _Service("auth_server", args.auth_port),
        "registry": _Service("registry", args.registry_port),
    }
    try:
        services["auth_server"].start(
            [*common, "--password-iterations", "2000", "--max-sessions-per-subject", "8"], env
        )
        services["registry"].start([*common, "--auth-url", services["auth_server"].url], env)
        for service in services.values():
            service.wait_ready()
        yield services
    finally:
        for name in reversed(SERVICES):  # the registry first: it calls the auth server
            services[name].stop()


# ------------------------------------------------------------------------ the workload


async def _progress(stats: Stats, started: float, out: TextIO) -> None:
    while True:
        await anyio.sleep(1.0)
        elapsed = time.monotonic() - started
        print(
            f"[{elapsed:5.1f}s] operations: {stats.ops:6d}  errors: {stats.errors:5d}",
            file=out,
            flush=True,
        )


async def _run(
    args: argparse.Namespace,
    services: dict[str, _Service],
    api_keys: dict[str, str],
    http_counts: dict[str, Counter[str]],
    out: TextIO,
) -> tuple[Stats, World]:
    """The workload over HTTP; *http_counts* gets the workload's requests per service and
    status code, as the client saw the answers."""
    limits = httpx.Limits(max_connections=4 * max(args.clients, 1))
    timeout = httpx.Timeout(30.0)

    def client(name: str) -> httpx.AsyncClient:
        async def count(response: httpx.Response) -> None:
            http_counts[name][str(response.status_code)] += 1

        return httpx.AsyncClient(
            base_url=services[name].url,
            limits=limits,
            timeout=timeout,
            event_hooks={"response": [count]},
        )

    async with client("auth_server") as auth_http, client("registry") as registry_http:
        world = await http_world(
            AuthClient(auth_http), RegistryClient(registry_http), api_keys, seed=args.seed
        )
        stats = Stats()
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_progress, stats, started, out)
            await run_workload(
                world, clients=args.clients, duration=args.duration, seed=args.seed, stats=stats
            )
            tg.cancel_scope.cancel()
    elapsed = time.monotonic() - started
    print(
        f"done: {stats.ops} operations over HTTP, {stats.errors} errors in {elapsed:.1f}s "
        f"({stats.ops / max(elapsed, 1e-9):.0f} ops/s, {args.clients} clients)",
        file=out,
        flush=True,
    )
    return stats, world


# ------------------------------------------------------------------------ Prometheus

#: What the summary asks Prometheus, beside the services' own /metrics.
_PROMQL = (
    "sum by (job) (registry_operations_total)",
    "sum by (job) (auth_requests_total)",
    "sum by (job) (up)",
)


def _scraped_totals(prom: Prometheus, series: list[Series], timeout: float = 15.0) -> bool:
    """Wait until Prometheus has scraped the final ``registry_operations_total``."""
    want = sum(s.value for s in series if s.metric == "registry_operations_total")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, RuntimeError):
            if prom.scalar("sum(registry_operations_total)") == want:
                return True
        time.sleep(0.25)
    return False


def _prometheus_lines(prom: Prometheus, series: list[Series]) -> list[str]:
    fresh = _scraped_totals(prom, series)
    lines = [
        f"Prometheus ({prom.url}, scraping both services' /metrics every second)"
        + ("" if fresh else ": not all final counts scraped yet")
    ]
    for promql in _PROMQL:
        for row in prom.query(promql):
            value = float(row["value"][1])
            lines.append(f"  {promql:<42} job={row['metric'].get('job', '?'):<12} {value:>8.0f}")
    return lines


# ------------------------------------------------------------------------ main


def _wait_forever(out: TextIO) -> None:
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print("serving until Ctrl-C", file=out, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def _prometheus(mode: str, services: dict[str, _Service]) -> contextlib.AbstractContextManager[Any]:
    binary = prometheus_binary()
    if mode == "off" or (binary is None and mode == "auto"):
        return contextlib.nullcontext(None)
    if binary is None:
        raise SystemExit("--prometheus on: the prometheus binary is not installed")
    targets = {name: f"127.0.0.1:{service.port}" for name, service in services.items()}
    return Prometheus(binary, targets)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m services.demo``."""
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = sys.stderr if args.json else sys.stdout
    api_keys = {owner: "ak_" + secrets.token_urlsafe(32) for owner in ("ci-bot", "indexer")}
    with _services(args, api_keys) as services, _prometheus(args.prometheus, services) as prom:
        for name, service in services.items():
            print(f"{name}: {service.url}  (/metrics on the same port)", file=out, flush=True)
        if prom is not None:
            print(f"Prometheus: {prom.url}", file=out, flush=True)
        http_counts: dict[str, Counter[str]] = {name: Counter() for name in services}
        stats, world = anyio.run(_run, args, services, api_keys, http_counts, out)
        series = [
            s
            for name, service in services.items()
            for s in parse_exposition(service.metrics_text(), name)
        ]
        if args.json:
            rss = [service.peak_rss_kb() for service in services.values()]
            payload: dict[str, Any] = {
                "ops": stats.ops,
                "errors": stats.errors,
                "by_op": dict(stats.by_op),
                "ports": {name: service.port for name, service in services.items()},
                # The workload's own HTTP requests (not the demo's /healthz and /metrics
                # ones, nor the registry's calls to the auth server), by status code.
                "http": {name: dict(counts) for name, counts in http_counts.items()},
                "prometheus_port": prom.port if prom is not None else None,
                "max_rss_kb": max((r for r in rss if r is not None), default=None),
                "workload": world.tally.snapshot(),
            }
            print(json.dumps(payload), flush=True)
        else:
            print(file=out)
            print(format_table(series), file=out, flush=True)
            if prom is not None:
                print(file=out)
                print("\n".join(_prometheus_lines(prom, series)), file=out, flush=True)
        if args.keep_running:
            _wait_forever(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
