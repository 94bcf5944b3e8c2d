"""Child process: set up OTLP export, record known values, exit WITHOUT shutdown.

Usage: python record_and_exit.py ENDPOINT CONFIG_PATH
The atexit flush of otel_aspects must deliver everything to ENDPOINT.
"""

from __future__ import annotations

import sys

from otel_aspects import setup_metrics
from otel_aspects.client import create_metrics_client
from otel_aspects.config import load_metrics_config

endpoint, config_path = sys.argv[1], sys.argv[2]
# A long interval: nothing is exported before exit unless the exit flush works.
setup_metrics("exit_svc", otlp_endpoint=endpoint, export_interval_millis=600_000)
client = create_metrics_client("exit_svc", load_metrics_config("exit_svc", config_path))
for _ in range(7):
    client.record_counter("jobs_total", 1, {"queue": "q1"})
for value in (0.05, 0.5, 5.0):
    client.record_histogram("job_duration_seconds", value, {"queue": "q1"})
print("recorded", flush=True)
