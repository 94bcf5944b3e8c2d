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

import contextlib
import dataclasses
import functools
import importlib.util
import os
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
    "ENGINE_ENV",
    "Case",
    "all_cases",
    "engine_off",
    "otel_sdk",
    "reader_counts",
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

#: Selects otel_aspects' recording path when a client (or an aspect) is built:
#: ``sdk`` records straight into the OpenTelemetry SDK's instruments (the "engine
#: off" rows); unset, the library's own pre-aggregating engine.  Read while the case's
#: client and aspects are built in ``setup``, so the engine-off rows set it around
#: their setup only (:func:`engine_off`).
ENGINE_ENV = "OTEL_ASPECTS_ENGINE"


@contextlib.contextmanager
def engine_off() -> Iterator[None]:
    """``OTEL_ASPECTS_ENGINE=sdk`` inside the block, the previous value (or none) after."""
    old = os.environ.get(ENGINE_ENV)
    os.environ[ENGINE_ENV] = "sdk"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENGINE_ENV, None)
        else:
            os.environ[ENGINE_ENV] = old


@dataclass(frozen=True)
class Case:
    """One timed statement and how to build what it needs."""

    name: str
    group: str  # baseline | otel | otel_aspects | engine_off | peer | diagnostic
    description: str
    stmt: str
    setup: Callable[[], dict[str, Any]]
    kind: str = "sync"  # sync | async
    baseline: str = "bare"
    handwritten: str = "otel_handwritten"
    #: The prometheus_client code this case is compared with (same labels, same form):
    #: the reference of the issue's "at most 1.0x prometheus_client" targets.
    peer: str | None = None
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


def two_reader_sdk() -> tuple[MeterProvider, Any]:
    """A fresh provider with the two readers of a service that exports both ways.

    An OTLP/HTTP exporter behind a ``PeriodicExportingMetricReader`` whose interval
    (~11 days) never comes during a run (nothing listens on its endpoint; it is never
    shut down), and a ``PrometheusMetricReader`` registered in its own
    ``CollectorRegistry`` (not prometheus_client's global one).  Both are cumulative.
    Returns the provider and the registry, through which the counts are read back.
    """
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    otlp = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint="http://127.0.0.1:9/v1/metrics"),
        export_interval_millis=1e9,
    )
    prom = PrometheusMetricReader(registry=registry)
    return MeterProvider(metric_readers=[otlp, prom], shutdown_on_exit=False), registry


def reader_counts(reader: Any, counter: str, histogram: str) -> Callable[[], tuple[int, int]]:
    """``counts() -> (counter sum, histogram count)`` read from an SDK reader."""

    def counts() -> tuple[int, int]:
        c = h = 0
        data = reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == counter:
                        c += sum(int(p.value) for p in metric.data.data_points)
                    elif metric.name == histogram:
                        h += sum(int(p.count) for p in metric.data.data_points)
        return c, h

    return counts


def registry_counts(registry: Any, counter: str, histogram: str) -> Callable[[], tuple[int, int]]:
    """``counts() -> (counter sum, histogram count)`` read from a prometheus registry.

    *counter* is the sample name (``..._total``), *histogram* the family name.
    """

    def counts() -> tuple[int, int]:
        c = h = 0.0
        for family in registry.collect():
            for sample in family.samples:
                if sample.name == counter:
                    c += sample.value
                elif sample.name == histogram + "_count":
                    h += sample.value
        return int(c), int(h)

    return counts


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


def hand_counts(reader: InMemoryMetricReader) -> Callable[[], tuple[int, int]]:
    return reader_counts(reader, "hand_requests_total", "hand_request_duration_seconds")


def aspects_counts(reader: Any) -> Callable[[], tuple[int, int]]:
    return reader_counts(reader, "bench_requests_total", "bench_request_duration_seconds")


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

    return {"f": f, "_keep": (provider, reader), "_counts": hand_counts(reader)}


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

    return {"f": f, "_keep": keep, "_counts": hand_counts(keep[1])}


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

    return {"g": g, "_keep": keep, "_counts": hand_counts(keep[1])}


