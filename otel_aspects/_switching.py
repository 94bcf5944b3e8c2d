"""The switching provider: the global API provider, whose target can change.

The global OpenTelemetry API accepts a provider only once per process, so the
provider installed there is this one.  Its meters hand out delegating
instruments (one per identity, so bounded) that forward to an instrument of the
current *target* (an SDK ``MeterProvider``, or a no-op provider) and are
re-created when the target changes: ``setup_metrics`` again, ``shutdown_metrics``,
a worker forked after setup.  Listeners registered with :func:`on_switch` are
called with the new target after every switch.

Example::

    provider = switching_provider()
    counter = provider.get_meter("svc").create_counter("hits_total")
    provider._switch(sdk_provider)     # counter now records into sdk_provider
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from opentelemetry.context import Context
from opentelemetry.metrics import (
    CallbackT,
    Counter,
    Histogram,
    Meter,
    MeterProvider,
    NoOpMeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.metrics import _Gauge as Gauge
from opentelemetry.util.types import Attributes

__all__ = ("existing_provider", "on_switch", "reset_after_fork", "switching_provider")

# The SDK module's logger: users configure one logger for setup and its parts.
_log = logging.getLogger("otel_aspects.sdk")

# One lock for every switch; replaced in a forked child (a parent thread may
# have held it at fork time): see reset_after_fork.
_switch_lock = threading.RLock()

InstrumentT = TypeVar("InstrumentT")


class _Delegate(Generic[InstrumentT]):
    """Base of the delegating instruments: forwards to ``_real``, rebuilt by ``_factory``.

    Subclasses add only the recording method of their API class (``add``, ``record``,
    ``set``); observable instruments need none (the SDK calls their callbacks).
    """

    def __init__(self, factory: Callable[[Meter], InstrumentT], meter: Meter) -> None:
        self._factory = factory
        self._real: InstrumentT = factory(meter)

    def _rebind(self, meter: Meter) -> None:
        try:
            self._real = self._factory(meter)
        except Exception as exc:  # an instrument the new SDK refuses
            _log.warning("otel_aspects: cannot re-create instrument (%s); it is now a no-op", exc)
            self._real = self._factory(NoOpMeterProvider().get_meter("otel_aspects"))


class _Counter(_Delegate[Counter], Counter):
    def add(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        self._real.add(amount, attributes, context)


class _UpDownCounter(_Delegate[UpDownCounter], UpDownCounter):
    def add(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        self._real.add(amount, attributes, context)


class _Histogram(_Delegate[Histogram], Histogram):
    def record(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        self._real.record(amount, attributes, context)


class _Gauge(_Delegate[Gauge], Gauge):
    def set(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        self._real.set(amount, attributes, context)


class _ObservableCounter(_Delegate[ObservableCounter], ObservableCounter):
    pass


class _ObservableGauge(_Delegate[ObservableGauge], ObservableGauge):
    pass


class _ObservableUpDownCounter(_Delegate[ObservableUpDownCounter], ObservableUpDownCounter):
    pass


class _SwitchingMeter(Meter):
    """A meter whose instruments follow the switching provider's target."""

    def __init__(
        self,
        name: str,
        version: str | None,
        schema_url: str | None,
        attributes: Attributes,
        real: Meter,
    ) -> None:
        super().__init__(name, version=version, schema_url=schema_url)
        self._attributes = attributes
        self._real = real
        self._instruments: dict[tuple[object, ...], _Delegate[Any]] = {}

    def _rebind(self, real: Meter) -> None:
        self._real = real
        for instrument in self._instruments.values():
            instrument._rebind(real)

    def _get(
        self,
        key: tuple[object, ...],
        make: Callable[[Callable[[Meter], Any], Meter], _Delegate[Any]],
        factory: Callable[[Meter], Any],
    ) -> Any:
        with _switch_lock:
            instrument = self._instruments.get(key)
            if instrument is None:
                instrument = make(factory, self._real)
                self._instruments[key] = instrument
            return instrument

    @staticmethod
    def _key(
        kind: str, name: str, unit: str, description: str, extra: object = None
    ) -> tuple[object, ...]:
        return (kind, name.strip().lower(), unit, description, extra)

    def create_counter(self, name: str, unit: str = "", description: str = "") -> Counter:
        result: Counter = self._get(
            self._key("counter", name, unit, description),
            _Counter,
            lambda m: m.create_counter(name, unit, description),
        )
        return result

    def create_up_down_counter(
        self, name: str, unit: str = "", description: str = ""
    ) -> UpDownCounter:
        result: UpDownCounter = self._get(
            self._key("up_down_counter", name, unit, description),
            _UpDownCounter,
            lambda m: m.create_up_down_counter(name, unit, description),
        )
        return result

    def create_histogram(
        self,
        name: str,
        unit: str = "",
        description: str = "",
        *,
        explicit_bucket_boundaries_advisory: Sequence[float] | None = None,
    ) -> Histogram:
        buckets = (
            None
            if explicit_bucket_boundaries_advisory is None
            else tuple(explicit_bucket_boundaries_advisory)
        )
        result: Histogram = self._get(
            self._key("histogram", name, unit, description, buckets),
            _Histogram,
            lambda m: m.create_histogram(
                name, unit, description, explicit_bucket_boundaries_advisory=buckets
            ),
        )
        return result

    def create_gauge(self, name: str, unit: str = "", description: str = "") -> Gauge:
        result: Gauge = self._get(
            self._key("gauge", name, unit, description),
            _Gauge,
            lambda m: m.create_gauge(name, unit, description),
        )
        return result

    def create_observable_counter(
        self,
        name: str,
        callbacks: Sequence[CallbackT] | None = None,
        unit: str = "",
        description: str = "",
    ) -> ObservableCounter:
        cbs = tuple(callbacks or ())
        result: ObservableCounter = self._get(
            self._key("observable_counter", name, unit, description, cbs),
            _ObservableCounter,
            lambda m: m.create_observable_counter(name, cbs, unit, description),
        )
        return result

    def create_observable_gauge(
        self,
        name: str,
        callbacks: Sequence[CallbackT] | None = None,
        unit: str = "",
        description: str = "",
    ) -> ObservableGauge:
        cbs = tuple(callbacks or ())
        result: ObservableGauge = self._get(
            self._key("observable_gauge", name, unit, description, cbs),
            _ObservableGauge,
            lambda m: m.create_observable_gauge(name, cbs, unit, description),
        )
        return result

    def create_observable_up_down_counter(
        self,
        name: str,
        callbacks: Sequence[CallbackT] | None = None,
        unit: str = "",
        description: str = "",
    ) -> ObservableUpDownCounter:
        cbs = tuple(callbacks or ())
        result: ObservableUpDownCounter = self._get(
            self._key("observable_up_down_counter", name, unit, description, cbs),
            _ObservableUpDownCounter,
            lambda m: m.create_observable_up_down_counter(name, cbs, unit, description),
        )
        return result


