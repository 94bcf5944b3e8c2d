"""otel_aspects' own aggregation: one series per (instrument, attribute set), bounded.

Recording goes here instead of into the OpenTelemetry SDK's instruments; the SDK's
readers receive the series at collection through :mod:`otel_aspects.bridge`.

- A :class:`Store` holds the instruments recorded for one destination: the global
  provider that :func:`~otel_aspects.setup_metrics` installs, or one user's SDK
  ``MeterProvider``.  :func:`store_for` finds it.
- A :class:`Generation` holds the store's series and the lock that guards them.  A
  new generation starts, with empty series, when the global provider's target
  changes (``setup_metrics`` again, shutdown) and in a forked child, so a worker
  never exports its parent's counts and never waits on a lock a parent thread held.
- A :class:`Table` is one instrument's series in one generation: at most
  ``max_series`` attribute sets (the SDK's 2000 by default), then the OpenTelemetry
  overflow series ``{"otel.metric.overflow": True}``.  A series is created by its
  first measurement.  Raw attribute dicts find their series through an alias
  table keyed by ``tuple(attributes.items())``: one tuple and one dict lookup
  when the same labels come again, whatever needed cleaning the first time.
- :class:`Pair` is what a ``timed`` aspect records into: a counter's ``+1`` and a
  histogram's duration for one attribute set, under one lock acquisition.

Locking: one ``threading.Lock`` per store generation, held only for the few
field updates of a measurement (never around user code, never while building
points).  ``docs/DESIGN.md`` ("Engine") has the figures behind that choice.

>>> store = Store(None)
>>> hits = store.instrument("counter", "hits_total", scope=("svc", None, None))
>>> hits.add(2, {"route": "/"})
>>> hits.add(1, {"route": "/"})
>>> [(s.attributes, s.value) for s in hits.table.series.values()]  # integers add up exactly
[({'route': '/'}, 3)]
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from bisect import bisect_left
from collections.abc import Callable, Sequence
from time import time_ns
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, get_current_span

from ._attributes import clean_attributes
from ._values import INT64_MAX, checked_value
from ._warn import warn_once

__all__ = (
    "DEFAULT_MAX_SERIES",
    "ENGINE",
    "OVERFLOW_ATTRIBUTES",
    "SDK",
    "Instrument",
    "Pair",
    "Store",
    "global_store",
    "mode_from_env",
    "store_for",
)

logger = logging.getLogger("otel_aspects.engine")

#: Recording modes: the engine, or straight through the SDK's own instruments.
ENGINE: Final = "engine"
SDK: Final = "sdk"
MODES: Final = (ENGINE, SDK)

#: Attribute sets kept per instrument when the YAML gives no ``max_series`` (the SDK's).
DEFAULT_MAX_SERIES: Final = 2000
#: The attributes of the series that takes every attribute set past the limit.
OVERFLOW_ATTRIBUTES: Final = {"otel.metric.overflow": True}
_OVERFLOW_KEY: Final = frozenset({("otel.metric.overflow", bool, True)})

_INF = float("inf")
#: ``opentelemetry.context.get_current`` without its own frame: the runtime context's
#: bound method (the API's ``_RUNTIME_CONTEXT``; pinned by tests/test_bridge.py), else
#: the public function.  Read on every measurement under the default exemplar filter.
_runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
get_current: Callable[[], Context] = getattr(_runtime, "get_current", otel_context.get_current)
#: Exemplar sampling per generation: never, with a sampled span (the SDK's default
#: ``trace_based``), always, or a user's own ``ExemplarFilter``.
SAMPLE_OFF, SAMPLE_TRACE, SAMPLE_ALWAYS, SAMPLE_CUSTOM = 0, 1, 2, 3
#: Types whose raw values may key the alias table: hashing is stable and cleaning
#: them is deterministic.
_ALIASABLE: Final = frozenset((str, int, float, bool))


def mode_from_env() -> str:
    """``OTEL_ASPECTS_ENGINE`` (``engine`` or ``sdk``); an invalid value: one ERROR, ``engine``."""
    raw = os.environ.get("OTEL_ASPECTS_ENGINE", "").strip().lower()
    if not raw:
        return ENGINE
    if raw in MODES:
        return raw
    warn_once(
        logger,
        ("engine-env", raw[:40]),
        "otel_aspects: OTEL_ASPECTS_ENGINE=%.40r is not one of %s; using %r",
        raw,
        ", ".join(MODES),
        ENGINE,
        level=logging.ERROR,
    )
    return ENGINE


# --------------------------------------------------------------------------
# Series
# --------------------------------------------------------------------------


class Series:
    """The aggregation of one attribute set of one instrument.

    ``n`` counts measurements (a delta reader gets a point only when it moved);
    ``start`` is the time of the first one (a cumulative point's start time).
    ``exemplar`` is the last sampled measurement, ``(value, time_unix_nano,
    span_id, trace_id)``, or ``None``.
    """

    __slots__ = ("attributes", "exemplar", "mixed", "n", "start")

    def __init__(self, attributes: dict[str, Any]) -> None:
        self.attributes = attributes
        self.start = time_ns()
        self.n = 0
        self.exemplar: tuple[Any, ...] | None = None
        #: Some value is not a str: raw dicts that compare equal may still differ in
        #: type (``True == 1 == 1.0``), so an alias hit checks the types.
        self.mixed = any(v.__class__ is not str for v in attributes.values())

    def same_types(self, items: tuple[tuple[Any, Any], ...]) -> bool:
        """Whether raw *items* have this series' value types (the SDK keeps 1 and True apart)."""
        attributes = self.attributes
        return all(value.__class__ is attributes.get(key, value).__class__ for key, value in items)


class SumSeries(Series):
    """A counter's or an up-down counter's sum.

    Integers and floats add up apart (``value``, ``fvalue``; ``nf`` counts the
    floats), as the SDK's types come out: a point is an ``int`` unless a float was
    measured in it -- in a delta point, in that interval.
    """

    __slots__ = ("fvalue", "nf", "value")

    def __init__(self, attributes: dict[str, Any]) -> None:
        super().__init__(attributes)
        self.value = 0
        self.fvalue = 0.0
        self.nf = 0

    def add(self, value: int | float) -> None:
        """Add one measurement (the caller holds the lock)."""
        if value.__class__ is float:
            self.fvalue += value
            self.nf += 1
        else:
            self.value += value  # type: ignore[assignment]
        self.n += 1


class GaugeSeries(Series):
    """A gauge's last value."""

    __slots__ = ("value",)

    def __init__(self, attributes: dict[str, Any]) -> None:
        super().__init__(attributes)
        self.value: int | float = 0


class HistogramSeries(Series):
    """Count (``n``), sum, explicit bucket counts, min and max.

    ``windows`` holds one ``[min, max]`` per delta reader of the generation: the
    extremes since that reader's last collection (a delta point's min and max).
    ``exemplars`` holds the last sampled measurement per bucket, as the SDK's
    aligned-bucket reservoir does.
    """

    __slots__ = ("bounds", "counts", "exemplars", "fsum", "max", "min", "nf", "sum", "windows")

    def __init__(self, attributes: dict[str, Any], bounds: tuple[float, ...], windows: int) -> None:
        super().__init__(attributes)
        self.bounds = bounds
        #: The sum of the integer measurements, and of the float ones (``nf`` of them).
        self.sum = 0
        self.fsum = 0.0
        self.nf = 0
        self.counts = [0] * (len(bounds) + 1)
        self.min: float = _INF
        self.max: float = -_INF
        self.windows = [[_INF, -_INF] for _ in range(windows)]
        self.exemplars: list[tuple[Any, ...] | None] | None = None

    def observe(self, value: int | float) -> int:
        """Add one measurement (the caller holds the lock); returns its bucket index."""
        index = bisect_left(self.bounds, value)
        self.n += 1
        if value.__class__ is float:
            self.fsum += value
            self.nf += 1
        else:
            self.sum += value  # type: ignore[assignment]
        self.counts[index] += 1
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        for window in self.windows:
            if value < window[0]:
                window[0] = value
            if value > window[1]:
                window[1] = value
        return index


# --------------------------------------------------------------------------
# Generations and tables
# --------------------------------------------------------------------------


class Generation:
    """A store's series between two resets (setup, shutdown, fork), and their lock."""

    __slots__ = (
        "__weakref__",
        "delta_windows",
        "exemplar_filter",
        "lock",
        "readers",
        "sampling",
        "tables",
    )

    def __init__(self, sampling: int = SAMPLE_TRACE, exemplar_filter: Any = None) -> None:
        self.lock = threading.Lock()
        self.tables: dict[Instrument, Table] = {}
        #: Delta readers seen so far; each has a ``windows`` slot in histogram series.
        self.delta_windows = 0
        self.sampling = sampling
        self.exemplar_filter = exemplar_filter
        #: Per-reader collection state, kept by :mod:`otel_aspects.bridge`.
        self.readers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    def table(self, instrument: Instrument) -> Table:
        table = self.tables.get(instrument)
        if table is None:
            with self.lock:
                table = self.tables.get(instrument)
                if table is None:
                    table = self.tables[instrument] = Table(instrument, self)
        return table

    def add_delta_window(self) -> int:
        """A ``windows`` slot for a new delta reader, in every histogram series."""
        with self.lock:
            slot = self.delta_windows
            self.delta_windows += 1
            for table in self.tables.values():
                for series in table.series.values():
                    if isinstance(series, HistogramSeries):
                        series.windows.append([_INF, -_INF])
        return slot

    def offer(
        self, series: Series, value: int | float, context: Context | None, index: int
    ) -> None:
        """Keep *value* as an exemplar of *series* if the SDK's filter would sample it."""
        mode = self.sampling
        if mode == SAMPLE_OFF:
            return
        ctx = context if context is not None else get_current()
        if mode == SAMPLE_TRACE and not ctx:
            return  # an empty context holds no span, so no sampled one
        span_id = trace_id = None
        if mode != SAMPLE_ALWAYS or ctx:
            span = get_current_span(ctx)
            if span is not INVALID_SPAN and span != INVALID_SPAN:
                span_context = span.get_span_context()
                span_id, trace_id = span_context.span_id, span_context.trace_id
                sampled = bool(span_context.trace_flags.sampled)
            else:
                sampled = False
            if mode == SAMPLE_TRACE and not sampled:
                return
        now = time_ns()
        if mode == SAMPLE_CUSTOM:
            try:
                if not self.exemplar_filter.should_sample(value, now, series.attributes, ctx):
                    return
            except Exception as exc:
                warn_once(
                    logger,
                    ("exemplar-filter", type(exc).__name__),
                    "otel_aspects: the exemplar filter raised %s; no exemplar kept",
                    type(exc).__name__,
                    budget="hooks",
                )
                return
        exemplar = (value, now, span_id, trace_id)
        if isinstance(series, HistogramSeries):
            exemplars = series.exemplars
            if exemplars is None:
                exemplars = series.exemplars = [None] * len(series.counts)
            exemplars[index] = exemplar
        else:
            series.exemplar = exemplar


class Table:
    """One instrument's series in one generation, bounded by ``max_series``."""

    __slots__ = ("aliases", "generation", "instrument", "series")

    def __init__(self, instrument: Instrument, generation: Generation) -> None:
        self.instrument = instrument
        self.generation = generation
        #: Canonical key (items with their value types) -> series, in creation order.
        self.series: dict[frozenset[tuple[str, type, Any]], Series] = {}
        #: ``tuple(raw.items())`` -> series, for raw dicts seen before.
        self.aliases: dict[tuple[tuple[Any, Any], ...], Series] = {}

    def lookup(self, raw: object) -> Series:
        """The series for raw attributes *raw* (cleaned the first time); never raises."""
        if raw is None:
            raw = {}
        try:
            items = tuple(raw.items())  # type: ignore[attr-defined]
            series = self.aliases[items]
        except Exception:  # unseen, unhashable, or not a mapping
            return self._resolve(raw)
        if series.mixed and not series.same_types(items):
            return self._resolve(raw)
        return series

    def _resolve(self, raw: object) -> Series:
        instrument = self.instrument
        attributes = clean_attributes(raw, instrument.name)
        key = frozenset((k, v.__class__, v) for k, v in attributes.items())
        series = self.series.get(key)
        if series is None:
            with self.generation.lock:
                series = self.series.get(key)
                if series is None:  # a copy: the caller may change its dict later
                    series = self._admit(key, dict(attributes))
        if (
            raw.__class__ is dict
            and len(self.aliases) < 4 * instrument.max_series + 16
            and all(
                k.__class__ is str and v.__class__ in _ALIASABLE and v == v for k, v in raw.items()
            )
        ):
            self.aliases[tuple(raw.items())] = series
        return series

    def _admit(self, key: frozenset[tuple[str, type, Any]], attributes: dict[str, Any]) -> Series:
        """Create the series of a new attribute set, or the overflow series (lock held)."""
        instrument = self.instrument
        if len(self.series) >= instrument.max_series:
            overflow = self.series.get(_OVERFLOW_KEY)
            if overflow is not None:
                return overflow
            warn_once(
                logger,
                ("overflow", instrument.name),
                "otel_aspects: %s %.100r reached max_series=%d attribute sets; further new "
                "sets are recorded in the series {otel.metric.overflow: true}. Raise max_series "
                "in the YAML, or use fewer distinct label values",
                instrument.kind,
                instrument.name,
                instrument.max_series,
                budget="labels",
            )
            key, attributes = _OVERFLOW_KEY, dict(OVERFLOW_ATTRIBUTES)
        series = instrument.new_series(attributes, self.generation.delta_windows)
        self.series[key] = series
        return series


# --------------------------------------------------------------------------
# Instruments
# --------------------------------------------------------------------------


class Instrument:
    """An instrument recording into the engine; ``.add``/``.record``/``.set`` as the OTel API's.

    When ``sdk`` is set (``OTEL_ASPECTS_ENGINE=sdk``, or a user's View matches it)
    measurements go to that OpenTelemetry instrument instead, checked and
    cleaned the same way.  No method raises.
    """

    kind: str = ""
    #: The OTel API method of this kind, for the ``sdk`` path.
    _method: str = "add"
    _non_negative = True

    def __init__(
        self,
        store: Store,
        name: str,
        unit: str,
        description: str,
        scope: tuple[str, str | None, str | None],
        buckets: Sequence[float] | None,
        max_series: int | None,
        api_factory: Callable[[], Any] | None,
    ) -> None:
        self.store = store
        self.name = name
        self.unit = unit
        self.description = description
        self.scope = scope
        self.buckets = tuple(float(b) for b in buckets) if buckets is not None else None
        self.max_series = max_series if max_series is not None else DEFAULT_MAX_SERIES
        self._api_factory = api_factory
        self._api: Any = None
        #: The OTel instrument measurements go to instead of the engine, or ``None``.
        self.sdk: Any = None
        self.table: Table = store.gen.table(self)

    def __repr__(self) -> str:
        route = "sdk" if self.sdk is not None else "engine"
        return f"<otel_aspects {self.kind} {self.name!r} ({route})>"

    def api_instrument(self) -> Any:
        """The OTel API instrument of the same identity (created once, on demand)."""
        if self._api is None and self._api_factory is not None:
            self._api = self._api_factory()
        return self._api

    def route_to_sdk(self, enabled: bool) -> None:
        """Record through the OTel instrument (``True``) or the engine (``False``)."""
        self.sdk = self.api_instrument() if enabled else None
        self.store.epoch += 1

    def new_series(self, attributes: dict[str, Any], windows: int) -> Series:
        return SumSeries(attributes)

    # ------------------------------------------------------------------ recording

    def _record(self, value: object, attributes: object, context: Context | None) -> None:
        """The checked path: validate *value*, then record it (never raises)."""
        checked = checked_value(value, non_negative=self._non_negative)
        if isinstance(checked, str):
            warn_once(
                logger,
                ("value", self.name, checked),
                "otel_aspects: %s %.100r: value %s dropped (%s)",
                self.kind,
                self.name,
                _short(value),
                checked,
                budget="values",
            )
            return
        sdk = self.sdk
        if sdk is not None:
            try:
                getattr(sdk, self._method)(
                    checked, clean_attributes(attributes, self.name), context
                )
            except Exception as exc:
                self._failed(exc)
            return
        try:
            self._aggregate(checked, self.table.lookup(attributes), context)
        except Exception as exc:
            self._failed(exc)

    def _aggregate(self, value: int | float, series: Series, context: Context | None) -> None:
        raise NotImplementedError

    def _failed(self, exc: Exception) -> None:
        warn_once(
            logger,
            ("record", self.name, type(exc).__name__),
            "otel_aspects: recording %s %.100r failed (%s: %s); this measurement is lost",
            self.kind,
            self.name,
            type(exc).__name__,
            _short(exc),
            budget="values",
        )


class _SumInstrument(Instrument):
    def _aggregate(self, value: int | float, series: Series, context: Context | None) -> None:
        generation = self.table.generation
        with generation.lock:
            series.add(value)  # type: ignore[attr-defined]
        if generation.sampling and (
            generation.sampling != SAMPLE_TRACE or context or get_current()
        ):
            generation.offer(series, value, context, 0)

    def add(self, amount: float, attributes: Any = None, context: Context | None = None) -> None:
        """Add *amount* (the OTel API's ``add``)."""
        self._record(amount, attributes, context)


class Counter(_SumInstrument):
    """A monotonic sum."""

    kind = "counter"

    def add(self, amount: float, attributes: Any = None, context: Context | None = None) -> None:
        """Add *amount* (finite, non-negative)."""
        v: Any = amount
        cls = v.__class__
        if (
            (cls is int and 0 <= v <= INT64_MAX) or (cls is float and 0.0 <= v < _INF)
        ) and self.sdk is None:
            try:
                self._aggregate(amount, self.table.lookup(attributes), context)
            except Exception as exc:
                self._failed(exc)
            return
        self._record(amount, attributes, context)


class UpDownCounter(_SumInstrument):
    """A sum that may go down."""

    kind = "up_down_counter"
    _non_negative = False


class Gauge(Instrument):
    """The last value set."""

    kind = "gauge"
    _method = "set"
    _non_negative = False

    def new_series(self, attributes: dict[str, Any], windows: int) -> Series:
        return GaugeSeries(attributes)

    def _aggregate(self, value: int | float, series: Series, context: Context | None) -> None:
        generation = self.table.generation
        with generation.lock:
            series.value = value  # type: ignore[attr-defined]
            series.n += 1
        if generation.sampling and (
            generation.sampling != SAMPLE_TRACE or context or get_current()
        ):
            generation.offer(series, value, context, 0)

    def set(self, amount: float, attributes: Any = None, context: Context | None = None) -> None:
        """Set the gauge to *amount* (finite)."""
        self._record(amount, attributes, context)


class Histogram(Instrument):
    """Count, sum, min, max and explicit bucket counts."""

    kind = "histogram"
    _method = "record"

    def new_series(self, attributes: dict[str, Any], windows: int) -> Series:
        return HistogramSeries(attributes, self.bounds, windows)

    @property
    def bounds(self) -> tuple[float, ...]:
        """The explicit bucket boundaries (the SDK's default when none were given)."""
        return self.buckets if self.buckets is not None else SDK_DEFAULT_BUCKETS

    def _aggregate(self, value: int | float, series: Series, context: Context | None) -> None:
        generation = self.table.generation
        with generation.lock:
            index = series.observe(value)  # type: ignore[attr-defined]
        if generation.sampling and (
            generation.sampling != SAMPLE_TRACE or context or get_current()
        ):
            generation.offer(series, value, context, index)

    def record(self, amount: float, attributes: Any = None, context: Context | None = None) -> None:
        """Record *amount* (finite, non-negative)."""
        v: Any = amount
        cls = v.__class__
        if (
            (cls is float and 0.0 <= v < _INF) or (cls is int and 0 <= v <= INT64_MAX)
        ) and self.sdk is None:
            try:
                self._aggregate(amount, self.table.lookup(attributes), context)
            except Exception as exc:
                self._failed(exc)
            return
        self._record(amount, attributes, context)


#: The SDK's default explicit bucket boundaries (for a histogram without buckets).
SDK_DEFAULT_BUCKETS: Final = (
    0.0,
    5.0,
    10.0,
    25.0,
    50.0,
    75.0,
    100.0,
    250.0,
    500.0,
    750.0,
    1000.0,
    2500.0,
    5000.0,
    7500.0,
    10000.0,
)

_KINDS: Final[dict[str, type[Instrument]]] = {
    "counter": Counter,
    "histogram": Histogram,
    "gauge": Gauge,
    "up_down_counter": UpDownCounter,
}


# --------------------------------------------------------------------------
# Pair: what a timed aspect records into
# --------------------------------------------------------------------------


class Pair:
    """A counter's ``+1`` and a histogram's duration, per attribute set, under one lock.

    Either may be ``None``, or a plain OpenTelemetry instrument (then it is called
    directly).  Series are found through a cache keyed by ``tuple(attrs.items())``
    -- the attributes of the common outcome (*ok*) by identity -- refreshed when
    the store's epoch moves (a new generation, a change of route).
    """

    __slots__ = (
        "_cache",
        "_epoch",
        "_fused",
        "_generation",
        "_ok",
        "_ok_pair",
        "_store",
        "_table_c",
        "_table_h",
        "counter",
        "histogram",
    )

    def __init__(self, counter: Any, histogram: Any, ok: dict[str, Any] | None = None) -> None:
        self.counter = counter
        self.histogram = histogram
        self._ok = ok
        engine_instruments = [i for i in (counter, histogram) if isinstance(i, Instrument)]
        stores = {i.store for i in engine_instruments}
        #: Both are engine instruments of one store (or one is None): one lock for both.
        self._store: Store | None = (
            stores.pop()
            if len(stores) == 1
            and len(engine_instruments) == sum(i is not None for i in (counter, histogram))
            else None
        )
        self._epoch = -1
        self._fused = False
        self._generation: Generation | None = None
        self._ok_pair: tuple[Series | None, Series | None] | None = None
        self._cache: dict[Any, tuple[Series | None, Series | None]] = {}
        self._table_c: Table | None = None
        self._table_h: Table | None = None

    def record(self, duration: float, attributes: dict[str, Any]) -> None:
        """Record one measured call with (cleaned) *attributes*.

        Never raises for engine instruments; a plain OTel instrument's exception
        propagates, for the caller to report.
        """
        store = self._store
        if store is None or self._epoch != store.epoch:
            self._refresh()
        if not self._fused:
            self._record_apart(duration, attributes)
            return
        try:
            if attributes is self._ok:
                pair = self._ok_pair
                if pair is None:
                    pair = self._ok_pair = self._find(attributes)
            else:
                try:
                    items = tuple(attributes.items())
                    pair = self._cache[items]
                except Exception:  # unseen, or an unhashable value
                    pair = self._find(attributes)
                else:
                    some = pair[0] if pair[0] is not None else pair[1]
                    if some is not None and some.mixed and not some.same_types(items):
                        pair = self._find(attributes)
            counter_series, histogram_series = pair
            generation: Generation = self._generation  # type: ignore[assignment]
            index = 0
            with generation.lock:
                if counter_series is not None:
                    counter_series.value += 1  # type: ignore[attr-defined]  # SumSeries.add(1)
                    counter_series.n += 1
                if histogram_series is not None:
                    index = histogram_series.observe(duration)  # type: ignore[attr-defined]
            if generation.sampling and (generation.sampling != SAMPLE_TRACE or get_current()):
                if counter_series is not None:
                    generation.offer(counter_series, 1, None, 0)
                if histogram_series is not None:
                    generation.offer(histogram_series, duration, None, index)
        except Exception as exc:
            (self.counter if self.counter is not None else self.histogram)._failed(exc)

    def _refresh(self) -> None:
        store = self._store
        counter, histogram = self.counter, self.histogram
        self._cache = {}
        self._ok_pair = None
        if store is None:
            self._fused = False
            return
        self._epoch = store.epoch
        self._fused = all(i is None or i.sdk is None for i in (counter, histogram))
        self._table_c = None if counter is None else counter.table
        self._table_h = None if histogram is None else histogram.table
        self._generation = (self._table_c or self._table_h).generation  # type: ignore[union-attr]

    def _find(self, attributes: dict[str, Any]) -> tuple[Series | None, Series | None]:
        pair = (
            None if self._table_c is None else self._table_c.lookup(attributes),
            None if self._table_h is None else self._table_h.lookup(attributes),
        )
        cache = self._cache
        if len(cache) < 256 and all(
            k.__class__ is str and v.__class__ in _ALIASABLE and v == v
            for k, v in attributes.items()
        ):
            cache[tuple(attributes.items())] = pair
        return pair

    def _record_apart(self, duration: float, attributes: dict[str, Any]) -> None:
        if self.counter is not None:
            self.counter.add(1, attributes)
        if self.histogram is not None:
            self.histogram.record(duration, attributes)


# --------------------------------------------------------------------------
# Stores
# --------------------------------------------------------------------------


class Store:
    """The engine instruments recorded for one destination (a meter provider)."""

    def __init__(self, provider: Any, *, mode: str | None = None) -> None:
        self.provider = provider
        self.mode = mode or mode_from_env()
        self._lock = threading.Lock()
        self.instruments: dict[tuple[object, ...], Instrument] = {}
        #: Exemplar sampling of the provider the store is bridged to (see ``bridge.sampling_of``).
        self.sampling = SAMPLE_TRACE
        self.exemplar_filter: Any = None
        self.gen = Generation()
        #: Moves whenever a generation starts or an instrument changes route (what
        #: :class:`Pair` caches is then stale).
        self.epoch = 0
        #: Called with each new generation (the bridge follows it).
        self.on_generation: list[Callable[[Generation], None]] = []

    def instrument(
        self,
        kind: str,
        name: str,
        *,
        scope: tuple[str, str | None, str | None],
        unit: str = "",
        description: str = "",
        buckets: Sequence[float] | None = None,
        max_series: int | None = None,
        api_factory: Callable[[], Any] | None = None,
        route_to_sdk: bool = False,
    ) -> Instrument:
        """The instrument *name* of *kind* in *scope* (the first one made is kept)."""
        key = (scope, kind, name.lower())
        with self._lock:
            instrument = self.instruments.get(key)
            if instrument is None:
                instrument = _KINDS[kind](
                    self, name, unit, description, scope, buckets, max_series, api_factory
                )
                self.instruments[key] = instrument
                if route_to_sdk or self.mode == SDK:
                    instrument.route_to_sdk(True)
        return instrument

    def set_mode(self, mode: str) -> None:
        """Record through the engine (``engine``) or the SDK's instruments (``sdk``)."""
        self.mode = mode
        with self._lock:
            for instrument in self.instruments.values():
                instrument.route_to_sdk(mode == SDK)

    def configure_sampling(self, sampling: int, exemplar_filter: Any = None) -> None:
        """Sample exemplars as the provider's filter says (this and later generations)."""
        self.sampling, self.exemplar_filter = sampling, exemplar_filter
        self.gen.sampling, self.gen.exemplar_filter = sampling, exemplar_filter

    def new_generation(self) -> Generation:
        """Start again with empty series (and a new lock); returns the new generation."""
        gen = Generation(self.sampling, self.exemplar_filter)
        with self._lock:
            for instrument in self.instruments.values():
                instrument.table = gen.table(instrument)
            self.gen = gen
            self.epoch += 1
        for listener in tuple(self.on_generation):
            listener(gen)
        return gen

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self.new_generation()


#: Until setup_metrics bridges it to an SDK provider (and after shutdown), the global
#: store records through the OTel API's own instruments: a provider the user installs
#: with ``metrics.set_meter_provider`` then gets the measurements from the API's proxies.
_GLOBAL = Store(None, mode=SDK)
_stores: weakref.WeakKeyDictionary[Any, Store] = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


def global_store() -> Store:
    """The store of everything recorded through the global provider (``setup_metrics``)."""
    return _GLOBAL


def use_as_global(provider: Any) -> None:
    """Make *provider* (the one ``setup_metrics`` installs globally) map to the global store."""
    _GLOBAL.provider = provider


_global_mode: str | None = None


def set_global_mode(mode: str) -> None:
    """How the global store records once bridged: ``engine`` or ``sdk`` (``setup_metrics``)."""
    global _global_mode
    _global_mode = mode


def switch_global(target: Any, mode: str | None = None) -> None:
    """The global provider now delegates to *target*: new series, bridged to *target*.

    The bridge of the previous target keeps the previous generation, so that
    target's final flush still exports what was recorded before the switch.
    *mode* (``engine``/``sdk``; default ``OTEL_ASPECTS_ENGINE``) is how the global
    store records from now on.
    """
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider

    from . import bridge

    store = _GLOBAL
    store.on_generation.clear()  # the previous bridge keeps its generation
    if isinstance(target, SdkMeterProvider):
        store.configure_sampling(*bridge.sampling_of(target))
        store.new_generation()
        bridge.attach(store, target)
        store.set_mode(mode or _global_mode or mode_from_env())
    else:
        store.configure_sampling(SAMPLE_OFF)
        store.new_generation()
        store.set_mode(SDK)


def store_for(provider: Any) -> Store | None:
    """The store for clients on *provider*; ``None`` if the engine cannot serve it.

    ``None`` (the global API) and the provider ``setup_metrics`` installs share the
    global store; an SDK ``MeterProvider`` gets a store of its own, bridged to its
    readers at once; anything else (a no-op provider, another implementation)
    records through its own instruments.
    """
    if provider is None or provider is _GLOBAL.provider:
        return _GLOBAL
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider

    if not isinstance(provider, SdkMeterProvider):
        return None
    with _stores_lock:
        store = _stores.get(provider)
        if store is None:
            from . import bridge

            store = Store(provider)
            bridge.attach(store, provider)
            _stores[provider] = store
    return store


def _after_fork_in_child() -> None:
    global _stores_lock
    _stores_lock = threading.Lock()
    for store in (_GLOBAL, *list(_stores.values())):
        store._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _short(value: object) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."
