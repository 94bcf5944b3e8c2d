"""Collection: the time and memory of collecting 10,000 series, otel_aspects beside the SDK.

For each *variant* -- plain OpenTelemetry SDK instruments, the otel_aspects client, and
the otel_aspects client built engine off (``OTEL_ASPECTS_ENGINE=sdk``) -- and each
instrument kind (a counter, a histogram with the same 14 buckets), on its own fresh
``MeterProvider`` with one ``InMemoryMetricReader`` (cardinality limit raised by a View
above N):

- record one value into each of N = 10,000 distinct label sets (3 labels, one varying):
  ``counter.add(1, attrs)`` / ``histogram.record(0.02, attrs)`` for the SDK,
  ``client.record_counter(name, 1, attrs)`` / ``client.record_histogram(name, 0.02,
  attrs)`` for otel_aspects;
- time ``reader.get_metrics_data()`` (the first collection after the records) and a
  second one with nothing new recorded (cumulative: every series again);
- in separate repetitions under ``tracemalloc``: bytes retained by the N series after
  recording (minus the label strings, built before), the traced peak during the first
  collection above what was traced before it, and what it leaves retained once its
  result is dropped.

Repetitions are interleaved over variants and kinds; every figure is a median.  Each
collection is checked: N points, counter sum (histogram count) N -- a lost series
makes the run (and ``--smoke``) fail.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import View

from benchmarks.cases import ASPECTS_AVAILABLE, BENCH_CONFIG, BUCKETS, ENGINE_ENV, engine_off

__all__ = ("render_md", "run")

COUNTER = "bench_requests_total"
HISTOGRAM = "bench_request_duration_seconds"
KINDS = ("counter", "histogram")


@dataclass
class Built:
    provider: MeterProvider
    reader: InMemoryMetricReader
    record: Callable[[dict[str, str]], None]
    keep: Any = None


def _provider(n: int, *, view: bool = True) -> tuple[MeterProvider, InMemoryMetricReader]:
    """A provider with one in-memory reader; with *view*, the SDK's cardinality limit is
    raised above *n* by a View (the engine takes it from the YAML's ``max_series`` instead:
    a View of the user's would send its instruments through the SDK)."""
    reader = InMemoryMetricReader()
    views = [View(instrument_name="*", aggregation_cardinality_limit=n + 100)] if view else []
    return MeterProvider(metric_readers=[reader], views=views, shutdown_on_exit=False), reader


def _sdk(kind: str, n: int) -> Built:
    provider, reader = _provider(n)
    meter = provider.get_meter("benchmarks.collection")
    if kind == "counter":
        add = meter.create_counter(COUNTER, "1", "requests").add

        def record(attrs: dict[str, str]) -> None:
            add(1, attrs)
    else:
        rec = meter.create_histogram(
            HISTOGRAM, "s", "duration", explicit_bucket_boundaries_advisory=list(BUCKETS)
        ).record

        def record(attrs: dict[str, str]) -> None:
            rec(0.02, attrs)

    return Built(provider, reader, record)


def _aspects(kind: str, n: int) -> Built:
    from otel_aspects.client import create_metrics_client
    from otel_aspects.config import MetricsConfig, load_metrics_config

    engine_on = os.environ.get(ENGINE_ENV, "engine") != "sdk"
    provider, reader = _provider(n, view=not engine_on)
    config = load_metrics_config("bench", BENCH_CONFIG, strict=True)
    config = MetricsConfig(
        config.service_name,
        {name: replace(spec, max_series=n + 100) for name, spec in config.metrics.items()},
    )
    client = create_metrics_client("bench", config, meter_provider=provider)
    if kind == "counter":
        record_counter = client.record_counter

        def record(attrs: dict[str, str]) -> None:
            record_counter(COUNTER, 1, attrs)
    else:
        record_histogram = client.record_histogram

        def record(attrs: dict[str, str]) -> None:
            record_histogram(HISTOGRAM, 0.02, attrs)

    return Built(provider, reader, record, keep=client)


def _aspects_engine_off(kind: str, n: int) -> Built:
    with engine_off():
        return _aspects(kind, n)


VARIANTS: dict[str, Callable[[str, int], Built]] = {"otel_sdk": _sdk}
if ASPECTS_AVAILABLE:
    VARIANTS["otel_aspects"] = _aspects
    VARIANTS["otel_aspects_sdk"] = _aspects_engine_off


def _points(data: Any, kind: str) -> tuple[int, int]:
    """(points, counter sum or histogram count) of the variant's metric in *data*."""
    name = COUNTER if kind == "counter" else HISTOGRAM
    points = total = 0
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for p in metric.data.data_points:
                        points += 1
                        total += int(p.value if kind == "counter" else p.count)
    return points, total


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


@contextlib.contextmanager
def _tracing(on: bool) -> Iterator[None]:
    if on:
        tracemalloc.start()
    try:
        yield
    finally:
        if on:
            tracemalloc.stop()


def once(make: Callable[[str, int], Built], kind: str, n: int, traced: bool) -> dict[str, Any]:
    """One repetition: record N series, collect twice; memory if *traced*, else time."""
    built = make(kind, n)
    record, reader = built.record, built.reader
    out: dict[str, Any] = {}
    with _tracing(traced):
        attrs = [{"route": "/bench", "method": "GET", "series": f"s{i}"} for i in range(n)]
        base = _traced() if traced else 0
        t0 = time.perf_counter()
        for a in attrs:
            record(a)
        out["record_s"] = time.perf_counter() - t0
        before = _traced() if traced else 0
        if traced:
            out["series_bytes"] = before - base
            tracemalloc.reset_peak()
        else:
            gc.collect()
        t0 = time.perf_counter()
        data = reader.get_metrics_data()
        out["collect_s"] = time.perf_counter() - t0
        if traced:
            out["collect_peak_bytes"] = tracemalloc.get_traced_memory()[1] - before
        out["points"], out["total"] = _points(data, kind)
        del data
        if traced:
            out["collect_retained_bytes"] = _traced() - before
        else:
            gc.collect()
        t0 = time.perf_counter()
        data = reader.get_metrics_data()
        out["collect_again_s"] = time.perf_counter() - t0
        out["points_again"], out["total_again"] = _points(data, kind)
        del data
    built.provider.shutdown()
    return out


def _median(reps: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in reps)


def run(smoke: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every variant x kind; ``checks`` lists whether each collection had every series."""
    n = 200 if smoke else 10_000
    # The smoke run only checks the counts: one traced repetition (its times are
    # tracemalloc's, not comparable with a full run's).
    time_reps, mem_reps = (0, 1) if smoke else (5, 2)
    raw: dict[tuple[str, str], dict[bool, list[dict[str, Any]]]] = {
        (v, k): {False: [], True: []} for v in VARIANTS for k in KINDS
    }
    plan = [False] * time_reps + [True] * mem_reps
    for i, traced in enumerate(plan):
        log(f"  collection: repetition {i + 1}/{len(plan)} ({'memory' if traced else 'time'})")
        for (variant, kind), reps in raw.items():
            reps[traced].append(once(VARIANTS[variant], kind, n, traced))
    out: dict[str, Any] = {"series": n, "repetitions": [time_reps, mem_reps], "rows": []}
    checks = out["checks"] = []
    for (variant, kind), reps in raw.items():
        timed, mem = reps[False] or reps[True], reps[True]
        out["rows"].append(
            {
                "variant": variant,
                "kind": kind,
                "record_ms": round(_median(timed, "record_s") * 1e3, 2),
                "collect_ms": round(_median(timed, "collect_s") * 1e3, 2),
                "collect_again_ms": round(_median(timed, "collect_again_s") * 1e3, 2),
                "bytes_per_series": round(_median(mem, "series_bytes") / n),
                "collect_peak_bytes": round(_median(mem, "collect_peak_bytes")),
                "collect_retained_bytes": round(_median(mem, "collect_retained_bytes")),
            }
        )
        bad = [
            r
            for r in reps[False] + mem
            if (r["points"], r["total"], r["points_again"], r["total_again"]) != (n, n, n, n)
        ]
        checks.append(
            {
                "check": f"collection {variant} {kind}: {n:,} series collected, twice, "
                f"in {len(reps[False]) + len(mem)} repetition(s)",
                "ok": not bad,
                "detail": "every series, every count"
                if not bad
                else f"points/total first {bad[0]['points']}/{bad[0]['total']}, "
                f"again {bad[0]['points_again']}/{bad[0]['total_again']}",
            }
        )
    return out


def _x(row: dict[str, Any], ref: dict[str, Any] | None, key: str) -> str:
    if ref is None or row is ref or not ref[key]:
        return ""
    return f" ({row[key] / ref[key]:.2f}x)"


def render_md(s: dict[str, Any]) -> list[str]:
    n = s["series"]
    lines = [
        f"| variant | instrument | record {n:,} series (ms) | collect (ms) | collect again "
        "(ms) | retained per series (B) | collection peak (KiB) | retained by collection "
        "(KiB) |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    sdk = {r["kind"]: r for r in s["rows"] if r["variant"] == "otel_sdk"}
    for r in s["rows"]:
        ref = sdk.get(r["kind"])
        lines.append(
            f"| {r['variant']} | {r['kind']} | {r['record_ms']:,.1f}{_x(r, ref, 'record_ms')} | "
            f"{r['collect_ms']:,.1f}{_x(r, ref, 'collect_ms')} | "
            f"{r['collect_again_ms']:,.1f}{_x(r, ref, 'collect_again_ms')} | "
            f"{r['bytes_per_series']:,}{_x(r, ref, 'bytes_per_series')} | "
            f"{r['collect_peak_bytes'] / 1024:,.0f}{_x(r, ref, 'collect_peak_bytes')} | "
            f"{r['collect_retained_bytes'] / 1024:,.0f} |"
        )
    t, m = s["repetitions"]
    lines += [
        "",
        f"One value recorded into each of {n:,} label sets (3 labels, one varying) on a fresh "
        "provider with one InMemoryMetricReader (cardinality limit raised above N by a View), "
        "then `reader.get_metrics_data()` timed: `collect` is the first collection after the "
        "records, `collect again` a second one with nothing new (cumulative: every series "
        f"again). Times: median of {t} repetitions without tracemalloc; memory: median of {m} "
        "repetitions under tracemalloc (bytes retained by the series after recording, minus "
        "the label strings; traced peak of the first collection above what was traced before "
        "it; what it leaves retained once its result is dropped). `otel_sdk` is plain SDK "
        "instruments; `otel_aspects` the client's `record_counter` / `record_histogram`; "
        f"`otel_aspects_sdk` the same client built with `{ENGINE_ENV}=sdk`. (Nx) is the ratio "
        "to `otel_sdk` for the same instrument.",
        "",
        "Checks:",
        "",
    ]
    for c in s["checks"]:
        lines.append(f"- {'ok' if c['ok'] else 'FAILED'}: {c['check']} ({c['detail']})")
    return lines
