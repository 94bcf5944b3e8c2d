"""Series: what one attribute set of one instrument has aggregated.

Each holds what the OpenTelemetry SDK's aggregation of its kind holds, per reader
where the SDK keeps it per reader (sums since a reader's last collection, a delta
reader's min and max), plus ``n`` (the number of measurements) and ``pending``
(measurements queued by the write-behind of :mod:`otel_aspects.engine`).  Every
method that changes a series is called with its generation's lock held.
"""

from __future__ import annotations

from bisect import bisect_left
from time import time_ns
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import Generation

__all__ = ("GaugeSeries", "HistogramSeries", "Series", "SumSeries")

_INF = float("inf")


class Series:
    """The aggregation of one attribute set of one instrument.

    ``n`` counts measurements (a delta reader gets a point only when it moved);
    ``start`` is the time of the first one (a cumulative point's start time).
    ``exemplar`` is the last sampled measurement, ``(value, time_unix_nano,
    span_id, trace_id)``, or ``None``.
    """

    __slots__ = ("attributes", "exemplar", "mixed", "n", "pending", "start")

    def __init__(self, attributes: dict[str, Any]) -> None:
        self.attributes = attributes
        self.start = time_ns()
        self.n = 0
        self.exemplar: tuple[Any, ...] | None = None
        #: Measurements recorded but not yet added (see :class:`Slot`; sums and
        #: histograms only: a gauge's last value must not wait behind older ones).
        self.pending: list[Any] = []
        #: Some value is not a str: raw dicts that compare equal may still differ in
        #: type (``True == 1 == 1.0``), so an alias hit checks the types.
        self.mixed = any(v.__class__ is not str for v in attributes.values())

    def fold(self, generation: Generation) -> None:
        """Add the pending measurements now (takes *generation*'s lock)."""
        with generation.lock:
            self.fold_locked()

    def fold_locked(self) -> None:
        """Add the pending measurements (the caller holds the lock)."""
        self.pending.clear()  # a gauge never queues; the others override this

    def keep_exemplar(self, index: int, exemplar: tuple[Any, ...]) -> None:
        """Keep *exemplar* (sampled by ``Generation.offer``) as this series' last one."""
        self.exemplar = exemplar

    def same_types(self, items: tuple[tuple[Any, Any], ...]) -> bool:
        """Whether raw *items* have this series' value types (the SDK keeps 1 and True apart)."""
        attributes = self.attributes
        return all(value.__class__ is attributes.get(key, value).__class__ for key, value in items)


class SumSeries(Series):
    """A counter's or an up-down counter's sum.

    ``value`` is the sum of every measurement, added in order; ``sums`` holds one
    per reader of the generation: the sum since that reader's last collection,
    added in order from ``0`` as the SDK's aggregation adds each interval's
    measurements (so a point's value and its type, ``int`` unless a float was
    measured, are the SDK's to the last bit).
    """

    __slots__ = ("sums", "value")

    def __init__(self, attributes: dict[str, Any], readers: int) -> None:
        super().__init__(attributes)
        self.value: int | float = 0
        self.sums: list[int | float] = [0] * readers

    def add(self, value: int | float) -> int:
        """Add one measurement (the caller holds the lock); its exemplar index, 0."""
        self.value += value
        sums = self.sums
        for i in range(len(sums)):
            sums[i] += value
        self.n += 1
        return 0

    measure = add

    def add_all(self, values: list[Any]) -> None:
        """Add many measurements, in order (the caller holds the lock)."""
        self.value = sum(values, self.value)
        sums = self.sums
        for i in range(len(sums)):
            sums[i] = sum(values, sums[i])
        self.n += len(values)

    def fold_locked(self) -> None:
        """Add the pending measurements (the caller holds the lock); see :class:`Slot`."""
        pending = self.pending
        taken = pending[: len(pending)]
        if taken:
            del pending[: len(taken)]
            self.add_all(taken)

    def add_reader(self) -> None:
        """A slot for a new reader: it starts with everything measured so far."""
        self.sums.append(self.value)


class GaugeSeries(Series):
    """A gauge's last value."""

    __slots__ = ("value",)

    def __init__(self, attributes: dict[str, Any], readers: int) -> None:
        super().__init__(attributes)
        self.value: int | float = 0

    def set(self, value: int | float) -> None:
        """Set the last value (the caller holds the lock)."""
        self.value = value
        self.n += 1

    def add_reader(self) -> None:
        """Nothing per reader: every reader gets the last value."""


class HistogramSeries(Series):
    """Count (``n``), sum, explicit bucket counts, min and max.

    Per reader of the generation, as for :class:`SumSeries`: ``sums`` (the sum
    since that reader's last collection, added in order from ``0``) and
    ``windows`` (``[min, max]`` since then: a delta point's min and max).
    ``exemplars`` holds the last sampled measurement per bucket, as the SDK's
    aligned-bucket reservoir does.
    """

    __slots__ = ("bounds", "counts", "exemplars", "max", "min", "sum", "sums", "windows")

    def __init__(self, attributes: dict[str, Any], bounds: tuple[float, ...], readers: int) -> None:
        super().__init__(attributes)
        self.bounds = bounds
        self.sum: int | float = 0
        self.sums: list[int | float] = [0] * readers
        self.counts = [0] * (len(bounds) + 1)
        self.min: float = _INF
        self.max: float = -_INF
        self.windows = [[_INF, -_INF] for _ in range(readers)]
        self.exemplars: list[tuple[Any, ...] | None] | None = None

    def add_reader(self) -> None:
        """A slot for a new reader: it starts with everything measured so far."""
        self.sums.append(self.sum)
        self.windows.append([self.min, self.max])

    def keep_exemplar(self, index: int, exemplar: tuple[Any, ...]) -> None:
        """Keep *exemplar* as the last sampled measurement of bucket *index*."""
        exemplars = self.exemplars
        if exemplars is None:
            exemplars = self.exemplars = [None] * len(self.counts)
        exemplars[index] = exemplar

    def observe(self, value: int | float) -> int:
        """Add one measurement (the caller holds the lock); returns its bucket index."""
        index = bisect_left(self.bounds, value)
        self.n += 1
        self.sum += value
        self.counts[index] += 1
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        sums = self.sums
        for i in range(len(sums)):
            sums[i] += value
        for window in self.windows:
            if value < window[0]:
                window[0] = value
            if value > window[1]:
                window[1] = value
        return index

    measure = observe

    def fold_locked(self) -> None:
        """Add the pending measurements (the caller holds the lock); see :class:`Slot`."""
        pending = self.pending
        taken = pending[: len(pending)]
        if taken:
            del pending[: len(taken)]
            self.observe_all(taken)

    def observe_all(self, values: list[Any]) -> None:
        """Add many measurements at once, in order (the caller holds the lock)."""
        bounds, counts = self.bounds, self.counts
        for value in values:
            counts[bisect_left(bounds, value)] += 1
        self.n += len(values)
        self.sum = sum(values, self.sum)
        sums = self.sums
        for i in range(len(sums)):
            sums[i] = sum(values, sums[i])
        low, high = min(values), max(values)
        if low < self.min:
            self.min = low
        if high > self.max:
            self.max = high
        for window in self.windows:
            if low < window[0]:
                window[0] = low
            if high > window[1]:
                window[1] = high
