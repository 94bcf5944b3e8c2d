"""Child process: export to a collector that accepts TCP and never answers.

Usage: python hang_exit.py ENDPOINT MODE
MODE ``shutdown``: record, then time ``shutdown_metrics(timeout_millis=1000)`` and
print ``elapsed <seconds>``. MODE ``exit``: record and exit (the atexit flush,
bounded by ``exit_timeout_millis=1000``). The OTLP timeout comes from the
environment (``OTEL_EXPORTER_OTLP_TIMEOUT``).
"""

from __future__ import annotations

import sys
import time

from opentelemetry import metrics

from otel_aspects import setup_metrics, shutdown_metrics

endpoint, mode = sys.argv[1], sys.argv[2]
setup_metrics(
    "hang_svc", otlp_endpoint=endpoint, export_interval_millis=600_000, exit_timeout_millis=1000
)
metrics.get_meter("hang_svc").create_counter("jobs_total").add(1)
if mode == "shutdown":
    start = time.monotonic()
    shutdown_metrics(timeout_millis=1000)
    print(f"elapsed {time.monotonic() - start:.3f}", flush=True)
print("exiting", flush=True)