def _handwritten_method() -> dict[str, Any]:
    add, record, attrs, keep = _handwritten_setup()

    class Service:
        def method(self, x: int) -> int:
            t = perf_counter()
            result = body(x)
            add(1, attrs)
            record(perf_counter() - t, attrs)
            return result

    return {"obj": Service(), "_keep": keep, "_counts": hand_counts(keep[1])}


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

    return {"f": f, "_keep": keep, "_counts": hand_counts(keep[1])}


# --------------------------------------------------------------------------- peers


PROM_LABELS = ("route", "method", "status")


def _prom_registry(labelnames: tuple[str, ...] = PROM_LABELS) -> tuple[Any, Any, Any]:
    """A prometheus_client counter + histogram (same 14 buckets) in their own registry."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry()
    counter = Counter("requests", "requests", labelnames, registry=registry)
    histogram = Histogram(
        "request_duration_seconds",
        "request duration",
        labelnames,
        buckets=BUCKETS,
        registry=registry,
    )
    return counter, histogram, registry


def _prom() -> tuple[Any, Any]:
    counter, histogram, _ = _prom_registry()
    return counter, histogram


def prom_counts(registry: Any) -> Callable[[], tuple[int, int]]:
    return registry_counts(registry, "requests_total", "request_duration_seconds")


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
    counter, histogram, registry = _prom_registry()

    def f(x: int) -> int:
        t = perf_counter()
        result = body(x)
        counter.labels("/bench", "GET", "success").inc()
        histogram.labels("/bench", "GET", "success").observe(perf_counter() - t)
        return result

    return {"f": f, "_counts": prom_counts(registry)}


def _prom_wrapt_prebound() -> dict[str, Any]:
    # The fastest prometheus_client code: children bound once (``.labels`` at setup),
    # their methods bound too, in a wrapt decorator like otel_aspects' own.
    counter, histogram, registry = _prom_registry()
    inc = counter.labels("/bench", "GET", "success").inc
    observe = histogram.labels("/bench", "GET", "success").observe

    @wrapt.decorator
    def instrumented(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        t = perf_counter()
        result = wrapped(*args, **kwargs)
        inc()
        observe(perf_counter() - t)
        return result

    return {"f": instrumented(body), "_counts": prom_counts(registry)}


def _prom_wrapt_labels() -> dict[str, Any]:
    # The same decorator resolving the children per call (the status is only known
    # after the call): the prometheus_client peer of ``track_duration``.
    counter, histogram, registry = _prom_registry()
    c_labels, h_labels = counter.labels, histogram.labels

    @wrapt.decorator
    def instrumented(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        t = perf_counter()
        result = wrapped(*args, **kwargs)
        c_labels("/bench", "GET", "success").inc()
        h_labels("/bench", "GET", "success").observe(perf_counter() - t)
        return result

    return {"f": instrumented(body), "_counts": prom_counts(registry)}


def _prom_labels_per_call() -> dict[str, Any]:
    # The peer of ``aspects_with_set_label``: 4 labels, the 4th only known inside the
    # call (returned by the nested code, as in ``otel_handwritten_dynamic``),
    # ``.labels(...)`` per call inside the timed function.
    counter, histogram, registry = _prom_registry((*PROM_LABELS, DYNAMIC_KEY))

    def nested(x: int) -> tuple[int, str]:
        return x + 1, DYNAMIC_VALUE

    def f(x: int) -> int:
        t = perf_counter()
        result, value = nested(x)
        counter.labels("/bench", "GET", "success", value).inc()
        histogram.labels("/bench", "GET", "success", value).observe(perf_counter() - t)
        return result

    return {"f": f, "_counts": prom_counts(registry)}


def _prom_labels_record() -> dict[str, Any]:
    # The peer of ``client_record_dynamic``: the same 3-key dict built per call,
    # ``.labels(**attrs)`` per call.
    counter, histogram, registry = _prom_registry()

    def f(x: int) -> int:
        t = perf_counter()
        result = body(x)
        d = perf_counter() - t
        attrs = {"route": "/bench", "method": "GET", "status": "success"}
        counter.labels(**attrs).inc()
        histogram.labels(**attrs).observe(d)
        return result

    return {"f": f, "_counts": prom_counts(registry)}


def _prom_labels_per_call_async() -> dict[str, Any]:
    # The peer of ``seed_timed_context_per_call``: a coroutine handler timing its own
    # body, ``.labels(...)`` per call, recorded in ``finally``.
    counter, histogram, registry = _prom_registry()

    async def f(x: int) -> int:
        t = perf_counter()
        try:
            return await abody(x)
        finally:
            counter.labels("/bench", "GET", "success").inc()
            histogram.labels("/bench", "GET", "success").observe(perf_counter() - t)

    return {"f": f, "_counts": prom_counts(registry)}


def _prom_async_time() -> dict[str, Any]:
    from prometheus_async import aio

    _, histogram = _prom()
    return {"f": aio.time(histogram.labels("/bench", "GET", "success"))(abody)}


# --------------------------------------------------------------------------- otel_aspects


def aspects_client(provider: MeterProvider | None = None) -> tuple[Any, MeterProvider, Any]:
    """An otel_aspects client for ``bench_config.yml`` on *provider* or a fresh SDK one.

    Returns the client, the provider and its InMemoryMetricReader (``None`` when the
    provider was given).
    """
    from otel_aspects.client import create_metrics_client
    from otel_aspects.config import load_metrics_config

    reader = None
    if provider is None:
        provider, reader = otel_sdk()
    config = load_metrics_config("bench", BENCH_CONFIG, strict=True)
    client = create_metrics_client("bench", config, meter_provider=provider)
    return client, provider, reader


def _timed(provider: MeterProvider | None = None, **kw: Any) -> tuple[Any, tuple[Any, ...]]:
    from otel_aspects.timing import timed

    client, provider, reader = aspects_client(provider)
    kw.setdefault("counter", "bench_requests_total")
    hist = kw.pop("histogram", "bench_request_duration_seconds")
    return timed(hist, client=client, **kw), (client, provider, reader)


def _aspects_disabled() -> dict[str, Any]:
    t, keep = _timed(histogram="bench_disabled_duration_seconds", counter="bench_disabled_total")
    assert not t.enabled, "bench_config.yml: the disabled metrics must be capture: false"
    return {"f": t(body), "_keep": keep}


def _aspects_decorator() -> dict[str, Any]:
    t, keep = _timed(labels=STATIC_LABELS)
    return {"f": t(body), "_keep": keep, "_counts": aspects_counts(keep[2])}


def _aspects_with() -> dict[str, Any]:
    t, keep = _timed(labels=STATIC_LABELS)
    return {"t": t, "f": body, "_keep": keep, "_counts": aspects_counts(keep[2])}


def _aspects_with_set_label() -> dict[str, Any]:
    from otel_aspects.labels import set_label

    t, keep = _timed(labels=STATIC_LABELS)

    def nested(x: int) -> int:
        set_label(DYNAMIC_KEY, DYNAMIC_VALUE)
        return x + 1

    return {"t": t, "f": nested, "_keep": keep, "_counts": aspects_counts(keep[2])}


def _aspects_async() -> dict[str, Any]:
    t, keep = _timed(labels=STATIC_LABELS)
    return {"f": t(abody), "_keep": keep, "_counts": aspects_counts(keep[2])}


def _aspects_gen() -> dict[str, Any]:
    t, keep = _timed(labels=STATIC_LABELS)
    return {"g": t(gbody), "_keep": keep, "_counts": aspects_counts(keep[2])}


def _aspects_method() -> dict[str, Any]:
    t, keep = _timed(labels=STATIC_LABELS)

    class Service:
        @t
        def method(self, x: int) -> int:
            return x + 1

    return {"obj": Service(), "_keep": keep, "_counts": aspects_counts(keep[2])}


def _aspects_decorator_multiprocess() -> dict[str, Any]:
    """``_aspects_decorator`` with the store in multi-process mode: every call written
    through to this process's memory-mapped file in a temporary folder."""
    import tempfile

    from otel_aspects import engine, multiprocess
    from otel_aspects.mpseries import ProcessFile

    client, provider, reader = aspects_client()
    store = engine.store_for(provider)
    assert store is not None
    folder = Path(tempfile.mkdtemp(prefix="otel-aspects-bench-"))
    store.use_files(ProcessFile(folder), multiprocess.nothing)
    store.new_generation()
    t, keep = _timed(provider, labels=STATIC_LABELS)
    keep = (client, provider, reader, *keep)

    def counts() -> tuple[int, int]:
        totals = multiprocess.read_totals(folder)
        by_kind = {t.meta.kind: t.n for t in totals.values()}
        return by_kind.get("counter", 0), by_kind.get("histogram", 0)

    return {"f": t(body), "_keep": keep, "_counts": counts}


