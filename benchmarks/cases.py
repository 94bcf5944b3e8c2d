"""The per-call cases: what is timed, and the objects each needs.

Every case times one statement (``f(1)``, ``await f(1)``, ``for _ in g(1): pass``,
``obj.method(1)``) around the same trivial body, ``return x + 1``, so that the
differences between cases are the cost of the instrumentation alone.

A case's ``setup`` builds the names its statement uses; it runs once, before the
warm-up.  ``baseline`` names the bare case of the same form (sync call, coroutine,
generator, method), against which the case's "x bare" ratio is taken;
``handwritten`` names the hand-written OpenTelemetry instrumentation of the same form
(``otel_handwritten`` and its async, generator, method and dynamic-label variants),
against which its "x hand-written (same form)" ratio is taken.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import wrapt
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

__all__ = (
    "ASPECTS_AVAILABLE",
    "ATTRS",
    "BENCH_CONFIG",
    "BUCKETS",
    "Case",
    "all_cases",
    "otel_sdk",
)

#: The YAML config the otel_aspects cases load (service ``bench``).
BENCH_CONFIG = Path(__file__).with_name("bench_config.yml")

#: The three attributes every instrumented case records: two static, plus the
#: outcome ``status`` that otel_aspects adds itself.
ATTRS: dict[str, str] = {"route": "/bench", "method": "GET", "status": "success"}
STATIC_LABELS: dict[str, str] = {"route": "/bench", "method": "GET"}

#: The label only known inside the call, set from nested code: by ``set_label`` in
#: ``aspects_with_set_label``, returned to the instrumentation in
#: ``otel_handwritten_dynamic``.  Both then record 4 attributes: ATTRS + this one.
DYNAMIC_KEY = "server_name"
DYNAMIC_VALUE = "bench-1"

#: Histogram buckets for every OTel histogram here: otel_aspects' default for
#: seconds (``DEFAULT_SECONDS_BUCKETS``), repeated so the baselines need no import.
BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1,
    2.5,
    5,
    7.5,
    10,
)

ASPECTS_AVAILABLE = importlib.util.find_spec("otel_aspects.timing") is not None


@dataclass(frozen=True)
class Case:
    """One timed statement and how to build what it needs."""

    name: str
    group: str  # baseline | otel | otel_aspects | peer
    description: str
    stmt: str
    setup: Callable[[], dict[str, Any]]
    kind: str = "sync"  # sync | async
    baseline: str = "bare"
    handwritten: str = "otel_handwritten"
    notes: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- bodies


def body(x: int) -> int:
    return x + 1


async def abody(x: int) -> int:
    return x + 1


def gbody(x: int) -> Iterator[int]:
    yield x + 1


# --------------------------------------------------------------------------- OTel SDK


def otel_sdk() -> tuple[MeterProvider, InMemoryMetricReader]:
    """A fresh SDK MeterProvider with an InMemoryMetricReader (never the global one)."""
    reader = InMemoryMetricReader()
    return MeterProvider(metric_readers=[reader]), reader


def handwritten_instruments(provider: MeterProvider) -> tuple[Any, Any]:
    meter = provider.get_meter("benchmarks.handwritten")
    counter = meter.create_counter("hand_requests_total", "1", "requests")
    histogram = meter.create_histogram(
        "hand_request_duration_seconds",
        "s",
        "request duration",
        explicit_bucket_boundaries_advisory=list(BUCKETS),
    )
    return counter, histogram


# --------------------------------------------------------------------------- baselines


def _bare() -> dict[str, Any]:
    return {"f": body}


def _functools() -> dict[str, Any]:
    def passthrough(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)

        return wrapper

    return {"f": passthrough(body)}


@wrapt.decorator
def _wrapt_passthrough(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return wrapped(*args, **kwargs)


def _wrapt() -> dict[str, Any]:
    return {"f": _wrapt_passthrough(body)}


def _abare() -> dict[str, Any]:
    return {"f": abody}


def _gbare() -> dict[str, Any]:
    return {"g": gbody}


class _Plain:
    def method(self, x: int) -> int:
        return x + 1


def _mbare() -> dict[str, Any]:
    return {"obj": _Plain()}


def _handwritten() -> dict[str, Any]:
    provider, reader = otel_sdk()
    counter, histogram = handwritten_instruments(provider)
    attrs = dict(ATTRS)
    add, record = counter.add, histogram.record

    def f(x: int) -> int:
        t = perf_counter()
        result = body(x)
        add(1, attrs)
        record(perf_counter() - t, attrs)
        return result

    return {"f": f, "_keep": (provider, reader)}


# Hand-written OTel instrumentation of the other forms.  Each is what a careful user
# would write by hand for that form, and each, like ``otel_handwritten``, puts the
# instrumentation around one call of the same body (``body``/``abody``/``gbody``), so
# that it differs from its own bare form by the instrumentation and one call.


def _handwritten_setup() -> tuple[Any, Any, dict[str, str], tuple[Any, ...]]:
    provider, reader = otel_sdk()
    counter, histogram = handwritten_instruments(provider)
    return counter.add, histogram.record, dict(ATTRS), (provider, reader)


def _handwritten_async() -> dict[str, Any]:
    add, record, attrs, keep = _handwritten_setup()

    async def f(x: int) -> int:
        t = perf_counter()
        try:
            return await abody(x)
        finally:
            add(1, attrs)
            record(perf_counter() - t, attrs)

    return {"f": f, "_keep": keep}


def _handwritten_gen() -> dict[str, Any]:
    add, record, attrs, keep = _handwritten_setup()

    def g(x: int) -> Iterator[int]:
        # A generator body starts at the first next(): timed from the first step to
        # exhaustion (or close), as the otel_aspects generator form is.
        t = perf_counter()
        try:
            yield from gbody(x)
        finally:
            add(1, attrs)
            record(perf_counter() - t, attrs)

    return {"g": g, "_keep": keep}


def _handwritten_method() -> dict[str, Any]:
    add, record, attrs, keep = _handwritten_setup()

    class Service:
        def method(self, x: int) -> int:
            t = perf_counter()
            result = body(x)
            add(1, attrs)
            record(perf_counter() - t, attrs)
            return result

    return {"obj": Service(), "_keep": keep}


def _handwritten_dynamic() -> dict[str, Any]:
    add, record, attrs, keep = _handwritten_setup()

    def nested(x: int) -> tuple[int, str]:
        # The label value is only known here: handed back to the instrumentation.
        return x + 1, DYNAMIC_VALUE

    def f(x: int) -> int:
        t = perf_counter()
        result, value = nested(x)
        call_attrs = {**attrs, DYNAMIC_KEY: value}
        add(1, call_attrs)
        record(perf_counter() - t, call_attrs)
        return result

    return {"f": f, "_keep": keep}


# --------------------------------------------------------------------------- peers


def _prom() -> tuple[Any, Any]:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry()
    counter = Counter("requests", "requests", ["route", "method", "status"], registry=registry)
    histogram = Histogram(
        "request_duration_seconds",
        "request duration",
        ["route", "method", "status"],
        buckets=BUCKETS,
        registry=registry,
    )
    return counter, histogram


def _prom_hist_time() -> dict[str, Any]:
    _, histogram = _prom()
    return {"f": histogram.labels("/bench", "GET", "success").time()(body)}


def _prom_counter_inc() -> dict[str, Any]:
    counter, _ = _prom()

    def f(x: int) -> int:
        counter.labels("/bench", "GET", "success").inc()
        return body(x)

    return {"f": f}


def _prom_both() -> dict[str, Any]:
    counter, histogram = _prom()

    def f(x: int) -> int:
        t = perf_counter()
        result = body(x)
        counter.labels("/bench", "GET", "success").inc()
        histogram.labels("/bench", "GET", "success").observe(perf_counter() - t)
        return result

    return {"f": f}


def _prom_async_time() -> dict[str, Any]:
    from prometheus_async import aio

    _, histogram = _prom()
    return {"f": aio.time(histogram.labels("/bench", "GET", "success"))(abody)}


# --------------------------------------------------------------------------- otel_aspects


def aspects_client() -> tuple[Any, MeterProvider, InMemoryMetricReader]:
    """An otel_aspects client for ``bench_config.yml`` on a fresh SDK provider."""
    from otel_aspects.client import create_metrics_client
    from otel_aspects.config import load_metrics_config

    provider, reader = otel_sdk()
    config = load_metrics_config("bench", BENCH_CONFIG, strict=True)
    client = create_metrics_client("bench", config, meter_provider=provider)
    return client, provider, reader


def _timed(**kw: Any) -> tuple[Any, tuple[Any, ...]]:
    from otel_aspects.timing import timed

    client, provider, reader = aspects_client()
    kw.setdefault("counter", "bench_requests_total")
    hist = kw.pop("histogram", "bench_request_duration_seconds")
    return timed(hist, client=client, **kw), (client, provider, reader)


def _aspects_disabled() -> dict[str, Any]:
    t, keep = _timed(histogram="bench_disabled_duration_seconds", counter="bench_disabled_total")
    assert not t.enabled, "bench_config.yml: the disabled metrics must be capture: false"
    return {"f": t(body), "_keep": keep}


def _aspects_decorator() -> dict[str, Any]:
    t, keep = _timed(labels=STATIC_LABELS)
    return {"f": t(body), "_keep": keep}


def _aspects_with() -> dict[str, Any]:
    t, keep = _timed(labels=STATIC_LABELS)
    return {"t": t, "f": body, "_keep": keep}


def _aspects_with_set_label() -> dict[str, Any]:
    from otel_aspects.labels import set_label

    t, keep = _timed(labels=STATIC_LABELS)

    def nested(x: int) -> int:
        set_label(DYNAMIC_KEY, DYNAMIC_VALUE)
        return x + 1

    return {"t": t, "f": nested, "_keep": keep}


def _aspects_async() -> dict[str, Any]:
    t, keep = _timed(labels=STATIC_LABELS)
    return {"f": t(abody), "_keep": keep}


def _aspects_gen() -> dict[str, Any]:
    t, keep = _timed(labels=STATIC_LABELS)
    return {"g": t(gbody), "_keep": keep}


def _aspects_method() -> dict[str, Any]:
    t, keep = _timed(labels=STATIC_LABELS)

    class Service:
        @t
        def method(self, x: int) -> int:
            return x + 1

    return {"obj": Service(), "_keep": keep}


class NoopInstrument:
    """Stands in for an SDK counter/histogram: isolates the instrumentation's own cost."""

    name = "noop"

    def add(self, amount: float, attributes: Any = None) -> None:
        return None

    def record(self, amount: float, attributes: Any = None) -> None:
        return None


