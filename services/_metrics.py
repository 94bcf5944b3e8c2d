"""The plumbing both services share under their seed-pattern modules.

Each service keeps its own ``utils/otel_metrics.py`` (domain recording functions: the
label sets of the seed's table) and ``core/telemetry_decorators.py`` (its context
managers and decorators); what is the same logic in both lives here once:

- :func:`build_client`: the service's client from its metrics YAML;
- :class:`DomainMetrics`: the base of the domain classes; its
  :meth:`~DomainMetrics.count_and_time` is the "counter always, histogram when a
  duration is given, same labels" step;
- :class:`TimedContext`: ``with`` / ``async with`` over one :func:`otel_aspects.timed` run,
  whose labels are set inside the block (``set_label``) and whose outcome follows the
  library's convention (``set_success``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from opentelemetry.metrics import MeterProvider

from otel_aspects import timed
from otel_aspects.metrics_client import (
    OTelMetricsClient,
    create_metrics_client,
    load_metrics_config,
)
from otel_aspects.timing import Run, Timed
from services._config import config_path

__all__ = ("Clock", "DomainMetrics", "Record", "TimedContext", "build_client")

#: A ``record_func`` of :func:`otel_aspects.timed`: ``(duration_seconds, labels)``.
Record = Callable[[float, dict[str, Any]], None]


def build_client(
    service_name: str, meter_provider: MeterProvider | None = None
) -> OTelMetricsClient:
    """The client of *service_name*, from its YAML (:func:`services._config.config_path`),
    on *meter_provider* (default: the global one)."""
    config = load_metrics_config(service_name, config_path(service_name))
    return create_metrics_client(service_name, config=config, meter_provider=meter_provider)


#: A seconds clock for durations (``time.perf_counter`` when ``None``).
Clock = Callable[[], float]


class DomainMetrics:
    """A service's domain recording functions over one metrics client.

    *clock* is the seconds clock every timed block of the service reads (default
    ``time.perf_counter``): a test gives a scripted one to pin bucket placement."""

    def __init__(self, client: OTelMetricsClient, clock: Clock | None = None) -> None:
        self.client = client
        self.clock = clock

    def count_and_time(
        self,
        counter: str,
        histogram: str,
        attributes: Mapping[str, str],
        duration_seconds: float | None,
    ) -> None:
        """One event: *counter* +1 and, when *duration_seconds* is given, *histogram*,
        both with *attributes*."""
        self.client.record_counter(counter, 1, attributes)
        if duration_seconds is not None:
            self.client.record_histogram(histogram, duration_seconds, attributes)


class TimedContext:
    """``with`` / ``async with`` over one :class:`~otel_aspects.Timed` run whose labels
    start as *labels* and can be changed inside the block (:meth:`_set`)."""

    def __init__(
        self, record: Record, labels: Mapping[str, str] | None = None, clock: Clock | None = None
    ) -> None:
        self._timed: Timed = timed(record_func=record, labels=labels, clock=clock)
        self._run: Run | None = None

    def _set(self, key: str, value: str) -> None:
        if self._run is not None:
            self._run.set_label(key, value)

    def set_success(self, success: bool) -> None:
        """Mark the outcome (an exception still wins: it is always a failure)."""
        if self._run is not None:
            self._run.set_success(success)

    def __enter__(self) -> Any:
        self._run = self._timed.__enter__()
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> Literal[False]:
        self._timed.__exit__(exc_type, exc, tb)
        return False

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: object, exc: BaseException | None, tb: object
    ) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)
