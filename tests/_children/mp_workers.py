"""Child process: multiprocessing workers that record, then end.

Usage: python mp_workers.py ENDPOINT METHOD SHAPE
METHOD: fork | forkserver | spawn.  SHAPE: ``process`` (short-lived children,
each records 10 and returns), ``pool`` (a pool of 2 long-lived workers, 20 tasks
recording 3 each, then close/join), or ``terminate`` (the same pool used as
``with Pool(...)``, whose exit terminates the workers with SIGTERM).
With ``fork`` the parent's setup is inherited; with ``spawn``/``forkserver`` each
worker calls setup_metrics itself.  A long export interval: only the flush on
the way out of a worker can deliver.  Prints ``done``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time

from opentelemetry import metrics

from otel_aspects import current_setup, setup_metrics


def _setup(endpoint: str) -> None:
    if current_setup() is None:
        setup_metrics("mp_svc", otlp_endpoint=endpoint, export_interval_millis=600_000)


def _record(amount: int) -> int:
    metrics.get_meter("mp_svc").create_counter("work_total").add(amount, {"who": "worker"})
    return os.getpid()


def short_lived(endpoint: str, amount: int) -> None:
    _setup(endpoint)
    _record(amount)


def task(amount: int) -> int:
    pid = _record(amount)
    time.sleep(0.01)
    return pid


def main() -> None:
    endpoint, method, shape = sys.argv[1], sys.argv[2], sys.argv[3]
    if method == "fork":
        _setup(endpoint)
    ctx = multiprocessing.get_context(method)
    if shape == "process":
        procs = [ctx.Process(target=short_lived, args=(endpoint, 10)) for _ in range(2)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(30)
            assert proc.exitcode == 0, proc.exitcode
    elif shape == "pool":
        pool = ctx.Pool(2, initializer=_setup, initargs=(endpoint,))
        pids = pool.map(task, [3] * 20, chunksize=1)
        pool.close()
        pool.join()
        print("pids", len(set(pids)), flush=True)
    else:
        with ctx.Pool(2, initializer=_setup, initargs=(endpoint,)) as pool:
            pool.map(task, [3] * 20, chunksize=1)
    print("done", flush=True)


if __name__ == "__main__":
    main()