class _SwitchingMeterProvider(MeterProvider):
    """The provider installed as the global one; its target can be swapped."""

    def __init__(self) -> None:
        self._target: MeterProvider = NoOpMeterProvider()
        self._meters: dict[tuple[object, ...], _SwitchingMeter] = {}

    @property
    def target(self) -> MeterProvider:
        """The provider the meters currently delegate to."""
        return self._target

    def get_meter(
        self,
        name: str,
        version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> Meter:
        key = (name, version, schema_url, repr(sorted((attributes or {}).items())))
        with _switch_lock:
            meter = self._meters.get(key)
            if meter is None:
                real = self._target.get_meter(name, version, schema_url, attributes)
                meter = _SwitchingMeter(name, version, schema_url, attributes, real)
                self._meters[key] = meter
            return meter

    def _switch(self, target: MeterProvider) -> None:
        with _switch_lock:
            self._target = target
            for meter in self._meters.values():
                real = target.get_meter(
                    meter.name, meter.version, meter.schema_url, meter._attributes
                )
                meter._rebind(real)
            for listener in tuple(_switch_listeners):
                listener(target)


#: Called with the new target after every switch (setup, shutdown, fork).
_switch_listeners: list[Callable[[MeterProvider], None]] = []


def on_switch(listener: Callable[[MeterProvider], None]) -> None:
    """Call *listener(target)* after every change of the global provider's target.

    The target is the SDK ``MeterProvider`` now behind the global API provider, or a
    no-op provider (after shutdown, or when disabled).  Listeners must not raise.
    """
    _switch_listeners.append(listener)


_provider: _SwitchingMeterProvider | None = None


def switching_provider() -> _SwitchingMeterProvider:
    """The one switching provider of this process (created at first use)."""
    global _provider
    with _switch_lock:
        if _provider is None:
            _provider = _SwitchingMeterProvider()
        return _provider


def existing_provider() -> _SwitchingMeterProvider | None:
    """The switching provider if it was created, else ``None``."""
    return _provider


def reset_after_fork() -> None:
    """In a forked child: a fresh lock (a parent thread may have held the old one)."""
    global _switch_lock
    _switch_lock = threading.RLock()
