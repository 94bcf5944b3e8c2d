"""The seed's import path for the client and its config.

>>> from otel_aspects.metrics_client import create_metrics_client, load_metrics_config
"""

from __future__ import annotations

from .client import OTelMetricsClient as OTelMetricsClient
from .client import create_metrics_client as create_metrics_client
from .config import MetricsConfig as MetricsConfig
from .config import MetricsConfigError as MetricsConfigError
from .config import MetricSpec as MetricSpec
from .config import load_metrics_config as load_metrics_config

__all__ = (
    "MetricSpec",
    "MetricsConfig",
    "MetricsConfigError",
    "OTelMetricsClient",
    "create_metrics_client",
    "load_metrics_config",
)
