"""The bridge: the engine's series reach every reader of an SDK ``MeterProvider``.

The Python SDK has no ``MetricProducer`` yet (open-telemetry/opentelemetry-python
#4768), so the bridge hooks the collect callback the provider gives each reader:
the provider's measurement consumer's ``collect(reader, timeout_millis)`` is
replaced by one that calls the SDK's own, then merges the engine's metrics for
that reader into the result -- into the SDK's ``ScopeMetrics`` of the same scope
when there is one (a second ``ScopeMetrics`` with the same scope would make the
OTLP encoder drop the first's metrics).  Every reader gets the points: periodic
exporters, Prometheus, in-memory readers, readers added later
(``add_metric_reader`` registers the consumer's ``collect`` attribute, which is
ours).

What each reader receives is what the SDK's own instruments would give it:
its temporality per instrument kind (cumulative, or delta since its previous
collection), start times (cumulative: the series' first measurement; delta: the
previous collection of that instrument), monotonicity, min/max, bucket
boundaries and counts, exemplars (the provider's exemplar filter; the last
sampled measurement per bucket for histograms, the last one for the others),
``DropAggregation`` preferences.  ``docs/DESIGN.md`` ("Bridge") lists the SDK's
private names this relies on; ``tests/test_bridge.py`` pins them.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable
from time import time_ns
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics._internal.exemplar import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    Exemplar,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics._internal.instrument import (
    _Counter,
    _Gauge,
    _Histogram,
    _UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.metrics.view import (
    DefaultAggregation,
    DropAggregation,
    ExplicitBucketHistogramAggregation,
    LastValueAggregation,
    SumAggregation,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from . import engine
from ._warn import warn_once
from .engine import Generation, Instrument, Store
from .series import HistogramSeries, Series, SumSeries

__all__ = ("attach", "has_view_for", "metric_of", "preferences", "sampling_of", "scope_of")

logger = logging.getLogger("otel_aspects.bridge")

_DELTA = AggregationTemporality.DELTA
_INF = float("inf")

#: The SDK instrument class whose reader preferences apply to each kind.
SDK_CLASSES: dict[str, type] = {
    "counter": _Counter,
    "up_down_counter": _UpDownCounter,
    "histogram": _Histogram,
    "gauge": _Gauge,
}
#: Aggregations the engine produces itself, per kind (anything else: warned once).
_OURS: dict[str, tuple[type, ...]] = {
    "counter": (DefaultAggregation, SumAggregation),
    "up_down_counter": (DefaultAggregation, SumAggregation),
    "histogram": (DefaultAggregation,),
    "gauge": (DefaultAggregation, LastValueAggregation),
}


def sampling_of(provider: Any) -> tuple[int, Any]:
    """``(sampling mode, filter)`` from *provider*'s exemplar filter (the SDK's config)."""
    config = getattr(provider, "_sdk_config", None)
    exemplar_filter = getattr(config, "exemplar_filter", None)
    if isinstance(exemplar_filter, AlwaysOffExemplarFilter):
        return engine.SAMPLE_OFF, None
    if isinstance(exemplar_filter, AlwaysOnExemplarFilter):
        return engine.SAMPLE_ALWAYS, None
    if exemplar_filter is None or isinstance(exemplar_filter, TraceBasedExemplarFilter):
        return engine.SAMPLE_TRACE, None
    return engine.SAMPLE_CUSTOM, exemplar_filter


def has_view_for(provider: Any, sdk_instrument: Any) -> bool:
    """Whether a View on *provider* matches *sdk_instrument* (then the SDK records it)."""
    config = getattr(provider, "_sdk_config", None)
    views: Iterable[Any] = getattr(config, "views", ()) or ()
    try:
        return any(view._match(sdk_instrument) for view in views)
    except Exception:  # an SDK whose View changed: be safe, let the SDK apply it
        return True


class Bridge:
    """Merges one store generation's series into what one provider's readers collect."""

    def __init__(self, store: Store, provider: SdkMeterProvider) -> None:
        self.store = store
        #: Weakly: the provider owns this bridge (through its consumer's collect).
        self._provider = weakref.ref(provider)
        self.generation: Generation = store.gen
        consumer = provider._measurement_consumer
        original = consumer.collect

        def collect(reader: Any, timeout_millis: float = 10_000) -> MetricsData | None:
            data = original(reader, timeout_millis=timeout_millis)
            try:
                return self.merge(reader, data)
            except Exception as exc:  # never lose the SDK's own data to a bridge bug
                warn_once(
                    logger,
                    ("merge", type(exc).__name__),
                    "otel_aspects: could not add the engine's metrics to a collection "
                    "(%s: %s); the SDK's own metrics are exported without them",
                    type(exc).__name__,
                    exc,
                    budget="hooks",
                )
                logger.debug("otel_aspects: bridge failure", exc_info=True)
                return data

        # add_metric_reader() registers `consumer.collect` for later readers: ours.
        consumer.collect = collect  # type: ignore[method-assign, assignment]
        for reader in tuple(consumer._reader_storages):
            reader._set_collect_callback(collect)  # type: ignore[arg-type]

    def follow(self, generation: Generation) -> None:
        """Export *generation* from now on (a new generation of the store)."""
        self.generation = generation

    def merge(self, reader: Any, data: MetricsData | None) -> MetricsData | None:
        """*data* with the engine's metrics for *reader* added."""
        now = time_ns()
        source = self.generation.source
        ours = _collect(self.generation, reader, now) if source is None else source(reader, now)
        if not ours:
            return data
        if data is None or not data.resource_metrics:
            resource = self._provider()._sdk_config.resource  # type: ignore[union-attr]
            data = MetricsData(
                resource_metrics=[
                    ResourceMetrics(
                        resource=resource, scope_metrics=[], schema_url=resource.schema_url
                    )
                ]
            )
        first, *rest = data.resource_metrics
        scopes = list(first.scope_metrics)
        where = {scope_metrics.scope: i for i, scope_metrics in enumerate(scopes)}
        for scope, metrics in ours.items():
            i = where.get(scope)
            if i is None:
                scopes.append(
                    ScopeMetrics(scope=scope, metrics=metrics, schema_url=scope.schema_url or "")
                )
            else:
                old = scopes[i]
                scopes[i] = ScopeMetrics(
                    scope=old.scope, metrics=[*old.metrics, *metrics], schema_url=old.schema_url
                )
        merged = ResourceMetrics(
            resource=first.resource, scope_metrics=scopes, schema_url=first.schema_url
        )
        return MetricsData(resource_metrics=[merged, *rest])


