"""Machinery of the differential test (tests/test_engine_differential.py).

One workload (a list of operations) is applied to two pipelines: a *reference*, plain
OpenTelemetry SDK instruments created from the same specs, and *otel_aspects* (a client and
``timed`` aspects).  Both pipelines have the same readers, collected at the same steps, and
what each reader got is compared point by point.  A small :class:`Model` of the workload
(which attribute set was first measured when, which sets a ``max_series`` admits) lets each
pipeline's timestamps and series be checked against the SDK's semantics on their own.

Only public API is used on the otel_aspects side.
"""

from __future__ import annotations

import math
import numbers
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
    _Gauge,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricsData,
    NumberDataPoint,
)
from opentelemetry.sdk.metrics.view import View
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from otel_aspects import count_exceptions, counted, timed, track_inprogress
from otel_aspects.client import OTelMetricsClient
from otel_aspects.config import MetricsConfig, MetricSpec
from otel_aspects.labels import set_label

DELTA = AggregationTemporality.DELTA
DELTA_TEMPORALITY = {
    Counter: DELTA,
    UpDownCounter: DELTA,
    Histogram: DELTA,
    ObservableCounter: DELTA,
    ObservableUpDownCounter: DELTA,
    ObservableGauge: DELTA,
    _Gauge: DELTA,
}
#: The key of the SDK's overflow series (``max_series`` reached).
OVERFLOW_ATTRIBUTES = {"otel.metric.overflow": True}
INT64 = 2**63 - 1

