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

Locking: write-behind.  A measurement is appended to its series' (or its
``timed`` slot's) pending list, one atomic list operation and no lock; pending
values are added to the series under the generation's one ``threading.Lock``
before every collection and once 256 are waiting.  ``docs/DESIGN.md`` ("Engine")
has the figures behind that choice (``python -m benchmarks.locking``).

>>> store = Store(None, mode=ENGINE)
>>> hits = store.instrument("counter", "hits_total", scope=("svc", None, None))
>>> hits.add(2, {"route": "/"})
>>> hits.add(1, {"route": "/"})
>>> hits.table.generation.fold_all()  # what a collection does first
>>> [(s.attributes, s.value) for s in hits.table.series.values()]
[({'route': '/'}, 3)]
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from time import time_ns
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, get_current_span

from ._attributes import clean_attributes
from ._values import INT64_MAX, checked_value
from ._warn import warn_once
from .series import GaugeSeries, HistogramSeries, Series, SumSeries

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import Metric
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from .mpseries import ProcessFile

    #: What a reader collects instead of a generation's series: ``(reader, now)`` ->
    #: metrics per scope.
    Source = Callable[[Any, int], dict[InstrumentationScope, list[Metric]]]

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
_OVERFLOW_KEY_ATTR: Final = "otel.metric.overflow"

_INF = float("inf")
#: ``opentelemetry.context.get_current`` without its own frame: the runtime context's
#: bound method (the API's ``_RUNTIME_CONTEXT``; pinned by tests/test_bridge.py), else
#: the public function.  Read on every measurement under the default exemplar filter.
_runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
#: Its ``ContextVar``'s own ``get`` where the runtime context is the API's default
#: (``ContextVarsRuntimeContext._current_context``), else its ``get_current``.
get_current: Callable[[], Context] = getattr(
    getattr(_runtime, "_current_context", None),
    "get",
    getattr(_runtime, "get_current", otel_context.get_current),
)
#: Exemplar sampling per generation: never, with a sampled span (the SDK's default
#: ``trace_based``), always, or a user's own ``ExemplarFilter``.
SAMPLE_OFF, SAMPLE_TRACE, SAMPLE_ALWAYS, SAMPLE_CUSTOM = 0, 1, 2, 3
#: Types whose raw values may key the alias table: hashing is stable and cleaning
#: them is deterministic.
_ALIASABLE: Final = frozenset((str, int, float, bool))


def _weak(obj: Any) -> Callable[[], Any]:
    """A weak reference to *obj*, or a function returning ``None`` for ``None``."""
    if obj is None:
        return lambda: None
    try:
        return weakref.ref(obj)
    except TypeError:  # an object that cannot be weakly referenced: kept
        return lambda: obj


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
# Generations and tables
# --------------------------------------------------------------------------


