"""Child process: a spawn worker that never calls setup_metrics.

Usage: python mp_no_setup.py
The worker calls ``warn_if_not_set_up()`` twice and reports (first, second,
number of WARNING lines logged) through its exit code: 0 when it was (True,
False, 1). The parent (not a multiprocessing child) must get False.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys

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
    first, second = warn_if_not_set_up(), warn_if_not_set_up()
    ok = first and not second and len(counter.lines) == 1 and "setup_metrics" in counter.lines[0]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    assert warn_if_not_set_up() is False  # the parent is not a multiprocessing child
    proc = multiprocessing.get_context("spawn").Process(target=worker)
    proc.start()
    proc.join(30)
    print("exitcode", proc.exitcode, flush=True)
