"""Run the benchmarks: ``python -m benchmarks.run [--smoke] [--out DIR] [--only NAME ...]``.

Per-call cost is measured in one process by *interleaved rounds*: every case is
calibrated to a sample of about ``--sample-ms`` milliseconds, warmed up, then each
round runs one sample of every case, in a fresh random order per round.  Noise on a
shared machine (another job, frequency changes) then hits all cases alike, and each
ratio is taken *per round* between samples a few milliseconds apart, then the median
over rounds: this is what keeps ratios stable when absolute figures drift.

The timed statement is unrolled ten times in a generated loop (as ``timeit`` does),
with every name it uses bound as a local, so the loop adds well under 1 ns per call.
Coroutine cases run their loop inside one long-lived event loop (``asyncio.Runner``),
timed from inside the coroutine, so the loop's start-up is not counted.

``--smoke`` runs every case for a few tiny samples and a small scale run, writes to a
temporary directory (never over the committed results), and fails only if a case
raises or a count is lost; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import platform
import random
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

from benchmarks import collection, scale
from benchmarks.cases import ASPECTS_AVAILABLE, ENGINE_ENV, Case, all_cases

UNROLL = 10
HERE = Path(__file__).resolve().parent

#: (case, reference case, limit, what it says) -- reported as PASS/FAIL, never asserted.
#: The targets of the issue (the pre-aggregating engine), as the issue states them,
#: each against the reference it names; the disabled one is kept from issue 5.
TARGETS: tuple[tuple[str, str, float, str], ...] = (
    (
        "aspects_decorator",
        "prom_wrapt_prebound",
        1.00,
        "`@timed` counter + histogram, 3 labels <= 1.0 x a wrapt decorator on "
        "prometheus_client's pre-bound `inc()` + `observe()`",
    ),
    (
        "aspects_decorator",
        "otel_handwritten",
        0.10,
        "`@timed` counter + histogram, 3 labels <= 0.10 x the hand-written SDK code",
    ),
    (
        "aspects_decorator_2readers",
        "aspects_decorator",
        1.05,
        "two readers (OTLP + Prometheus): per-call cost does not grow with the readers "
        "(<= 1.05 x one reader: 1.0 plus run-to-run noise)",
    ),
    (
        "aspects_decorator_multiprocess",
        "aspects_decorator",
        1.50,
        "`@timed` in multi-process mode (every call written through to the process's "
        "memory-mapped file) <= 1.5 x the same call in single-process mode",
    ),
    (
        "aspects_with_set_label",
        "prom_labels_per_call",
        1.00,
        "`with timed(...)` + one `set_label` from nested code <= 1.0 x prometheus_client "
        "`.labels(...)` per call, same 4 labels",
    ),
    (
        "client_record_dynamic",
        "prom_labels_record",
        1.00,
        "`client.record_counter` + `record_histogram`, 3-key dict per call <= 1.0 x "
        "`.labels(**attrs).inc()` + `.observe()`",
    ),
    (
        "seed_timed_context_per_call",
        "prom_labels_per_call_async",
        1.00,
        "`async with create_timed_context(record_func, labels=...)` built per call <= 1.0 x "
        "prometheus_client `.labels(...)` per call",
    ),
    ("aspects_disabled", "wrapt", 1.30, "disabled metric <= 1.3 x wrapt pass-through"),
)

#: Informative lines (not the issue's targets): the seed's decorator against its
#: prometheus_client peer, the decorator's 0.10 x carried to the other forms against
#: their same-form hand-written code, and the engine-off rows against the previous
#: target (1.10 x hand-written OTel of the same form), which still applies to them.
INFORMATIVE: tuple[tuple[str, str, float, str], ...] = (
    (
        "seed_track_duration",
        "prom_wrapt_labels",
        1.00,
        "`track_duration(record_func)` (record_func -> client.record_*) <= 1.0 x a wrapt "
        "decorator with `.labels(...)` per call",
    ),
    *(
        (case, ref, 0.10, f"{what} <= 0.10 x `{ref}`")
        for case, ref, what in (
            ("aspects_with", "otel_handwritten", "`with timed(...)` block"),
            ("aspects_async", "otel_handwritten_async", "coroutine"),
            ("aspects_gen", "otel_handwritten_gen", "generator"),
            ("aspects_method", "otel_handwritten_method", "instance method"),
            ("aspects_decorator_2readers", "otel_handwritten_2readers", "decorator, 2 readers"),
        )
    ),
    *(
        (case, ref, 1.10, f"engine off: {what} <= 1.10 x `{ref}`")
        for case, ref, what in (
            ("aspects_decorator_sdk", "otel_handwritten", "decorator"),
            ("aspects_decorator_2readers_sdk", "otel_handwritten_2readers", "decorator, 2 readers"),
            ("aspects_with_sdk", "otel_handwritten", "`with timed(...)` block"),
            ("aspects_with_set_label_sdk", "otel_handwritten_dynamic", "`with` + `set_label`"),
            ("aspects_async_sdk", "otel_handwritten_async", "coroutine"),
        )
    ),
)


def target_refs(names: set[str]) -> set[str]:
    """The references of every target or informative line about one of *names*."""
    return {ref for case, ref, _, _ in TARGETS + INFORMATIVE if case in names}


# --------------------------------------------------------------------------- timing


def compile_timer(case: Case) -> tuple[Callable[[int], int], dict[str, Any]]:
    """``timer(loops) -> elapsed ns`` running ``case.stmt`` ``loops * UNROLL`` times.

    Also returns the case's namespace (its ``_counts``, if any, reads the counts back).
    """
    namespace = case.setup()
    names = [n for n in namespace if not n.startswith("_")]
    params = "".join(f", {n}={n}" for n in names)
    stmt_lines = case.stmt.split("\n")
    body = "\n".join(" " * 8 + line for _ in range(UNROLL) for line in stmt_lines)
    is_async = case.kind == "async"
    src = (
        f"{'async ' if is_async else ''}def _bench("
        f"_loops, _clock=_clock, _repeat=_repeat{params}):\n"
        "    _t0 = _clock()\n"
        "    for _ in _repeat(None, _loops):\n"
        f"{body}\n"
        "    return _clock() - _t0\n"
    )
    scope: dict[str, Any] = {"_clock": time.perf_counter_ns, "_repeat": repeat, **namespace}
    exec(compile(src, f"<bench {case.name}>", "exec"), scope)
    bench = scope["_bench"]
    if not is_async:
        return bench, namespace
    runner = asyncio.Runner()
    _keep_alive.append((runner, namespace))

    def timer(loops: int) -> int:
        return runner.run(bench(loops))  # type: ignore[no-any-return]

    return timer, namespace


_keep_alive: list[Any] = []


def calibrate(timer: Callable[[int], int], target_ns: float) -> int:
    """Loops per sample so that one sample takes about *target_ns*."""
    loops = 1
    while True:
        elapsed = timer(loops)
        if elapsed >= target_ns / 4 or loops >= 1 << 24:
            break
        loops *= 4
    return max(1, round(loops * target_ns / max(elapsed, 1)))


@dataclass
class Measured:
    case: Case
    loops: int
    samples: list[float]  # ns per call, one per round, in round order
    calls: int = 0  # every call made, calibration and warm-up included
    counts: Callable[[], tuple[int, int]] | None = None  # (counter sum, histogram count)

    def stat(self) -> dict[str, float]:
        s = sorted(self.samples)
        q = statistics.quantiles(s, n=4, method="inclusive") if len(s) > 1 else [s[0]] * 3
        return {"median": q[1], "p25": q[0], "p75": q[2], "min": s[0], "max": s[-1]}


def _counting(timer: Callable[[int], int], m: Measured) -> Callable[[int], int]:
    """*timer*, adding every call it makes to ``m.calls`` (checked against the counts)."""

    def counted(loops: int) -> int:
        m.calls += loops * UNROLL
        return timer(loops)

    return counted


def count_checks(measured: list[Measured]) -> list[dict[str, Any]]:
    """Per case that can read its counts back: every call counted, every duration recorded."""
    checks = []
    for m in measured:
        if m.counts is None:
            continue
        counter, hist = m.counts()
        checks.append(
            {
                "check": f"{m.case.name}: {m.calls:,} calls counted",
                "per_call": m.case.name,
                "ok": counter == m.calls and hist == m.calls,
                "detail": f"counter {counter:,}, histogram count {hist:,}",
            }
        )
    return checks


def paired_ratio(a: Measured, b: Measured) -> dict[str, float]:
    """Median and IQR over rounds of a's sample divided by b's sample of the same round."""
    r = sorted(x / y for x, y in zip(a.samples, b.samples, strict=True))
    q = statistics.quantiles(r, n=4, method="inclusive") if len(r) > 1 else [r[0]] * 3
    return {"median": q[1], "p25": q[0], "p75": q[2]}


def measure(
    cases: Sequence[Case], rounds: int, sample_ms: float, warmup: int, seed: int, log: Any
) -> list[Measured]:
    timers = []
    results = []
    for case in cases:
        timer, namespace = compile_timer(case)
        m = Measured(case, 0, [], counts=namespace.get("_counts"))
        timer = _counting(timer, m)
        m.loops = loops = calibrate(timer, sample_ms * 1e6)
        timers.append((case, timer, loops))
        results.append(m)
        log(f"  {case.name:<28} {loops * UNROLL:>9} calls/sample")
    for _ in range(warmup):
        for _, timer, loops in timers:
            timer(loops)
    rng = random.Random(seed)
    order = list(range(len(timers)))
    t0 = time.monotonic()
    for r in range(rounds):
        rng.shuffle(order)
        for i in order:
            _, timer, loops = timers[i]
            results[i].samples.append(timer(loops) / (loops * UNROLL))
        if log and (r + 1) % max(1, rounds // 10) == 0:
            log(f"  round {r + 1}/{rounds} ({time.monotonic() - t0:.0f} s)")
    return results


# --------------------------------------------------------------------------- reporting


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in (
        "opentelemetry-sdk",
        "wrapt",
        "prometheus-client",
        "prometheus-async",
        "anyio",
        "otel-aspects",
    ):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def summarize(measured: list[Measured]) -> list[dict[str, Any]]:
    by_name = {m.case.name: m for m in measured}
    rows = []
    for m in measured:
        row: dict[str, Any] = {
            "case": m.case.name,
            "group": m.case.group,
            "description": m.case.description,
            "kind": m.case.kind,
            "calls_per_sample": m.loops * UNROLL,
            "ns_per_call": {k: round(v, 2) for k, v in m.stat().items()},
            "baseline": m.case.baseline,
            "handwritten": m.case.handwritten,
        }
        base = by_name.get(m.case.baseline)
        row["x_bare"] = _round(paired_ratio(m, base)) if base else None
        hand = by_name.get(m.case.handwritten)
        row["x_handwritten"] = _round(paired_ratio(m, hand)) if hand else None
        row["peer"] = m.case.peer
        peer = by_name.get(m.case.peer) if m.case.peer else None
        row["x_peer"] = _round(paired_ratio(m, peer)) if peer else None
        # Against the sync `otel_handwritten` whatever the form: the column of runs
        # before the same-form baselines, kept in the JSON for comparison with them.
        otel = by_name.get("otel_handwritten")
        row["x_otel"] = _round(paired_ratio(m, otel)) if otel else None
        rows.append(row)
    return rows


def _round(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in d.items()}


def targets(measured: list[Measured]) -> list[dict[str, Any]]:
    by_name = {m.case.name: m for m in measured}
    out = []
    for informative, table in ((False, TARGETS), (True, INFORMATIVE)):
        for case, ref, limit, text in table:
            entry: dict[str, Any] = {
                "target": text,
                "case": case,
                "reference": ref,
                "limit": limit,
                "informative": informative,
            }
            if case not in by_name or ref not in by_name:
                if not informative:  # (informative lines about cases not run: left out)
                    out.append({**entry, "result": "NOT RUN"})
                continue
            r = paired_ratio(by_name[case], by_name[ref])
            ok = r["median"] <= limit
            out.append({**entry, "ratio": _round(r), "result": "PASS" if ok else "FAIL"})
    return out


def fmt_ns(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def _ratio_cell(ratio: dict[str, float] | None, ref: str | None, default: str) -> str:
    """``1.07``, or ``1.07 (vs ref)`` when the reference is not the default one."""
    if not ratio:
        return "-"
    cell = f"{ratio['median']:.2f}"
    return cell if ref == default else f"{cell} (vs {ref})"


#: The README's table, one row per form: (what, case, engine-off twin or None).  Each
#: row shows the case's ns/call, its ratio to its prometheus_client peer and to the
#: hand-written SDK code of the same form (each with the reference's own ns/call), its
#: engine-off twin (``<case>_sdk`` when there is one), and the issue targets about it.
SUMMARY: tuple[tuple[str, str], ...] = (
    ("bare call", "bare"),
    ("wrapt pass-through", "wrapt"),
    ("hand-written SDK: `counter.add` + `histogram.record`, 3 attributes", "otel_handwritten"),
    ("the same, 2 readers (OTLP + Prometheus); ratio to 1 reader", "otel_handwritten_2readers"),
    ("prometheus_client: wrapt decorator, pre-bound `inc()` + `observe()`", "prom_wrapt_prebound"),
    ("prometheus_client: `.labels(...)` per call, 3 labels", "prom_both"),
    ("`@timed` on a `capture: false` metric", "aspects_disabled"),
    ("`@timed`, counter + histogram, 3 labels", "aspects_decorator"),
    ("the same, 2 readers (OTLP + Prometheus)", "aspects_decorator_2readers"),
    ("`with timed(...)`", "aspects_with"),
    ("`with timed(...)` + `set_label` from nested code", "aspects_with_set_label"),
    ("`client.record_counter` + `record_histogram`, dict per call", "client_record_dynamic"),
    ("`track_duration(record_func)`", "seed_track_duration"),
    ("`async with create_timed_context(...)` built per call", "seed_timed_context_per_call"),
    ("coroutine", "aspects_async"),
    ("generator", "aspects_gen"),
    ("instance method", "aspects_method"),
)

README = HERE.parent / "README.md"
README_START = "<!-- benchmarks:table:start (written by python -m benchmarks.run) -->"
README_END = "<!-- benchmarks:table:end -->"


def _with_ref(ratio: dict[str, float] | None, ref: str | None, rows: dict[str, Any]) -> str:
    """``0.95 (`ref`, 3,411 ns)``: the ratio and the reference's own ns/call."""
    if not ratio or not ref:
        return ""
    ns = f", {fmt_ns(rows[ref]['ns_per_call']['median'])} ns" if ref in rows else ""
    return f"{ratio['median']:.2f} (`{ref}`{ns})"


