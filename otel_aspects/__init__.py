"""OpenTelemetry metrics for Python services.

YAML-declared instruments (:mod:`otel_aspects.config`), a client that never
raises into business code (:mod:`otel_aspects.client`), SDK setup
(:mod:`otel_aspects.sdk`) and aspects -- decorators and ``timed`` blocks whose
labels nested code can set through contextvars (:mod:`otel_aspects.timing`).

This module only re-exports; see ``docs/DESIGN.md`` for the layout.
"""

from __future__ import annotations

from .client import OTelMetricsClient as OTelMetricsClient
from .client import create_metrics_client as create_metrics_client
from .config import DEFAULT_SECONDS_BUCKETS as DEFAULT_SECONDS_BUCKETS
from .config import MetricsConfig as MetricsConfig
from .config import MetricsConfigError as MetricsConfigError
from .config import MetricSpec as MetricSpec
from .config import load_metrics_config as load_metrics_config
from .config import loaded_configs as loaded_configs
from .config import validate_config_file as validate_config_file
from .decorators import count_exceptions as count_exceptions
from .decorators import counted as counted
from .decorators import create_timed_context as create_timed_context
from .decorators import track_duration as track_duration
from .decorators import track_inprogress as track_inprogress
from .labels import current_labels as current_labels
from .labels import set_label as set_label
from .labels import set_success as set_success
from .run import Run as Run
from .sdk import MetricsSetup as MetricsSetup
from .sdk import current_setup as current_setup
from .sdk import setup_metrics as setup_metrics
from .sdk import shutdown_metrics as shutdown_metrics
from .timing import Timed as Timed
from .timing import timed as timed

__all__: tuple[str, ...] = (
    "DEFAULT_SECONDS_BUCKETS",
    "MetricSpec",
    "MetricsConfig",
    "MetricsConfigError",
    "MetricsSetup",
    "OTelMetricsClient",
    "Run",
    "Timed",
    "count_exceptions",
    "counted",
    "create_metrics_client",
    "create_timed_context",
    "current_labels",
    "current_setup",
    "load_metrics_config",
    "loaded_configs",
    "set_label",
    "set_success",
    "setup_metrics",
    "shutdown_metrics",
    "timed",
    "track_duration",
    "track_inprogress",
    "validate_config_file",
)
