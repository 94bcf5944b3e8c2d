"""Scrape time against the number of workers that have come and gone.

``python -m benchmarks.multiprocess [--workers 10 100 1000] [--out DIR]``

For each count N, N short-lived worker processes (forked, each recording one
counter and one histogram into a shared folder, then exiting as a gunicorn
worker does) are made for both libraries, in one run:

- otel_aspects' multi-process mode: a scrape is one collection of the exporting
  process (``Collector``) rendered as Prometheus text by the SDK's Prometheus
  reader; measured before compaction (N files) and after (one archive);
- prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``,
  ``MultiProcessCollector`` + ``generate_latest``): its files are never compacted.

Median of 7 scrapes each; written to ``benchmarks/multiprocess_results.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_OURS = textwrap.dedent(
    """
    import os, sys
    from otel_aspects import create_metrics_client, setup_metrics
    client = create_metrics_client("bench", config={
        "service_name": "bench", "counters": [{"name": "requests_total"}],
        "histograms": [{"name": "request_duration_seconds", "unit": "s"}]})
    setup_metrics("bench", multiprocess_dir=sys.argv[1])
    for _ in range(int(sys.argv[2])):
        pid = os.fork()
        if pid == 0:
            client.record_counter("requests_total", 1, {"route": "/a"})
            client.record_histogram("request_duration_seconds", 0.01, {"route": "/a"})
            os._exit(0)
        os.waitpid(pid, 0)
    """
)

_PROM = textwrap.dedent(
    """
    import os, sys
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
    from prometheus_client import Counter, Histogram
    from prometheus_client import multiprocess
    requests = Counter("requests", "r", ["route"])
    durations = Histogram("request_duration_seconds", "d", ["route"])
    for _ in range(int(sys.argv[2])):
        pid = os.fork()
        if pid == 0:
            requests.labels("/a").inc()
            durations.labels("/a").observe(0.01)
            os._exit(0)
        os.waitpid(pid, 0)
        multiprocess.mark_process_dead(pid)
    """
)


def _make(script: str, folder: Path, n: int) -> None:
    subprocess.run(
        [sys.executable, "-c", script, str(folder), str(n)],
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _median_ms(scrape: object, repeat: int = 7) -> float:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        scrape()  # type: ignore[operator]
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def _ours(folder: Path) -> tuple[float, float, int]:
    from prometheus_client import generate_latest

    from otel_aspects import multiprocess

    checked = multiprocess.prepare(folder, "bench")
    registry = multiprocess.prometheus_registry(checked)
    text = generate_latest(registry)
    assert b"requests_total" in text, text[:500]
    before = _median_ms(lambda: generate_latest(registry))
    multiprocess.compact(folder)
    after = _median_ms(lambda: generate_latest(registry))
    return before, after, len(os.listdir(folder))


def _prom(folder: Path) -> tuple[float, int]:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    assert b"requests_total" in generate_latest(registry)
    return _median_ms(lambda: generate_latest(registry)), len(os.listdir(folder))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    rows = []
    for n in args.workers:
        with tempfile.TemporaryDirectory() as ours, tempfile.TemporaryDirectory() as prom:
            _make(_OURS, Path(ours), n)
            _make(_PROM, Path(prom), n)
            before, after, our_files = _ours(Path(ours))
            theirs, their_files = _prom(Path(prom))
        rows.append((n, before, after, our_files, theirs, their_files))
        print(
            f"{n} workers: ours {before:.2f} ms -> {after:.2f} ms compacted; "
            f"prometheus_client {theirs:.2f} ms ({their_files} files)",
            flush=True,
        )
    lines = [
        "# Scrape time after N worker lifetimes",
        "",
        "- command: `python -m benchmarks.multiprocess --workers "
        + " ".join(map(str, args.workers))
        + "`",
        f"- date: {time.strftime('%Y-%m-%d')}, median of 7 scrapes, one run",
        "",
        "| workers that came and went | otel_aspects, before compaction (ms) "
        "| otel_aspects, compacted (ms) | files after compaction "
        "| prometheus_client multiprocess (ms) | its files |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n, before, after, our_files, theirs, their_files in rows:
        lines.append(
            f"| {n} | {before:.2f} | {after:.2f} | {our_files} | {theirs:.2f} | {their_files} |"
        )
    (args.out / "multiprocess_results.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'multiprocess_results.md'}")


if __name__ == "__main__":
    main()