#: One sampled span context for every "sampled" operation: measurements made inside it are
#: offered to the exemplar reservoirs (the SDK's default filter is trace-based).
SAMPLED_SPAN = NonRecordingSpan(
    SpanContext(
        trace_id=0x0123456789ABCDEF0123456789ABCDEF,
        span_id=0x0123456789ABCDEF,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
)

Key = frozenset[tuple[str, type, Any]]


def key_of(attributes: Mapping[str, Any] | None) -> Key:
    """An attribute set as a hashable key that keeps value types apart (True, 1, 1.0)."""
    return frozenset((k, type(v), v) for k, v in (attributes or {}).items())


OVERFLOW_KEY = key_of(OVERFLOW_ATTRIBUTES)


def cumulative_and_delta_readers() -> dict[str, InMemoryMetricReader]:
    """The two in-memory readers every pipeline has."""
    return {
        "cumulative": InMemoryMetricReader(),
        "delta": InMemoryMetricReader(preferred_temporality=DELTA_TEMPORALITY),
    }


def views_for(config: MetricsConfig) -> list[View]:
    """The Views ``setup_metrics`` builds for *config*: ``max_series`` and histogram buckets."""
    views = []
    for spec in config.metrics.values():
        if spec.max_series is not None:
            views.append(
                View(
                    instrument_name=spec.name,
                    meter_name=config.service_name,
                    aggregation_cardinality_limit=spec.max_series,
                )
            )
    return views


# ------------------------------------------------------------------------ operations


@dataclass(frozen=True)
class Record:
    """``client.<method>(name, value, attributes)``; *sampled*: inside a sampled span."""

    method: str  # record_counter | record_histogram | record_gauge | record_up_down_counter
    #              | record_metric | "instrument": client.get_<kind>(name).add/record/set
    name: str
    value: Any
    attributes: Mapping[str, Any] | None
    sampled: bool = False


@dataclass(frozen=True)
class TimedCall:
    """One call of a ``timed(histogram, counter=..., labels=static, clock=fake)`` body."""

    histogram: str | None
    counter: str | None
    static: Mapping[str, Any]
    labels_set: tuple[tuple[str, Any], ...]
    raises: type[Exception] | None
    form: str  # "decorator" | "with"
    ticks: int  # duration in 1/1024 s, an exact binary fraction
    sampled: bool = False
    instruments: bool = False  # pass client.get_histogram/get_counter(...) instead of names


@dataclass(frozen=True)
class AspectCall:
    """One call under ``counted``, ``count_exceptions`` or ``track_inprogress`` (static labels)."""

    aspect: str  # "counted" | "count_exceptions" | "track_inprogress"
    target: str  # a counter (counted, count_exceptions) or an up-down counter
    static: Mapping[str, Any]
    labels_set: tuple[tuple[str, Any], ...]  # set_label inside (a scope only for counted)
    raises: type[Exception] | None
    form: str  # "decorator" | "with"
    sampled: bool = False


@dataclass(frozen=True)
class Collect:
    """Collect every reader of both pipelines."""


Op = Record | TimedCall | AspectCall | Collect

METHOD_KIND = {
    "record_counter": "counter",
    "record_histogram": "histogram",
    "record_gauge": "gauge",
    "record_up_down_counter": "up_down_counter",
}


def accepted_number(spec: MetricSpec | None, method: str, value: object) -> int | float | None:
    """The number the client documents it records for this call, or ``None`` (dropped).

    client.py: ``int``/``float`` as is; other ``numbers.Real`` converted; ``bool``, strings,
    ``None``, NaN, +-inf and ints beyond int64 dropped; counters and histograms drop
    negatives; undeclared, ``capture: false`` and wrong-kind names record nothing.
    """
    if spec is None or not spec.capture:
        return None
    if method == "instrument":  # the SDK instrument itself, given valid values only
        return value  # type: ignore[return-value]
    if method != "record_metric" and METHOD_KIND[method] != spec.kind:
        return None
    number = _as_number(value)
    if number is None:
        return None
    if spec.kind in ("counter", "histogram") and number < 0:
        return None
    return number


def _as_number(value: object) -> int | float | None:
    if type(value) is float:
        return value if math.isfinite(value) else None
    if type(value) is int:
        return value if -INT64 - 1 <= value <= INT64 else None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        return _as_number(int(value) if isinstance(value, numbers.Integral) else float(value))
    except (OverflowError, ValueError, TypeError):
        return None


@contextmanager
def maybe_sampled(sampled: bool) -> Iterator[None]:
    if not sampled:
        yield
        return
    token = otel_context.attach(trace.set_span_in_context(SAMPLED_SPAN))
    try:
        yield
    finally:
        otel_context.detach(token)


class WorkloadError(Exception):
    """Raised by timed bodies that fail."""


def timed_outcome(call: TimedCall | AspectCall) -> dict[str, Any]:
    """The attributes ``timed`` documents for *call*: static, then set_label, then outcome."""
    attributes = {**call.static, **dict(call.labels_set)}
    if call.raises is None:
        attributes["status"] = "success"
    else:
        attributes["status"] = "failure"
        attributes["error_type"] = call.raises.__name__
    return attributes


def fake_clock(call: TimedCall, index: int) -> Callable[[], float]:
    """A clock that reads start, then start + duration (both exact binary fractions)."""
    start = 1000.0 + index
    readings = [start, start + call.ticks / 1024]

    def clock() -> float:
        return readings.pop(0) if len(readings) > 1 else readings[0]

    return clock


# ------------------------------------------------------------------------ model


@dataclass
class Model:
    """What was measured when, as the SDK aggregates it (series keys per metric)."""

    specs: dict[str, MetricSpec]
    #: op index -> (time_ns before, time_ns after) the op ran on both pipelines
    op_windows: list[tuple[int, int]] = field(default_factory=list)
    #: metric -> admitted keys in order of first measurement (cumulative view)
    admitted: dict[str, list[Key]] = field(default_factory=dict)
    #: (metric, cumulative key) -> index of the first op that measured it
    first_cumulative: dict[tuple[str, Key], int] = field(default_factory=dict)
    #: metric -> every distinct key measured (before any overflow mapping)
    distinct: dict[str, set[Key]] = field(default_factory=dict)
    #: (metric, key) -> first op index in the current delta interval
    interval: dict[tuple[str, Key], int] = field(default_factory=dict)
    #: metric -> index of its first accepted measurement
    first_measured: dict[str, int] = field(default_factory=dict)
    #: cumulative overflow totals per metric (sum of values / histogram count)
    overflow_total: dict[str, float] = field(default_factory=dict)
    #: per collection: the interval's keys (as collected by a delta reader)
    intervals: list[dict[tuple[str, Key], int]] = field(default_factory=list)
    #: per collection: cumulative keys known at that point
    cumulatives: list[dict[tuple[str, Key], int]] = field(default_factory=list)
    #: per collection: the index of the Collect op
    collect_at: list[int] = field(default_factory=list)
    #: per collection: the cumulative overflow totals then
    overflow_totals: list[dict[str, float]] = field(default_factory=list)

    def measure(self, metric: str, attributes: Mapping[str, Any] | None, value: float) -> None:
        index = len(self.op_windows)  # the op being run
        key = key_of(attributes)
        spec = self.specs[metric]
        self.distinct.setdefault(metric, set()).add(key)
        self.first_measured.setdefault(metric, index)
        admitted = self.admitted.setdefault(metric, [])
        cumulative_key = key
        if key not in admitted:
            if spec.max_series is not None and len(admitted) >= spec.max_series:
                cumulative_key = OVERFLOW_KEY
            else:
                admitted.append(key)
        if cumulative_key == OVERFLOW_KEY:
            amount = 1 if spec.kind == "histogram" else value
            self.overflow_total[metric] = self.overflow_total.get(metric, 0) + amount
        self.first_cumulative.setdefault((metric, cumulative_key), index)
        self.interval.setdefault((metric, key), index)

    def collected(self) -> None:
        self.intervals.append(self.interval)
        self.interval = {}
        self.cumulatives.append(dict(self.first_cumulative))
        self.collect_at.append(len(self.op_windows))
        self.overflow_totals.append(dict(self.overflow_total))

    def overflows(self, metric: str) -> bool:
        """True if *metric* got more distinct attribute sets than its ``max_series``."""
        limit = self.specs[metric].max_series
        return limit is not None and len(self.distinct.get(metric, ())) > limit


# ------------------------------------------------------------------------ pipelines


@dataclass
class Collection:
    data: MetricsData | None
    window: tuple[int, int]


class Pipeline:
    """A provider, its named readers, and what each reader collected, in order."""

    def __init__(self, provider: Any, readers: Mapping[str, InMemoryMetricReader]) -> None:
        self.provider = provider
        self.readers = dict(readers)
        self.collections: dict[str, list[Collection]] = {name: [] for name in self.readers}

    def collect(self) -> None:
        for name, reader in self.readers.items():
            before = time.time_ns()
            data = reader.get_metrics_data()
            self.collections[name].append(Collection(data, (before, time.time_ns())))


class Reference:
    """Plain SDK instruments created from the specs, on the service's meter."""

    def __init__(self, meter: Any, specs: Mapping[str, MetricSpec]) -> None:
        self.instruments: dict[str, Any] = {}
        for spec in specs.values():
            if not spec.capture:
                continue
            if spec.kind == "counter":
                made: Any = meter.create_counter(spec.name, spec.unit, spec.description)
            elif spec.kind == "histogram":
                made = meter.create_histogram(
                    spec.name,
                    spec.unit,
                    spec.description,
                    explicit_bucket_boundaries_advisory=spec.buckets,
                )
            elif spec.kind == "gauge":
                made = meter.create_gauge(spec.name, spec.unit, spec.description)
            else:
                made = meter.create_up_down_counter(spec.name, spec.unit, spec.description)
            self.instruments[spec.name] = made

    def record(self, spec: MetricSpec, value: float, attributes: Mapping[str, Any] | None) -> None:
        instrument = self.instruments[spec.name]
        attrs = None if attributes is None else dict(attributes)
        if spec.kind == "histogram":
            instrument.record(value, attrs)
        elif spec.kind == "gauge":
            instrument.set(value, attrs)
        else:
            instrument.add(value, attrs)


def all_specs(config: MetricsConfig, registered: tuple[MetricSpec, ...]) -> dict[str, MetricSpec]:
    """The config's specs, then those registered at run time (``create_*``)."""
    return {**config.metrics, **{s.name: s for s in registered if s.name not in config.metrics}}


def register(client: OTelMetricsClient, spec: MetricSpec) -> None:
    """``client.create_<kind>(...)`` for a metric not in the config."""
    if spec.kind == "histogram":
        client.create_histogram(spec.name, spec.description, spec.unit, spec.buckets)
    elif spec.kind == "counter":
        client.create_counter(spec.name, spec.description, spec.unit)
    elif spec.kind == "gauge":
        client.create_gauge(spec.name, spec.description, spec.unit)
    else:
        client.create_up_down_counter(spec.name, spec.description, spec.unit)


def run_workload(
    ops: list[Op],
    specs: Mapping[str, MetricSpec],
    reference: Reference,
    client: OTelMetricsClient,
    pipelines: tuple[Pipeline, Pipeline],
    model: Model,
) -> None:
    """Apply *ops* to the reference and to otel_aspects, collecting both at each Collect."""
    for index, op in enumerate([*ops, Collect()]):
        before = time.time_ns()
        if isinstance(op, Collect):
            for pipeline in pipelines:
                pipeline.collect()
            model.collected()
            model.op_windows.append((before, time.time_ns()))
            continue
        with maybe_sampled(op.sampled):
            if isinstance(op, Record):
                spec = specs.get(op.name)
                number = accepted_number(spec, op.method, op.value)
                if spec is not None and number is not None:
                    reference.record(spec, number, op.attributes)
                    model.measure(spec.name, op.attributes, number)
                attrs = None if op.attributes is None else dict(op.attributes)
                if op.method == "instrument":
                    _use_instrument(client, spec, op.value, attrs)
                else:
                    getattr(client, op.method)(op.name, op.value, attrs)
            elif isinstance(op, TimedCall):
                _run_timed(op, index, specs, reference, client, model)
            else:
                _run_aspect(op, specs[op.target], reference, client, model)
        model.op_windows.append((before, time.time_ns()))


def _use_instrument(
    client: OTelMetricsClient, spec: MetricSpec | None, value: Any, attrs: Any
) -> None:
    """Record through the instrument ``client.get_<kind>(name)`` returns (None: disabled)."""
    assert spec is not None
    instrument = getattr(client, "get_" + spec.kind)(spec.name)
    if instrument is None:
        return
    if spec.kind == "histogram":
        instrument.record(value, attrs)
    elif spec.kind == "gauge":
        instrument.set(value, attrs)
    else:
        instrument.add(value, attrs)


def _run_timed(
    call: TimedCall,
    index: int,
    specs: Mapping[str, MetricSpec],
    reference: Reference,
    client: OTelMetricsClient,
    model: Model,
) -> None:
    outcome = timed_outcome(call)
    counter = specs.get(call.counter) if call.counter else None
    histogram = specs.get(call.histogram) if call.histogram else None
    if counter is not None and counter.capture:
        reference.record(counter, 1, outcome)
        model.measure(counter.name, outcome, 1)
    if histogram is not None and histogram.capture:
        reference.record(histogram, call.ticks / 1024, outcome)
        model.measure(histogram.name, outcome, call.ticks / 1024)

    hist_arg: Any = call.histogram
    counter_arg: Any = call.counter
    if call.instruments:
        hist_obj = client.get_histogram(call.histogram) if call.histogram else None
        counter_obj = client.get_counter(call.counter) if call.counter else None
        if hist_obj is not None or counter_obj is not None:
            hist_arg, counter_arg = hist_obj, counter_obj
    aspect = timed(
        hist_arg,
        counter=counter_arg,
        client=client,
        labels=dict(call.static),
        clock=fake_clock(call, index),
    )

    def body() -> None:
        for key, value in call.labels_set:
            set_label(key, value)
        if call.raises is not None:
            raise call.raises("boom")

    expected: type[BaseException] = call.raises or _NeverRaised
    try:
        if call.form == "decorator":
            aspect(body)()
        else:
            with aspect:
                body()
    except expected:
        pass


class _NeverRaised(Exception):
    pass


def _run_aspect(
    call: AspectCall,
    spec: MetricSpec,
    reference: Reference,
    client: OTelMetricsClient,
    model: Model,
) -> None:
    """Run *call* under its aspect; record into the reference what DESIGN.md says it records."""
    static = dict(call.static)
    if call.aspect == "counted":
        aspect: Any = counted(call.target, client=client, labels=static)
        expected = [(1, timed_outcome(call))]  # type: ignore[arg-type]
    elif call.aspect == "count_exceptions":
        aspect = count_exceptions(call.target, client=client, labels=static)
        raised = call.raises
        expected = [] if raised is None else [(1, {**static, "error_type": raised.__name__})]
    else:
        aspect = track_inprogress(call.target, client=client, labels=static)
        expected = [(1, static), (-1, static)]
    if spec.capture:
        for value, attributes in expected:
            reference.record(spec, value, attributes)
            model.measure(spec.name, attributes, value)

    def body() -> None:
        if call.aspect == "counted":
            for key, value in call.labels_set:
                set_label(key, value)
        if call.raises is not None:
            raise call.raises("boom")

    expected_exc: type[BaseException] = call.raises or _NeverRaised
    try:
        if call.form == "decorator":
            aspect(body)()
        else:
            with aspect:
                body()
    except expected_exc:
        pass


# ------------------------------------------------------------------------ comparison


def flatten(data: MetricsData | None) -> dict[tuple[Any, str], tuple[Any, Any, Any]]:
    """``{(scope key, metric name): (resource, scope, metric)}`` of one collection."""
    out: dict[tuple[Any, str], tuple[Any, Any, Any]] = {}
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            scope = sm.scope
            scope_key = (
                scope.name,
                scope.version,
                scope.schema_url,
                key_of(scope.attributes) if scope.attributes else None,
                sm.schema_url,
            )
            for metric in sm.metrics:
                key = (scope_key, metric.name)
                assert key not in out, f"metric {metric.name!r} twice in one scope"
                out[key] = (rm, sm, metric)
    return out


def _scope(scope: Any) -> tuple[Any, ...]:
    return (scope.name, scope.version, scope.schema_url, dict(scope.attributes or {}))


def points_of(metric: Any) -> dict[Key, Any]:
    points: dict[Key, Any] = {}
    for point in metric.data.data_points:
        key = key_of(point.attributes)
        assert key not in points, f"{metric.name}: two points for one attribute set {key}"
        points[key] = point
    return points


def same_number(a: float, b: float, exact: bool) -> bool:
    """Equal values of the same type.

    Ints must be equal.  Floats must be equal when the workload's values are exact binary
    fractions (every sum is then exact, whatever the order).  Otherwise they may differ by
    the rounding of a different summation order: at most n * 2**-52 * sum(|x|), below
    1e-9 relative plus 1e-6 absolute for these workloads (<= 200 values below 1000).
    """
    if type(a) is not type(b):
        return False
    if type(a) is int or exact:
        return a == b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def compare_collection(
    ref: MetricsData | None,
    got: MetricsData | None,
    where: str,
    *,
    exact: bool,
    skip: set[str] = frozenset(),  # type: ignore[assignment]
) -> None:
    """Assert two collections of one reader hold the same metrics and points."""
    ref_metrics = {k: v for k, v in flatten(ref).items() if k[1] not in skip}
    got_metrics = {k: v for k, v in flatten(got).items() if k[1] not in skip}
    assert set(got_metrics) == set(ref_metrics), (
        f"{where}: metrics differ: missing {set(ref_metrics) - set(got_metrics)}, "
        f"extra {set(got_metrics) - set(ref_metrics)}"
    )
    for key, (ref_rm, ref_sm, ref_m) in ref_metrics.items():
        got_rm, got_sm, got_m = got_metrics[key]
        at = f"{where} {key[1]}"
        assert dict(got_rm.resource.attributes) == dict(ref_rm.resource.attributes), at
        assert got_rm.resource.schema_url == ref_rm.resource.schema_url, at
        assert got_rm.schema_url == ref_rm.schema_url, at
        assert _scope(got_sm.scope) == _scope(ref_sm.scope), at
        assert (got_m.description, got_m.unit) == (ref_m.description, ref_m.unit), at
        assert type(got_m.data) is type(ref_m.data), at
        assert getattr(got_m.data, "aggregation_temporality", None) == getattr(
            ref_m.data, "aggregation_temporality", None
        ), at
        assert getattr(got_m.data, "is_monotonic", None) == getattr(
            ref_m.data, "is_monotonic", None
        ), at
        ref_points, got_points = points_of(ref_m), points_of(got_m)
        assert set(got_points) == set(ref_points), (
            f"{at}: attribute sets differ: missing {set(ref_points) - set(got_points)}, "
            f"extra {set(got_points) - set(ref_points)}"
        )
        for pkey, rp in ref_points.items():
            compare_point(rp, got_points[pkey], f"{at} {dict((k, v) for k, _, v in pkey)}", exact)


def compare_point(rp: Any, gp: Any, at: str, exact: bool) -> None:
    assert type(gp) is type(rp), at
    assert len(gp.exemplars) == len(rp.exemplars), f"{at}: exemplars"
    if isinstance(rp, NumberDataPoint):
        assert same_number(gp.value, rp.value, exact), f"{at}: value {gp.value!r} != {rp.value!r}"
        return
    assert isinstance(rp, HistogramDataPoint)
    assert gp.count == rp.count, f"{at}: count"
    assert same_number(gp.sum, rp.sum, exact), f"{at}: sum {gp.sum!r} != {rp.sum!r}"
    assert tuple(gp.bucket_counts) == tuple(rp.bucket_counts), f"{at}: bucket_counts"
    assert tuple(gp.explicit_bounds) == tuple(rp.explicit_bounds), f"{at}: explicit_bounds"
    assert same_number(gp.min, rp.min, True), f"{at}: min"
    assert same_number(gp.max, rp.max, True), f"{at}: max"
    # A histogram's exemplars are deterministic (the last sampled measurement per bucket).
    assert [_exemplar(e) for e in gp.exemplars] == [_exemplar(e) for e in rp.exemplars], at


def _exemplar(e: Any) -> tuple[Any, ...]:
    return (key_of(e.filtered_attributes), type(e.value), e.value, e.span_id, e.trace_id)


# ------------------------------------------------------------------------ time semantics


def check_semantics(pipeline: Pipeline, model: Model, t0: int, label: str) -> None:
    """Timestamps, series sets and overflow of one pipeline against the SDK's semantics."""
    delta_skip = {m for m in model.specs if model.overflows(m)}
    cumulative_start: dict[tuple[str, Key], int] = {}
    for name, collections in pipeline.collections.items():
        delta = name == "delta"
        for index, collection in enumerate(collections):
            at = f"{label} {name} collection {index}"
            lo, hi = collection.window
            expected = model.intervals[index] if delta else model.cumulatives[index]
            seen: dict[tuple[str, Key], Any] = {}
            times: dict[str, int] = {}
            for (_scope, metric_name), (_rm, _sm, metric) in flatten(collection.data).items():
                if delta and metric_name in delta_skip:
                    continue
                gauge = model.specs[metric_name].kind == "gauge"
                for pkey, point in points_of(metric).items():
                    seen[metric_name, pkey] = point
                    assert lo <= point.time_unix_nano <= hi, f"{at} {metric_name}: time"
                    times.setdefault(metric_name, point.time_unix_nano)
                    assert times[metric_name] == point.time_unix_nano, (
                        f"{at} {metric_name}: points of one metric at different times"
                    )
                    if gauge:
                        assert point.start_time_unix_nano is None, f"{at} {metric_name}"
                        continue
                    start = point.start_time_unix_nano
                    first_op = expected[metric_name, pkey]
                    if not delta:
                        previous = cumulative_start.setdefault((metric_name, pkey), start)
                        assert start == previous, f"{at} {metric_name}: start time moved"
                        assert t0 <= start <= model.op_windows[first_op][1], (
                            f"{at} {metric_name}: start after the first measurement"
                        )
                    else:
                        _check_delta_start(model, pipeline, metric_name, index, start, at)
                        if not _collected_since_first(model, metric_name, index):
                            # Its first interval: it starts at the series' first measurement.
                            assert t0 <= start <= model.op_windows[first_op][1], (
                                f"{at} {metric_name}: start after the first measurement"
                            )
                    assert start <= point.time_unix_nano, at
            want = {k for k in expected if not (delta and k[0] in delta_skip)}
            assert set(seen) == want, (
                f"{at}: series missing {want - set(seen)}, unexpected {set(seen) - want}"
            )
            if not delta:
                _check_overflow(model, model.overflow_totals[index], seen, at)


def _collected_since_first(model: Model, metric: str, index: int) -> list[int]:
    """The collections before collection *index* made after *metric*'s first measurement."""
    first = model.first_measured[metric]
    return [i for i, op in enumerate(model.collect_at) if op > first and i < index]


def _check_delta_start(
    model: Model, pipeline: Pipeline, metric: str, index: int, start: int, at: str
) -> None:
    """Once collected before, a delta point starts at that reader's previous collection."""
    collected = _collected_since_first(model, metric, index)
    if not collected:
        return
    previous = collected[-1]
    prev = pipeline.collections["delta"][previous]
    prev_times = {
        p.time_unix_nano
        for (_s, name), (_rm, _sm, m) in flatten(prev.data).items()
        if name == metric
        for p in m.data.data_points
    }
    if prev_times:
        assert {start} == prev_times, f"{at} {metric}: start is not the previous collection"
    else:
        lo, hi = prev.window
        assert lo <= start <= hi, f"{at} {metric}: start not within the previous collection"


def _check_overflow(
    model: Model, totals: Mapping[str, float], seen: Mapping[tuple[str, Key], Any], at: str
) -> None:
    """Past max_series: exactly max_series series plus the overflow series with the rest."""
    for metric, spec in model.specs.items():
        if spec.max_series is None:
            continue
        keys = [k for (m, k) in seen if m == metric]
        if OVERFLOW_KEY not in keys:
            assert len(keys) <= spec.max_series, at
            continue
        assert len(keys) == spec.max_series + 1, f"{at} {metric}: not max_series + overflow"
        point = seen[metric, OVERFLOW_KEY]
        total = point.count if spec.kind == "histogram" else point.value
        if spec.kind in ("counter", "histogram", "up_down_counter"):
            assert math.isclose(total, totals[metric], rel_tol=1e-9, abs_tol=1e-6), (
                f"{at} {metric}: the overflow series does not hold the rest"
            )


# ------------------------------------------------------------------------ encodings


def normalised_otlp(request: ExportMetricsServiceRequest) -> bytes:
    """*request* with timestamps zeroed, everything sorted, sum/gauge exemplars reduced.

    A counter's or gauge's exemplar is one sampled measurement chosen at random (reservoir
    sampling), so only its presence and span are compared (value and filtered attributes
    cleared); histogram exemplars (the last sampled measurement per bucket) are kept whole.
    """
    request = ExportMetricsServiceRequest.FromString(request.SerializeToString())
    for rm in request.resource_metrics:
        _sort_kv(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                points = getattr(metric, kind).data_points
                for dp in points:
                    dp.start_time_unix_nano = 0
                    dp.time_unix_nano = 0
                    _sort_kv(dp.attributes)
                    for ex in dp.exemplars:
                        ex.time_unix_nano = 0
                        if kind != "histogram":
                            ex.ClearField("value")
                            # the chosen measurement's own attributes (an overflow series)
                            ex.ClearField("filtered_attributes")
                        else:
                            _sort_kv(ex.filtered_attributes)
                _sort_repeated(points)
            _sort_repeated(sm.metrics, key=lambda m: m.name.encode())
        _sort_repeated(rm.scope_metrics, key=lambda s: s.scope.SerializeToString())
    return request.SerializeToString(deterministic=True)


def _sort_kv(pairs: Any) -> None:
    _sort_repeated(pairs, key=lambda kv: kv.key.encode())


def _sort_repeated(items: Any, key: Callable[[Any], bytes] | None = None) -> None:
    ordered = sorted(items, key=key or (lambda m: m.SerializeToString(deterministic=True)))
    copies = [type(m).FromString(m.SerializeToString()) for m in ordered]
    del items[:]
    items.extend(copies)


def encoded(data: MetricsData | None, skip: set[str] = frozenset()) -> bytes:  # type: ignore[assignment]
    """One collection through the OTLP encoder, normalised (metrics in *skip* left out)."""
    if data is None:
        return b""
    request = encode_metrics(data)
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            keep = [m for m in sm.metrics if m.name not in skip]
            del sm.metrics[:]
            sm.metrics.extend(keep)
    return normalised_otlp(request)


_SAMPLE = re.compile(r"^([^{\s]+)(?:\{(.*)\})? (\S+)(?: (\S+))?$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def prometheus_lines(text: str) -> set[tuple[Any, ...]]:
    """The lines of a Prometheus text exposition, with each sample's labels sorted."""
    out: set[tuple[Any, ...]] = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            out.add((line,))
            continue
        match = _SAMPLE.match(line)
        assert match is not None, line
        name, labels, value, timestamp = match.groups()
        out.add((name, tuple(sorted(_LABEL.findall(labels or ""))), value, timestamp))
    return out
