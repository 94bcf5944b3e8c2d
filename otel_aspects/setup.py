"""The seed's module name for SDK setup: re-exports of :mod:`otel_aspects.sdk`.

Example::

    from otel_aspects.setup import setup_metrics

    setup_metrics("my_service", enable_logs=True)
"""

from __future__ import annotations

from .sdk import MetricsSetup as MetricsSetup
from .sdk import current_setup as current_setup
from .sdk import setup_metrics as setup_metrics
from .sdk import shutdown_metrics as shutdown_metrics

__all__ = ("MetricsSetup", "current_setup", "setup_metrics", "shutdown_metrics")
