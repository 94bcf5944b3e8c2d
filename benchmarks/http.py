"""Per-request cost of HTTP metrics: ``python -m benchmarks.http [--smoke] [--out FILE]``.

One small FastAPI app (``GET /items/{item_id}`` answering a little JSON), served by a
real uvicorn in its own process for each variant:

- ``bare``: no instrumentation (FastAPI's built-in telemetry off);
- ``otel_aspects``: ``otel_aspects.asgi.MetricsMiddleware`` (engine, ``setup_metrics``
  with its in-memory reader);
- ``instrumentator``: prometheus-fastapi-instrumentator's default metrics
  (``Instrumentator(registry=...).instrument(app)``);
- ``fastapi_builtin``: FastAPI's own HTTP metrics into the SDK ``setup_metrics``
  installs (tracing and logs off).

The load generator (this process) sends sequential keep-alive requests over a raw
socket to each server in turn, in interleaved rounds (the order rotates every round), so
drift on a shared machine hits every variant alike.  Per variant: requests per second
(median over rounds) and p50/p99 latency over all its requests; the overhead is p50
minus the bare app's p50 (sequential requests: the server's added time per request).
Writes ``benchmarks/http_results.md`` (``--out``); about 40 s, ``--smoke`` a few seconds.
Not part of CI.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VARIANTS = ("bare", "otel_aspects", "instrumentator", "fastapi_builtin")


def build_app(variant: str) -> Any:
    """The benchmark app for *variant* (called in the server process)."""
    from fastapi import FastAPI

    telemetry: dict[str, Any] = {"tracing": False, "logs": False, "metrics": False}
    if variant in ("otel_aspects", "fastapi_builtin"):
        from otel_aspects import setup_metrics

        setup_metrics("bench_http", exporters=[], flush_on_signals=False)
    if variant == "fastapi_builtin":
        telemetry["metrics"] = True
    app = FastAPI(telemetry=telemetry)  # type: ignore[typeddict-item]

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id, "double": 2 * item_id}

    if variant == "otel_aspects":
        from otel_aspects import MetricsConfig, create_metrics_client
        from otel_aspects.asgi import MetricsMiddleware

        client = create_metrics_client("bench_http", config=MetricsConfig("bench_http"))
        app.add_middleware(MetricsMiddleware, client=client)
    elif variant == "instrumentator":
        from prometheus_client import CollectorRegistry
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator(registry=CollectorRegistry()).instrument(app)
    return app


def serve(variant: str, fd: int) -> None:
    """Serve *variant* on the listening socket *fd* until terminated."""
    import uvicorn

    # socket.socket(fileno=) reads the family, type and protocol back (uvicorn's fd= takes
    # an AF_UNIX guess, and asyncio then leaves Nagle on: 40 ms per response).
    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(
        build_app(variant), log_level="warning", access_log=False, lifespan="on"
    )
    uvicorn.Server(config).run(sockets=[sock])


def _request(port: int, n: int) -> bytes:
    return (
        f"GET /items/{n} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: bench\r\n\r\n"
    ).encode()


class Connection:
    """One keep-alive connection; :meth:`get` sends a request and reads its whole response."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def get(self, n: int) -> None:
        self.sock.sendall(_request(self.port, n))
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected response: {head[:80]!r}")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += self._recv()
        self.buffer = rest[length:]

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise RuntimeError(f"server on port {self.port} closed the connection")
        return data

    def _fill(self) -> None:
        self.buffer += self._recv()


def start_servers() -> tuple[dict[str, int], list[subprocess.Popen[bytes]]]:
    ports: dict[str, int] = {}
    children = []
    for variant in VARIANTS:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        ports[variant] = listener.getsockname()[1]
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.http",
                    "--serve",
                    variant,
                    str(listener.fileno()),
                ],
                pass_fds=(listener.fileno(),),
                cwd=HERE.parent,
                env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            )
        )
        listener.close()
    for variant, port in ports.items():
        deadline = time.monotonic() + 30
        while True:
            try:
                Connection(port).get(0)
                break
            except (OSError, RuntimeError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{variant} server did not start") from None
                time.sleep(0.05)
    return ports, children


def run(rounds: int, per_round: int, warmup: int) -> dict[str, dict[str, Any]]:
    ports, children = start_servers()
    try:
        conns = {v: Connection(p) for v, p in ports.items()}
        for conn in conns.values():
            for i in range(warmup):
                conn.get(i)
        latencies: dict[str, list[float]] = {v: [] for v in VARIANTS}
        rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
        clock = time.perf_counter
        for r in range(rounds):
            order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
            for variant in order:
                conn = conns[variant]
                samples = latencies[variant]
                begin = clock()
                for i in range(per_round):
                    t0 = clock()
                    conn.get(i)
                    samples.append(clock() - t0)
                rates[variant].append(per_round / (clock() - begin))
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(10)
    results = {}
    for variant in VARIANTS:
        samples = sorted(latencies[variant])
        results[variant] = {
            "rps": statistics.median(rates[variant]),
            "p50_us": 1e6 * samples[len(samples) // 2],
            "p99_us": 1e6 * samples[min(len(samples) - 1, int(len(samples) * 0.99))],
            "n": len(samples),
        }
    return results


LABELS = {
    "bare": "no instrumentation",
    "otel_aspects": "otel_aspects `MetricsMiddleware`",
    "instrumentator": "prometheus-fastapi-instrumentator 8.1 (default metrics)",
    "fastapi_builtin": "FastAPI built-in telemetry (metrics only)",
}


def report(results: dict[str, dict[str, Any]], rounds: int, per_round: int, wall: float) -> str:
    import fastapi
    import uvicorn

    bare = results["bare"]["p50_us"]
    lines = [
        "# HTTP middleware benchmark",
        "",
        f"`python -m benchmarks.http` on {date.today().isoformat()} "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"CPython {platform.python_version()}, FastAPI {fastapi.__version__}, "
        f"uvicorn {uvicorn.__version__}); {rounds} interleaved rounds of {per_round} sequential "
        f"keep-alive requests per variant, one uvicorn process per variant, raw-socket client "
        f"on loopback; {wall:.0f} s.",
        "",
        "| variant | requests/s (median of rounds) | p50 latency (us) | p99 latency (us) "
        "| p50 - bare p50 (us per request) |",
        "|---|--:|--:|--:|--:|",
    ]
    for variant in VARIANTS:
        r = results[variant]
        extra = "" if variant == "bare" else f"{r['p50_us'] - bare:+.0f}"
        lines.append(
            f"| {LABELS[variant]} | {r['rps']:,.0f} | {r['p50_us']:,.0f} "
            f"| {r['p99_us']:,.0f} | {extra} |"
        )
    lines += [
        "",
        "Sequential requests: the latency is the server's whole time per request plus the "
        "loopback round trip, so p50 minus the bare app's p50 is what the instrumentation "
        "adds per request. The client runs in this process and shares the 2 cores with the "
        "servers; rounds are interleaved so drift reaches every variant alike.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few seconds; temp output")
    parser.add_argument("--out", type=Path, default=None, help="results file")
    parser.add_argument("--serve", nargs=2, metavar=("VARIANT", "FD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    rounds, per_round, warmup = (2, 50, 20) if args.smoke else (40, 500, 500)
    start = time.monotonic()
    results = run(rounds, per_round, warmup)
    text = report(results, rounds, per_round, time.monotonic() - start)
    out = args.out or (
        Path(os.environ.get("TMPDIR", "/tmp")) / "http_results.md"
        if args.smoke
        else HERE / "http_results.md"
    )
    out.write_text(text)
    print(text)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