class Generation:
    """A store's series between two resets (setup, shutdown, fork), and their lock."""

    __slots__ = (
        "__weakref__",
        "exemplar_filter",
        "files",
        "lock",
        "reader_slots",
        "readers",
        "sampling",
        "slots",
        "source",
        "tables",
    )

    def __init__(
        self,
        sampling: int = SAMPLE_TRACE,
        exemplar_filter: Any = None,
        files: ProcessFile | None = None,
        source: Source | None = None,
    ) -> None:
        self.lock = threading.Lock()
        #: Multi-process mode: the series live in this process's file, not in memory,
        #: and readers collect *source* instead (see :func:`set_global_multiprocess`).
        self.files = files
        self.source = source
        self.tables: dict[Instrument, Table] = {}
        #: Readers seen so far; each has a slot in every series (see ``SumSeries``).
        self.reader_slots = 0
        self.sampling = sampling
        self.exemplar_filter = exemplar_filter
        #: Per-reader collection state, kept by :mod:`otel_aspects.bridge`.
        self.readers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        #: (counter series, histogram series) -> its :class:`Slot`, shared by every
        #: ``timed`` recording that pair (bounded by the series themselves).
        self.slots: dict[tuple[Series | None, Series | None], Slot] = {}

    def slot(self, counter: Series | None, histogram: Series | None) -> Slot:
        key = (counter, histogram)
        slot = self.slots.get(key)
        if slot is None:
            with self.lock:
                slot = self.slots.get(key)
                if slot is None:
                    slot = self.slots[key] = Slot(counter, histogram, self)
                    if self.files is not None:
                        slot.pending = self.files.pair_queue(counter, histogram, self.lock)
        return slot

    def new_series(self, instrument: Instrument, attributes: dict[str, Any]) -> Series:
        """A new series of *instrument* (in this process's file in multi-process mode)."""
        if self.files is not None:
            return self.files.new_series(instrument, attributes, self.lock)
        return instrument.new_series(attributes, self.reader_slots)

    def fold_all(self) -> None:
        """Add everything measured but not yet added to the series (before a collection)."""
        with self.lock:
            self.fold_all_locked()

    def fold_all_locked(self) -> None:
        for slot in list(self.slots.values()):
            slot.fold_locked()
        for table in list(self.tables.values()):
            for series in list(table.series.values()):
                if series.pending:
                    series.fold_locked()

    def table(self, instrument: Instrument) -> Table:
        table = self.tables.get(instrument)
        if table is None:
            with self.lock:
                table = self.tables.get(instrument)
                if table is None:
                    table = self.tables[instrument] = Table(instrument, self)
        return table

    def add_reader_slot(self) -> int:
        """A slot for a new reader in every series; it starts with everything so far."""
        with self.lock:
            self.fold_all_locked()
            slot = self.reader_slots
            self.reader_slots += 1
            for table in self.tables.values():
                for series in table.series.values():
                    series.add_reader()  # type: ignore[attr-defined]
        return slot

    def offer(
        self,
        series: Series,
        value: int | float,
        context: Context | None,
        index: int,
        attributes: Any = None,
    ) -> None:
        """Keep *value* (measured with *attributes*) as an exemplar of *series* if the
        SDK's filter would sample it."""
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
        # What the SDK's exemplar keeps beside the point's own attributes: nothing, unless
        # the measurement went to the overflow series, whose point lost them.
        if series.attributes is not None and _OVERFLOW_KEY_ATTR in series.attributes:
            kept: dict[str, Any] | None = clean_attributes(attributes, "exemplar") or None
        else:
            kept = {} if series.attributes else None
        series.keep_exemplar(index, (value, now, span_id, trace_id, kept))


class Slot:
    """What one ``timed`` records into for one attribute set: a counter's and a
    histogram's series, and the durations measured but not yet added to them.

    A measured call only appends its duration to ``pending`` (one atomic list
    operation, no lock); the counter's ``+1`` is implied by it.  The durations are
    added to the series (:meth:`fold`, under the generation's lock) before every
    collection, and by the recording thread once :data:`FOLD_AT` are waiting, so
    memory stays bounded.  ``fold`` takes exactly the first ``k`` items and deletes
    them (``del pending[:k]``, atomic): a duration appended meanwhile stays for the
    next fold, never lost, never counted twice.
    """

    __slots__ = ("counter", "generation", "histogram", "pending")

    def __init__(
        self, counter: Series | None, histogram: Series | None, generation: Generation
    ) -> None:
        self.counter = counter
        self.histogram = histogram
        self.generation = generation
        self.pending: list[float] = []

    def fold(self) -> None:
        """Add the pending durations to the series (takes the generation's lock)."""
        with self.generation.lock:
            self.fold_locked()

    def fold_locked(self) -> None:
        pending = self.pending
        taken = pending[: len(pending)]
        if not taken:
            return
        del pending[: len(taken)]
        if self.counter is not None:
            self.counter.add_all([1] * len(taken))  # type: ignore[attr-defined]
        if self.histogram is not None:
            self.histogram.observe_all(taken)  # type: ignore[attr-defined]