def _aspects_decorator_2readers() -> dict[str, Any]:
    provider, registry = two_reader_sdk()
    t, keep = _timed(provider, labels=STATIC_LABELS)
    counts = registry_counts(registry, "bench_requests_total", "bench_request_duration_seconds")
    return {"f": t(body), "_keep": keep, "_counts": counts}


def _handwritten_2readers() -> dict[str, Any]:
    provider, registry = two_reader_sdk()
    counter, histogram = handwritten_instruments(provider)
    attrs = dict(ATTRS)
    add, record = counter.add, histogram.record

    def f(x: int) -> int:
        t = perf_counter()
        result = body(x)
        add(1, attrs)
        record(perf_counter() - t, attrs)
        return result

    counts = registry_counts(registry, "hand_requests_total", "hand_request_duration_seconds")
    return {"f": f, "_keep": provider, "_counts": counts}


def _client_record_dynamic() -> dict[str, Any]:
    # The client API with attributes only known per call: a fresh 3-key dict each call.
    client, provider, reader = aspects_client()

    def f(x: int) -> int:
        t = perf_counter()
        result = body(x)
        d = perf_counter() - t
        attrs = {"route": "/bench", "method": "GET", "status": "success"}
        client.record_counter("bench_requests_total", 1, attrs)
        client.record_histogram("bench_request_duration_seconds", d, attrs)
        return result

    return {"f": f, "_keep": (client, provider), "_counts": aspects_counts(reader)}


