"""Scale: memory per labelled series, memory over many calls, threads and tasks.

Each measurement runs for every *variant* -- hand-written OpenTelemetry, and
otel_aspects' decorator when it is importable -- on its own fresh SDK
MeterProvider with an InMemoryMetricReader:

- **memory per series**: ``tracemalloc`` traced bytes before and after recording a
  counter and a histogram into N distinct label sets (3 labels, one of them varying),
  divided by N;
- **memory over 1,000,000 calls** on one fixed label set: allocated blocks (and, for
  otel_aspects, tracemalloc bytes) after a warm-up and after the calls (after
  ``gc.collect()``) -- it should not grow;
- **throughput** of the decorated call from 1 thread and from 2 threads, and from 1,000
  concurrent anyio tasks (asyncio and trio backends) whose coroutine yields to the loop
  inside the measured scope and sets one label from nested code.

Every throughput run then reads the counter total and the histogram count back from
the reader and compares them with the calls made, per label value for the tasks (a
label leaking between concurrent tasks shows as a wrong per-shard count). These checks
are correctness, not speed: the smoke run fails if one of them does.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import anyio
import anyio.lowlevel
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import View

from benchmarks.cases import ASPECTS_AVAILABLE, ATTRS, BENCH_CONFIG, handwritten_instruments
from otel_aspects.testing import metric_points

__all__ = ("render_md", "run")

SHARDS = ("a", "b", "c", "d")


@dataclass
class Instrumented:
    """One way of instrumenting the body, bound to a fresh SDK."""

    reader: InMemoryMetricReader
    counter: str
    histogram: str
    call: Callable[[int], int]  # fixed label set
    call_labelled: Callable[[int, str], int]  # third label = the given value
    acall: Callable[[int, str], Awaitable[int]]  # yields to the loop; label shard = value
    keep: Any = None


def _provider(
    limit: int = 2000, *, view: bool = True
) -> tuple[MeterProvider, InMemoryMetricReader]:
    """A provider with one in-memory reader; with *view*, the SDK's cardinality limit set by
    a View (otel_aspects takes ``max_series`` from its YAML instead: a View of the user's
    would send its instruments through the SDK)."""
    reader = InMemoryMetricReader()
    views = [View(instrument_name="*", aggregation_cardinality_limit=limit)] if view else []
    provider = MeterProvider(metric_readers=[reader], views=views, shutdown_on_exit=False)
    return provider, reader


def _release(inst: Instrumented) -> None:
    """Shut the variant's provider down, so its series do not weigh on the next run's GC."""
    provider = inst.keep[0] if isinstance(inst.keep, tuple) else inst.keep
    provider.shutdown()
    inst.keep = None
    gc.collect()


def handwritten(limit: int = 2000) -> Instrumented:
    provider, reader = _provider(limit)
    counter, histogram = handwritten_instruments(provider)
    add, record = counter.add, histogram.record
    attrs = dict(ATTRS)
    perf = time.perf_counter
    shard_attrs = {s: {**ATTRS, "shard": s} for s in SHARDS}

    def call(x: int) -> int:
        t = perf()
        r = x + 1
        add(1, attrs)
        record(perf() - t, attrs)
        return r

    def call_labelled(x: int, value: str) -> int:
        t = perf()
        r = x + 1
        a = {"route": "/bench", "method": "GET", "status": value}
        add(1, a)
        record(perf() - t, a)
        return r

    async def acall(x: int, shard: str) -> int:
        t = perf()
        a = shard_attrs[shard]
        await anyio.lowlevel.checkpoint()
        add(1, a)
        record(perf() - t, a)
        return x + 1

    return Instrumented(
        reader,
        "hand_requests_total",
        "hand_request_duration_seconds",
        call,
        call_labelled,
        acall,
        keep=provider,
    )


def aspects(limit: int = 2000) -> Instrumented:
    from otel_aspects.client import create_metrics_client
    from otel_aspects.config import MetricsConfig, load_metrics_config
    from otel_aspects.labels import set_label
    from otel_aspects.timing import timed

    provider, reader = _provider(limit, view=False)
    config = load_metrics_config("bench", BENCH_CONFIG)
    config = MetricsConfig(
        config.service_name,
        {name: replace(spec, max_series=limit) for name, spec in config.metrics.items()},
    )
    client = create_metrics_client("bench", config, meter_provider=provider)
    hist, counter = "bench_request_duration_seconds", "bench_requests_total"

    @timed(hist, counter=counter, client=client, labels={"route": "/bench", "method": "GET"})
    def call(x: int) -> int:
        return x + 1

    scope = timed(hist, counter=counter, client=client, labels={"route": "/bench"})

    def call_labelled(x: int, value: str) -> int:
        with scope:
            set_label("method", value)
            return x + 1

    @timed(hist, counter=counter, client=client, labels={"route": "/bench", "method": "GET"})
    async def acall(x: int, shard: str) -> int:
        set_label("shard", shard)
        await anyio.lowlevel.checkpoint()  # other tasks run inside this scope
        return x + 1

    return Instrumented(reader, counter, hist, call, call_labelled, acall, keep=(provider, client))


VARIANTS: dict[str, Callable[..., Instrumented]] = {"otel_handwritten": handwritten}
if ASPECTS_AVAILABLE:
    VARIANTS["otel_aspects"] = aspects


# --------------------------------------------------------------------------- reading


def totals(inst: Instrumented, by: str | None = None) -> tuple[dict[Any, int], dict[Any, int]]:
    """Counter sum and histogram count, per value of attribute *by* (or ``None``)."""
    counts: dict[Any, int] = {}
    hist: dict[Any, int] = {}
    for p in metric_points(inst.reader, inst.counter):
        k = p.attributes.get(by) if by else None
        counts[k] = counts.get(k, 0) + int(p.value)
    for p in metric_points(inst.reader, inst.histogram):
        k = p.attributes.get(by) if by else None
        hist[k] = hist.get(k, 0) + int(p.count)
    return counts, hist


# --------------------------------------------------------------------------- measurements


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def memory_per_series(make: Callable[..., Instrumented], n: int) -> dict[str, Any]:
    inst = make(limit=n + 100)
    tracemalloc.start()
    try:
        inst.call_labelled(1, "warm-up")
        before = _traced()
        values = [f"v{i}" for i in range(n)]
        base = _traced()  # the label strings themselves are not the library's cost
        for v in values:
            inst.call_labelled(1, v)
        after = _traced()
    finally:
        tracemalloc.stop()
    counts, _ = totals(inst, "method" if make is aspects else "status")
    series = sum(1 for k in counts if k in set(values))
    _release(inst)
    return {
        "series": n,
        "series_seen": series,
        "bytes_per_series": round((after - base) / n),
        "label_strings_bytes": base - before,
    }


def _blocks() -> int:
    gc.collect()
    return sys.getallocatedblocks()


def memory_over_calls(make: Callable[..., Instrumented], n: int, traced: bool) -> dict[str, Any]:
    """Growth over *n* calls: allocated blocks, and traced bytes if *traced* (~6x slower)."""
    inst = make()
    call = inst.call
    if traced:
        tracemalloc.start()
    try:
        for _ in range(10_000):
            call(1)
        before = _traced() if traced else 0
        blocks = _blocks()
        t0 = time.perf_counter()
        for _ in range(n):
            call(1)
        elapsed = time.perf_counter() - t0
        blocks = _blocks() - blocks
        after = _traced() if traced else 0
    finally:
        if traced:
            tracemalloc.stop()
    counts, hist = totals(inst)
    _release(inst)
    return {
        "calls": n,
        "growth_bytes": after - before if traced else None,
        "growth_blocks": blocks,
        "seconds": round(elapsed, 2),
        "traced": traced,
        "counted": counts.get(None, 0) - 10_000,
        "hist_count": hist.get(None, 0) - 10_000,
    }


def threads(make: Callable[..., Instrumented], n_threads: int, per_thread: int) -> dict[str, Any]:
    inst = make()
    call = inst.call
    barrier = threading.Barrier(n_threads + 1)

    def work() -> None:
        barrier.wait()
        for _ in range(per_thread):
            call(1)

    workers = [threading.Thread(target=work) for _ in range(n_threads)]
    for w in workers:
        w.start()
    barrier.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    counts, hist = totals(inst)
    _release(inst)
    made = n_threads * per_thread
    return {
        "threads": n_threads,
        "calls": made,
        "calls_per_s": round(made / elapsed),
        "counted": counts.get(None, 0),
        "hist_count": hist.get(None, 0),
        "ok": counts.get(None, 0) == made and hist.get(None, 0) == made,
    }


def tasks(
    make: Callable[..., Instrumented], backend: str, n_tasks: int, per_task: int
) -> dict[str, Any]:
    inst = make()
    acall = inst.acall

    async def worker(i: int) -> None:
        shard = SHARDS[i % len(SHARDS)]
        for _ in range(per_task):
            await acall(1, shard)

    async def main() -> float:
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(n_tasks):
                tg.start_soon(worker, i)
        return time.perf_counter() - t0

    elapsed = anyio.run(main, backend=backend)
    counts, hist = totals(inst, "shard")
    _release(inst)
    made = n_tasks * per_task
    expected = {s: per_task * len(range(i, n_tasks, len(SHARDS))) for i, s in enumerate(SHARDS)}
    return {
        "backend": backend,
        "tasks": n_tasks,
        "calls": made,
        "calls_per_s": round(made / elapsed),
        "counted": sum(counts.values()),
        "per_shard": {str(k): v for k, v in sorted(counts.items(), key=str)},
        "ok": counts == expected and hist == expected,
    }


def run(smoke: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every scale measurement for every variant; ``checks`` lists the correctness results."""
    n_series = 200 if smoke else 10_000
    n_calls = 2_000 if smoke else 1_000_000
    per_thread = 2_000 if smoke else 100_000
    n_tasks, per_task = (100, 2) if smoke else (1_000, 20)
    out: dict[str, Any] = {"variants": {}, "checks": []}
    checks = out["checks"]
    for name, make in VARIANTS.items():
        log(f"  {name}: memory per series ({n_series})")
        v: dict[str, Any] = {"memory_per_series": memory_per_series(make, n_series)}
        log(f"  {name}: memory over {n_calls:,} calls")
        # tracemalloc multiplies the run time by ~6: trace the library's own variant only.
        traced = smoke or name == "otel_aspects"
        v["memory_over_calls"] = m = memory_over_calls(make, n_calls, traced)
        checks.append(
            {
                "check": f"{name}: {n_calls:,} calls all counted",
                "ok": m["counted"] == n_calls and m["hist_count"] == n_calls,
                "detail": f"counter {m['counted']}, histogram count {m['hist_count']}",
            }
        )
        log(f"  {name}: threads")
        v["threads"] = [threads(make, k, per_thread) for k in (1, 2)]
        for t in v["threads"]:
            checks.append(
                {
                    "check": f"{name}: {t['threads']} thread(s), {t['calls']:,} calls counted",
                    "ok": t["ok"],
                    "detail": f"counter {t['counted']}, histogram {t['hist_count']}",
                }
            )
        log(f"  {name}: {n_tasks} anyio tasks")
        v["tasks"] = [tasks(make, b, n_tasks, per_task) for b in ("asyncio", "trio")]
        for t in v["tasks"]:
            checks.append(
                {
                    "check": f"{name}: {t['tasks']} {t['backend']} tasks, {t['calls']:,} calls "
                    "counted per shard label",
                    "ok": t["ok"],
                    "detail": f"per shard {t['per_shard']}",
                }
            )
        out["variants"][name] = v
    return out


