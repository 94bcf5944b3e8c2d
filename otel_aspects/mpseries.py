"""Series that live in this process's multi-process file (the engine's side).

In multi-process mode a new generation of the global store makes its series
here instead of in memory (:class:`ProcessFile`, given to the generation by
:mod:`otel_aspects.multiprocess`).  They have the engine's series interface
(:mod:`otel_aspects.series`), and their ``pending`` queue writes through: the
engine's hot paths append a measurement to ``series.pending`` (or a ``timed``
slot's ``pending``) as always, and the append adds it to the file at once,
under the generation's lock, and queues nothing (its length stays 0, so the
engine never folds).  Nothing is aggregated in memory: the files are read by
whoever collects (:mod:`otel_aspects.multiprocess`).
"""

from __future__ import annotations

import logging
import os
import threading
from bisect import bisect_left
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import mpfile
from .config import MULTIPROCESS_MODES
from .mpfile import BUCKETS, FLAGS, FSUM, ISUM, MAX, MIN, Meta, N, Words, WorkerFile
from .series import Series

if TYPE_CHECKING:
    from .engine import Instrument

_INF = float("inf")

__all__ = ("DEFAULT_MODES", "ProcessFile")

logger = logging.getLogger("otel_aspects.multiprocess")

#: The mode of each kind when the YAML says none: counters and histograms add; an
#: up-down counter usually counts what live processes hold (in-flight requests,
#: open connections), so a dead process's share goes with it; a gauge is the last
#: value any process set, as in one process (see ``config.MULTIPROCESS_MODES``).
DEFAULT_MODES = {
    "counter": "sum",
    "histogram": "sum",
    **{kind: modes[0] for kind, modes in MULTIPROCESS_MODES.items()},
}


def meta_of(instrument: Instrument) -> Meta:
    """The file's description of *instrument*."""
    kind = instrument.kind
    return Meta(
        kind=kind,
        name=instrument.name,
        unit=instrument.unit,
        description=instrument.description,
        scope=instrument.scope,
        bounds=instrument.bounds if kind == "histogram" else None,  # type: ignore[attr-defined]
        mode=instrument.multiprocess or DEFAULT_MODES[kind],
        max_series=instrument.max_series,
    )


class _NoQueue(list):  # type: ignore[type-arg]
    """A ``pending`` queue that writes each value through and holds nothing.

    A ``list`` that is never filled: the engine's ``len(pending)``, slices and
    ``del`` stay C calls on an empty list; only ``append`` is ours.
    """

    __slots__ = ("lock", "words")

    def __init__(self, words: Words | None, lock: threading.Lock) -> None:
        super().__init__()
        self.words = words
        self.lock = lock


class _SumQueue(_NoQueue):
    __slots__ = ()

    def append(self, value: Any) -> None:
        with self.lock:
            q = self.words.q  # type: ignore[union-attr]
            q[N] += 1
            if value.__class__ is int:
                try:
                    q[ISUM] += value
                    return
                except (OverflowError, ValueError):
                    pass
            self.words.d[FSUM] += value  # type: ignore[union-attr]
            q[FLAGS] = 1


class _HistogramQueue(_NoQueue):
    """A histogram's queue (and, with ``counter``, a ``timed`` slot's: the counter's 1
    and the histogram's duration under one lock acquisition).

    The fewest writes to the file per measurement (each costs about 50 ns): the
    bucket and the sum; the count is the sum of the bucket counts; the float flag
    is set once; min and max are read only when the measurement passes the last
    extreme this queue saw (the file's can only be more extreme: other queues
    write the same series).
    """

    __slots__ = ("bounds", "counter", "d", "high", "low", "q", "unflagged")

    def __init__(
        self,
        words: Words | None,
        lock: threading.Lock,
        bounds: tuple[float, ...],
        counter: Words | None = None,
    ) -> None:
        super().__init__(words, lock)
        self.bounds = bounds
        #: The views written per measurement, looked up once here.
        self.counter = None if counter is None else counter.q
        self.q = None if words is None else words.q
        self.d = None if words is None else words.d
        self.low = _INF
        self.high = -_INF
        self.unflagged = True

    def append(self, value: Any) -> None:
        index = bisect_left(self.bounds, value)
        with self.lock:
            counter = self.counter
            if counter is not None:
                counter[N] += 1
                counter[ISUM] += 1
            q, d = self.q, self.d
            if q is None or d is None:
                return
            if value.__class__ is int:
                try:
                    q[ISUM] += value
                except (OverflowError, ValueError):  # past int64: the float part takes it
                    d[FSUM] += value
                    q[FLAGS] = 1
            else:
                d[FSUM] += value
                if self.unflagged:
                    q[FLAGS] = 1
                    self.unflagged = False
            if value < self.low:
                if value < d[MIN]:
                    d[MIN] = value
                self.low = d[MIN]
            if value > self.high:
                if value > d[MAX]:
                    d[MAX] = value
                self.high = d[MAX]
            q[BUCKETS + index] += 1