def _seed_record(client: Any) -> Callable[[float, dict[str, Any]], None]:
    """The seed's ``record_func``: the client's record_counter + record_histogram."""

    def record(duration: float, labels: dict[str, Any]) -> None:
        client.record_counter("bench_requests_total", 1, labels)
        client.record_histogram("bench_request_duration_seconds", duration, labels)

    return record


#: The seed's service module: a module-level client and a module-level ``record_func``
#: (``your_service/utils/otel_metrics.py``), one pair per engine setting of the case.
_seed_clients: dict[str, Any] = {}


def seed_record(duration: float, labels: dict[str, Any]) -> None:
    """The seed's module-level ``record_func`` (engine on)."""
    _seed_clients["engine"].record_counter("bench_requests_total", 1, labels)
    _seed_clients["engine"].record_histogram("bench_request_duration_seconds", duration, labels)


def seed_record_sdk(duration: float, labels: dict[str, Any]) -> None:
    """The same, for the engine-off case."""
    _seed_clients["sdk"].record_counter("bench_requests_total", 1, labels)
    _seed_clients["sdk"].record_histogram("bench_request_duration_seconds", duration, labels)


def _seed_track_duration() -> dict[str, Any]:
    from otel_aspects.decorators import track_duration

    client, provider, reader = aspects_client()
    f = track_duration(_seed_record(client), labels=STATIC_LABELS)(body)
    return {"f": f, "_keep": (client, provider), "_counts": aspects_counts(reader)}