def render_summary(report: dict[str, Any]) -> list[str]:
    """The README table: ours beside the hand-written SDK and prometheus_client, engine off."""
    rows = {r["case"]: r for r in report["cases"]}
    m, v = report["machine"], report["versions"]
    lines = [
        f"From one run of `make bench` on {report['date'][:10]} ({m['cpu']}, {m['cores']} cores, "
        f"{m['implementation']} {m['python']}, opentelemetry-sdk {v.get('opentelemetry-sdk')}, "
        f"prometheus-client {v.get('prometheus-client')}, wrapt {v.get('wrapt')}), medians of "
        f"{report['settings']['rounds']} interleaved rounds; ratios are paired per round "
        "([benchmarks/results.md](benchmarks/results.md) has every case):",
        "",
        "| form | ns/call | x prometheus_client peer | x hand-written SDK, same form "
        f"| engine off (`{ENGINE_ENV}=sdk`): ns/call, x hand-written | issue targets |",
        "|---|--:|--:|--:|--:|---|",
    ]
    for what, case in SUMMARY:
        row = rows.get(case)
        if row is None:
            continue
        off = rows.get(f"{case}_sdk")
        off_cell = ""
        if off:
            off_cell = fmt_ns(off["ns_per_call"]["median"])
            if off.get("x_handwritten"):
                off_cell += f", {off['x_handwritten']['median']:.2f}"
        hand = ""
        if case != row["handwritten"] and row["group"] != "baseline" and case != "aspects_disabled":
            hand = _with_ref(row.get("x_handwritten"), row["handwritten"], rows)
        goals = [
            f"{t['ratio']['median']:.2f} x `{t['reference']}` <= {t['limit']:g}: {t['result']}"
            for t in report["targets"]
            if t["case"] == case and not t.get("informative") and "ratio" in t
        ]
        lines.append(
            f"| {what} | {fmt_ns(row['ns_per_call']['median'])} | "
            f"{_with_ref(row.get('x_peer'), row.get('peer'), rows)} | {hand} | {off_cell} | "
            f"{'; '.join(goals)} |"
        )
    return lines


