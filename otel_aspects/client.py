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
import os
import threading
from collections.abc import Mapping
from typing import Any, TypeAlias

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import Meter, MeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider

from . import bridge, engine
from ._warn import short_repr, warn_once
from .config import (
    INSTRUMENT_NAME_RE,
    MetricKind,
    MetricsConfig,
    MetricSpec,
    as_metrics_config,
    bucket_problem,
    register_config,
)
from .engine import Counter, Gauge, Histogram, Instrument, UpDownCounter

__all__ = ("OTelMetricsClient", "create_metrics_client")

logger = logging.getLogger(__name__)

Attributes: TypeAlias = Mapping[str, Any] | None
#: What ``config=`` accepts: a loaded config, a mapping shaped like the YAML, a path, or
#: ``None`` (load ``<service>.yml`` the usual way); see ``config.as_metrics_config``.
ConfigSource: TypeAlias = MetricsConfig | Mapping[str, Any] | str | os.PathLike[str] | None

#: Names for which "not recorded" was logged at DEBUG, per client, at most.
_MAX_DEBUGGED = 1024


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
        config: ConfigSource = None,
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
        self._provider = meter_provider
        # Where recordings go: the engine's store for this provider (the global one
        # unless a user's SDK provider is given or installed globally), or, for a
        # provider the engine cannot serve, a store that passes everything to its
        # own instruments.
        target = meter_provider if meter_provider is not None else _global_target()
        store = engine.store_for(target)
        self._store = store if store is not None else engine.Store(target, mode=engine.SDK)
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
        if self._store is engine.global_store():
            from .sdk import warn_if_not_set_up  # (sdk imports the engine, not the client)

            warn_if_not_set_up()

    # ------------------------------------------------------------------ introspection

    def spec(self, name: str) -> MetricSpec | None:
        """The spec of metric *name*, or ``None`` if it is not declared."""
        try:
            return self._specs.get(name)
        except Exception:  # an unhashable name, or one whose __hash__ raises
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
            make = _api_factory(meter, spec)
            route_to_sdk = False
            if isinstance(self._store.provider, SdkMeterProvider) and self._store is not (
                engine.global_store()
            ):
                # A user's provider: a View of theirs on this instrument is applied by
                # the SDK itself, so the instrument records through the SDK.
                api = make()
                route_to_sdk = bridge.has_view_for(self._store.provider, api)
                make = lambda: api  # noqa: E731 - the one instrument just made
            instrument = self._store.instrument(
                spec.kind,
                spec.name,
                # The meter's own identity: the SDK's scope for these metrics (the
                # global API's get_meter gives version "", a provider's get_meter None).
                scope=(meter.name, meter.version, meter.schema_url),
                unit=spec.unit,
                description=spec.description,
                buckets=spec.buckets if spec.kind == "histogram" else None,
                max_series=spec.max_series,
                multiprocess=spec.multiprocess,
                api_factory=make,
                route_to_sdk=route_to_sdk,
            )
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
            "otel_aspects: metric %s of %s not recorded (%s)",
            short_repr(name),
            short_repr(self.service_name),
            why,
        )

    def _missing(self, kind: str, name: object) -> None:
        """Explain once why *name* has no instrument of *kind* (never raises)."""
        spec = self.spec(name)  # type: ignore[arg-type]
        try:
            hashable = isinstance(name, str) and hash(name) is not None
        except Exception:  # a str subclass whose __hash__ raises
            hashable = False
        if not hashable:
            warn_once(
                logger,
                ("name-type", type(name).__name__),
                "otel_aspects: metric name must be a str, got %s; nothing recorded",
                short_repr(type(name).__name__),
            )
            return
        assert isinstance(name, str)
        if spec is None:
            self._debug_once(name, "not declared in the config")
        elif spec.kind != kind:
            warn_once(
                logger,
                ("wrong-kind", name, kind),
                "otel_aspects: metric %s is a %s, not a %s; nothing recorded",
                short_repr(name),
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

    def _lookup(self, table: Mapping[str, Any], kind: str, name: object) -> Any:
        try:
            instrument = table.get(name)  # type: ignore[call-overload]
        except Exception:  # an unhashable name, or a str subclass whose __hash__ raises
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
        instrument.add(value, attributes)

    def record_histogram(self, name: str, value: float, attributes: Attributes = None) -> None:
        """Record *value* (finite, non-negative) into histogram *name*."""
        instrument = self._histograms.get(name) if name.__class__ is str else None
        if instrument is None:
            instrument = self._lookup(self._histograms, "histogram", name)
            if instrument is None:
                return
        instrument.record(value, attributes)

    def record_gauge(self, name: str, value: float, attributes: Attributes = None) -> None:
        """Set gauge *name* to *value* (finite, any sign)."""
        instrument = self._lookup(self._gauges, "gauge", name)
        if instrument is not None:
            instrument.set(value, attributes)

    def record_up_down_counter(
        self, name: str, value: float = 1, attributes: Attributes = None
    ) -> None:
        """Add *value* (finite, any sign) to up-down counter *name*."""
        instrument = self._lookup(self._up_down_counters, "up_down_counter", name)
        if instrument is not None:
            instrument.add(value, attributes)

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


def _global_target() -> object:
    """What the global API hands out: our switching provider, the API's proxy, or a
    user's own SDK provider installed with ``metrics.set_meter_provider``."""
    provider = otel_metrics.get_meter_provider()
    return provider if isinstance(provider, SdkMeterProvider) else None


def _api_factory(meter: Meter, spec: MetricSpec) -> Any:
    """A function making the OTel instrument of *spec* on *meter* (the ``sdk`` route)."""
    if spec.kind == "counter":
        return lambda: meter.create_counter(spec.name, spec.unit, spec.description)
    if spec.kind == "histogram":
        return lambda: meter.create_histogram(
            spec.name,
            spec.unit,
            spec.description,
            explicit_bucket_boundaries_advisory=spec.buckets,
        )
    if spec.kind == "gauge":
        return lambda: meter.create_gauge(spec.name, spec.unit, spec.description)
    return lambda: meter.create_up_down_counter(spec.name, spec.unit, spec.description)


def create_metrics_client(
    service_name: str,
    config: ConfigSource = None,
    *,
    meter_provider: MeterProvider | None = None,
) -> OTelMetricsClient:
    """Create the metrics client of *service_name*.

    *config* is a `MetricsConfig`, a mapping shaped like the YAML (validated the same
    way), a path to a YAML file or folder, or ``None``: loaded with
    :func:`load_metrics_config`. Anything else is a ``TypeError``.

    >>> metrics = create_metrics_client("my_service")          # doctest: +SKIP
    >>> metrics.record_counter("requests_total", 1, {"endpoint": "/api"})  # doctest: +SKIP
    """
    return OTelMetricsClient(service_name, config, meter_provider=meter_provider)
