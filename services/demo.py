"""``python -m services.demo``: a concurrent workload against both services, then a summary.

Runs simulated clients (an anyio task group) against the registry and the auth server
for ``--duration`` seconds, prints a progress line per second (elapsed, operations,
errors), and ends with a table per metric and label set: counts, and p50/p95/p99
durations estimated from the histogram buckets (as Prometheus' ``histogram_quantile``).

Exporters follow the library's environment variables: with none configured the metrics
stay in memory (no collector needed); ``OTEL_PROMETHEUS_ENABLED=true`` also serves
``/metrics`` (``OTEL_PROMETHEUS_PORT``, default 9464, on 127.0.0.1) while the workload
runs -- ``--keep-running`` keeps serving afterwards until Ctrl-C; an OTLP endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT``, or ``OTEL_METRICS_EXPORTER=otlp``) exports there.
``shutdown_metrics`` runs at the end, so the last export is not lost.

``--json`` prints progress to stderr and, after the workload, one JSON line on stdout:
the operation counts and the workload's own count of what it did (``workload``: per
metric and label set, calls and outside durations; :class:`services.workload.Tally`),
which the end-to-end tests compare with Prometheus and the OTLP receiver -- not what the
library's reader holds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import anyio
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_aspects import setup_metrics, shutdown_metrics

# Importing the workload imports both services' metrics modules, which load their YAML:
# that happens before setup_metrics, so its Views (max_series) include them.
from services._summary import collect, format_table
from services.workload import Stats, World, build_world, run_workload

__all__ = ("main",)

SERVICE_NAME = "otel-aspects-demo"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.demo", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds (default 8)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--seed", type=int, default=None, help="seed for a reproducible workload")
    parser.add_argument(
        "--latency-scale",
        type=float,
        default=1.0,
        help="multiply simulated latencies (0: none)",
    )
    parser.add_argument(
        "--failure-rate", type=float, default=0.03, help="simulated failure rate (default 0.03)"
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="after the workload, keep serving /metrics until Ctrl-C (or SIGTERM)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="progress on stderr; one JSON line with the final counts on stdout",
    )
    return parser.parse_args(argv)


async def _progress(stats: Stats, started: float, out: TextIO) -> None:
    while True:
        await anyio.sleep(1.0)
        elapsed = time.monotonic() - started
        print(
            f"[{elapsed:5.1f}s] operations: {stats.ops:6d}  errors: {stats.errors:5d}",
            file=out,
            flush=True,
        )


async def _run(args: argparse.Namespace, out: TextIO) -> tuple[Stats, World]:
    world = await build_world(
        seed=args.seed, latency_scale=args.latency_scale, failure_rate=args.failure_rate
    )
    stats = Stats()
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_progress, stats, started, out)
        await run_workload(
            world,
            clients=args.clients,
            duration=args.duration,
            seed=args.seed,
            stats=stats,
        )
        tg.cancel_scope.cancel()
    elapsed = time.monotonic() - started
    print(
        f"done: {stats.ops} operations, {stats.errors} errors in {elapsed:.1f}s "
        f"({stats.ops / max(elapsed, 1e-9):.0f} ops/s, {args.clients} clients)",
        file=out,
        flush=True,
    )
    return stats, world


def _wait_forever(out: TextIO) -> None:
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # a clean shutdown_metrics on SIGTERM too
    print("serving /metrics until Ctrl-C", file=out, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


class _SharedNameFilter(logging.Filter):
    """Drop the SDK's "Views ... will cause conflicting metrics identities" warning.

    Both services declare ``auth_requests_total`` (the seed's tables say so).  In
    production they run in separate processes; the demo runs both in one, on two meters
    (scopes ``registry`` and ``auth_server``).  The SDK then warns when a View matches
    the second instrument of the same name, although the two streams stay apart by
    scope (and the Prometheus exporter tells them apart by ``otel_scope_name``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "conflicting metrics identities" not in record.getMessage()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m services.demo``."""
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("opentelemetry.sdk.metrics._internal.metric_reader_storage").addFilter(
        _SharedNameFilter()
    )
    out = sys.stderr if args.json else sys.stdout
    # Our own in-memory reader, so the summary works whatever exporters are configured.
    reader = InMemoryMetricReader()
    setup = setup_metrics(
        SERVICE_NAME,
        otlp_endpoint=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
        extra_readers=(reader,),
    )
    exporters = ", ".join(setup.exporters) or "in-memory only"
    print(f"metrics: {exporters}", file=out, flush=True)
    if setup.prometheus_port is not None:
        print(f"Prometheus: http://127.0.0.1:{setup.prometheus_port}/metrics", file=out, flush=True)
    try:
        stats, world = anyio.run(_run, args, out)
        if args.json:
            payload: dict[str, Any] = {
                "ops": stats.ops,
                "errors": stats.errors,
                "by_op": dict(stats.by_op),
                "prometheus_port": setup.prometheus_port,
                "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "workload": world.tally.snapshot(),
            }
            print(json.dumps(payload), flush=True)
        else:
            print(file=out)
            print(format_table(collect(reader)), file=out, flush=True)
        if args.keep_running and setup.prometheus_port is not None:
            _wait_forever(out)
    finally:
        shutdown_metrics()
    return 0


if __name__ == "__main__":
    sys.exit(main())