def _seed_timed_context_per_call() -> dict[str, Any]:
    from otel_aspects.decorators import create_timed_context

    client, provider, reader = aspects_client()
    engine_on = os.environ.get(ENGINE_ENV) != "sdk"
    _seed_clients["engine" if engine_on else "sdk"] = client
    record = seed_record if engine_on else seed_record_sdk

    async def handler(x: int) -> int:
        # As the seed's README writes it: built inside the handler, one per call.
        labels = {"route": "/bench", "method": "GET"}
        async with create_timed_context(record, labels=labels) as ctx:  # noqa: F841
            return await abody(x)

    return {"f": handler, "_keep": (client, provider), "_counts": aspects_counts(reader)}


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
            peer="prom_wrapt_prebound",
        ),
        Case(
            "aspects_decorator_multiprocess",
            "otel_aspects",
            "aspects_decorator in multi-process mode (written through to a memory-mapped file)",
            "f(1)",
            _aspects_decorator_multiprocess,
        ),
        Case(
            "aspects_decorator_2readers",
            "otel_aspects",
            "aspects_decorator on a provider with 2 readers (OTLP + Prometheus)",
            "f(1)",
            _aspects_decorator_2readers,
            handwritten="otel_handwritten_2readers",
            peer="prom_wrapt_prebound",
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
            peer="prom_labels_per_call",
        ),
        Case(
            "client_record_dynamic",
            "otel_aspects",
            "`client.record_counter` + `record_histogram`, 3-key dict built per call",
            "f(1)",
            _client_record_dynamic,
            peer="prom_labels_record",
        ),
        Case(
            "seed_track_duration",
            "otel_aspects",
            "`@track_duration(record_func, labels={2})`, record_func -> client.record_*",
            "f(1)",
            _seed_track_duration,
            peer="prom_wrapt_labels",
        ),
        Case(
            "seed_timed_context_per_call",
            "otel_aspects",
            "`async with create_timed_context(record_func, labels={2})` built per call",
            "await f(1)",
            _seed_timed_context_per_call,
            "async",
            baseline="bare_async",
            handwritten="otel_handwritten_async",
            peer="prom_labels_per_call_async",
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
            "otel_handwritten_2readers",
            "otel",
            "otel_handwritten on a provider with 2 readers (OTLP + Prometheus)",
            "f(1)",
            _handwritten_2readers,
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
            "prom_wrapt_prebound",
            "peer",
            "`@wrapt.decorator`: pre-bound children, `inc()` + `observe(d)`, 3 labels",
            "f(1)",
            _prom_wrapt_prebound,
        ),
        Case(
            "prom_wrapt_labels",
            "peer",
            "`@wrapt.decorator`: `.labels(a,b,c)` per call, `inc()` + `observe(d)`",
            "f(1)",
            _prom_wrapt_labels,
        ),
        Case(
            "prom_labels_per_call",
            "peer",
            "`.labels(a,b,c,v)` per call, 4th label returned by nested code",
            "f(1)",
            _prom_labels_per_call,
            handwritten="otel_handwritten_dynamic",
        ),
        Case(
            "prom_labels_record",
            "peer",
            "3-key dict built per call, `.labels(**attrs).inc()` + `.observe(d)`",
            "f(1)",
            _prom_labels_record,
        ),
        Case(
            "prom_labels_per_call_async",
            "peer",
            "coroutine, `.labels(a,b,c)` per call in `finally`",
            "await f(1)",
            _prom_labels_per_call_async,
            "async",
            baseline="bare_async",
            handwritten="otel_handwritten_async",
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


#: The otel_aspects cases that get an engine-off twin, ``<name>_sdk``.
ENGINE_OFF = (
    "aspects_decorator",
    "aspects_decorator_2readers",
    "aspects_with",
    "aspects_with_set_label",
    "aspects_async",
    "client_record_dynamic",
    "seed_track_duration",
    "seed_timed_context_per_call",
)


def _built_engine_off(setup: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    def built() -> dict[str, Any]:
        with engine_off():
            return setup()

    return built


def engine_off_cases(cases: list[Case]) -> list[Case]:
    """``<name>_sdk``: each ENGINE_OFF case, its client and aspects built engine off."""
    by_name = {c.name: c for c in cases}
    return [
        dataclasses.replace(
            by_name[name],
            name=f"{name}_sdk",
            group="engine_off",
            description=f"{name}, engine off (`{ENGINE_ENV}=sdk`)",
            setup=_built_engine_off(by_name[name].setup),
        )
        for name in ENGINE_OFF
        if name in by_name
    ]


def all_cases() -> list[Case]:
    """Every case available in this environment, in table order."""
    cases = baseline_cases()
    if ASPECTS_AVAILABLE:
        aspects = aspect_cases()
        cases += aspects + engine_off_cases(aspects)
    return cases + peer_cases()
