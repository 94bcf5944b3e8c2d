"""OpenTelemetry SDK setup and teardown: one call at start-up, nothing to forget at exit.

:func:`setup_metrics` builds an SDK ``MeterProvider`` with the readers the
environment asks for (OTLP/HTTP, Prometheus, console, or -- when nothing is
configured -- an in-memory reader), Views from the YAML configs loaded so far,
and a resource carrying ``service.name`` and a per-process ``service.instance.id``.

The global OpenTelemetry API accepts a provider only once per process, so the
global provider installed here is a small *switching* provider of our own
(:mod:`otel_aspects._switching`).  It hands out meters and instruments that
delegate to the current SDK provider; the target is swapped when
``setup_metrics`` is called again, after ``shutdown_metrics`` (to a no-op
provider), and in a worker process forked after setup (to a fresh SDK provider
with empty aggregation state and a new ``service.instance.id``).  Instruments
obtained before any swap keep working.  The exporters' outage policy lives in
:mod:`otel_aspects._exporters`; this module holds the plan (what was asked),
the build (what was made of it), setup, shutdown and the fork handler.

Exports never slow down or break the service: recording only aggregates in
memory, the OTLP exporter runs in the SDK's background thread with a short
timeout, and an unreachable collector gives one WARNING per outage and one INFO
line when exports succeed again.  With cumulative temporality (the default) the
first successful export after an outage carries the full totals.

Example::

    from otel_aspects import setup_metrics, shutdown_metrics

    setup = setup_metrics("my_service")            # exporters from OTEL_* variables
    ...
    shutdown_metrics()                              # optional: also runs at exit
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import os
import threading
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import metrics as metrics_api
from opentelemetry.metrics import MeterProvider, NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    InMemoryMetricReader,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from . import _exit, _switching, multiprocess
from . import config as config_module
from . import engine as engine_module
from ._exporters import (
    _guarded_log_exporter,
    _GuardedMetricExporter,
    install_quiet_filter,
    observed_session,
)
from ._switching import _SwitchingMeterProvider, on_switch
from ._warn import warn_once
from .config import MetricsConfig

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider

__all__ = (
    "DEFAULT_ENGINE",
    "DEFAULT_EXIT_TIMEOUT_MILLIS",
    "DEFAULT_OTLP_ENDPOINT",
    "DEFAULT_OTLP_TIMEOUT_SECONDS",
    "DEFAULT_PROMETHEUS_HOST",
    "DEFAULT_PROMETHEUS_PORT",
    "MAX_OTLP_TIMEOUT_SECONDS",
    "MetricsCapture",
    "MetricsSetup",
    "capture_metrics",
    "current_setup",
    "on_switch",
    "setup_metrics",
    "shutdown_metrics",
    "warn_if_not_set_up",
)

_INF = float("inf")
_log = logging.getLogger("otel_aspects.sdk")

#: The seed's collector address, used when neither the argument nor an
#: ``OTEL_EXPORTER_OTLP_*ENDPOINT`` variable names one.
DEFAULT_OTLP_ENDPOINT: Final = "http://otel-collector:4318"
#: OTLP/HTTP timeout (seconds, per export including retries) when neither
#: ``OTEL_EXPORTER_OTLP_METRICS_TIMEOUT`` nor ``OTEL_EXPORTER_OTLP_TIMEOUT`` is set.
DEFAULT_OTLP_TIMEOUT_SECONDS: Final = 2.0
#: A timeout variable above this many seconds is a mistake (most likely the spec's
#: milliseconds, which the Python exporter reads as seconds): one ERROR, a sane value.
MAX_OTLP_TIMEOUT_SECONDS: Final = 60.0
#: How long the exit flush may take: at interpreter exit, on SIGTERM/SIGHUP, and on
#: the way out of a multiprocessing worker (``setup_metrics(exit_timeout_millis=)``).
DEFAULT_EXIT_TIMEOUT_MILLIS: Final = 5_000.0
#: Loopback only unless ``OTEL_PROMETHEUS_HOST`` / ``prometheus_host`` says otherwise.
DEFAULT_PROMETHEUS_HOST: Final = "127.0.0.1"
DEFAULT_PROMETHEUS_PORT: Final = 9464

_KNOWN_EXPORTERS: Final = ("otlp", "prometheus", "console", "none")
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
#: Where client recordings go: ``"engine"`` (the pre-aggregating engine) or ``"sdk"``
#: (straight to SDK instruments); ``setup_metrics(engine=)`` or ``OTEL_ASPECTS_ENGINE``.
DEFAULT_ENGINE: Final = "engine"
ENGINES: Final = ("engine", "sdk")

ReaderSpec = MetricReader | Callable[[], MetricReader]
"""An extra reader: an instance, or a factory (rebuilt in forked workers)."""


class _NotOpenTelemetry(logging.Filter):
    """Keeps the SDK's own log lines out of the pipeline that ships logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith("opentelemetry")


# --------------------------------------------------------------------------
# Plan (what was asked) and installation (what was built from it).
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    service_name: str
    exporters: tuple[str, ...]
    use_memory: bool
    metrics_endpoint: str
    logs_endpoint: str
    otlp_timeout: float
    logs_timeout: float
    interval_millis: float | None
    prometheus_host: str
    prometheus_port: int
    extra_readers: tuple[ReaderSpec, ...]
    resource_attributes: Mapping[str, Any]
    enable_metrics: bool
    enable_logs: bool
    engine: str = DEFAULT_ENGINE
    flush_on_signals: bool = True
    exit_timeout_millis: float = DEFAULT_EXIT_TIMEOUT_MILLIS
    #: False: the Prometheus reader fills its registry, no server binds a port
    #: (``otel_aspects.exposition`` serves it on the application's own port).
    prometheus_server: bool = True
    #: Multi-process mode: the checked folder, and whether this process exports it.
    folder: multiprocess.Folder | None = None
    aggregate: bool = False


@dataclass
class _Installation:
    instance_id: str
    resource: Resource
    meter_provider: SdkMeterProvider | None = None
    readers: tuple[MetricReader, ...] = ()
    memory_reader: InMemoryMetricReader | None = None
    otlp_exporter: _GuardedMetricExporter | None = None
    prometheus_server: Any = None
    prometheus_port: int | None = None
    prometheus_registry: Any = None
    logger_provider: LoggerProvider | None = None
    log_handler: logging.Handler | None = None
    #: Multi-process mode, in the exporting process: the folder's collector.
    collector: multiprocess.Collector | None = None


