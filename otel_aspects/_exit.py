"""Exit paths that skip ``atexit``: termination signals and multiprocessing workers.

* **Signals.** Python's default action for ``SIGTERM`` and ``SIGHUP`` ends the
  process at once, without ``atexit``: a pod stopped by Kubernetes would lose
  everything since the last export.  :func:`install_signal_flush` (main thread
  only) puts a handler on each of those signals whose current handler is the
  default or a Python callable (``SIG_IGN`` and handlers set from C are left
  alone).  The handler never flushes in place: the main thread may be inside an
  SDK instrument, holding a lock the collection needs.  It starts a flusher
  thread and returns; the flush is bounded by its timeout; then the flusher
  sends the same signal to the main thread again, and this second call does
  what the signal did before: the application's handler is called, or the
  default disposition is restored and the signal re-raised, so the process ends
  "killed by SIGTERM" as before.  A repeated signal during the flush is ignored
  (the flush is bounded).
* **multiprocessing.** Children started with ``fork`` or ``forkserver`` end with
  ``os._exit`` after ``multiprocessing.util._exit_function``: ``atexit`` never
  runs there, but ``util.Finalize`` callbacks do.  :func:`register_worker_flush`
  registers one per child process; the fork case re-registers from
  ``util.register_after_fork`` (the child's bootstrap clears finalizers inherited
  from the parent, then runs the after-fork hooks).

Example::

    install_signal_flush(lambda: flush_everything(timeout_millis=5000))
    register_worker_flush(lambda: shutdown_everything(timeout_millis=5000))
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.util
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = (
    "FLUSH_SIGNALS",
    "in_multiprocessing_child",
    "install_signal_flush",
    "register_worker_flush",
    "signal_flush_installed",
    "uninstall_signal_flush",
)

_log = logging.getLogger("otel_aspects.sdk")

#: The signals whose default action ends the process without ``atexit``.
FLUSH_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)

_Handler = Callable[[int, FrameType | None], Any] | int | None


class _SignalState:
    flush: Callable[[], None] | None = None
    previous: dict[int, _Handler] = {}
    in_progress: set[int] = set()
    done: set[int] = set()


_signals = _SignalState()


def install_signal_flush(flush: Callable[[], None]) -> bool:
    """Flush with *flush()* (bounded by the caller) on ``SIGTERM``/``SIGHUP``.

    Returns whether a handler is in place.  Only the main thread can install
    signal handlers; elsewhere this logs one DEBUG line and returns ``False``.
    """
    _signals.flush = flush
    if threading.current_thread() is not threading.main_thread():
        _log.debug("otel_aspects: setup_metrics outside the main thread: no signal flush")
        return signal_flush_installed()
    for sig in FLUSH_SIGNALS:
        current = signal.getsignal(sig)
        if current is _handle:
            continue
        if current is signal.SIG_IGN or current is None:
            continue  # ignored on purpose, or owned by C code: leave it alone
        try:
            signal.signal(sig, _handle)
        except (ValueError, OSError) as exc:  # not the main interpreter, ...
            _log.debug("otel_aspects: cannot handle %s: %s", sig.name, exc)
            continue
        _signals.previous[sig] = current
    return signal_flush_installed()


def uninstall_signal_flush() -> None:
    """Put the handlers found by :func:`install_signal_flush` back (main thread only)."""
    _signals.flush = None
    if threading.current_thread() is not threading.main_thread():
        return
    for sig, previous in list(_signals.previous.items()):
        if signal.getsignal(sig) is _handle:
            signal.signal(sig, previous)
        del _signals.previous[sig]


def signal_flush_installed() -> bool:
    """Whether our handler is the current handler of at least one flush signal."""
    return any(signal.getsignal(sig) is _handle for sig in FLUSH_SIGNALS)


def _handle(signum: int, frame: FrameType | None) -> None:
    if signum in _signals.done:
        # Second call, sent by the flusher: do what the signal did before.
        _signals.done.discard(signum)
        _signals.in_progress.discard(signum)
        _finish(signum, frame)
        return
    if signum in _signals.in_progress:
        return  # a flush is running and is bounded; its end finishes the signal
    _signals.in_progress.add(signum)
    threading.Thread(
        target=_flush_then_resignal,
        args=(signum, threading.main_thread().ident),
        name="otel_aspects-signal-flush",
        daemon=True,
    ).start()


def _flush_then_resignal(signum: int, main_ident: int | None) -> None:
    flush = _signals.flush
    try:
        if flush is not None:
            flush()
    except Exception:  # the signal must still take effect
        _log.exception("otel_aspects: flushing metrics on signal %d failed", signum)
    _signals.done.add(signum)
    # To the main thread itself: a process-directed signal could land on another
    # thread and leave a main thread blocked in a system call unaware of it.
    pthread_kill = getattr(signal, "pthread_kill", None)
    if main_ident is not None and pthread_kill is not None:
        pthread_kill(main_ident, signum)
    else:  # pragma: no cover - not on Linux
        os.kill(os.getpid(), signum)


def _finish(signum: int, frame: FrameType | None) -> None:
    previous = _signals.previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    # The default action: end the process as the signal would have.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    # Still alive (the signal is blocked in this thread): keep flushing next time.
    signal.signal(signum, _handle)


def reset_after_fork() -> None:
    """In a forked child: no flush of the parent's is running here."""
    _signals.in_progress = set()
    _signals.done = set()


# --------------------------------------------------------------------------
# multiprocessing workers
# --------------------------------------------------------------------------


class _WorkerState:
    flush: Callable[[], None] | None = None
    registered_pid = 0


_workers = _WorkerState()


class _Anchor:
    """Keeps the after-fork registration alive (its registry holds weak references)."""


_anchor = _Anchor()


def in_multiprocessing_child() -> bool:
    """Whether this process was started by ``multiprocessing`` (any start method)."""
    return multiprocessing.parent_process() is not None


def register_worker_flush(flush: Callable[[], None]) -> None:
    """Run *flush()* on the way out of this multiprocessing child (once per process).

    A no-op in a process not started by ``multiprocessing`` (``atexit`` covers it).
    """
    _workers.flush = flush
    if in_multiprocessing_child():
        _register_finalizer()


def _register_finalizer() -> None:
    if _workers.registered_pid == os.getpid():
        return
    _workers.registered_pid = os.getpid()
    # exitpriority >= 0: run by _exit_function before it joins the child's own children.
    multiprocessing.util.Finalize(None, _run_worker_flush, exitpriority=100)


def _run_worker_flush() -> None:
    flush = _workers.flush
    if flush is None:
        return
    try:
        flush()
    except Exception:  # never turn a worker's exit into a traceback
        _log.exception("otel_aspects: flushing metrics at worker exit failed")


def _after_multiprocessing_fork(_obj: object) -> None:
    # Called in a fork-started child after its bootstrap cleared the finalizers.
    if _workers.flush is not None:
        _register_finalizer()


multiprocessing.util.register_after_fork(_anchor, _after_multiprocessing_fork)