_bridges: weakref.WeakKeyDictionary[SdkMeterProvider, Bridge] = weakref.WeakKeyDictionary()


def attach(store: Store, provider: SdkMeterProvider) -> Bridge:
    """Bridge *store* to *provider*'s readers; the bridge follows the store's generations.

    A provider is hooked once: bridging it again (the global provider switched back
    to it) points the existing hook at *store*'s current generation.
    """
    sampling, exemplar_filter = sampling_of(provider)
    store.configure_sampling(sampling, exemplar_filter)
    bridge = _bridges.get(provider)
    if bridge is None:
        bridge = _bridges[provider] = Bridge(store, provider)
    else:
        bridge.store, bridge.generation = store, store.gen
    store.on_generation.append(bridge.follow)
    return bridge


# --------------------------------------------------------------------------
# Collection: series -> points, per reader
# --------------------------------------------------------------------------


def preferences(reader: Any) -> tuple[dict[str, AggregationTemporality], set[str]]:
    """*reader*'s temporality per instrument kind, and the kinds it drops.

    An aggregation the engine does not produce is warned once (the engine's own is used).
    """
    temporalities = getattr(reader, "_instrument_class_temporality", {})
    aggregations = getattr(reader, "_instrument_class_aggregation", {})
    temporality = {
        kind: temporalities.get(cls, AggregationTemporality.CUMULATIVE)
        for kind, cls in SDK_CLASSES.items()
    }
    drop: set[str] = set()
    for kind, cls in SDK_CLASSES.items():
        aggregation = aggregations.get(cls)
        if aggregation is None or isinstance(aggregation, _OURS[kind]):
            continue
        if isinstance(aggregation, DropAggregation):
            drop.add(kind)
        elif not (
            kind == "histogram"
            and isinstance(aggregation, ExplicitBucketHistogramAggregation)
            and aggregation._boundaries is None
        ):
            warn_once(
                logger,
                ("aggregation", type(reader).__name__, kind),
                "otel_aspects: reader %s prefers %s for %s instruments; the engine exports "
                "its own (sum, last value, explicit buckets). Set OTEL_ASPECTS_ENGINE=sdk to "
                "let the SDK aggregate",
                type(reader).__name__,
                type(aggregation).__name__,
                kind,
                budget="hooks",
            )
    return temporality, drop


class _ReaderState:
    """What one reader has been given so far, in one generation."""

    __slots__ = ("drop", "given", "last", "slot", "snapshots", "temporality", "totals")

    def __init__(self, reader: Any, generation: Generation) -> None:
        self.temporality, self.drop = preferences(reader)
        #: Previous collection time per instrument (a delta point's start).
        self.last: dict[Instrument, int] = {}
        #: Delta: each series' count (and bucket counts) at the previous collection.
        self.snapshots: dict[Series, tuple[Any, ...]] = {}
        #: Cumulative: each series' value (or histogram sum) given so far, to which the
        #: sum since the previous collection is added, as the SDK's aggregation does.
        self.totals: dict[Series, int | float] = {}
        #: The exemplars already given, per (series, bucket): each is given once.
        self.given: dict[tuple[Series, int], tuple[Any, ...]] = {}
        #: This reader's slot in every series (its sums and min/max since its last collection).
        self.slot = generation.add_reader_slot()


def _reader_state(generation: Generation, reader: Any) -> _ReaderState:
    state = generation.readers.get(reader)
    if state is None:
        state = generation.readers[reader] = _ReaderState(reader, generation)
    return state


_SCOPES: dict[tuple[str, str | None, str | None], InstrumentationScope] = {}


