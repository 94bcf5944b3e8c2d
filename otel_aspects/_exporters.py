"""Guarded exporters: an outage costs one WARNING, never an exception or a log flood.

:class:`_GuardedMetricExporter` and :func:`_guarded_log_exporter` wrap the OTLP
exporters.  Inside a guarded export the SDK's per-attempt error and retry lines are
dropped by :class:`_QuietFilter` (only there: other threads log as usual) and kept as
the detail of the outage report; :class:`_OutageTracker` logs one WARNING when exports
start failing and one INFO when they succeed again.  A copy inherited by a forked
child never sends (pid check): the child exports through a provider of its own.

Example::

    exporter = _GuardedMetricExporter(OTLPMetricExporter(endpoint=url), url)
    reader = PeriodicExportingMetricReader(exporter)
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any, Final

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData

__all__ = ("install_quiet_filter", "observed_session")

# The SDK module's logger: users configure one logger for setup and its parts.
_log = logging.getLogger("otel_aspects.sdk")

# Loggers of the OTLP/HTTP exporters: they log every failed attempt.
_OTLP_LOGGERS: Final = (
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.exporter.otlp.common.http",
)


_guard = threading.local()


class _QuietFilter(logging.Filter):
    """Drops the OTLP exporters' per-attempt lines logged inside a guarded export.

    The guarded exporter reports the outage itself, once; the dropped message is
    kept as the detail of that report.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        tracker: _OutageTracker | None = getattr(_guard, "tracker", None)
        if tracker is None:
            return True
        tracker.last_detail = record.getMessage()
        return False


_quiet_filter = _QuietFilter()


def install_quiet_filter() -> None:
    for name in _OTLP_LOGGERS:
        logger = logging.getLogger(name)
        if _quiet_filter not in logger.filters:
            logger.addFilter(_quiet_filter)


def _quote(value: str, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def observed_session(signal: str) -> Any:
    """A ``requests.Session`` whose responses tell the current tracker their status.

    The exporters log a retryable failure without its HTTP status; this hook (the
    public ``hooks["response"]`` of requests) lets the outage WARNING name it, with
    ``Retry-After`` when the collector sent one.  ``None`` -- the exporter builds its
    own session -- when a credential provider variable asks for another session.
    """
    if os.environ.get("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER") or os.environ.get(
        f"OTEL_PYTHON_EXPORTER_OTLP_HTTP_{signal}_CREDENTIAL_PROVIDER"
    ):
        return None
    try:
        import requests
    except ImportError:  # another transport: no status in the WARNING
        return None

    def on_response(response: Any, *args: Any, **kwargs: Any) -> None:
        tracker: _OutageTracker | None = getattr(_guard, "tracker", None)
        if tracker is not None:
            tracker.note_response(int(response.status_code), response.headers.get("Retry-After"))

    session = requests.Session()
    session.hooks["response"].append(on_response)
    return session


class _OutageTracker:
    """Remembers whether exports to one endpoint are failing; logs transitions only."""

    def __init__(self, signal: str, endpoint: str, loss_note: str) -> None:
        self.signal = signal
        self.endpoint = endpoint
        self.loss_note = loss_note
        self.failing = False
        self.failures = 0
        self.outages = 0
        self.last_detail = ""
        self.last_status: int | None = None
        self.last_retry_after: str | None = None

    def note_response(self, status: int, retry_after: str | None) -> None:
        """Called for each HTTP response received inside a guarded export."""
        self.last_status = status
        self.last_retry_after = retry_after

    def _cause(self) -> str:
        detail = self.last_detail or "no detail"
        status = self.last_status
        if status is None or 200 <= status < 300:
            return detail
        try:
            phrase = f" {HTTPStatus(status).phrase}"
        except ValueError:
            phrase = ""
        retry = self.last_retry_after
        after = "" if retry is None else f", Retry-After {_quote(retry)}"
        return f"HTTP {status}{phrase}{after}; {detail}"

    def run(self, export: Callable[[], bool]) -> bool:
        """Run one export with the SDK's own failure lines silenced."""
        self.last_detail = ""
        self.last_status = None
        self.last_retry_after = None
        _guard.tracker = self
        try:
            ok = export()
        except Exception as exc:  # an exporter must never raise into the reader
            ok = False
            self.last_detail = f"{type(exc).__name__}: {exc}"
        finally:
            _guard.tracker = None
        if ok:
            if self.failing:
                _log.info(
                    "otel_aspects: OTLP %s export to %s recovered after %d failed attempt(s)",
                    self.signal,
                    self.endpoint,
                    self.failures,
                )
                self.failing = False
                self.failures = 0
        else:
            self.failures += 1
            if not self.failing:
                self.failing = True
                self.outages += 1
                _log.warning(
                    "otel_aspects: OTLP %s export to %s is failing (%s); %s. "
                    "Further failures are not logged until exports succeed again.",
                    self.signal,
                    self.endpoint,
                    self._cause(),
                    self.loss_note,
                )
        return ok


class _GuardedMetricExporter(MetricExporter):
    """Wraps an OTLP metric exporter: quiet outages, never raises, fork-aware.

    A copy inherited by a forked child never sends: the child exports through
    a provider of its own, and the parent's state must not be counted twice.
    """

    def __init__(self, inner: MetricExporter, endpoint: str) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._pid = os.getpid()
        self.tracker = _OutageTracker(
            "metrics",
            endpoint,
            "recording goes on and, with cumulative temporality, the totals are sent "
            "by the first export that succeeds",
        )

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if os.getpid() != self._pid:
            return MetricExportResult.FAILURE
        ok = self.tracker.run(
            lambda: (
                self._inner.export(metrics_data, timeout_millis=timeout_millis)
                is MetricExportResult.SUCCESS
            )
        )
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return os.getpid() != self._pid or self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if os.getpid() == self._pid:
            self._inner.shutdown(timeout_millis=timeout_millis)


def _guarded_log_exporter(endpoint: str, timeout: float | None) -> Any:
    """An OTLP/HTTP log exporter with the same outage policy as metrics."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

    class _GuardedLogExporter(LogRecordExporter):
        def __init__(self) -> None:
            self._inner = OTLPLogExporter(
                endpoint=endpoint, timeout=timeout, session=observed_session("LOGS")
            )
            self._pid = os.getpid()
            self.tracker = _OutageTracker(
                "logs", endpoint, "log records are dropped while the collector is unreachable"
            )

        def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
            if os.getpid() != self._pid:
                return LogRecordExportResult.FAILURE
            ok = self.tracker.run(
                lambda: self._inner.export(batch) is LogRecordExportResult.SUCCESS
            )
            return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

        def shutdown(self) -> None:
            if os.getpid() == self._pid:
                self._inner.shutdown()  # type: ignore[no-untyped-call]

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return True

    return _GuardedLogExporter()