def render_md(s: dict[str, Any]) -> list[str]:
    lines = [
        "| variant | bytes per labelled series (counter + histogram) | growth over N calls, "
        "fixed labels | 1 thread calls/s | 2 threads calls/s | concurrent anyio tasks "
        "calls/s (asyncio / trio) |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for name, v in s["variants"].items():
        mps = v["memory_per_series"]
        moc = v["memory_over_calls"]
        growth = f"{moc['growth_blocks']:,} blocks"
        if moc["growth_bytes"] is not None:
            growth += f", {moc['growth_bytes']:,} B traced"
        th = {t["threads"]: t["calls_per_s"] for t in v["threads"]}
        ta = " / ".join(f"{t['calls_per_s']:,}" for t in v["tasks"])
        ta += f" ({v['tasks'][0]['tasks']:,} tasks)"
        lines.append(
            f"| {name} | {mps['bytes_per_series']:,} (N={mps['series']:,}) | "
            f"{growth} (N={moc['calls']:,}) | {th.get(1, 0):,} | "
            f"{th.get(2, 0):,} | {ta} |"
        )
    lines += ["", "Correctness checks (counts read back from the InMemoryMetricReader):", ""]
    for c in s["checks"]:
        lines.append(f"- {'ok' if c['ok'] else 'FAILED'}: {c['check']} ({c['detail']})")
    lines += [
        "",
        "Memory per series: tracemalloc bytes retained after recording into N distinct label "
        "sets (3 labels, one varying), minus the label strings themselves, divided by N. "
        "Growth over N calls on one label set, after a 10,000-call warm-up, both ends after "
        "gc.collect(): `sys.getallocatedblocks()` difference (a per-call leak would show as "
        "~N blocks) and, for otel_aspects, tracemalloc traced bytes (tracemalloc makes the "
        "run ~6x slower, so the hand-written variant is not traced in the full run). "
        "Thread and task throughput use the same SDK as the per-call table; task calls "
        "include one loop checkpoint inside the measured scope (other tasks run there), "
        "so they are not comparable with the per-call figures. Throughput figures are "
        "single runs one after the other, not interleaved: noisier than the per-call table. "
        "On the SDK, 2 threads make fewer calls/s in total than 1 (the GIL plus the SDK's "
        "per-series locks), for hand-written OTel as for otel_aspects.",
    ]
    return lines
