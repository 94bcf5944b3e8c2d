"""The metrics client: record by name into the instruments a config declares.

>>> metrics = create_metrics_client("my_service")                  # doctest: +SKIP
>>> metrics.record_counter("requests_total", 1, {"status": "success"})  # doctest: +SKIP
>>> metrics.record_histogram("request_duration_seconds", 0.042)    # doctest: +SKIP

No method raises, whatever it is given.  Bad record-time input is dropped or
coerced and each distinct cause is logged once at WARNING.  A metric with
``capture: false``, or never declared, is a silent no-op (one DEBUG line per
name at most).
"""

from __future__ import annotations

import logging
import math
import numbers
import threading
from collections.abc import Mapping
from typing import Any, TypeAlias

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import Counter, Histogram, Meter, MeterProvider, UpDownCounter
from opentelemetry.metrics import _Gauge as Gauge

from ._attributes import clean_attributes
from ._warn import warn_once
from .config import (
    INSTRUMENT_NAME_RE,
    MetricKind,
    MetricsConfig,
    MetricSpec,
    as_metrics_config,
    bucket_problem,
    register_config,
)

__all__ = ("OTelMetricsClient", "create_metrics_client")

logger = logging.getLogger(__name__)

Instrument: TypeAlias = Counter | Histogram | Gauge | UpDownCounter
Attributes: TypeAlias = Mapping[str, Any] | None

#: Integers beyond int64 cannot be exported; they are dropped.
_INT64 = 2**63 - 1
_INF = math.inf
#: Names for which "not recorded" was logged at DEBUG, per client, at most.
_MAX_DEBUGGED = 1024


def _number(value: object) -> int | float | str:
    """*value* as a plain int or float, or a short reason why it is not a number."""
    cls = value.__class__
    if cls is float:
        return value if math.isfinite(value) else "not finite"  # type: ignore[arg-type, return-value]
    if cls is int:
        return value if -_INT64 - 1 <= value <= _INT64 else "out of int64 range"  # type: ignore[operator, return-value]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return "of type " + type(value).__name__
    try:
        number: int | float = int(value) if isinstance(value, numbers.Integral) else float(value)
    except (OverflowError, ValueError, TypeError):
        return "not convertible"
    return _number(number)


