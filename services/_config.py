"""Where the services find their metrics YAML, whatever the current directory.

Decision: ``OTEL_METRICS_CONFIG_PATH`` wins when it is set (a file, or a folder holding
``<service>.yml``; the library resolves it), so an operator can point a deployed service
at another config.  Otherwise the services pass an explicit path computed from this file:
``<repo>/config/metrics/<service>.yml``.  The library's last fallback,
``./config/metrics/<service>.yml``, depends on the current directory and is never relied on.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ("REPO_CONFIG_DIR", "config_path")

#: ``config/metrics`` of the repository this package lives in.
REPO_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config" / "metrics"


def config_path(service_name: str) -> Path | None:
    """The explicit config path for *service_name*, or ``None`` to let the library apply
    ``OTEL_METRICS_CONFIG_PATH``."""
    if os.environ.get("OTEL_METRICS_CONFIG_PATH"):
        return None
    return REPO_CONFIG_DIR / f"{service_name}.yml"