def _handwritten_noop() -> dict[str, Any]:
    counter = histogram = NoopInstrument()
    attrs = dict(ATTRS)
    add, record = counter.add, histogram.record

    def f(x: int) -> int:
        t = perf_counter()
        result = body(x)
        add(1, attrs)
        record(perf_counter() - t, attrs)
        return result

    return {"f": f}


def _aspects_decorator_noop() -> dict[str, Any]:
    from otel_aspects.timing import timed

    t = timed(NoopInstrument(), counter=NoopInstrument(), labels=STATIC_LABELS)
    return {"f": t(body)}


def aspect_cases() -> list[Case]:
    return [
        Case(
            "aspects_disabled",
            "otel_aspects",
            "`@timed` on `capture: false` metrics (pass-through)",
            "f(1)",
            _aspects_disabled,
        ),
        Case(
            "aspects_decorator",
            "otel_aspects",
            "`@timed(hist, counter=, labels={2 static})` + status",
            "f(1)",
            _aspects_decorator,
        ),
        Case(
            "aspects_with",
            "otel_aspects",
            "`with timed(...)` block around `f(1)`, same metrics and labels",
            "with t:\n    f(1)",
            _aspects_with,
        ),
        Case(
            "aspects_with_set_label",
            "otel_aspects",
            "the same + `set_label(server_name)` from nested code (4 attrs)",
            "with t:\n    f(1)",
            _aspects_with_set_label,
            handwritten="otel_handwritten_dynamic",
        ),
        Case(
            "aspects_async",
            "otel_aspects",
            "`@timed` coroutine, `await f(1)` in a running loop",
            "await f(1)",
            _aspects_async,
            "async",
            baseline="bare_async",
            handwritten="otel_handwritten_async",
        ),
        Case(
            "aspects_gen",
            "otel_aspects",
            "`@timed` generator, `for _ in g(1): pass`",
            "for _ in g(1): pass",
            _aspects_gen,
            baseline="bare_gen",
            handwritten="otel_handwritten_gen",
        ),
        Case(
            "aspects_method",
            "otel_aspects",
            "`@timed` instance method, `obj.method(1)`",
            "obj.method(1)",
            _aspects_method,
            baseline="bare_method",
            handwritten="otel_handwritten_method",
        ),
        Case(
            "handwritten_noop",
            "diagnostic",
            "hand-written, as otel_handwritten, on no-op instruments",
            "f(1)",
            _handwritten_noop,
            handwritten="handwritten_noop",
        ),
        Case(
            "aspects_decorator_noop",
            "diagnostic",
            "aspects_decorator on no-op instruments (library cost alone)",
            "f(1)",
            _aspects_decorator_noop,
            handwritten="handwritten_noop",
        ),
    ]