#: Durations a slot holds before the recording thread folds them itself.
FOLD_AT: Final = 256


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
        series = self.generation.new_series(instrument, attributes)
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
        multiprocess: str | None = None,
    ) -> None:
        self.store = store
        #: How processes combine in multi-process mode (``None``: the kind's default).
        self.multiprocess = multiprocess
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

    def new_series(self, attributes: dict[str, Any], readers: int) -> Series:
        return SumSeries(attributes, readers)

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
            self._aggregate(checked, self.table.lookup(attributes), context, attributes)
        except Exception as exc:
            self._failed(exc)

    def _aggregate(
        self, value: int | float, series: Series, context: Context | None, attributes: Any
    ) -> None:
        """Add *value* to *series*: queued (write-behind), or at once when it may become an
        exemplar (sums and histograms; a gauge sets its last value at once)."""
        generation = self.table.generation
        if generation.sampling and (
            generation.sampling != SAMPLE_TRACE or context or get_current()
        ):
            with generation.lock:
                if series.pending:  # queued earlier: added first, in measurement order
                    series.fold_locked()
                index = series.measure(value)  # type: ignore[attr-defined]
            generation.offer(series, value, context, index, attributes)
            return
        _write_behind(series, value, generation)

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


def _measure_non_negative(
    self: Instrument, amount: float, attributes: Any = None, context: Context | None = None
) -> None:
    """Record *amount* (finite, non-negative): ``Counter.add`` and ``Histogram.record``.

    The client's hot path: a plain int or float goes straight to its series' pending
    list (the write-behind of :class:`Slot`, inline); anything else is checked first.
    """
    v: Any = amount
    cls = v.__class__
    if ((cls is int and 0 <= v <= INT64_MAX) or (cls is float and 0.0 <= v < _INF)) and (
        self.sdk is None
    ):
        try:
            table = self.table
            try:  # Table.lookup's alias hit, inline (the hot path)
                items = tuple(attributes.items())
                series = table.aliases[items]
            except Exception:  # unseen, unhashable, not a mapping, None
                series = table.lookup(attributes)
            else:
                if series.mixed and not series.same_types(items):
                    series = table.lookup(attributes)
            sampling = table.generation.sampling
            if sampling and (sampling != SAMPLE_TRACE or context or get_current()):
                self._aggregate(amount, series, context, attributes)
                return
            pending = series.pending
            pending.append(amount)
            if len(pending) >= FOLD_AT:
                series.fold(table.generation)
        except Exception as exc:
            self._failed(exc)
        return
    self._record(amount, attributes, context)


class _SumInstrument(Instrument):
    def add(self, amount: float, attributes: Any = None, context: Context | None = None) -> None:
        """Add *amount* (the OTel API's ``add``)."""
        self._record(amount, attributes, context)


class Counter(_SumInstrument):
    """A monotonic sum."""

    kind = "counter"

    add = _measure_non_negative


class UpDownCounter(_SumInstrument):
    """A sum that may go down."""

    kind = "up_down_counter"
    _non_negative = False


class Gauge(Instrument):
    """The last value set."""

    kind = "gauge"
    _method = "set"
    _non_negative = False

    def new_series(self, attributes: dict[str, Any], readers: int) -> Series:
        return GaugeSeries(attributes, readers)

    def _aggregate(
        self, value: int | float, series: Series, context: Context | None, attributes: Any
    ) -> None:
        generation = self.table.generation
        with generation.lock:
            series.set(value)  # type: ignore[attr-defined]
        if generation.sampling and (
            generation.sampling != SAMPLE_TRACE or context or get_current()
        ):
            generation.offer(series, value, context, 0, attributes)

    def set(self, amount: float, attributes: Any = None, context: Context | None = None) -> None:
        """Set the gauge to *amount* (finite)."""
        self._record(amount, attributes, context)


