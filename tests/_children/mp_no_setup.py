"""Child process: a spawn worker that never calls setup_metrics.

Usage: python mp_no_setup.py
The worker creates two clients and records (the client says once that no SDK is set
up here), then calls ``warn_if_not_set_up()`` again; its exit code is 0 when exactly
one WARNING naming setup_metrics was logged. The parent (not a multiprocessing child)
must get False.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys

from otel_aspects.client import create_metrics_client
from otel_aspects.sdk import warn_if_not_set_up


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.WARNING:
            self.lines.append(record.getMessage())


def worker() -> None:
    counter = _Count()
    logging.getLogger("otel_aspects").addHandler(counter)
    # What a user's worker does: its module-level clients, then records.
    for _ in range(2):
        client = create_metrics_client("svc", {"counters": [{"name": "jobs_total"}]})
        client.record_counter("jobs_total", 1)
    again = warn_if_not_set_up()
    ok = not again and len(counter.lines) == 1 and "setup_metrics" in counter.lines[0]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    assert warn_if_not_set_up() is False  # the parent is not a multiprocessing child
    proc = multiprocessing.get_context("spawn").Process(target=worker)
    proc.start()
    proc.join(30)
    print("exitcode", proc.exitcode, flush=True)