def scope_of(key: tuple[str, str | None, str | None]) -> InstrumentationScope:
    scope = _SCOPES.get(key)
    if scope is None:
        scope = _SCOPES[key] = InstrumentationScope(*key)
    return scope


def _collect(
    generation: Generation, reader: Any, now: int
) -> dict[InstrumentationScope, list[Metric]]:
    state = _reader_state(generation, reader)
    generation.fold_all()  # what timed aspects measured and have not added yet
    out: dict[InstrumentationScope, list[Metric]] = {}
    for instrument, table in list(generation.tables.items()):
        if not table.series or instrument.kind in state.drop:
            continue
        delta = state.temporality[instrument.kind] is _DELTA
        with generation.lock:
            rows = [(series, _row(series, state.slot, delta)) for series in table.series.values()]
        previous = state.last.get(instrument)
        state.last[instrument] = now
        points = [
            point
            for series, row in rows
            if (point := _point(instrument, series, row, state, delta, previous, now)) is not None
        ]
        if points:
            out.setdefault(scope_of(instrument.scope), []).append(
                metric_of(instrument, points, delta)
            )
    return out


def _row(series: Series, slot: int, delta: bool) -> tuple[Any, ...]:
    """A consistent copy of *series* for the reader of *slot* (lock held).

    Takes the sum since that reader's last collection (and, for a delta reader, the
    min and max since then), resetting them for its next collection.
    """
    if isinstance(series, HistogramSeries):
        since = series.sums[slot]
        series.sums[slot] = 0
        window = series.windows[slot]
        low, high = (window[0], window[1]) if delta else (series.min, series.max)
        window[0], window[1] = _INF, -_INF
        exemplars = None if series.exemplars is None else list(series.exemplars)
        return (series.n, since, tuple(series.counts), low, high, exemplars)
    if isinstance(series, SumSeries):
        since = series.sums[slot]
        series.sums[slot] = 0
        return (series.n, since, series.exemplar)
    return (series.n, series.value, series.exemplar)  # type: ignore[attr-defined]


def _exemplars(
    series: Series, found: Iterable[tuple[Any, ...] | None], state: _ReaderState
) -> list[Exemplar]:
    # The SDK's reservoirs are emptied at each collection: each exemplar is given once.
    out = []
    for index, item in enumerate(found):
        if item is None or state.given.get((series, index)) is item:
            continue
        state.given[series, index] = item
        value, at, span_id, trace_id, kept = item
        out.append(Exemplar(kept, value, at, span_id, trace_id))
    return out


def _point(
    instrument: Instrument,
    series: Series,
    row: tuple[Any, ...],
    state: _ReaderState,
    delta: bool,
    previous: int | None,
    now: int,
) -> NumberDataPoint | HistogramDataPoint | None:
    kind = instrument.kind
    if row[0] == 0:
        return None  # created by a measurement still pending: it has no point yet
    before = state.snapshots.get(series) if delta else None
    if delta:
        if before is not None and before[0] == row[0]:
            return None  # no measurement since this reader's last collection
        state.snapshots[series] = (row[0], row[2]) if kind == "histogram" else (row[0],)
    start = (previous if previous is not None else series.start) if delta else series.start
    if kind == "gauge":
        n, value, found = row
        return NumberDataPoint(
            attributes=series.attributes,
            start_time_unix_nano=None,  # type: ignore[arg-type]
            time_unix_nano=now,
            value=value,
            exemplars=_exemplars(series, (found,), state),
        )
    since = row[1]
    if not delta:  # the SDK's cumulative: the interval's sum plus what came before
        since = state.totals[series] = since + state.totals.get(series, 0)
    if kind == "histogram":
        n, _, counts, low, high, found = row
        if before is not None:
            n -= before[0]
            counts = tuple(a - b for a, b in zip(counts, before[1], strict=True))
        return HistogramDataPoint(
            attributes=series.attributes,
            start_time_unix_nano=start,
            time_unix_nano=now,
            count=n,
            sum=since,
            bucket_counts=counts,
            explicit_bounds=instrument.bounds,  # type: ignore[attr-defined]
            min=low,
            max=high,
            exemplars=_exemplars(series, found or (), state),
        )
    return NumberDataPoint(
        attributes=series.attributes,
        start_time_unix_nano=start,
        time_unix_nano=now,
        value=since,
        exemplars=_exemplars(series, (row[2],), state),
    )


def metric_of(instrument: Any, points: list[Any], delta: bool) -> Metric:
    """One metric of *instrument* (an engine instrument, or an ``mpfile.Meta``)."""
    temporality = _DELTA if delta else AggregationTemporality.CUMULATIVE
    kind = instrument.kind
    data: Sum | Gauge | Histogram
    if kind == "histogram":
        data = Histogram(data_points=points, aggregation_temporality=temporality)
    elif kind == "gauge":
        data = Gauge(data_points=points)
    else:
        data = Sum(
            data_points=points,
            aggregation_temporality=temporality,
            is_monotonic=kind == "counter",
        )
    return Metric(
        name=instrument.name,
        description=instrument.description,
        unit=instrument.unit,
        data=data,
    )
