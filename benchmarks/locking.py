"""Locking: what keeps recording exact with threads and a collection running at once.

One *timed call* here is ``t = perf_counter(); record(perf_counter() - t)``, where
``record`` adds ``+1`` to a counter's sum and the duration to a histogram (14
explicit buckets, count, sum, min, max) for one attribute set -- the shape of
:class:`otel_aspects.engine.Pair` recording into a ``SumSeries`` and a
``HistogramSeries``.  The strategies, each on its own small series objects:

``no_lock``
    the fields updated with no lock at all: the unsafe baseline, for reference only;
``lock_per_series``
    each series has its own ``threading.Lock``: two acquisitions per call;
``fused``
    one lock held for the counter's and the histogram's update together (the engine's
    one lock per generation, ``Pair._record_sampled``);
``per_thread``
    a ``threading.local`` shard (counter + histogram) per recording thread, written
    without a lock by its one writer; a collection sums the shards;
``write_behind``
    ``list.append`` of the duration with no lock, the counter's ``+1`` implied by it;
    folded into the series under a lock once 256 are waiting and before each
    collection (``engine.Slot``, ``FOLD_AT``).

``timing_only`` (the two ``perf_counter`` calls and the loop, nothing recorded) is the
floor every row includes.

Figures:

- ns per call, one thread: 401 interleaved rounds (each round takes one ~2 ms sample
  of every strategy, in a fresh random order), the median over rounds of each round's
  ns/call; "over timing only" is the median of the per-round differences;
- ns per call, 2 threads: both threads record into the same objects at once, started
  together; wall time / total calls, median over the 81 rounds (every 5th) that take
  one, right after the same case's 1-thread sample;
- exactness: 4 threads x 20,000 calls while a collector thread collects in a loop
  (sums the shards for ``per_thread``, folds for ``write_behind``); after the join, one
  last collection must give a counter of 80,000 and a histogram count (and bucket
  total) of 80,000.  Run twice: at the default switch interval (5 ms) and at
  ``sys.setswitchinterval(1e-6)``, which makes the interpreter hand the GIL over far
  more often and so shows races that the default interval hides.  Lost counts are
  printed, never hidden.

The real engine: ``@timed`` on a plain function (counter + histogram, client on a fresh
SDK ``MeterProvider`` with an ``InMemoryMetricReader``), which records through
``Pair.record`` into a ``Slot``; beside it the same with ``engine.FOLD_AT`` patched to
1 for the duration of its samples only, so every call folds under the generation's
lock -- what write-behind saves on the real code path.  Its counts are read back from
the reader and checked too (4 threads + a collector calling ``get_metrics_data()``).

Why a correct design cannot rely on the GIL (whatever ``no_lock`` shows here): ``x +=
1`` on an attribute is a load, an add and a store (``LOAD_ATTR``, ``BINARY_OP``,
``STORE_ATTR``), and another thread's update between the load and the store is lost.
On CPython 3.11 with the GIL, ``no_lock`` loses nothing in these runs, even at a 1 us
switch interval (nor 4 x 200,000 calls in a tighter loop, tried while writing this):
3.11 hands the GIL over only at its "eval breaker" checks (function entry, backward
jumps, after calls), and none falls between those three bytecodes of ``+= 1`` on an int.
That is luck, not a guarantee: where the interpreter may switch is an implementation
detail that changed between 3.10, 3.11 and 3.12 (a ``__add__``/``__index__`` in Python,
a finalizer, a tracing hook or a debug build moves it), and it is no promise of the
language.  On the free-threaded build (PEP 703,
3.13t and later) there is no GIL at all: two threads run those bytecodes truly at once
and counts are lost routinely.  ``list.append`` and ``del lst[:k]`` on the other hand
are documented-atomic single operations on both builds (one C call holding the GIL, or
the list's own per-object lock), which is what write-behind relies on, and the fold's
``taken = pending[:len(pending)]`` then ``del pending[:len(taken)]`` never drops a
duration appended in between.  ``per_thread`` relies only on one writer per shard, but
a collection reads a shard while its thread writes it (it may see the counter's ``+1``
without the histogram's), and shards must be found and dropped when threads end.

Reading the table (the ranking held over every run while writing this, on a shared
2-core machine; absolute ns drift from run to run): write-behind is the cheapest locked
recording and close to the unsafe baseline, because a call is one ``list.append``
and a length check, and the lock, the bucket search and the min/max are paid once per
256 calls, in ``observe_all``'s tighter loop; a fused lock costs about one lock
acquisition over ``no_lock``; a lock per series costs two, and lets a collection see
the counter's ``+1`` without the histogram's; per-thread shards (a ``threading.local``
lookup, no lock) come between write-behind and fused, but a collection reads shards
their threads are writing (torn points), and they cost a shard per thread per series
(thread pools of hundreds of threads times thousands of series) and need cleaning when
threads end.  Hence the
engine: write-behind for the common path (``Slot``, ``_write_behind``), and one fused
lock per generation where a measurement must go straight in (exemplars, the fold).

Run: ``python -m benchmarks.locking`` (about 20 s) or ``--smoke`` (under 3 s, tiny
rounds, exactness still checked; fails only if a locked strategy or the engine loses a
count, never on time).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

__all__ = ("STRATEGIES", "main", "run")

#: The 14 explicit buckets of otel_aspects' seconds histograms (benchmarks.cases.BUCKETS).
BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
FOLD_AT = 256
_INF = float("inf")


# --------------------------------------------------------------------------- series


class Sum:
    __slots__ = ("lock", "n", "value")

    def __init__(self) -> None:
        self.value = 0
        self.n = 0
        self.lock = threading.Lock()

    def add(self, value: int) -> None:
        self.value += value
        self.n += 1


class Hist:
    __slots__ = ("counts", "lock", "max", "min", "n", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.n = 0
        self.sum = 0.0
        self.min = _INF
        self.max = -_INF
        self.lock = threading.Lock()

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.n += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def observe_all(self, values: list[float]) -> None:
        counts = self.counts
        for value in values:
            counts[bisect_left(BUCKETS, value)] += 1
        self.n += len(values)
        self.sum += sum(values)
        low, high = min(values), max(values)
        if low < self.min:
            self.min = low
        if high > self.max:
            self.max = high


# --------------------------------------------------------------------------- strategies
# Each: record(duration) for the hot path, collect() -> (counter, hist count, bucket total).


class NoLock:
    def __init__(self) -> None:
        self.c, self.h = Sum(), Hist()

    def record(self, d: float) -> None:
        self.c.add(1)
        self.h.observe(d)

    def collect(self) -> tuple[int, int, int]:
        return self.c.value, self.h.n, sum(self.h.counts)


class LockPerSeries(NoLock):
    def record(self, d: float) -> None:
        c, h = self.c, self.h
        with c.lock:
            c.add(1)
        with h.lock:
            h.observe(d)

    def collect(self) -> tuple[int, int, int]:
        with self.c.lock:
            value = self.c.value
        with self.h.lock:
            return value, self.h.n, sum(self.h.counts)


class Fused(NoLock):
    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def record(self, d: float) -> None:
        with self.lock:
            self.c.add(1)
            self.h.observe(d)

    def collect(self) -> tuple[int, int, int]:
        with self.lock:
            return self.c.value, self.h.n, sum(self.h.counts)


class PerThread:
    def __init__(self) -> None:
        self.local = threading.local()
        self.shards: list[tuple[Sum, Hist]] = []
        self.lock = threading.Lock()

    def _shard(self) -> tuple[Sum, Hist]:
        shard = (Sum(), Hist())
        with self.lock:
            self.shards.append(shard)
        self.local.shard = shard
        return shard

    def record(self, d: float) -> None:
        try:
            c, h = self.local.shard
        except AttributeError:
            c, h = self._shard()
        c.add(1)
        h.observe(d)

    def collect(self) -> tuple[int, int, int]:
        with self.lock:
            shards = list(self.shards)
        return (
            sum(c.value for c, _ in shards),
            sum(h.n for _, h in shards),
            sum(sum(h.counts) for _, h in shards),
        )


class WriteBehind(NoLock):
    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.pending: list[float] = []

    def record(self, d: float) -> None:
        pending = self.pending
        pending.append(d)
        if len(pending) >= FOLD_AT:
            self.fold()

    def fold(self) -> None:
        with self.lock:
            pending = self.pending
            taken = pending[: len(pending)]
            if taken:
                del pending[: len(taken)]
                self.c.value += len(taken)
                self.c.n += len(taken)
                self.h.observe_all(taken)

    def collect(self) -> tuple[int, int, int]:
        self.fold()
        with self.lock:
            return self.c.value, self.h.n, sum(self.h.counts)


STRATEGIES: dict[str, type] = {
    "no_lock": NoLock,
    "lock_per_series": LockPerSeries,
    "fused": Fused,
    "per_thread": PerThread,
    "write_behind": WriteBehind,
}
#: Strategies that must be exact (``no_lock`` is reported, not required).
MUST_BE_EXACT = ("lock_per_series", "fused", "per_thread", "write_behind")


# --------------------------------------------------------------------------- timed loops


def _loop(record: Callable[[float], None] | None) -> Callable[[int], int]:
    """A sample: *n* timed calls recording through *record*; returns elapsed ns."""
    perf, clock = time.perf_counter, time.perf_counter_ns
    if record is None:

        def sample(n: int) -> int:
            t0 = clock()
            for _ in range(n):
                t = perf()
                perf() - t
            return clock() - t0

    else:

        def sample(n: int) -> int:
            rec = record
            t0 = clock()
            for _ in range(n):
                t = perf()
                rec(perf() - t)
            return clock() - t0

    return sample


def _call_loop(f: Callable[[int], int]) -> Callable[[int], int]:
    """A sample of *n* calls ``f(1)`` (the real engine: ``@timed`` times itself)."""
    clock = time.perf_counter_ns

    def sample(n: int) -> int:
        g = f
        t0 = clock()
        for _ in range(n):
            g(1)
        return clock() - t0

    return sample


class _Case:
    """One row: a sample function, and optionally how to wrap it (the FOLD_AT patch)."""

    def __init__(self, sample: Callable[[int], int], around: Any = None) -> None:
        self.sample = sample
        self.around = around  # a context-manager factory, or None

    def run(self, n: int) -> int:
        if self.around is None:
            return self.sample(n)
        with self.around():
            return self.sample(n)


def _two_threads(case: _Case, n: int) -> float:
    """Wall ns per call with 2 threads recording *n* calls each at once."""
    barrier = threading.Barrier(3)

    def work() -> None:
        barrier.wait()
        case.sample(n)

    threads = [threading.Thread(target=work) for _ in range(2)]
    ctx = case.around() if case.around is not None else None
    if ctx is not None:
        ctx.__enter__()
    try:
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter_ns()
        for t in threads:
            t.join()
        elapsed = time.perf_counter_ns() - t0
    finally:
        if ctx is not None:
            ctx.__exit__(None, None, None)
    return elapsed / (2 * n)


def _interleaved(
    cases: dict[str, _Case], rounds: int, every: int, sizes: dict[str, int], seed: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-round ns/call of every case, 1 thread and (every *every*-th round) 2 threads.

    Each round visits the cases in a fresh random order; a case's 2-thread sample, when
    the round has one, follows its 1-thread sample, so both see the same machine.
    """
    rng = random.Random(seed)
    one: dict[str, list[float]] = {name: [] for name in cases}
    two: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for i in range(rounds):
        rng.shuffle(names)
        for name in names:
            n = sizes[name]
            one[name].append(cases[name].run(n) / n)
            if i % every == 0:
                two[name].append(_two_threads(cases[name], n))
    return one, two