class _FileSeries(Series):
    """A series whose aggregation is words in the process's file."""

    __slots__ = ("lock", "meta", "words")

    def __init__(
        self, attributes: dict[str, Any], words: Words, meta: Meta, lock: threading.Lock
    ) -> None:
        super().__init__(attributes)
        self.words = words
        self.meta = meta
        self.lock = lock

    def fold_locked(self) -> None:
        """Nothing is ever queued."""

    def add_reader(self) -> None:
        """Readers collect from the files, not from the series."""

    def keep_exemplar(self, index: int, exemplar: tuple[Any, ...]) -> None:
        value, at, span_id, trace_id, _kept = exemplar
        with self.lock:
            mpfile.write_exemplar(
                self.words, self.meta, index, value, at, span_id or 0, trace_id or 0
            )


class FileSum(_FileSeries):
    """A counter's or up-down counter's series in the file."""

    __slots__ = ()

    def __init__(
        self, attributes: dict[str, Any], words: Words, meta: Meta, lock: threading.Lock
    ) -> None:
        super().__init__(attributes, words, meta, lock)
        self.pending = _SumQueue(words, lock)

    def add(self, value: int | float) -> int:
        """Add one measurement (the caller holds the lock); its exemplar slot, 0."""
        mpfile.add(self.words, value)
        return 0

    measure = add

    def add_all(self, values: list[Any]) -> None:
        for value in values:
            mpfile.add(self.words, value)


class FileGauge(_FileSeries):
    """A gauge's series in the file."""

    __slots__ = ()

    def set(self, value: int | float) -> None:
        """Set the last value (the caller holds the lock)."""
        mpfile.set_gauge(self.words, value)


class FileHistogram(_FileSeries):
    """A histogram's series in the file."""

    __slots__ = ("bounds",)

    def __init__(
        self, attributes: dict[str, Any], words: Words, meta: Meta, lock: threading.Lock
    ) -> None:
        super().__init__(attributes, words, meta, lock)
        self.bounds = meta.bounds or ()
        self.pending = _HistogramQueue(words, lock, self.bounds)

    def observe(self, value: int | float) -> int:
        """Add one measurement (the caller holds the lock); its bucket."""
        return mpfile.observe(self.words, self.bounds, value)

    measure = observe

    def observe_all(self, values: list[Any]) -> None:
        for value in values:
            mpfile.observe(self.words, self.bounds, value)


_CLASSES: dict[str, type[_FileSeries]] = {
    "counter": FileSum,
    "up_down_counter": FileSum,
    "gauge": FileGauge,
    "histogram": FileHistogram,
}


class ProcessFile:
    """Where this process's series go in *directory*: its :class:`WorkerFile`,
    created with the first series, and again in a forked child."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._file: WorkerFile | None = None
        self._lock = threading.Lock()

    def file(self) -> WorkerFile:
        file = self._file
        if file is None or file.pid != os.getpid():
            with self._lock:
                file = self._file
                if file is None or file.pid != os.getpid():
                    try:
                        file = WorkerFile(self.directory)
                    except FileNotFoundError:  # the folder was deleted under the server
                        logger.error(
                            "otel_aspects: the multi-process folder %s is gone; made it "
                            "again so this process records (keep it away from tmp cleaners)",
                            self.directory,
                        )
                        self.directory.mkdir(parents=True, exist_ok=True)
                        file = WorkerFile(self.directory)
                    self._file = file
        return file

    def after_fork(self) -> None:
        """In a forked child: let go of the parent's file (its lock tells the parent lives)."""
        self._lock = threading.Lock()
        file = self._file
        if file is not None and file.pid != os.getpid():
            file.close_inherited()
            self._file = None

    def new_series(
        self, instrument: Instrument, attributes: dict[str, Any], lock: threading.Lock
    ) -> Series:
        """A series of *instrument* in the file (written under *lock*, the generation's)."""
        meta = meta_of(instrument)
        words = self.file().series(meta, attributes)
        return _CLASSES[meta.kind](attributes, words, meta, lock)

    def pair_queue(
        self, counter: Series | None, histogram: Series | None, lock: threading.Lock
    ) -> list[Any]:
        """The write-through queue of a ``timed`` slot recording into these series."""
        counter_words = counter.words if isinstance(counter, _FileSeries) else None
        if isinstance(histogram, FileHistogram):
            return _HistogramQueue(histogram.words, lock, histogram.bounds, counter_words)
        return _HistogramQueue(None, lock, (), counter_words)
