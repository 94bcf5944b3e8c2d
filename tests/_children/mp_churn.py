"""Child process: fork N short-lived workers that record into a multi-process folder.

Usage: python mp_churn.py DIR N
Each worker records ``jobs_total`` +3 ({"queue": "churn"}) and one histogram value,
then exits the way a gunicorn worker does (``os._exit``): a worker lifetime.
"""

from __future__ import annotations

import os
import sys

from otel_aspects import create_metrics_client, setup_metrics

directory, count = sys.argv[1], int(sys.argv[2])
client = create_metrics_client(
    "mp",
    config={
        "service_name": "mp",
        "counters": [{"name": "jobs_total"}],
        "histograms": [{"name": "sizes", "unit": "By", "buckets": [0.01, 0.1, 1.0, 10.0]}],
    },
)
setup_metrics("mp", multiprocess_dir=directory)
pids = []
for i in range(count):
    pid = os.fork()
    if pid == 0:
        client.record_counter("jobs_total", 3, {"queue": "churn"})
        client.record_histogram("sizes", 0.5, {"queue": "churn"})
        os._exit(0)
    pids.append(pid)
    if len(pids) == 8 or i == count - 1:  # a few alive at once, as a server's workers are
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            if status != 0:
                sys.exit(f"worker {pid} failed: status {status}")
        pids = []