# --------------------------------------------------------------------------- cases


def baseline_cases() -> list[Case]:
    return [
        Case("bare", "baseline", "bare call `f(1)`", "f(1)", _bare),
        Case(
            "functools",
            "baseline",
            "pass-through wrapper, `functools.wraps`",
            "f(1)",
            _functools,
        ),
        Case("wrapt", "baseline", "pass-through wrapper, `@wrapt.decorator`", "f(1)", _wrapt),
        Case(
            "otel_handwritten",
            "otel",
            "hand-written OTel SDK: counter.add + histogram.record, 3 attrs",
            "f(1)",
            _handwritten,
        ),
        Case(
            "otel_handwritten_dynamic",
            "otel",
            "the same + 1 label returned by nested code, `{**attrs, server_name: v}` per call",
            "f(1)",
            _handwritten_dynamic,
            handwritten="otel_handwritten_dynamic",
        ),
        Case(
            "bare_async",
            "baseline",
            "bare coroutine `await f(1)`",
            "await f(1)",
            _abare,
            "async",
            baseline="bare_async",
            handwritten="otel_handwritten_async",
        ),
        Case(
            "otel_handwritten_async",
            "otel",
            "hand-written OTel in an `async def` around `await f(x)`, try/finally",
            "await f(1)",
            _handwritten_async,
            "async",
            baseline="bare_async",
            handwritten="otel_handwritten_async",
        ),
        Case(
            "bare_gen",
            "baseline",
            "bare generator `for _ in g(1): pass`",
            "for _ in g(1): pass",
            _gbare,
            baseline="bare_gen",
            handwritten="otel_handwritten_gen",
        ),
        Case(
            "otel_handwritten_gen",
            "otel",
            "hand-written OTel in a generator: first step to exhaustion, record in finally",
            "for _ in g(1): pass",
            _handwritten_gen,
            baseline="bare_gen",
            handwritten="otel_handwritten_gen",
        ),
        Case(
            "bare_method",
            "baseline",
            "bare method `obj.method(1)`",
            "obj.method(1)",
            _mbare,
            baseline="bare_method",
            handwritten="otel_handwritten_method",
        ),
        Case(
            "otel_handwritten_method",
            "otel",
            "hand-written OTel inline in a method, `obj.method(1)`",
            "obj.method(1)",
            _handwritten_method,
            baseline="bare_method",
            handwritten="otel_handwritten_method",
        ),
    ]


def peer_cases() -> list[Case]:
    return [
        Case(
            "prom_hist_time",
            "peer",
            "prometheus_client `@Histogram.labels(a,b,c).time()`",
            "f(1)",
            _prom_hist_time,
        ),
        Case(
            "prom_counter_inc",
            "peer",
            "prometheus_client `Counter.labels(a,b,c).inc()` per call",
            "f(1)",
            _prom_counter_inc,
        ),
        Case(
            "prom_both",
            "peer",
            "prometheus_client counter + histogram, `.labels(a,b,c)` per call",
            "f(1)",
            _prom_both,
        ),
        Case(
            "prom_async_time",
            "peer",
            "prometheus-async `@aio.time(Histogram.labels(a,b,c))`",
            "await f(1)",
            _prom_async_time,
            "async",
            baseline="bare_async",
            handwritten="otel_handwritten_async",
        ),
    ]


def all_cases() -> list[Case]:
    """Every case available in this environment, in table order."""
    cases = baseline_cases()
    if ASPECTS_AVAILABLE:
        cases += aspect_cases()
    return cases + peer_cases()