class MetricsSetup:
    """Handle on what :func:`setup_metrics` installed; stays valid in forked workers.

    ``meter_provider`` is the global switching provider: pass it to clients that
    should not use the global API (``create_metrics_client(..., meter_provider=...)``).
    In a worker forked after setup the same handle describes the worker's own
    provider (new ``service_instance_id``, new ``memory_reader``).

    Example::

        setup = setup_metrics("svc", exporters=[])     # in-memory reader only
        counter = setup.meter_provider.get_meter("svc").create_counter("hits_total")
        counter.add(1)
        data = setup.memory_reader.get_metrics_data()  # when no exporter is configured
    """

    def __init__(self, plan: _Plan | None, installation: _Installation | None) -> None:
        self._plan = plan
        self._installation = installation
        self._active = installation is not None

    @property
    def active(self) -> bool:
        """``False`` when disabled (``OTEL_SDK_DISABLED``) or after shutdown/replacement."""
        return self._active

    @property
    def engine(self) -> str:
        """Where client recordings go: ``"engine"`` (pre-aggregated) or ``"sdk"``."""
        return self._plan.engine if self._plan else DEFAULT_ENGINE

    def _deactivate(self) -> _Installation | None:
        """Mark this setup replaced or shut down; the installation to tear down, if any.

        Returns ``None`` when it was not active (already shut down, or disabled), so
        that a caller never tears one installation down twice.
        """
        if not self._active:
            return None
        self._active = False
        return self._installation

    def _replace_installation(self, installation: _Installation) -> None:
        """Describe *installation* from now on (a forked worker's rebuilt provider)."""
        self._installation = installation

    @property
    def service_name(self) -> str | None:
        """The ``service.name`` of the resource, or ``None`` when disabled."""
        return self._plan.service_name if self._plan else None

    @property
    def meter_provider(self) -> MeterProvider:
        """The global switching provider (a no-op provider when disabled)."""
        if self._installation is None:
            return NoOpMeterProvider()
        return _provider()

    @property
    def sdk_meter_provider(self) -> SdkMeterProvider | None:
        """The SDK provider currently behind :attr:`meter_provider`."""
        return self._installation.meter_provider if self._installation else None

    @property
    def readers(self) -> tuple[MetricReader, ...]:
        """Every reader attached to the SDK provider."""
        return self._installation.readers if self._installation else ()

    @property
    def memory_reader(self) -> InMemoryMetricReader | None:
        """The embedded default reader, present only when no exporter is configured."""
        return self._installation.memory_reader if self._installation else None

    @property
    def prometheus_port(self) -> int | None:
        """The port the Prometheus endpoint is bound to, or ``None``."""
        return self._installation.prometheus_port if self._installation else None

    @property
    def prometheus_registry(self) -> Any:
        """The ``prometheus_client.CollectorRegistry`` the Prometheus reader fills, or ``None``.

        Present whenever ``prometheus`` is among the exporters, with or without a server
        of our own (``prometheus_server=False``); :mod:`otel_aspects.exposition` renders it
        on the application's own port.  Rendering it collects from the SDK.
        """
        return self._installation.prometheus_registry if self._installation else None

    @property
    def exporters(self) -> tuple[str, ...]:
        """The exporter names in use (``"memory"`` for the embedded default)."""
        if self._plan is None or self._installation is None:
            return ()
        return self._plan.exporters + (("memory",) if self._plan.use_memory else ())

    @property
    def otlp_endpoint(self) -> str | None:
        """The OTLP/HTTP metrics URL, when ``otlp`` is among the exporters."""
        if self._plan is None or "otlp" not in self._plan.exporters:
            return None
        return self._plan.metrics_endpoint

    @property
    def resource(self) -> Resource | None:
        """The SDK resource (``service.name``, ``service.instance.id``, ...)."""
        return self._installation.resource if self._installation else None

    @property
    def service_instance_id(self) -> str | None:
        """This process's ``service.instance.id`` (a uuid4, new in each forked worker)."""
        return self._installation.instance_id if self._installation else None

    @property
    def multiprocess_dir(self) -> str | None:
        """The multi-process folder this process records into, or ``None``."""
        folder = self.multiprocess_folder
        return str(folder.path) if folder is not None else None

    @property
    def multiprocess_folder(self) -> multiprocess.Folder | None:
        """The checked multi-process folder (its service and instance id), or ``None``."""
        return self._plan.folder if self._plan else None

    @property
    def exports_folder(self) -> bool:
        """Whether this process exports the multi-process folder's total (``aggregate=True``)."""
        return bool(self._plan and self._plan.aggregate)

    def compact(self, *, background: bool = False) -> int:
        """Fold dead processes' files into the folder's archive now (the exporting
        process of multi-process mode does it every few seconds anyway); how many.

        *background*: have the exporter's compaction thread do it at once, and return 0
        without waiting (gunicorn's ``child_exit`` runs in the master's loop).
        """
        inst = self._installation
        if inst is None or inst.collector is None or not self._active:
            return 0
        if background:
            inst.collector.compact_soon()
            return 0
        return inst.collector.compact_now(wait=True)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Collect and export now (metrics and logs); ``True`` when nothing timed out.

        Returns within about *timeout_millis*, whatever the exporter's own timeout
        (a collector that accepts connections and never answers cannot hold it).
        """
        inst = self._installation
        if inst is None or not self._active:
            return True

        def flush() -> bool:
            ok = True
            if inst.meter_provider is not None:
                ok = inst.meter_provider.force_flush(timeout_millis)
            if inst.logger_provider is not None:
                ok = inst.logger_provider.force_flush(int(timeout_millis)) and ok
            return ok

        return _bounded("force_flush", flush, timeout_millis)

    def __repr__(self) -> str:
        return (
            f"MetricsSetup(service_name={self.service_name!r}, active={self.active}, "
            f"exporters={self.exporters!r}, prometheus_port={self.prometheus_port!r})"
        )


# --------------------------------------------------------------------------
# Module state
# --------------------------------------------------------------------------


class _State:
    current: MetricsSetup | None = None
    atexit_registered = False
    ever_set_up = False
    global_owned = False


_state = _State()
_setup_lock = threading.RLock()


def _provider() -> _SwitchingMeterProvider:
    provider = _switching.switching_provider()
    engine_module.use_as_global(provider)
    return provider


def _switch_existing(target: MeterProvider) -> None:
    """Switch the global provider's target, if the switching provider exists."""
    provider = _switching.existing_provider()
    if provider is not None:
        provider._switch(target)


def current_setup() -> MetricsSetup | None:
    """The active :class:`MetricsSetup`, or ``None`` before setup and after shutdown.

    Example::

        if current_setup() is None:
            setup_metrics("svc")
    """
    setup = _state.current
    return setup if setup is not None and setup.active else None