def _median_diff(a: list[float], b: list[float]) -> float:
    """The median over rounds of ``a - b`` taken within each round."""
    return statistics.median(x - y for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------- exactness


def _exactness(
    record: Callable[[float], None],
    collect: Callable[[], Any],
    final: Callable[[], tuple[int, int, int]],
    n_threads: int,
    per_thread: int,
    switch: float | None,
) -> dict[str, Any]:
    old = sys.getswitchinterval()
    if switch is not None:
        sys.setswitchinterval(switch)
    try:
        barrier = threading.Barrier(n_threads + 1)
        done = threading.Event()
        collections = 0

        def work() -> None:
            barrier.wait()
            perf = time.perf_counter
            rec = record
            for _ in range(per_thread):
                t = perf()
                rec(perf() - t)

        def collector() -> None:
            nonlocal collections
            barrier.wait()
            while not done.is_set():
                collect()
                collections += 1

        threads = [threading.Thread(target=work) for _ in range(n_threads)]
        coll = threading.Thread(target=collector)
        for t in threads:
            t.start()
        coll.start()
        for t in threads:
            t.join()
        done.set()
        coll.join()
    finally:
        sys.setswitchinterval(old)
    counter, count, buckets = final()
    expected = n_threads * per_thread
    return {
        "expected": expected,
        "counter": counter,
        "hist_count": count,
        "bucket_total": buckets,
        "lost_counter": expected - counter,
        "lost_hist": expected - count,
        "lost_buckets": expected - buckets,
        "collections": collections,
        "exact": counter == count == buckets == expected,
    }


# --------------------------------------------------------------------------- the real engine


class _Engine:
    """``@timed`` on a plain function, on a fresh SDK provider (otel_aspects' engine)."""

    def __init__(self) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        from benchmarks.cases import BENCH_CONFIG
        from otel_aspects.client import create_metrics_client
        from otel_aspects.config import load_metrics_config
        from otel_aspects.timing import timed

        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)
        self.client = create_metrics_client(
            "bench", load_metrics_config("bench", BENCH_CONFIG), meter_provider=self.provider
        )
        self.hist, self.counter = "bench_request_duration_seconds", "bench_requests_total"

        @timed(self.hist, counter=self.counter, client=self.client, labels={"route": "/bench"})
        def f(x: int) -> int:
            return x + 1

        self.f = f

    def totals(self) -> tuple[int, int, int]:
        from otel_aspects.testing import metric_points

        data_c = metric_points(self.reader, self.counter)
        data_h = metric_points(self.reader, self.hist)
        return (
            sum(int(p.value) for p in data_c),
            sum(int(p.count) for p in data_h),
            sum(sum(p.bucket_counts) for p in data_h),
        )

    def close(self) -> None:
        self.provider.shutdown()