class Histogram(Instrument):
    """Count, sum, min, max and explicit bucket counts."""

    kind = "histogram"
    _method = "record"

    def new_series(self, attributes: dict[str, Any], readers: int) -> Series:
        return HistogramSeries(attributes, self.bounds, readers)

    @property
    def bounds(self) -> tuple[float, ...]:
        """The explicit bucket boundaries (the SDK's default when none were given)."""
        return self.buckets if self.buckets is not None else SDK_DEFAULT_BUCKETS

    record = _measure_non_negative


def _write_behind(series: Series, value: int | float, generation: Generation) -> None:
    """Queue *value* on *series* without a lock; fold when :data:`FOLD_AT` are waiting."""
    pending = series.pending
    pending.append(value)
    if len(pending) >= FOLD_AT:
        series.fold(generation)


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
        "_ok",
        "_ok_slot",
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
        self._ok_slot: Slot | None = None
        self._cache: dict[Any, Slot] = {}
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
        if not self._fused or not 0.0 <= duration < _INF:  # (a user clock went backwards)
            self._record_apart(duration, attributes)
            return
        try:
            if attributes is self._ok:
                slot = self._ok_slot
                if slot is None:
                    slot = self._ok_slot = self._find(attributes)
            else:
                try:
                    items = tuple(attributes.items())
                    slot = self._cache[items]
                except Exception:  # unseen, or an unhashable value
                    slot = self._find(attributes)
                else:
                    some = slot.counter if slot.counter is not None else slot.histogram
                    if some is not None and some.mixed and not some.same_types(items):
                        slot = self._find(attributes)
            generation = slot.generation
            sampling = generation.sampling
            if sampling and (sampling != SAMPLE_TRACE or get_current()):
                self._record_sampled(slot, duration, attributes)
                return
            pending = slot.pending
            pending.append(duration)
            if len(pending) >= FOLD_AT:
                slot.fold()
        except Exception as exc:
            (self.counter if self.counter is not None else self.histogram)._failed(exc)

    def record_ok(self, duration: float) -> None:
        """:meth:`record` with the success attributes given at construction.

        The common outcome of a ``timed`` call, once its slot is known: queue the
        duration; anything else (a new epoch, a sampled span, a bad duration, not yet
        resolved) goes through :meth:`record`.
        """
        store, slot = self._store, self._ok_slot
        if (
            slot is None
            or store is None
            or self._epoch != store.epoch
            or not 0.0 <= duration < _INF
        ):
            self.record(duration, self._ok)  # type: ignore[arg-type]
            return
        sampling = slot.generation.sampling
        if sampling and (sampling != SAMPLE_TRACE or get_current()):
            self.record(duration, self._ok)  # type: ignore[arg-type]
            return
        pending = slot.pending
        pending.append(duration)
        if len(pending) >= FOLD_AT:
            slot.fold()

    def _record_sampled(self, slot: Slot, duration: float, attributes: dict[str, Any]) -> None:
        # A measurement that may become an exemplar: straight into the series.
        generation = slot.generation
        counter_series, histogram_series = slot.counter, slot.histogram
        index = 0
        with generation.lock:
            slot.fold_locked()  # what was queued before: added first, in measurement order
            for series in (counter_series, histogram_series):
                if series is not None and series.pending:
                    series.fold_locked()
            if counter_series is not None:
                counter_series.add(1)  # type: ignore[attr-defined]
            if histogram_series is not None:
                index = histogram_series.observe(duration)  # type: ignore[attr-defined]
        if counter_series is not None:
            generation.offer(counter_series, 1, None, 0, attributes)
        if histogram_series is not None:
            generation.offer(histogram_series, duration, None, index, attributes)

    def _refresh(self) -> None:
        store = self._store
        counter, histogram = self.counter, self.histogram
        self._cache = {}
        self._ok_slot = None
        if store is None:
            self._fused = False
            return
        self._epoch = store.epoch
        self._fused = all(i is None or i.sdk is None for i in (counter, histogram))
        self._table_c = None if counter is None else counter.table
        self._table_h = None if histogram is None else histogram.table

    def _find(self, attributes: dict[str, Any]) -> Slot:
        table = self._table_c if self._table_c is not None else self._table_h
        slot = table.generation.slot(  # type: ignore[union-attr]
            None if self._table_c is None else self._table_c.lookup(attributes),
            None if self._table_h is None else self._table_h.lookup(attributes),
        )
        cache = self._cache
        if len(cache) < 256 and all(
            k.__class__ is str and v.__class__ in _ALIASABLE and v == v
            for k, v in attributes.items()
        ):
            cache[tuple(attributes.items())] = slot
        return slot

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
        #: Weakly: a user's provider given to a client is not kept alive by the engine.
        self._provider = _weak(provider)
        self.mode = mode or mode_from_env()
        self._lock = threading.Lock()
        self.instruments: dict[tuple[object, ...], Instrument] = {}
        #: Exemplar sampling of the provider the store is bridged to (see ``bridge.sampling_of``).
        self.sampling = SAMPLE_TRACE
        self.exemplar_filter: Any = None
        #: Multi-process mode: where new generations keep their series, and what the
        #: bridge collects instead of them (see :func:`set_global_multiprocess`).
        self.files: ProcessFile | None = None
        self.source: Source | None = None
        self.gen = Generation()
        #: Moves whenever a generation starts or an instrument changes route (what
        #: :class:`Pair` caches is then stale).
        self.epoch = 0
        #: Called with each new generation (the bridge follows it).
        self.on_generation: list[Callable[[Generation], None]] = []

    @property
    def provider(self) -> Any:
        """The meter provider this store records for (``None`` once it is gone)."""
        return self._provider()

    @provider.setter
    def provider(self, provider: Any) -> None:
        self._provider = _weak(provider)

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
        multiprocess: str | None = None,
    ) -> Instrument:
        """The instrument *name* of *kind* in *scope* (the first one made is kept)."""
        # The SDK's identity of an instrument: two with one name and another unit or
        # description are two metrics (the SDK warns of the conflict and exports both).
        key = (scope, kind, name.lower(), unit, description)
        with self._lock:
            instrument = self.instruments.get(key)
            if instrument is None:
                instrument = _KINDS[kind](
                    self,
                    name,
                    unit,
                    description,
                    scope,
                    buckets,
                    max_series,
                    api_factory,
                    multiprocess,
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

    def use_files(self, files: ProcessFile | None, source: Source | None) -> None:
        """Multi-process mode from the next generation on: series in *files*, readers
        collecting *source* (``None``, ``None``: in memory, one process)."""
        self.files, self.source = files, source

    def configure_sampling(self, sampling: int, exemplar_filter: Any = None) -> None:
        """Sample exemplars as the provider's filter says (this and later generations)."""
        self.sampling, self.exemplar_filter = sampling, exemplar_filter
        self.gen.sampling, self.gen.exemplar_filter = sampling, exemplar_filter

    def new_generation(self) -> Generation:
        """Start again with empty series (and a new lock); returns the new generation."""
        gen = Generation(self.sampling, self.exemplar_filter, self.files, self.source)
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
        if self.files is not None:
            self.files.after_fork()
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
    global _global_provider
    _global_provider = provider  # kept: the global provider lives for the process
    _GLOBAL.provider = provider


_global_mode: str | None = None
_global_provider: Any = None
_global_files: ProcessFile | None = None
_global_source: Source | None = None


def set_global_multiprocess(files: ProcessFile | None, source: Source | None) -> None:
    """Multi-process mode for the global store once bridged (``setup_metrics``).

    *files*: where this process's series go (``None``: in memory, one process);
    *source*: what the global provider's readers collect instead of this process's
    series (the folder's total in the process that exports it, nothing elsewhere).
    """
    global _global_files, _global_source
    _global_files, _global_source = files, source


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
    sdk_target = isinstance(target, SdkMeterProvider)
    store.use_files(*((_global_files, _global_source) if sdk_target else (None, None)))
    if sdk_target:
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
