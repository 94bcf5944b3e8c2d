"""Child process: a pre-forking server in miniature.

Usage: python prefork.py ENDPOINT
The parent sets up OTLP export, records 5, forks two workers that record 10 and
20 and exit (normally, so atexit flushes), then records 1 more and exits.
Each prints its service.instance.id as ``ID <role> <id>``.
"""

from __future__ import annotations

import os
import sys

from opentelemetry import metrics

from otel_aspects import current_setup, setup_metrics

endpoint = sys.argv[1]
setup = setup_metrics("prefork_svc", otlp_endpoint=endpoint, export_interval_millis=100)
counter = metrics.get_meter("prefork").create_counter("work_total")
counter.add(5, {"who": "any"})
assert setup.force_flush()

children = []
for role, amount in (("w1", 10), ("w2", 20)):
    pid = os.fork()
    if pid == 0:
        counter.add(amount, {"who": "any"})
        active = current_setup()
        assert active is not None
        # One write(2) per line: with PYTHONUNBUFFERED, print() writes each piece
        # separately and two workers' lines could interleave on the shared pipe.
        os.write(1, f"ID {role} {active.service_instance_id}\n".encode())
        sys.exit(0)  # normal exit: atexit handlers flush
    children.append(pid)

for pid in children:
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
counter.add(1, {"who": "any"})
os.write(1, f"ID parent {setup.service_instance_id}\n".encode())