def _ignoring_duration(f: Callable[[int], int]) -> Callable[[float], None]:
    """``record(duration)`` for the exactness loop: a ``@timed`` call times itself."""

    def record(_duration: float) -> None:
        f(1)

    return record


class _FoldEveryCall:
    """Patch ``engine.FOLD_AT`` to 1 (every ``Pair.record`` folds under the lock), then restore."""

    def __enter__(self) -> None:
        from otel_aspects import engine

        self._old = engine.FOLD_AT
        engine.FOLD_AT = 1  # type: ignore[misc]

    def __exit__(self, *exc: object) -> None:
        from otel_aspects import engine

        engine.FOLD_AT = self._old  # type: ignore[misc]


# --------------------------------------------------------------------------- run


def _calibrate(case: _Case, target_ns: float) -> int:
    n = 200
    while True:
        elapsed = case.run(n)
        if elapsed >= target_ns / 4 or n > 10_000_000:
            return max(100, int(n * target_ns / max(elapsed, 1)))
        n *= 4


def run(smoke: bool = False) -> dict[str, Any]:
    """Measure every strategy and the real engine; returns the figures (see the docstring)."""
    rounds = 3 if smoke else 401
    every = 1 if smoke else 5  # a 2-thread sample every 5th round: 81 of 401
    sample_ms = 0.3 if smoke else 2.0
    per_thread = 2_000 if smoke else 20_000
    n_threads = 4

    objs = {name: cls() for name, cls in STRATEGIES.items()}
    cases: dict[str, _Case] = {"timing_only": _Case(_loop(None))}
    cases.update({name: _Case(_loop(obj.record)) for name, obj in objs.items()})
    engine_default = _Engine()
    engine_forced = _Engine()
    cases["engine_timed"] = _Case(_call_loop(engine_default.f))
    cases["engine_timed_fold_every_call"] = _Case(
        _call_loop(engine_forced.f), around=_FoldEveryCall
    )

    target = sample_ms * 1e6
    sizes = {name: _calibrate(case, target) for name, case in cases.items()}
    for case in cases.values():  # warm-up
        case.run(200)

    # 2 threads: each thread makes a sample of the calibrated size at once
    one, two = _interleaved(cases, rounds, every, sizes, 1)

    exact: dict[str, dict[str, Any]] = {}
    for label, switch in (("default", None), ("1us", 1e-6)):
        for name, cls in STRATEGIES.items():
            obj = cls()
            exact[f"{name}@{label}"] = _exactness(
                obj.record, obj.collect, obj.collect, n_threads, per_thread, switch
            )
        for name, around in (
            ("engine_timed", contextlib.nullcontext),
            ("engine_timed_fold_every_call", _FoldEveryCall),
        ):
            eng = _Engine()
            with around():
                exact[f"{name}@{label}"] = _exactness(
                    _ignoring_duration(eng.f),
                    eng.reader.get_metrics_data,
                    eng.totals,
                    n_threads,
                    per_thread,
                    switch,
                )
            eng.close()

    engine_default.close()
    engine_forced.close()

    rows = []
    for name in cases:
        row: dict[str, Any] = {
            "case": name,
            "ns_1thread": statistics.median(one[name]),
            "ns_over_timing": (
                _median_diff(one[name], one["timing_only"]) if name in STRATEGIES else None
            ),
            "ns_2threads": statistics.median(two[name]),
        }
        if name != "timing_only":
            row["exact_default"] = exact[f"{name}@default"]
            row["exact_1us"] = exact[f"{name}@1us"]
        rows.append(row)
    saved = _median_diff(one["engine_timed_fold_every_call"], one["engine_timed"])
    failures = [
        key for key, res in exact.items() if not res["exact"] and key.split("@")[0] != "no_lock"
    ]
    return {
        "python": sys.version.split()[0],
        "rounds_1thread": rounds,
        "rounds_2threads": len(two["timing_only"]),
        "sample_ms": sample_ms,
        "exactness": f"{n_threads} threads x {per_thread:,} calls + 1 collector thread",
        "rows": rows,
        "engine_write_behind_saves_ns": saved,
        "failures": failures,
    }


