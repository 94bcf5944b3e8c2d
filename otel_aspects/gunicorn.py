"""gunicorn hooks: one metrics endpoint, and one OTLP stream, for all the workers.

In ``gunicorn.conf.py``::

    import otel_aspects.gunicorn
    when_ready, child_exit = otel_aspects.gunicorn.hooks("my_service", prometheus_port=9464)

``when_ready`` runs in the master once it listens, before the first worker is
forked: it sets ``OTEL_ASPECTS_MULTIPROCESS_DIR`` (the folder given, else that
variable, else a new temporary folder) for the workers and starts
:func:`otel_aspects.multiprocess.serve_metrics` there -- Prometheus on one
port, OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, under one
``service.instance.id`` that outlives every worker.  Each worker's
``setup_metrics`` then records into its own file in the folder (it serves and
exports nothing itself).  ``child_exit`` folds a dead worker's file into the
folder's archive at once, so scrapes stay as fast after thousands of worker
restarts as after the first.

The master serves Prometheus (``prometheus_port=``, else ``OTEL_PROMETHEUS_PORT``,
else 9464), plus OTLP when an OTLP endpoint is set, unless ``exporters=`` says
otherwise.  Chain them from hooks of your own by calling the returned functions.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from typing import Any

from . import multiprocess

__all__ = ("child_exit", "hooks", "when_ready")

logger = logging.getLogger("otel_aspects.gunicorn")


def _exporters() -> str:
    """Prometheus always (the one port of the whole server), plus OTLP when an OTLP
    endpoint is set and whatever ``OTEL_METRICS_EXPORTER`` names."""
    names = ["prometheus"]
    if (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "").strip()
    ):
        names.append("otlp")
    for name in os.environ.get("OTEL_METRICS_EXPORTER", "").split(","):
        if name.strip() and name.strip() != "none":
            names.append(name.strip())
    return ",".join(dict.fromkeys(names))


def hooks(
    service_name: str | None = None,
    directory: str | os.PathLike[str] | None = None,
    **setup_kwargs: Any,
) -> tuple[Callable[[Any], None], Callable[[Any, Any], None]]:
    """``(when_ready, child_exit)`` for ``gunicorn.conf.py``.

    *service_name* defaults to ``OTEL_SERVICE_NAME``; *setup_kwargs* go to
    ``setup_metrics`` in the master (``prometheus_port=``, ``exporters=``, ...).
    """
    state: dict[str, Any] = {}

    def ready(server: Any) -> None:
        folder = directory or os.environ.get(multiprocess.ENV_VAR, "").strip()
        if not folder:
            folder = tempfile.mkdtemp(prefix="otel-aspects-")
        name = service_name or os.environ.get("OTEL_SERVICE_NAME", "").strip()
        if not name:
            raise multiprocess.MultiprocessError(
                'otel_aspects.gunicorn: no service name; pass it to hooks("my_service") '
                "or set OTEL_SERVICE_NAME"
            )
        kwargs = dict(setup_kwargs)
        if "exporters" not in kwargs:
            kwargs["exporters"] = _exporters()
        setup = multiprocess.serve_metrics(folder, name, **kwargs)
        state["setup"] = setup
        logger.info(
            "otel_aspects: gunicorn master %d exports the workers' metrics from %s%s",
            os.getpid(),
            os.environ[multiprocess.ENV_VAR],
            f" (Prometheus on port {setup.prometheus_port})" if setup.prometheus_port else "",
        )

    def exited(server: Any, worker: Any) -> None:
        setup = state.get("setup")
        if setup is not None:
            setup.compact(background=True)

    return ready, exited


when_ready, child_exit = hooks()
