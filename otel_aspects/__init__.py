"""OpenTelemetry metrics for Python services.

YAML-declared instruments (:mod:`otel_aspects.config`), a client that never
raises into business code (:mod:`otel_aspects.client`), SDK setup
(:mod:`otel_aspects.sdk`) and aspects -- decorators and ``timed`` blocks whose
labels nested code can set through contextvars (:mod:`otel_aspects.timing`).

This module only re-exports; see ``docs/DESIGN.md`` for the layout.
"""

from __future__ import annotations

from .labels import current_labels as current_labels
from .labels import set_label as set_label
from .labels import set_success as set_success
from .sdk import MetricsSetup as MetricsSetup
from .sdk import current_setup as current_setup
from .sdk import setup_metrics as setup_metrics
from .sdk import shutdown_metrics as shutdown_metrics
from .timing import Timed as Timed
from .timing import timed as timed

__all__: tuple[str, ...] = (
    "MetricsSetup",
    "Timed",
    "current_labels",
    "current_setup",
    "set_label",
    "set_success",
    "setup_metrics",
    "shutdown_metrics",
    "timed",
)