def _lost(res: dict[str, Any]) -> str:
    lost = (res["lost_counter"], res["lost_hist"], res["lost_buckets"])
    text = "exact" if res["exact"] else "LOST " + "/".join(f"{x:,}" for x in lost)
    return f"{text} ({res['collections']:,} coll.)"


def render_md(s: dict[str, Any]) -> str:
    lines = [
        f"Python {s['python']}; 1 thread: median of {s['rounds_1thread']} interleaved rounds "
        f"(~{s['sample_ms']:g} ms samples); 2 threads: median of {s['rounds_2threads']} rounds, "
        "wall time / total calls; exactness: "
        f"{s['exactness']}, at the default switch interval and at 1 us "
        "(lost counter/histogram count/bucket total; collections made meanwhile).",
        "",
        "| strategy | ns/call, 1 thread | over timing only | ns/call, 2 threads "
        "| exact (switch 5 ms) | exact (switch 1 us) |",
        "|---|--:|--:|--:|---|---|",
    ]
    for r in s["rows"]:
        over = "" if r["ns_over_timing"] is None else f"{r['ns_over_timing']:,.0f}"
        ex = (
            ("", "")
            if "exact_default" not in r
            else (_lost(r["exact_default"]), _lost(r["exact_1us"]))
        )
        lines.append(
            f"| `{r['case']}` | {r['ns_1thread']:,.0f} | {over} | {r['ns_2threads']:,.0f} "
            f"| {ex[0]} | {ex[1]} |"
        )
    lines += [
        "",
        "Write-behind in the real engine (`@timed` -> `Pair.record`): folding on every call "
        f"costs {s['engine_write_behind_saves_ns']:,.0f} ns more per call "
        "(median of per-round differences, 1 thread).",
    ]
    if s["failures"]:
        lines += ["", "FAILED (lost counts): " + ", ".join(s["failures"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.locking", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--smoke", action="store_true", help="tiny rounds; exactness still checked")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    s = run(smoke=args.smoke)
    print(render_md(s))
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    return 1 if s["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
