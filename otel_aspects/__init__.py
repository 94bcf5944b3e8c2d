"""OpenTelemetry metrics for Python services.

YAML-declared instruments (:mod:`otel_aspects.config`), a client that never
raises into business code (:mod:`otel_aspects.client`), SDK setup
(:mod:`otel_aspects.sdk`) and aspects -- decorators and ``timed`` blocks whose
labels nested code can set through contextvars (:mod:`otel_aspects.timing`).

This module only re-exports; see ``docs/DESIGN.md`` for the layout.
"""

from __future__ import annotations

from .sdk import MetricsSetup as MetricsSetup
from .sdk import current_setup as current_setup
from .sdk import setup_metrics as setup_metrics
from .sdk import shutdown_metrics as shutdown_metrics

__all__: tuple[str, ...] = (
    "MetricsSetup",
    "current_setup",
    "setup_metrics",
    "shutdown_metrics",
)