# --------------------------------------------------------------------------
# Resolution of arguments and environment
# --------------------------------------------------------------------------


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _split_names(value: str | Iterable[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip().lower() for item in items if item.strip()]


_PROTOCOLS: Final = ("http/protobuf", "grpc", "http/json")


def _check_protocol(signal: str, endpoint: str, reported: set[str]) -> None:
    """``OTEL_EXPORTER_OTLP_[<SIGNAL>_]PROTOCOL``: only http/protobuf is sent.

    Anything else gets one ERROR (per variable and setup) saying that
    http/protobuf is sent instead, rather than being silently ignored.
    """
    name = f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"
    raw = _env(name)
    if not raw:
        name = "OTEL_EXPORTER_OTLP_PROTOCOL"
        raw = _env(name)
    if not raw or raw.lower() == "http/protobuf" or name in reported:
        return
    reported.add(name)
    known = raw.lower() in _PROTOCOLS
    _log.error(
        "otel_aspects: %s=%s is %s: otel_aspects exports OTLP over http/protobuf only, so "
        "it sends http/protobuf to %s (a collector's OTLP/HTTP port is 4318, its gRPC port "
        "4317). Set %s=http/protobuf, or unset it, to silence this.",
        name,
        _quote(raw),
        "not supported" if known else f"not a known protocol ({', '.join(_PROTOCOLS)})",
        endpoint,
        name,
    )


def _resolve_exporters(
    exporters: str | Iterable[str] | None, otlp_endpoint: str | None
) -> tuple[tuple[str, ...], bool]:
    """Return (exporter names, use the in-memory default)."""
    configured = True
    if exporters is not None:
        names = _split_names(exporters)
        unknown = [n for n in names if n not in _KNOWN_EXPORTERS]
        if unknown:
            raise ValueError(
                f"setup_metrics: unknown exporter(s) {unknown}; "
                f"use any of {', '.join(_KNOWN_EXPORTERS)}"
            )
    elif env := _env("OTEL_METRICS_EXPORTER"):
        names = []
        unknown = []
        for name in _split_names(env):
            if name in _KNOWN_EXPORTERS:
                names.append(name)
            else:
                unknown.append(name)
        if unknown:
            # A typo must not end with no exporter at all: an OTLP destination that is
            # configured still gets OTLP (the unknown name was most likely meant as it).
            endpoint = otlp_endpoint or _otlp_endpoint_env("METRICS")
            fallback = endpoint and "otlp" not in names and "none" not in names
            if fallback:
                names.append("otlp")
            _log.error(
                "otel_aspects: OTEL_METRICS_EXPORTER=%s names unknown exporter(s) %s; ignored "
                "(use any of %s)%s",
                _quote(env),
                ", ".join(_quote(n, 40) for n in unknown[:5]),
                ", ".join(_KNOWN_EXPORTERS),
                f"; exporting with {', '.join(names)}" if names else "",
            )
            configured = bool(names)
    elif otlp_endpoint or _otlp_endpoint_env("METRICS"):
        # An OTLP destination given by argument or the standard variables means OTLP,
        # as OpenTelemetry's own default exporter is otlp.
        names = ["otlp"]
    else:
        names = []
        configured = False
    if _env("OTEL_PROMETHEUS_ENABLED").lower() in _TRUE:
        names.append("prometheus")
        configured = True
    result = tuple(dict.fromkeys(n for n in names if n != "none"))
    return result, not configured


def _otlp_endpoint_env(signal: str) -> str:
    """The OTLP endpoint the standard variables give for *signal*, or ``""``."""
    return _env(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_ENDPOINT")


def _resolve_endpoints(otlp_endpoint: str | None) -> tuple[str, str]:
    """(metrics URL, logs URL)."""
    if otlp_endpoint:
        base = otlp_endpoint.rstrip("/")
        for suffix in ("/v1/metrics", "/v1/logs"):
            base = base.removesuffix(suffix)
        return f"{base}/v1/metrics", f"{base}/v1/logs"
    base = (_env("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_OTLP_ENDPOINT).rstrip("/")
    metrics = _env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or f"{base}/v1/metrics"
    logs = _env("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") or f"{base}/v1/logs"
    return metrics, logs


def _resolve_prometheus(host: str | None, port: int | None) -> tuple[str, int]:
    host = host or _env("OTEL_PROMETHEUS_HOST") or DEFAULT_PROMETHEUS_HOST
    if port is not None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(
                f"setup_metrics: prometheus_port={port!r} is not a port number; "
                "use 0 to 65535 (0 picks a free port)"
            )
        return host, port
    raw = _env("OTEL_PROMETHEUS_PORT")
    if not raw:
        return host, DEFAULT_PROMETHEUS_PORT
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        _log.error(
            "otel_aspects: OTEL_PROMETHEUS_PORT=%r is not a port number (0 to 65535, 0 picks "
            "a free port); using %d",
            raw,
            DEFAULT_PROMETHEUS_PORT,
        )
        port = DEFAULT_PROMETHEUS_PORT
    return host, port


def _resolve_interval(millis: float | None) -> float | None:
    """The export interval: the argument (checked), else ``OTEL_METRIC_EXPORT_INTERVAL``.

    ``None`` leaves the SDK's default.  A bad variable is logged and replaced by 60000.
    """
    if millis is not None:
        if isinstance(millis, bool) or not isinstance(millis, int | float) or not 0 < millis < _INF:
            raise ValueError(
                f"setup_metrics: export_interval_millis={millis!r} must be a positive number "
                "of milliseconds, e.g. 60000"
            )
        return float(millis)
    raw = _env("OTEL_METRIC_EXPORT_INTERVAL")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < _INF:
        _log.error(
            "otel_aspects: OTEL_METRIC_EXPORT_INTERVAL=%r is not a positive number of "
            "milliseconds; using the default (60000)",
            raw,
        )
        return 60_000.0  # explicit: the SDK would read the bad variable again and raise
    return value


def _resolve_engine(engine: str | None) -> str:
    """``"engine"`` or ``"sdk"``: the argument (checked), else ``OTEL_ASPECTS_ENGINE``."""
    if engine is not None:
        if engine not in ENGINES:
            raise ValueError(
                f"setup_metrics: engine={_quote(engine)} is not one of "
                f"{', '.join(map(repr, ENGINES))}"
            )
        return engine
    raw = _env("OTEL_ASPECTS_ENGINE")
    if not raw:
        return DEFAULT_ENGINE
    if raw.lower() in ENGINES:
        return raw.lower()
    _log.error(
        "otel_aspects: OTEL_ASPECTS_ENGINE=%s is not one of %s; using %r",
        _quote(raw),
        ", ".join(map(repr, ENGINES)),
        DEFAULT_ENGINE,
    )
    return DEFAULT_ENGINE


def _quote(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to about *limit* characters for a log line or an error."""
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _resolve_otlp_timeout(signal: str, reported: set[str]) -> float:
    """Seconds per OTLP export: ``OTEL_EXPORTER_OTLP_<SIGNAL>_TIMEOUT``, else the generic one.

    Read in seconds, as the Python exporter does.  A value that is not a positive
    number, or more than :data:`MAX_OTLP_TIMEOUT_SECONDS`, is reported once (per
    variable in *reported*) and replaced: a value of 1000 or more is taken as the
    spec's milliseconds, anything else too large as the maximum.
    """
    name = f"OTEL_EXPORTER_OTLP_{signal}_TIMEOUT"
    raw = _env(name)
    if not raw:
        name = "OTEL_EXPORTER_OTLP_TIMEOUT"
        raw = _env(name)
    if not raw:
        return DEFAULT_OTLP_TIMEOUT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if 0 < value <= MAX_OTLP_TIMEOUT_SECONDS:
        return value
    if 0 < value < _INF:
        sane = value / 1000 if value >= 1000 else MAX_OTLP_TIMEOUT_SECONDS
        sane = min(sane, MAX_OTLP_TIMEOUT_SECONDS)
        why = (
            f"would be {value:g} seconds per export: the Python OTLP exporter reads it in "
            "seconds, though the OpenTelemetry spec says milliseconds"
        )
    else:
        sane = DEFAULT_OTLP_TIMEOUT_SECONDS
        why = "is not a positive number of seconds"
    if name not in reported:
        reported.add(name)
        _log.error("otel_aspects: %s=%s %s; using %g s", name, _quote(raw), why, sane)
    return sane


def _resolve_exit_timeout(millis: float | None) -> float:
    if millis is None:
        return DEFAULT_EXIT_TIMEOUT_MILLIS
    if isinstance(millis, bool) or not isinstance(millis, int | float) or not 0 < millis < _INF:
        raise ValueError(
            f"setup_metrics: exit_timeout_millis={_quote(millis)} must be a positive number "
            "of milliseconds, e.g. 5000"
        )
    return float(millis)


_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _resolve_flush_on_signals(flag: bool | None) -> bool:
    """The argument, else ``OTEL_ASPECTS_FLUSH_ON_SIGNALS`` (default on)."""
    if flag is not None:
        return bool(flag)
    raw = _env("OTEL_ASPECTS_FLUSH_ON_SIGNALS")
    if not raw or raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    _log.error(
        "otel_aspects: OTEL_ASPECTS_FLUSH_ON_SIGNALS=%s is not true or false; flushing on "
        "SIGTERM/SIGHUP (the default)",
        _quote(raw),
    )
    return True


def _check_prometheus_available() -> None:
    """Fail at configuration time, before anything running is touched."""
    try:
        import opentelemetry.exporter.prometheus  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "otel_aspects: the Prometheus exporter is an optional extra; install it with "
            "pip install 'otel-aspects[prometheus]' (package opentelemetry-exporter-prometheus), "
            "or remove 'prometheus' from OTEL_METRICS_EXPORTER / OTEL_PROMETHEUS_ENABLED"
        ) from exc


def _config_after_setup(config: MetricsConfig) -> None:
    """Warn once when a config whose ``max_series`` needs a View arrives after setup.

    Only with ``engine="sdk"``: there ``max_series`` is a View, built at setup.
    """
    setup = _state.current
    if setup is None or not setup.active or setup.engine != "sdk":
        return  # the engine applies max_series itself, whenever the config arrives
    capped = [s.name for s in config.metrics.values() if s.capture and s.max_series is not None]
    if capped:
        warn_once(
            _log,
            ("config-after-setup", config.service_name),
            "otel_aspects: the metrics config of %r was loaded after setup_metrics, so its "
            "max_series limits (%s) are not applied (buckets are). Load the config or create "
            "the client before calling setup_metrics, or call setup_metrics again.",
            config.service_name,
            ", ".join(capped),
        )


config_module.on_config_registered(_config_after_setup)


def _views() -> list[View]:
    """One View per configured metric that has ``max_series`` or ``buckets``.

    A single View per instrument: two matching Views would make two streams.
    Each View matches the instrument name within its service's meter only.
    """
    views: dict[tuple[str, str], View] = {}
    for config in config_module.loaded_configs():
        for spec in config.metrics.values():
            buckets = spec.buckets if spec.kind == "histogram" else None
            if spec.max_series is None and buckets is None:
                continue
            # Scoped to the service's meter: two services in one process may declare
            # the same metric name (the registry and the auth server both have
            # auth_requests_total), and an unscoped View would match both.
            views[config.service_name, spec.name] = View(
                instrument_name=spec.name,
                meter_name=config.service_name,
                aggregation=ExplicitBucketHistogramAggregation(tuple(buckets))
                if buckets is not None
                else None,
                aggregation_cardinality_limit=spec.max_series,
            )
    return list(views.values())


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------


def _make_resource(plan: _Plan, instance_id: str) -> Resource:
    attributes: dict[str, Any] = dict(plan.resource_attributes)
    attributes["service.name"] = plan.service_name
    attributes["service.instance.id"] = instance_id
    return Resource.create(attributes)


def _prometheus_reader(inst: _Installation, readers: list[MetricReader]) -> Any:
    """A Prometheus reader on a private registry (``inst.prometheus_registry``)."""
    _check_prometheus_available()
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=True)
    readers.append(PrometheusMetricReader(registry=registry))
    inst.prometheus_registry = registry
    return registry


def _start_prometheus(plan: _Plan, inst: _Installation, readers: list[MetricReader]) -> None:
    _check_prometheus_available()
    from prometheus_client import CollectorRegistry

    from ._prometheus import start_server

    if not plan.prometheus_server:  # served by otel_aspects.exposition on the app's port
        _prometheus_reader(inst, readers)
        return
    registry = CollectorRegistry(auto_describe=True)
    try:
        server, _thread = start_server(plan.prometheus_host, plan.prometheus_port, registry)
    except (OSError, OverflowError) as exc:  # taken, not permitted, bad host or port
        others = [n for n in plan.exporters if n != "prometheus"]
        _log.error(
            "otel_aspects: cannot serve Prometheus metrics on %s:%d (%s); set "
            "OTEL_PROMETHEUS_PORT (or prometheus_port=) to a free port, or 0 to pick one. "
            "The service keeps running; %s. Several workers of one server (uvicorn "
            "--workers, gunicorn) serve one port with multi-process mode "
            "(OTEL_ASPECTS_MULTIPROCESS_DIR; README, 'Running under gunicorn / uvicorn workers')",
            plan.prometheus_host,
            plan.prometheus_port,
            exc,
            f"its metrics still go to {', '.join(others)}"
            if others
            else "it has no other exporter, so this process's metrics are not exported",
        )
        return
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    readers.append(PrometheusMetricReader(registry=registry))
    inst.prometheus_registry = registry
    inst.prometheus_server = server
    inst.prometheus_port = int(server.server_address[1])


def _build(
    plan: _Plan, instance_id: str, *, in_child: bool = False, parent: Resource | None = None
) -> _Installation:
    if parent is None:
        resource = _make_resource(plan, instance_id)
    else:
        # Resource.create runs detectors on a thread pool: not in an at-fork handler.
        resource = parent.merge(Resource({"service.instance.id": instance_id}))
    inst = _Installation(instance_id=instance_id, resource=resource)
    if plan.enable_metrics:
        readers: list[MetricReader] = []
        if plan.use_memory:
            inst.memory_reader = InMemoryMetricReader()
            readers.append(inst.memory_reader)
        if "otlp" in plan.exporters:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )

            install_quiet_filter()
            inst.otlp_exporter = _GuardedMetricExporter(
                OTLPMetricExporter(
                    endpoint=plan.metrics_endpoint,
                    timeout=plan.otlp_timeout,
                    session=observed_session("METRICS"),
                ),
                plan.metrics_endpoint,
            )
            readers.append(
                PeriodicExportingMetricReader(
                    inst.otlp_exporter, export_interval_millis=plan.interval_millis
                )
            )
        if "console" in plan.exporters:
            readers.append(
                PeriodicExportingMetricReader(
                    ConsoleMetricExporter(), export_interval_millis=plan.interval_millis
                )
            )
        if "prometheus" in plan.exporters:
            if plan.folder is not None and (in_child or not plan.aggregate):
                _log.info(
                    "otel_aspects: process %d records into the multi-process folder %s and "
                    "does not serve Prometheus itself; the exporting process does "
                    "(otel_aspects.multiprocess.serve_metrics, the gunicorn hook, or "
                    "otel-aspects serve-metrics)",
                    os.getpid(),
                    plan.folder.path,
                )
            elif in_child and plan.prometheus_server and plan.prometheus_port != 0:
                _log.info(
                    "otel_aspects: forked worker %d does not serve Prometheus on fixed port %d "
                    "(the parent holds it); use OTLP or OTEL_PROMETHEUS_PORT=0 for workers",
                    os.getpid(),
                    plan.prometheus_port,
                )
            else:
                _start_prometheus(plan, inst, readers)
        for spec in plan.extra_readers:
            if isinstance(spec, MetricReader):
                if in_child:
                    _log.warning(
                        "otel_aspects: extra reader %r was given as an instance and cannot "
                        "be rebuilt in forked worker %d; pass a factory to keep it",
                        spec,
                        os.getpid(),
                    )
                    continue
                readers.append(spec)
            else:
                readers.append(spec())
        inst.readers = tuple(readers)
        try:
            inst.meter_provider = SdkMeterProvider(
                metric_readers=inst.readers,
                resource=inst.resource,
                # The engine applies buckets and max_series itself; the Views serve the
                # instruments the SDK records (engine="sdk", a meter's raw instruments).
                views=_views(),
                shutdown_on_exit=False,
            )
        except BaseException:
            _discard(inst)
            raise
    if plan.enable_logs:
        try:
            _build_logs(plan, inst)
        except BaseException:
            _discard(inst)
            raise
    return inst


def _discard(inst: _Installation) -> None:
    """Stop what a failed build already started: reader threads, the Prometheus server."""
    for reader in inst.readers:
        try:
            reader.shutdown(timeout_millis=0)
        except Exception:  # a reader never registered may refuse; it is dropped anyway
            _log.debug("otel_aspects: discarding reader %r failed", reader, exc_info=True)
    if inst.meter_provider is not None:
        inst.meter_provider.shutdown(timeout_millis=0)
    _close_prometheus(inst)


def _close_prometheus(inst: _Installation) -> None:
    """Stop serving and free the port (in the process that started the server)."""
    if inst.prometheus_server is not None:
        inst.prometheus_server.shutdown()
        inst.prometheus_server.server_close()
        inst.prometheus_server = None


def _build_logs(plan: _Plan, inst: _Installation) -> None:
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    install_quiet_filter()
    provider = LoggerProvider(resource=inst.resource, shutdown_on_exit=False)
    provider.add_log_record_processor(
        BatchLogRecordProcessor(_guarded_log_exporter(plan.logs_endpoint, plan.logs_timeout))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(level=logging.NOTSET, logger_provider=provider)
    handler.addFilter(_NotOpenTelemetry())
    logging.getLogger().addHandler(handler)
    inst.logger_provider = provider
    inst.log_handler = handler


def _bounded(what: str, work: Callable[[], bool], timeout_millis: float) -> bool:
    """Run *work* in a daemon thread and wait at most *timeout_millis* for it.

    The OTLP exporters ignore the timeout they are given (theirs comes from
    ``OTEL_EXPORTER_OTLP_TIMEOUT``, and a collector that accepts a connection and
    never answers holds a request for that long, per retry): the bound is kept
    here.  A *work* still running afterwards is abandoned (a daemon thread never
    holds the process up).  Returns ``work()``'s result, ``False`` on timeout.
    """
    result: list[bool] = []

    def run() -> None:
        try:
            result.append(bool(work()))
        except Exception:  # reported here: the caller only needs the outcome
            _log.exception("otel_aspects: %s failed", what)
            result.append(False)

    thread = threading.Thread(target=run, name=f"otel_aspects-{what}", daemon=True)
    try:
        thread.start()
    except RuntimeError:  # no new threads this late in interpreter shutdown: run inline
        run()
        return result[0]
    thread.join(max(float(timeout_millis), 0.0) / 1000)
    if thread.is_alive():
        _log.warning(
            "otel_aspects: %s did not finish within %d ms (an exporter is waiting for an "
            "answer); stopped waiting, and data not exported yet is lost",
            what,
            timeout_millis,
        )
        return False
    return result[0]


def _teardown(inst: _Installation, timeout_millis: float) -> None:
    """Flush and shut down one installation, within about *timeout_millis*."""
    _bounded("shutdown", lambda: _teardown_now(inst, timeout_millis), timeout_millis)


def _teardown_now(inst: _Installation, timeout_millis: float) -> bool:
    """Flush and shut down one installation (in the process that built it)."""
    if inst.collector is not None:
        inst.collector.stop()
    if inst.log_handler is not None:
        logging.getLogger().removeHandler(inst.log_handler)
    _close_prometheus(inst)
    if inst.meter_provider is not None:
        inst.meter_provider.force_flush(timeout_millis)
        inst.meter_provider.shutdown(timeout_millis)
    if inst.logger_provider is not None:
        inst.logger_provider.force_flush(int(timeout_millis))
        inst.logger_provider.shutdown()
    return True


# --------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------


def setup_metrics(
    service_name: str,
    otlp_endpoint: str | None = None,
    enable_metrics: bool = True,
    enable_logs: bool = False,
    *,
    exporters: str | Iterable[str] | None = None,
    prometheus_host: str | None = None,
    prometheus_port: int | None = None,
    export_interval_millis: float | None = None,
    extra_readers: Iterable[ReaderSpec] = (),
    resource_attributes: Mapping[str, Any] | None = None,
    engine: str | None = None,
    flush_on_signals: bool | None = None,
    exit_timeout_millis: float | None = None,
    prometheus_server: bool = True,
    multiprocess_dir: str | os.PathLike[str] | None = None,
    aggregate: bool = False,
) -> MetricsSetup:
    """Configure the OpenTelemetry SDK for this process; safe to call again.

    Exporters: ``exporters`` (names or a comma-separated string), else
    ``OTEL_METRICS_EXPORTER`` (``otlp``, ``prometheus``, ``console``, ``none``),
    else ``otlp`` when *otlp_endpoint*, ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` is given; ``OTEL_PROMETHEUS_ENABLED=true``
    adds ``prometheus``.  With nothing configured, an in-memory reader only
    (:attr:`MetricsSetup.memory_reader`).  ``enable_metrics=False`` installs no
    metric reader at all.

    OTLP/HTTP URL: *otlp_endpoint* (a base URL; ``/v1/metrics`` is appended),
    else ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` as is, else
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/metrics``, else
    ``http://otel-collector:4318/v1/metrics``.  Headers, compression, certificates
    and timeouts come from the standard ``OTEL_EXPORTER_OTLP_*`` variables (a timeout
    in seconds, at most :data:`MAX_OTLP_TIMEOUT_SECONDS`); without a timeout variable
    each export gives up after :data:`DEFAULT_OTLP_TIMEOUT_SECONDS`.

    *service_name* wins over ``OTEL_SERVICE_NAME``; *resource_attributes* win over
    ``OTEL_RESOURCE_ATTRIBUTES``; ``service.instance.id`` is a new uuid4 per process.
    ``OTEL_SDK_DISABLED=true`` installs nothing and returns an inactive setup.

    A second call replaces the first: the previous provider is flushed and shut
    down, its Prometheus server closed, and instruments already handed out
    follow the new provider.  *enable_logs* ships Python ``logging`` records over
    OTLP/HTTP (``/v1/logs``) through a handler on the root logger; it needs an OTLP
    destination (as for metrics) and logs one WARNING instead when there is none.

    *engine* (``"engine"`` or ``"sdk"``, else ``OTEL_ASPECTS_ENGINE``) says whether
    client recordings are pre-aggregated by the engine or go straight to SDK
    instruments (:attr:`MetricsSetup.engine`).

    Exit: ``atexit`` flushes; so does SIGTERM/SIGHUP (from the main thread, a
    handler that flushes, then chains to the previous handler or re-raises the
    signal; off with *flush_on_signals=False* or ``OTEL_ASPECTS_FLUSH_ON_SIGNALS=false``),
    and the way out of a multiprocessing worker.  Each exit flush takes at most
    *exit_timeout_millis* (:data:`DEFAULT_EXIT_TIMEOUT_MILLIS`), whatever the
    exporter's own timeout.  Only OTLP http/protobuf is sent: another
    ``OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL`` gets one ERROR.

    *prometheus_server=False*: with ``prometheus`` among the exporters, collect for
    Prometheus but bind no port of our own; the application serves ``/metrics`` on its
    own port with :mod:`otel_aspects.exposition` (:attr:`MetricsSetup.prometheus_registry`).

    Inside :func:`capture_metrics` (tests) nothing is built: the capture's in-memory
    provider stays installed, whatever the arguments and ``OTEL_*`` variables say.

    Example::

        setup = setup_metrics("my_service", exporters="otlp,prometheus", prometheus_port=0)
        print(setup.prometheus_port)
    """
    chosen_engine = _resolve_engine(engine)
    exit_timeout = _resolve_exit_timeout(exit_timeout_millis)
    if not isinstance(prometheus_server, bool):
        raise ValueError(
            f"setup_metrics: prometheus_server={_quote(prometheus_server)} must be True or False"
        )
    folder = _resolve_multiprocess(multiprocess_dir, service_name, chosen_engine, aggregate)
    with _setup_lock:
        if _env("OTEL_SDK_DISABLED").lower() in _TRUE and _capture.current is None:
            _shutdown_locked(timeout_millis=10_000)
            _log.info("otel_aspects: OTEL_SDK_DISABLED is set; no SDK installed")
            return MetricsSetup(None, None)
        names, use_memory = _resolve_exporters(exporters, otlp_endpoint)
        if not enable_metrics:
            names, use_memory = (), False
        if enable_logs and not (otlp_endpoint or _otlp_endpoint_env("LOGS") or "otlp" in names):
            _log.warning(
                "otel_aspects: setup_metrics(enable_logs=True) but no OTLP destination is "
                "configured, so logs are not exported; pass otlp_endpoint= or set "
                "OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_LOGS_ENDPOINT)"
            )
            enable_logs = False
        metrics_url, logs_url = _resolve_endpoints(otlp_endpoint)
        host, port = _resolve_prometheus(prometheus_host, prometheus_port)
        interval = _resolve_interval(export_interval_millis)
        if "prometheus" in names:
            _check_prometheus_available()
        reported: set[str] = set()
        if "otlp" in names:
            _check_protocol("METRICS", metrics_url, reported)
        if enable_logs:
            _check_protocol("LOGS", logs_url, reported)
        plan = _Plan(
            service_name=service_name,
            exporters=names,
            use_memory=use_memory,
            metrics_endpoint=metrics_url,
            logs_endpoint=logs_url,
            otlp_timeout=_resolve_otlp_timeout("METRICS", reported),
            logs_timeout=_resolve_otlp_timeout("LOGS", reported),
            interval_millis=interval,
            prometheus_host=host,
            prometheus_port=port,
            extra_readers=tuple(extra_readers),
            resource_attributes=dict(resource_attributes or {}),
            enable_metrics=enable_metrics,
            enable_logs=enable_logs,
            engine=chosen_engine,
            flush_on_signals=_resolve_flush_on_signals(flush_on_signals),
            exit_timeout_millis=exit_timeout,
            prometheus_server=prometheus_server,
            folder=folder,
            aggregate=aggregate and folder is not None,
        )
        if _capture.current is not None:
            return _capture.current._adopt(plan)
        previous = _state.current
        if previous is not None and previous._installation is not None:
            # Free the Prometheus port before the new server binds it.
            _close_prometheus(previous._installation)
        instance_id = str(
            plan.resource_attributes.get("service.instance.id")
            or (plan.folder.instance_id if plan.aggregate and plan.folder else None)
            or uuid.uuid4()
        )
        try:
            inst = _build(plan, instance_id)
        except BaseException:
            # The previous setup lost its Prometheus server above: leave no half-working
            # setup behind; the error goes to the caller (configuration time).
            _shutdown_locked(timeout_millis=10_000)
            raise
        setup = MetricsSetup(plan, inst)
        provider = _provider()
        engine_module.set_global_mode(plan.engine)
        _use_multiprocess(plan, inst)
        provider._switch(inst.meter_provider or NoOpMeterProvider())
        _install_global(provider)
        _state.current = setup
        retired = previous._deactivate() if previous is not None else None
        if retired is not None:
            _teardown(retired, 10_000)
        if not _state.atexit_registered:
            atexit.register(_at_exit)
            _state.atexit_registered = True
        _state.ever_set_up = True
        if plan.flush_on_signals:
            _exit.install_signal_flush(_signal_flush)
        else:
            _exit.uninstall_signal_flush()
        _exit.register_worker_flush(_worker_flush)
        _log.info("otel_aspects: metrics set up: %r", setup)
        return setup


def _resolve_multiprocess(
    directory: str | os.PathLike[str] | None, service_name: str, engine: str, aggregate: bool
) -> multiprocess.Folder | None:
    """The checked multi-process folder (argument, else the variable), or ``None``."""
    global _env_set_by
    raw = os.fspath(directory) if directory is not None else _env(multiprocess.ENV_VAR)
    if directory is None and _env_set_by == (os.getpid(), raw):
        # The variable is the one an earlier setup of this process set for its children:
        # a setup without multiprocess_dir= is a single-process one again.
        os.environ.pop(multiprocess.ENV_VAR, None)
        _env_set_by = None
        raw = ""
    if not raw:
        if aggregate:
            raise ValueError(
                "setup_metrics(aggregate=True) exports a multi-process folder: pass "
                f"multiprocess_dir= or set {multiprocess.ENV_VAR}"
            )
        return None
    if engine != "engine":
        raise ValueError(
            "setup_metrics: multi-process mode needs the engine (engine='engine'); "
            "unset OTEL_ASPECTS_ENGINE=sdk or multiprocess_dir"
        )
    try:
        folder = multiprocess.prepare(raw, service_name, create=aggregate)
    except multiprocess.MultiprocessError as exc:
        # From the variable (a server's master set it): a folder deleted under a running
        # server must not stop workers from booting; they record into a new one.
        if directory is not None or os.path.exists(raw):
            raise
        _log.error("otel_aspects: %s; made it, so this worker records", exc)
        folder = multiprocess.prepare(raw, service_name, create=True)
    if aggregate:
        multiprocess.claim_export(folder)
        report = multiprocess.stale_report(folder)
        if report is not None:
            _log.warning("otel_aspects: %s", report)
    # Processes this one starts (a spawn pool, a subprocess) record into the same folder.
    if directory is not None and os.environ.get(multiprocess.ENV_VAR) != str(folder.path):
        os.environ[multiprocess.ENV_VAR] = str(folder.path)
        _env_set_by = (os.getpid(), str(folder.path))
    return folder


#: (pid, folder) when this process set OTEL_ASPECTS_MULTIPROCESS_DIR for its children.
_env_set_by: tuple[int, str] | None = None


def _use_multiprocess(plan: _Plan, inst: _Installation) -> None:
    """Tell the engine where this setup's series live and what its readers collect."""
    folder = plan.folder
    if folder is None:
        engine_module.set_global_multiprocess(None, None)
        return
    if plan.aggregate:
        inst.collector = multiprocess.Collector(folder)
        inst.collector.start_compacting()
        source = inst.collector.collect
    else:
        source = multiprocess.nothing
    engine_module.set_global_multiprocess(_process_file(folder), source)


_process_files: dict[str, Any] = {}


def _process_file(folder: multiprocess.Folder) -> Any:
    """This process's :class:`~otel_aspects.mpseries.ProcessFile` for *folder* (one per folder)."""
    from .mpseries import ProcessFile

    key = str(folder.path.resolve())
    found = _process_files.get(key)
    if found is None:
        found = _process_files[key] = ProcessFile(folder.path)
    return found


def _install_global(provider: _SwitchingMeterProvider) -> None:
    if _state.global_owned:
        return
    current = metrics_api.get_meter_provider()
    if current is provider:
        _state.global_owned = True
        return
    if type(current).__name__ != "_ProxyMeterProvider":
        _log.warning(
            "otel_aspects: a global MeterProvider (%s) was installed before setup_metrics; "
            "clients using the global API keep using it. Pass setup.meter_provider to "
            "create_metrics_client to use this setup.",
            type(current).__name__,
        )
        return
    metrics_api.set_meter_provider(provider)
    _state.global_owned = metrics_api.get_meter_provider() is provider


def _shutdown_locked(timeout_millis: float) -> None:
    setup = _state.current
    _state.current = None
    if _capture.current is not None:  # the capture's provider lives until the capture ends
        if setup is not None:
            setup._deactivate()
        return
    retired = setup._deactivate() if setup is not None else None
    if retired is None:
        return
    _switch_existing(NoOpMeterProvider())
    _teardown(retired, timeout_millis)


def shutdown_metrics(timeout_millis: float = 10_000) -> None:
    """Flush everything recorded, then shut the SDK down; idempotent.

    Also runs at interpreter exit.  Afterwards instruments are no-ops until the
    next :func:`setup_metrics`.

    Example::

        setup_metrics("svc")
        ...
        shutdown_metrics()
        shutdown_metrics()   # no-op
    """
    with _setup_lock:
        _shutdown_locked(timeout_millis)


def _exit_timeout() -> float:
    setup = _state.current
    plan = setup._plan if setup is not None else None
    return plan.exit_timeout_millis if plan is not None else DEFAULT_EXIT_TIMEOUT_MILLIS


def _at_exit() -> None:
    try:
        shutdown_metrics(_exit_timeout())
    except Exception:  # never turn a clean exit into a traceback
        _log.exception("otel_aspects: error while flushing metrics at exit")


def _signal_flush() -> None:
    """On SIGTERM/SIGHUP (in the flusher thread): export what was recorded, bounded.

    A flush, not a shutdown: the application's own handler may keep the service
    running for a while; at its exit the ``atexit`` flush runs as usual.
    """
    timeout = _exit_timeout()
    # Waits for a shutdown in progress (a worker's exit flush, atexit) to finish its
    # export: the signal's default action must not cut it short.  Never a deadlock:
    # the handler that started this thread has returned, so the main thread goes on.
    if not _setup_lock.acquire(timeout=timeout / 1000):
        return
    try:
        setup = _state.current
        if setup is not None and setup.active:
            setup.force_flush(timeout)
    finally:
        _setup_lock.release()


def _worker_flush() -> None:
    """On the way out of a multiprocessing child (``os._exit`` follows)."""
    shutdown_metrics(_exit_timeout())


def warn_if_not_set_up() -> bool:
    """Log one WARNING when this multiprocessing child has no SDK set up.

    A child started with ``spawn`` or ``forkserver`` does not inherit the
    parent's :func:`setup_metrics`: whatever it records goes nowhere.  Clients call
    this when they are created; it logs at most once per process, and never
    after a setup (even one shut down since), when ``OTEL_SDK_DISABLED`` is set,
    or outside a multiprocessing child.  Returns whether it logged.

    Example::

        def worker_init():
            setup_metrics("svc")       # in Pool(initializer=worker_init)
    """
    if _state.ever_set_up or not _exit.in_multiprocessing_child():
        return False
    if _env("OTEL_SDK_DISABLED").lower() in _TRUE:
        return False
    return warn_once(
        _log,
        ("not-set-up", os.getpid()),
        "otel_aspects: no SDK is set up in this process yet (pid %d, a multiprocessing "
        "child that did not inherit one: spawn or forkserver start method): what it records "
        "before setup_metrics is called here is exported nowhere; call setup_metrics in the "
        "worker, e.g. Pool(initializer=...) or at the start of the target",
        os.getpid(),
    )


def _after_fork_in_child() -> None:
    """Give a forked worker a provider of its own, with empty aggregation state."""
    global _setup_lock
    _switching.reset_after_fork()
    _exit.reset_after_fork()
    _setup_lock = threading.RLock()
    setup = _state.current
    if setup is None or not setup.active or setup._plan is None:
        return
    old = setup._installation
    if old is not None:
        if old.log_handler is not None:
            logging.getLogger().removeHandler(old.log_handler)
        if old.prometheus_server is not None:
            # Close only this process's copy of the listening socket: the serving
            # thread stayed in the parent, so server.shutdown() would wait forever.
            old.prometheus_server.server_close()
        for reader in old.readers:
            if isinstance(reader, PeriodicExportingMetricReader):
                try:
                    reader.shutdown(timeout_millis=0)
                except Exception:  # a reader we did not build may misbehave
                    _log.debug("otel_aspects: inherited reader shutdown failed", exc_info=True)
    try:
        inst = _build(
            setup._plan,
            str(uuid.uuid4()),
            in_child=True,
            parent=old.resource if old is not None else None,
        )
    except Exception:
        _log.exception("otel_aspects: cannot rebuild metrics in forked worker %d", os.getpid())
        _switch_existing(NoOpMeterProvider())
        setup._deactivate()
        return
    setup._replace_installation(inst)
    _switch_existing(inst.meter_provider or NoOpMeterProvider())


os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------
# Capture (tests): every recording of the process into one in-memory reader
# --------------------------------------------------------------------------


class MetricsCapture:
    """Everything this process records while :func:`capture_metrics` is active.

    It is a reader for the helpers of :mod:`otel_aspects.testing`
    (``counter_value(capture, "requests_total")``): :meth:`get_metrics_data` collects
    now while the capture is active, and gives the last collection (taken as the
    capture ended) afterwards.  ``setups`` lists the :class:`MetricsSetup` objects
    :func:`setup_metrics` returned meanwhile (the application's own calls).
    """

    def __init__(self, service_name: str, engine: str) -> None:
        self.reader = InMemoryMetricReader()
        self.engine = engine
        self.setups: list[MetricsSetup] = []
        self._active = True
        self._final: Any = None
        instance_id = str(uuid.uuid4())
        resource = Resource.create(
            {"service.name": service_name, "service.instance.id": instance_id}
        )
        inst = _Installation(instance_id=instance_id, resource=resource)
        inst.memory_reader = self.reader
        inst.readers = (self.reader,)
        inst.meter_provider = SdkMeterProvider(
            metric_readers=[self.reader], resource=resource, views=_views(), shutdown_on_exit=False
        )
        self._installation = inst

    @property
    def active(self) -> bool:
        """``True`` until the capture ends."""
        return self._active

    @property
    def meter_provider(self) -> SdkMeterProvider:
        """The SDK provider behind the global API provider during the capture."""
        provider = self._installation.meter_provider
        assert provider is not None  # built in __init__
        return provider

    def get_metrics_data(self) -> Any:
        """What was recorded so far (cumulative); after the capture, its last collection."""
        return self.reader.get_metrics_data() if self._active else self._final

    def _adopt(self, plan: _Plan) -> MetricsSetup:
        """``setup_metrics`` during the capture: describe the capture, build nothing.

        A ``prometheus`` exporter gets a Prometheus reader without a server (once), so
        ``/metrics`` served by :mod:`otel_aspects.exposition` shows what was captured.
        """
        inst = self._installation
        if "prometheus" in plan.exporters and inst.prometheus_registry is None:
            readers = list(inst.readers)
            _prometheus_reader(inst, readers)
            self.meter_provider.add_metric_reader(readers[-1])
            inst.readers = tuple(readers)
        captured = dataclasses.replace(
            plan,
            exporters=("prometheus",) if inst.prometheus_registry is not None else (),
            use_memory=True,
            extra_readers=(),
            enable_logs=False,
            prometheus_server=False,
            folder=None,  # one process, in memory: no multi-process files
            aggregate=False,
        )
        if _state.current is not None:
            _state.current._deactivate()  # an earlier setup of this capture
        setup = MetricsSetup(captured, inst)
        engine_module.set_global_mode(plan.engine)
        engine_module.global_store().set_mode(plan.engine)
        _state.current = setup
        self.setups.append(setup)
        return setup

    def __repr__(self) -> str:
        return f"MetricsCapture(active={self._active}, setups={len(self.setups)})"


class _CaptureState:
    current: MetricsCapture | None = None


_capture = _CaptureState()


@contextlib.contextmanager
def capture_metrics(
    service_name: str = "otel_aspects-capture", *, engine: str | None = None
) -> Iterator[MetricsCapture]:
    """Capture everything this process records into memory, for one test.

    While the block runs, the global provider's target is one SDK provider with an
    ``InMemoryMetricReader``: clients created at import (bound to the global
    provider), aspects and middleware record into it.  :func:`setup_metrics` called
    meanwhile (an application's lifespan) builds nothing -- no exporter, no port, no
    log pipeline, whatever its arguments and the ``OTEL_*`` variables say -- and
    returns an active :class:`MetricsSetup` describing the capture (a ``prometheus``
    exporter gets a reader without a server, for :mod:`otel_aspects.exposition`);
    :func:`shutdown_metrics` meanwhile ends that setup but not the capture.  At the
    end, the setup active before (if any) is back; the engine's series start a new
    generation there, as after a repeated ``setup_metrics``.
    Captures do not nest (``RuntimeError``).  The ``app_metrics`` fixture of
    :mod:`otel_aspects.testing` is this, one per test.

    Example::

        with capture_metrics() as captured:
            with TestClient(app) as client:       # its lifespan may call setup_metrics
                client.get("/")
        assert counter_value(captured, "requests_total") == 1
    """
    mode = _resolve_engine(engine)
    with _setup_lock:
        if _capture.current is not None:
            raise RuntimeError("otel_aspects: capture_metrics is already active (no nesting)")
        previous = current_setup()
        capture = MetricsCapture(service_name, mode)
        _capture.current = capture
        _state.current = None
        provider = _provider()
        engine_module.set_global_mode(mode)
        engine_module.set_global_multiprocess(None, None)
        provider._switch(capture.meter_provider)
        _install_global(provider)
    try:
        yield capture
    finally:
        with _setup_lock:
            capture._final = capture.reader.get_metrics_data()
            capture._active = False
            _capture.current = None
            for setup in capture.setups:
                setup._deactivate()
            _state.current = previous
            target = previous.sdk_meter_provider if previous is not None else None
            if previous is not None:
                engine_module.set_global_mode(previous.engine)
                _restore_multiprocess(previous)
            provider._switch(target or NoOpMeterProvider())
            capture.meter_provider.shutdown(timeout_millis=5_000)


# The engine's global store follows every switch: new series, bridged to the new target.
on_switch(engine_module.switch_global)


def _restore_multiprocess(setup: MetricsSetup) -> None:
    """The engine's multi-process routing of *setup* again (its collector is kept)."""
    plan, inst = setup._plan, setup._installation
    folder = plan.folder if plan is not None else None
    if folder is None or inst is None:
        engine_module.set_global_multiprocess(None, None)
        return
    source = inst.collector.collect if inst.collector is not None else multiprocess.nothing
    engine_module.set_global_multiprocess(_process_file(folder), source)
