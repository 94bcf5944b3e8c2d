"""Child process: record 37 counts, then wait for a signal (idle or busy).

Usage: python on_signal.py ENDPOINT MODE [HANDLER]
MODE: ``idle`` (blocked in time.sleep), ``busy`` (a pure-Python CPU loop) or
``recording`` (a loop recording into another counter, so the signal may arrive
while the main thread holds an SDK lock the flush needs).
HANDLER (installed *before* setup_metrics, as an application would):
``none`` (default), ``app`` (a Python handler that writes ``app handler`` and
ends with ``os._exit(7)``, so only a flush made before it can deliver), ``ignore``
(SIG_IGN). Prints ``ready`` once everything is recorded. A long export interval:
nothing is exported unless the signal flush works.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from opentelemetry import metrics

from otel_aspects import setup_metrics

endpoint, mode = sys.argv[1], sys.argv[2]
handler = sys.argv[3] if len(sys.argv) > 3 else "none"


def app_handler(signum: int, frame: object) -> None:
    os.write(1, b"app handler\n")
    os._exit(7)


for sig in (signal.SIGTERM, signal.SIGHUP):
    if handler == "app":
        signal.signal(sig, app_handler)
    elif handler == "ignore":
        signal.signal(sig, signal.SIG_IGN)

setup_metrics("signal_svc", otlp_endpoint=endpoint, export_interval_millis=600_000)
counter = metrics.get_meter("signal_svc").create_counter("jobs_total")
for _ in range(37):
    counter.add(1, {"queue": "q1"})
print("ready", flush=True)
deadline = time.monotonic() + 60
if mode == "idle":
    while time.monotonic() < deadline:
        time.sleep(60)
elif mode == "recording":
    spin = metrics.get_meter("signal_svc").create_counter("spin_total")
    while time.monotonic() < deadline:
        spin.add(1, {"queue": "q1"})
else:
    n = 0
    while time.monotonic() < deadline:
        n = (n * 31 + 7) % 1_000_003
print("not stopped", flush=True)