class OTelMetricsClient:
    """Records into the instruments declared by a :class:`MetricsConfig`.

    Instruments for ``capture: true`` specs are created at construction, on
    *meter_provider* or on the global API provider (a proxy until the SDK is set
    up: a client made at import time records once ``setup_metrics`` has run).

    >>> client = OTelMetricsClient("svc", MetricsConfig("svc"))
    >>> client.create_counter("hits_total") is not None
    True
    >>> client.record_counter("hits_total", 2, {"route": "/"})
    >>> client.record_counter("never_declared")     # silent no-op
    """

    def __init__(
        self,
        service_name: str,
        config: MetricsConfig | None = None,
        *,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.service_name = service_name
        config = as_metrics_config(config, service_name)
        self.config = config
        register_config(config)
        self._lock = threading.Lock()
        self._debugged: set[str] = set()
        self._specs: dict[str, MetricSpec] = {s.name: s for s in config.metrics.values()}
        self._by_kind: dict[str, dict[str, Any]] = {
            "counter": {},
            "histogram": {},
            "gauge": {},
            "up_down_counter": {},
        }
        self._counters = self._by_kind["counter"]
        self._histograms = self._by_kind["histogram"]
        self._gauges = self._by_kind["gauge"]
        self._up_down_counters = self._by_kind["up_down_counter"]
        try:
            if meter_provider is not None:
                self._meter: Meter | None = meter_provider.get_meter(service_name)
            else:
                self._meter = otel_metrics.get_meter(service_name)
        except Exception as exc:
            warn_once(
                logger,
                ("meter", service_name, type(exc).__name__),
                "otel_aspects: cannot get a meter for %r (%s); nothing will be recorded",
                service_name,
                exc,
            )
            self._meter = None
        for spec in self._specs.values():
            if spec.capture:
                self._instrument(spec)

    # ------------------------------------------------------------------ introspection

    def spec(self, name: str) -> MetricSpec | None:
        """The spec of metric *name*, or ``None`` if it is not declared."""
        try:
            return self._specs.get(name)
        except TypeError:  # an unhashable name
            return None

    def is_enabled(self, name: str) -> bool:
        """True if metric *name* is declared, captured and has an instrument."""
        spec = self.spec(name)
        return spec is not None and spec.name in self._by_kind[spec.kind]

    # ------------------------------------------------------------------ creation

    def _instrument(self, spec: MetricSpec) -> Instrument | None:
        """Create the instrument of *spec* (lock not needed: called from one place)."""
        meter = self._meter
        if meter is None:
            return None
        try:
            instrument: Instrument
            if spec.kind == "counter":
                instrument = meter.create_counter(spec.name, spec.unit, spec.description)
            elif spec.kind == "histogram":
                instrument = meter.create_histogram(
                    spec.name,
                    spec.unit,
                    spec.description,
                    explicit_bucket_boundaries_advisory=spec.buckets,
                )
            elif spec.kind == "gauge":
                instrument = meter.create_gauge(spec.name, spec.unit, spec.description)
            else:
                instrument = meter.create_up_down_counter(spec.name, spec.unit, spec.description)
        except Exception as exc:
            warn_once(
                logger,
                ("create", spec.name, type(exc).__name__),
                "otel_aspects: cannot create %s %r (%s: %s); it will not be recorded",
                spec.kind,
                spec.name,
                type(exc).__name__,
                exc,
            )
            return None
        self._by_kind[spec.kind][spec.name] = instrument
        return instrument

    def _create(
        self,
        kind: MetricKind,
        name: object,
        description: object,
        unit: object,
        buckets: object = None,
    ) -> Any:
        if not isinstance(name, str) or INSTRUMENT_NAME_RE.fullmatch(name) is None:
            warn_once(
                logger,
                ("create-name", kind, repr(name)[:100]),
                "otel_aspects: cannot create %s %.100r: not a valid instrument name",
                kind,
                name,
            )
            return None
        with self._lock:
            spec = self._specs.get(name)
            if spec is not None:
                if spec.kind != kind:
                    warn_once(
                        logger,
                        ("create-kind", name, kind),
                        "otel_aspects: cannot create %s %r: it is declared as a %s",
                        kind,
                        name,
                        spec.kind,
                    )
                    return None
                if not spec.capture:
                    self._debug_once(name, "capture: false")
                    return None
                existing = self._by_kind[kind].get(name)
                return existing if existing is not None else self._instrument(spec)
            problem = None
            if not isinstance(description, str):
                problem = "description must be a string"
            elif not isinstance(unit, str):
                problem = "unit must be a string"
            elif buckets is not None:
                problem = bucket_problem(buckets)
            if problem is not None:
                warn_once(
                    logger,
                    ("create-args", name),
                    "otel_aspects: cannot create %s %r: %s",
                    kind,
                    name,
                    problem,
                )
                return None
            spec = MetricSpec(
                kind=kind,
                name=name,
                description=str(description),
                unit=str(unit),
                buckets=tuple(float(b) for b in buckets) if buckets is not None else None,  # type: ignore[attr-defined]
            )
            self._specs[name] = spec
            return self._instrument(spec)

    def create_counter(self, name: str, description: str = "", unit: str = "1") -> Counter | None:
        """Register a counter not in the config (the config, if it has *name*, wins).

        Returns the instrument, or ``None`` if it is ``capture: false`` or invalid.
        """
        result: Counter | None = self._create("counter", name, description, unit)
        return result

    def create_histogram(
        self,
        name: str,
        description: str = "",
        unit: str = "s",
        buckets: list[float] | tuple[float, ...] | None = None,
    ) -> Histogram | None:
        """Register a histogram; unit ``"s"`` without *buckets* gets seconds buckets."""
        result: Histogram | None = self._create("histogram", name, description, unit, buckets)
        return result

    def create_gauge(self, name: str, description: str = "", unit: str = "1") -> Gauge | None:
        """Register a (synchronous) gauge."""
        result: Gauge | None = self._create("gauge", name, description, unit)
        return result

    def create_up_down_counter(
        self, name: str, description: str = "", unit: str = "1"
    ) -> UpDownCounter | None:
        """Register an up-down counter."""
        result: UpDownCounter | None = self._create("up_down_counter", name, description, unit)
        return result

    # ------------------------------------------------------------------ lookup

    def _debug_once(self, name: str, why: str) -> None:
        # A set of its own, so that many disabled names never use up warn_once's budget.
        if name in self._debugged or len(self._debugged) >= _MAX_DEBUGGED:
            return
        self._debugged.add(name)
        logger.debug(
            "otel_aspects: metric %r of %r not recorded (%s)", name, self.service_name, why
        )

    def _missing(self, kind: str, name: object) -> None:
        """Explain once why *name* has no instrument of *kind* (never raises)."""
        try:
            spec = self._specs.get(name)  # type: ignore[call-overload]
        except TypeError:
            spec = None
        if not isinstance(name, str):
            warn_once(
                logger,
                ("name-type", type(name).__name__),
                "otel_aspects: metric name must be a str, got %s; nothing recorded",
                type(name).__name__,
            )
        elif spec is None:
            self._debug_once(name, "not declared in the config")
        elif spec.kind != kind:
            warn_once(
                logger,
                ("wrong-kind", name, kind),
                "otel_aspects: metric %r is a %s, not a %s; nothing recorded",
                name,
                spec.kind,
                kind,
            )
        elif not spec.capture:
            self._debug_once(name, "capture: false")
        else:
            self._debug_once(name, "its instrument could not be created")

    def _get(self, kind: str, name: object) -> Any:
        return self._lookup(self._by_kind[kind], kind, name)

    def get_counter(self, name: str) -> Counter | None:
        """The counter *name*, or ``None`` (disabled, undeclared or not a counter)."""
        result: Counter | None = self._get("counter", name)
        return result

    def get_histogram(self, name: str) -> Histogram | None:
        """The histogram *name*, or ``None``."""
        result: Histogram | None = self._get("histogram", name)
        return result

    def get_gauge(self, name: str) -> Gauge | None:
        """The gauge *name*, or ``None``."""
        result: Gauge | None = self._get("gauge", name)
        return result

    def get_up_down_counter(self, name: str) -> UpDownCounter | None:
        """The up-down counter *name*, or ``None``."""
        result: UpDownCounter | None = self._get("up_down_counter", name)
        return result

    # ------------------------------------------------------------------ recording

    def _reject(self, name: str, kind: str, value: object, why: str) -> None:
        warn_once(
            logger,
            ("value", name, why),
            "otel_aspects: %s %r: value %.60r dropped (%s)",
            kind,
            name,
            value,
            why,
        )

    def _slow_record(
        self,
        kind: str,
        instrument: Any,
        name: str,
        value: object,
        attributes: object,
        non_negative: bool,
    ) -> None:
        """Validate *value*, clean *attributes* and record (never raises)."""
        number = _number(value)
        if isinstance(number, str):
            self._reject(name, kind, value, number)
            return
        if non_negative and number < 0:
            self._reject(name, kind, value, "negative")
            return
        _call(kind, instrument, name, number, clean_attributes(attributes, name))

    def _lookup(self, table: dict[str, Any], kind: str, name: object) -> Any:
        try:
            instrument = table.get(name)  # type: ignore[call-overload]
        except TypeError:  # an unhashable name
            instrument = None
        if instrument is None:
            self._missing(kind, name)
        return instrument

    def record_counter(self, name: str, value: float = 1, attributes: Attributes = None) -> None:
        """Add *value* (finite, non-negative) to counter *name*."""
        instrument = self._counters.get(name) if name.__class__ is str else None
        if instrument is None:
            instrument = self._lookup(self._counters, "counter", name)
            if instrument is None:
                return
        v: object = value
        cls = v.__class__
        if (cls is int and 0 <= v <= _INT64) or (cls is float and 0.0 <= v < _INF):  # type: ignore[operator]
            try:
                instrument.add(value, clean_attributes(attributes, name))
            except Exception as exc:
                _failed("counter", name, exc)
        else:
            self._slow_record("counter", instrument, name, value, attributes, True)

    def record_histogram(self, name: str, value: float, attributes: Attributes = None) -> None:
        """Record *value* (finite, non-negative) into histogram *name*."""
        instrument = self._histograms.get(name) if name.__class__ is str else None
        if instrument is None:
            instrument = self._lookup(self._histograms, "histogram", name)
            if instrument is None:
                return
        v: object = value
        cls = v.__class__
        if (cls is float and 0.0 <= v < _INF) or (cls is int and 0 <= v <= _INT64):  # type: ignore[operator]
            try:
                instrument.record(value, clean_attributes(attributes, name))
            except Exception as exc:
                _failed("histogram", name, exc)
        else:
            self._slow_record("histogram", instrument, name, value, attributes, True)

    def record_gauge(self, name: str, value: float, attributes: Attributes = None) -> None:
        """Set gauge *name* to *value* (finite, any sign)."""
        instrument = self._lookup(self._gauges, "gauge", name)
        if instrument is not None:
            self._slow_record("gauge", instrument, name, value, attributes, False)

    def record_up_down_counter(
        self, name: str, value: float = 1, attributes: Attributes = None
    ) -> None:
        """Add *value* (finite, any sign) to up-down counter *name*."""
        instrument = self._lookup(self._up_down_counters, "up_down_counter", name)
        if instrument is not None:
            self._slow_record("up_down_counter", instrument, name, value, attributes, False)

    def record_metric(self, name: str, value: float, attributes: Attributes = None) -> None:
        """Record *value* into metric *name*, whatever its kind in the config."""
        spec = self.spec(name)
        if spec is None:
            self._missing("metric", name)
        elif spec.kind == "counter":
            self.record_counter(name, value, attributes)
        elif spec.kind == "histogram":
            self.record_histogram(name, value, attributes)
        elif spec.kind == "gauge":
            self.record_gauge(name, value, attributes)
        else:
            self.record_up_down_counter(name, value, attributes)

    def __repr__(self) -> str:
        enabled = sum(len(d) for d in self._by_kind.values())
        return (
            f"<OTelMetricsClient {self.service_name!r}: {enabled} of "
            f"{len(self._specs)} metrics enabled>"
        )


def _failed(kind: str, name: str, exc: Exception) -> None:
    warn_once(
        logger,
        ("record", name, type(exc).__name__),
        "otel_aspects: recording %s %r failed (%s: %s)",
        kind,
        name,
        type(exc).__name__,
        exc,
    )


def _call(
    kind: str, instrument: Any, name: str, value: int | float, attributes: dict[str, Any]
) -> None:
    try:
        if kind == "histogram":
            instrument.record(value, attributes)
        elif kind == "gauge":
            instrument.set(value, attributes)
        else:
            instrument.add(value, attributes)
    except Exception as exc:
        _failed(kind, name, exc)


def create_metrics_client(
    service_name: str,
    config: MetricsConfig | None = None,
    *,
    meter_provider: MeterProvider | None = None,
) -> OTelMetricsClient:
    """Create the metrics client of *service_name*.

    With ``config=None`` the config is loaded with :func:`load_metrics_config`.

    >>> metrics = create_metrics_client("my_service")          # doctest: +SKIP
    >>> metrics.record_counter("requests_total", 1, {"endpoint": "/api"})  # doctest: +SKIP
    """
    return OTelMetricsClient(service_name, config, meter_provider=meter_provider)