def update_readme(report: dict[str, Any], path: Path = README) -> bool:
    """Replace the table between the README's markers; False if the markers are missing."""
    text = path.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    block = "\n".join([README_START, "", *render_summary(report), "", README_END])
    path.write_text(text[:start] + block + text[end + len(README_END) :])
    return True


def render_md(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"- command: `{report['command']}`",
        f"- date: {report['date']}",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, "
        f"{m['implementation']} {m['python']}; load average at start {m['loadavg_at_start']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        f"- method: {report['settings']['rounds']} interleaved rounds (random order per round) "
        f"of ~{report['settings']['sample_ms']} ms samples per case, after "
        f"{report['settings']['warmup']} warm-up rounds; {UNROLL}x unrolled loop; "
        f"per-call wall time {report['elapsed_s']['per_call']:.0f} s",
        "",
        "## Per-call cost",
        "",
        "| case | what | ns/call (median) | spread p25-p75 | x bare (same form) "
        "| x hand-written (same form) | x prometheus_client peer |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for row in report["cases"]:
        ns = row["ns_per_call"]
        bare = _ratio_cell(row["x_bare"], row["baseline"], "bare")
        hand = _ratio_cell(row.get("x_handwritten"), row.get("handwritten"), "otel_handwritten")
        peer = _ratio_cell(row.get("x_peer"), row.get("peer"), "")
        lines.append(
            f"| {row['case']} | {row['description']} | {fmt_ns(ns['median'])} | "
            f"{fmt_ns(ns['p25'])}-{fmt_ns(ns['p75'])} | {bare} | {hand} | {peer} |"
        )
    lines += [
        "",
        "## Targets",
        "",
        "| target | kind | ratio (median, p25-p75 over rounds) | result |",
        "|---|---|--:|:-:|",
    ]
    for t in report["targets"]:
        kind = "informative" if t.get("informative") else "issue target"
        if "ratio" in t:
            r = t["ratio"]
            lines.append(
                f"| {t['target']} | {kind} | {r['median']:.3f} ({r['p25']:.3f}-{r['p75']:.3f}) "
                f"| **{t['result']}** |"
            )
        else:
            lines.append(f"| {t['target']} | {kind} | - | {t['result']} |")
    lines += ["", "## README table", "", *render_summary(report)]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    if report.get("scale"):
        lines += ["", "## Scale", "", *scale.render_md(report["scale"])]
    if report.get("collection"):
        lines += ["", "## Collection", "", *collection.render_md(report["collection"])]
    per_call = [c for c in report.get("checks", ()) if c.get("per_call")]
    if per_call:
        lines += [
            "",
            "## Per-call counts",
            "",
            "Every per-call case that records through a reader (or a prometheus_client "
            "registry) reads its counter sum and histogram count back after the run and "
            "compares them with the calls it made (calibration and warm-up included): "
            + ", ".join(
                f"{c['per_call']} {'ok' if c['ok'] else 'FAILED (' + c['detail'] + ')'}"
                for c in per_call
            )
            + ".",
        ]
    return "\n".join(lines) + "\n"


NOTES = [
    "Every case runs the same body, `return x + 1`, called with `1`; ns/call is wall time "
    "per statement including 1/10 of a loop iteration (well under 1 ns).",
    "`x bare (same form)` is the median over rounds of (case sample / sample of the bare "
    "call of the same form, same round): `bare` for sync calls, `bare_async`, `bare_gen`, "
    "`bare_method` (named in brackets) for the coroutine, generator and method forms.",
    "`x hand-written (same form)` is the same paired ratio against the hand-written OTel "
    "instrumentation of the same form and labels (named in brackets when it is not "
    "`otel_handwritten`): `aspects_decorator`, `aspects_with` (and `aspects_disabled`, "
    "sync peers, sync baselines) vs `otel_handwritten`; `aspects_with_set_label` vs "
    "`otel_handwritten_dynamic`; `aspects_async` (and `prom_async_time`) vs "
    "`otel_handwritten_async`; `aspects_gen` vs `otel_handwritten_gen`; `aspects_method` vs "
    "`otel_handwritten_method`; `aspects_decorator_noop` vs `handwritten_noop`. The ratio "
    "against the sync `otel_handwritten` whatever the form (the only one before) is kept in "
    "results.json as `x_otel`.",
    "`otel_handwritten` is `t = perf_counter(); r = f(x); counter.add(1, attrs); "
    "histogram.record(perf_counter() - t, attrs); return r` in a plain function around `f`, "
    "with one prebuilt dict `attrs = {route: /bench, method: GET, status: success}` "
    "(3 attributes), on an SDK MeterProvider with an InMemoryMetricReader, histogram buckets "
    "= otel_aspects' DEFAULT_SECONDS_BUCKETS (14 boundaries). Every hand-written variant "
    "uses its own fresh provider, the same instruments and attrs, and puts the "
    "instrumentation around one call of the same body:",
    "`otel_handwritten_async`: an `async def` with `t = perf_counter()`, "
    "`try: return await f(x)`, `finally: add; record`, awaited as `await f(1)` N times in "
    "one coroutine in the same long-lived loop as `aspects_async`.",
    "`otel_handwritten_gen`: a generator with `t = perf_counter()` (runs at the first "
    "`next`), `try: yield from g(x)`, `finally: add; record`, consumed by the same "
    "`for _ in g(1): pass` as `aspects_gen` (one item each): timed from the first step to "
    "exhaustion, as the aspect times it.",
    "`otel_handwritten_method`: the instrumentation inline in a method of a plain class, "
    "called as `obj.method(1)` through an instance, as `aspects_method`.",
    "`otel_handwritten_dynamic`: as `otel_handwritten`, but the nested function returns a "
    "label value only known inside the call and the instrumentation builds "
    "`{**attrs, server_name: value}` per call (4 attributes): the hand-written equivalent of "
    "`aspects_with_set_label`, whose nested function calls `set_label('server_name', "
    "'bench-1')` inside `with timed(..., labels={route, method})` (the same 4 attributes and "
    "values). Before this pairing the set_label case set `method` (3 attributes): its "
    "ns/call is not comparable with runs before it.",
    "The otel_aspects counter+histogram cases record the same two instruments (declared in "
    "`benchmarks/bench_config.yml`) with `labels={route: /bench, method: GET}` plus the "
    "`status` label the aspect adds: the same 3 attributes with the same values "
    "(4 with `server_name` for `aspects_with_set_label`).",
    "prometheus_client cases use their own CollectorRegistry, labels (route, method, status) "
    "and the same 14 buckets. `prom_hist_time` resolves `.labels()` once at decoration time "
    "(the idiomatic form); `prom_counter_inc` and `prom_both` call `.labels()` per call.",
    "`x prometheus_client peer` is the paired ratio to the prometheus_client code doing the "
    "same work with the same labels in the same form (the reference of the issue's "
    "'at most 1.0x prometheus_client' targets): `aspects_decorator` vs `prom_wrapt_prebound` "
    "(a `@wrapt.decorator` calling children bound once at setup: `inc()` + "
    "`observe(perf_counter() - t)`, the fastest prometheus_client code; it pays wrapt's "
    "failed `__self__` lookup on a plain function, which otel_aspects' own wrapper avoids); "
    "`aspects_with_set_label` vs `prom_labels_per_call` (4 labels, the 4th returned by the "
    "nested code, `.labels(a, b, c, v)` per call); `client_record_dynamic` vs "
    "`prom_labels_record` (the same 3-key dict built per call, `.labels(**attrs)` per call); "
    "`seed_track_duration` vs `prom_wrapt_labels` (a wrapt decorator, `.labels(a, b, c)` per "
    "call); `seed_timed_context_per_call` vs `prom_labels_per_call_async` (a coroutine "
    "handler, `.labels(a, b, c)` per call in `finally`).",
    "`*_2readers`: the same code on a provider with two readers, an OTLP/HTTP exporter behind "
    "a PeriodicExportingMetricReader whose interval never comes during the run and a "
    "PrometheusMetricReader in its own CollectorRegistry (both cumulative). The SDK updates "
    "one storage per reader on every call; the target is that otel_aspects' per-call cost "
    "does not grow with the readers (<= 1.05 x its one-reader case, 1.0 plus noise).",
    "`*_sdk` (engine off): the otel_aspects case with its client and aspects built while "
    "`OTEL_ASPECTS_ENGINE=sdk` is set (set and restored around the case's setup only; every "
    "case's client has its own provider via `meter_provider=`): the recording path straight "
    "into the SDK's instruments. Until the engine exists both rows run the same code.",
    "Every case that records through a reader or a prometheus_client registry reads its "
    "counter sum and histogram count back after the run and compares them with the calls it "
    "made (calibration and warm-up included); a lost count fails the run (and `--smoke`).",
    "Coroutine cases (bare, hand-written and aspects alike) await a coroutine that never "
    "suspends, N times in one coroutine run inside one long-lived event loop, so the loop's "
    "own cost cancels out.",
    "Spread is the inter-quartile range of per-round samples; ratios carry their own IQR in "
    "results.json.",
]


GROUPS_VS_HAND = ("otel_aspects", "engine_off", "peer", "diagnostic")


def render_chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["cases"]
    colors = {
        "baseline": "#9e9e9e",
        "otel": "#1f77b4",
        "otel_aspects": "#2ca02c",
        "engine_off": "#98df8a",
        "peer": "#ff7f0e",
        "diagnostic": "#c5b0d5",
    }
    names = [r["case"] for r in rows][::-1]
    med = [r["ns_per_call"]["median"] for r in rows][::-1]
    lo = [r["ns_per_call"]["median"] - r["ns_per_call"]["p25"] for r in rows][::-1]
    hi = [r["ns_per_call"]["p75"] - r["ns_per_call"]["median"] for r in rows][::-1]
    col = [colors.get(r["group"], "#444") for r in rows][::-1]
    fig, ax = plt.subplots(figsize=(13, 0.38 * len(rows) + 1.8))
    ax.barh(names, med, xerr=[lo, hi], color=col, capsize=2)
    ax.set_xscale("log")
    ax.set_xlabel(
        "ns per call (median, log scale; whiskers: p25-p75 over rounds)\n"
        "ratios: aspects, engine off, peers, diagnostics x hand-written OTel of the same form "
        "(and x their prometheus_client peer); others x bare"
    )
    for y, r in enumerate(rows[::-1]):
        hand = r.get("x_handwritten")
        ratio = hand if r["group"] in GROUPS_VS_HAND else r["x_bare"]
        ref = "hand-written" if ratio is hand else "bare"
        label = fmt_ns(r["ns_per_call"]["median"])
        if ratio:
            label += f"  ({ratio['median']:.2f}x {ref}"
            if r.get("x_peer"):
                label += f", {r['x_peer']['median']:.2f}x {r['peer']}"
            label += ")"
        ax.text(r["ns_per_call"]["p75"] * 1.15, y, label, va="center", fontsize=7)
    m = report["machine"]
    ax.set_title(
        f"otel_aspects per-call cost -- {m['cpu']}, {m['cores']} cores, "
        f"Python {m['python']}, {report['date'][:10]}",
        fontsize=9,
    )
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
    ax.legend(handles, list(colors), loc="lower right", fontsize=7)
    ax.set_xlim(right=max(r["ns_per_call"]["p75"] for r in rows) * 80)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny run, temp output")
    parser.add_argument("--out", type=Path, help="output folder (default: benchmarks/)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 250)")
    parser.add_argument("--sample-ms", type=float, help="ms per sample (default 6)")
    parser.add_argument("--only", nargs="*", help="run only these cases (plus references)")
    parser.add_argument("--no-scale", action="store_true", help="skip benchmarks/scale.py")
    parser.add_argument(
        "--no-collection", action="store_true", help="skip benchmarks/collection.py"
    )
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args(argv)

    smoke = args.smoke
    rounds = args.rounds or (3 if smoke else 250)
    sample_ms = args.sample_ms or (0.2 if smoke else 6.0)
    warmup = 1 if smoke else 5
    out = args.out or (Path(tempfile.mkdtemp(prefix="otel-aspects-bench-")) if smoke else HERE)
    out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    cases = all_cases()
    if args.only:
        # The named cases, the references of their targets, and (transitively) each
        # case's bare and hand-written baselines of the same form and its peer.
        unknown = set(args.only) - {c.name for c in cases}
        if unknown:
            parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
        keep = set(args.only) | {"bare", "wrapt", "otel_handwritten"}
        while True:
            refs = target_refs(keep) | {
                r
                for c in cases
                if c.name in keep
                for r in (c.baseline, c.handwritten, c.peer)
                if r is not None
            }
            if refs <= keep:
                break
            keep |= refs
        cases = [c for c in cases if c.name in keep]
    started = dt.datetime.now(dt.UTC).astimezone()
    report: dict[str, Any] = {
        "command": " ".join(
            ["python -m benchmarks.run", *map(shlex.quote, sys.argv[1:] if argv is None else argv)]
        ),
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "settings": {"rounds": rounds, "sample_ms": sample_ms, "warmup": warmup, "smoke": smoke},
        "notes": list(NOTES),
        "elapsed_s": {},
    }
    if not ASPECTS_AVAILABLE:
        report["notes"].append("otel_aspects.timing is not importable: its cases were not run.")

    log(f"benchmarks: {len(cases)} cases, {rounds} rounds of ~{sample_ms} ms samples")
    t0 = time.monotonic()
    gc.collect()
    measured = measure(cases, rounds, sample_ms, warmup, args.seed, log)
    report["elapsed_s"]["per_call"] = time.monotonic() - t0
    report["cases"] = summarize(measured)
    report["targets"] = targets(measured)
    report["checks"] = checks = count_checks(measured)
    _keep_alive.clear()

    if not args.no_scale:
        log("scale:")
        t1 = time.monotonic()
        report["scale"] = scale.run(smoke=smoke, log=log)
        report["elapsed_s"]["scale"] = time.monotonic() - t1
        checks += report["scale"]["checks"]
    if not args.no_collection:
        log("collection:")
        t1 = time.monotonic()
        report["collection"] = collection.run(smoke=smoke, log=log)
        report["elapsed_s"]["collection"] = time.monotonic() - t1
        checks += report["collection"]["checks"]
    ok = all(c["ok"] for c in checks)
    report["elapsed_s"]["total"] = time.monotonic() - t0

    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "results.md").write_text(render_md(report))
    if not smoke and not args.only and out.resolve() == HERE:
        if update_readme(report):
            log(f"updated the table in {README}")
        else:
            log(f"{README}: markers not found, table not updated")
    render_chart(report, out / "results.png")
    print(render_md(report))
    total = report["elapsed_s"]["total"]
    log(f"wrote {out}/results.md, results.json, results.png in {total:.0f} s")
    if not ok:
        for c in checks:
            if not c["ok"]:
                log(f"FAILED check: {c['check']}: {c['detail']}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
