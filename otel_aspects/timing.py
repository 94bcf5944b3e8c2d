"""``timed``: one object for ``with``, ``async with`` and ``@``.

>>> import otel_aspects
>>> seen = []
>>> t = otel_aspects.timed(record_func=lambda d, labels: seen.append(labels), labels={"op": "x"})
>>> with t as run:
...     run.set_label("shard", 3)
>>> seen
[{'op': 'x', 'shard': 3, 'status': 'success'}]

Each measurement is labelled with the outcome (``status`` = ``success`` |
``failure`` | ``cancelled``, plus ``error_type`` on failure; see
:mod:`otel_aspects.labels`).  Labels are merged in this order, later ones
winning: static ``labels``, ``extract_labels(*args, **kwargs)``, values set
during the call (``set_label``), ``outcome_labels(result, exc)``, and last the
reserved outcome labels, which nothing else can set.

Every form -- a decorated call of any kind, ``with``, ``async with``,
``start()``/``Run.stop()`` -- makes its :class:`~otel_aspects.run.Run` with the
one constructor and ends it with :meth:`Run.close <otel_aspects.run.Run.close>`, which
calls :meth:`Timed._record`: the one function that decides the outcome and the
labels and records them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial
from sys import _getframe
from time import perf_counter
from typing import Any, Literal

from ._attributes import clean_attributes
from ._targets import MetricsSource, resolve
from ._wrap import Args, Aspect, Kwargs, target_name
from .engine import Instrument, Pair
from .hooks import check_callable, hook_failed
from .labels import (
    ACTIVE,
    FAILURE,
    STATUS,
    SUCCESS,
    drop_reserved,
    outcome_labels,
)
from .run import NULL_RUN, Run
from .scopes import GEN_FLAGS, enter_in_generator, exit_unnested

__all__ = ("ExtractLabels", "MetricsSource", "OutcomeLabels", "RecordFunc", "Run", "Timed", "timed")

logger = logging.getLogger("otel_aspects.aspects")

#: ``record_func(duration_seconds, labels)``: called once per measured call.
RecordFunc = Callable[[float, dict[str, Any]], object]
ExtractLabels = Callable[..., Mapping[str, Any] | None]
OutcomeLabels = Callable[[Any, BaseException | None], Mapping[str, Any] | None]

_new = object.__new__
_get_active = ACTIVE.get

#: What became of a call's measurement when a hook failed, by hook.
_EFFECTS = {
    "extract_labels": "This call is recorded without the extracted labels "
    "(static labels, set_label values and the outcome are kept)",
    "outcome_labels": "This call is recorded without outcome_labels' labels",
    "error_if": "This call's status ignores error_if: failure only if it raised or "
    "set_success(False) was called",
    "clock": "This call's duration was taken with time.perf_counter instead",
}


class Timed(Aspect):
    """Time a call or a block; record into a histogram, a counter, a function.

    ``timed(histogram=None, *, counter=None, client=None, labels=None,
    record_func=None, extract_labels=None, outcome_labels=None, error_if=None,
    clock=None)``

    - *histogram*: a metric name (looked up on *client*) or an OTel histogram;
      receives the duration in seconds.
    - *counter*: a name or an OTel counter; receives ``1`` per call, with the
      same labels (calls by outcome).
    - *record_func*: ``record_func(duration_seconds, labels)``, a fresh dict
      per call, labels not cleaned (the seed's recording functions).
    - *labels*: static labels (cleaned once, here).
    - *extract_labels*: decorator form only; called with exactly the
      decorated function's own arguments -- for a method, without ``self``
      or ``cls`` (wrapt passes the bound instance separately).
    - *outcome_labels(result, exc)*: labels decided at the end (``result`` is
      ``None`` on an exception, and for generators and ``with`` blocks).
    - *error_if(result)*: a truthy answer records ``failure`` without an
      exception (autometrics' ``record_error_if``).  An explicit
      ``set_success`` wins over it; an exception always wins.
    - *clock*: a ``() -> float`` seconds clock, default ``time.perf_counter``.

    Instruments are resolved once, here; building a ``timed`` is cheap, so one
    made inside a handler per call is a normal use.  If every target is
    disabled (``capture: false`` or undeclared) and there is no *record_func*,
    the aspect is transparent: ``@`` adds only a trivial wrapt pass-through and
    ``with`` does nothing (``set_label`` inside then reaches the enclosing
    enabled scope, if any).  Hooks or targets that raise are logged once per
    cause and never reach the caller.

    >>> from otel_aspects import timed, set_label
    >>> record = lambda duration, labels: print(sorted(labels.items()))
    >>> @timed(record_func=record, labels={"op": "load"})
    ... def load(key):
    ...     set_label("cache", "miss")
    ...     return key
    >>> load("k")
    [('cache', 'miss'), ('op', 'load'), ('status', 'success')]
    'k'
    >>> with timed(record_func=record) as t:
    ...     t.set_success(False)
    [('status', 'failure')]
    """

    _clock: Callable[[], float]
    #: Static labels as given (reserved keys dropped): the base of a run's labels.
    _static: dict[str, Any]
    #: This is the per-target copy made by ``@`` (its runs are never `with` blocks).
    _decorating = False

    def __init__(
        self,
        histogram: Any = None,
        *,
        counter: Any = None,
        client: MetricsSource | None = None,
        labels: Mapping[str, Any] | None = None,
        record_func: RecordFunc | None = None,
        extract_labels: ExtractLabels | None = None,
        outcome_labels: OutcomeLabels | None = None,
        error_if: Callable[[Any], object] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if histogram is None and counter is None and record_func is None:
            raise ValueError(
                "otel_aspects: timed() needs somewhere to record: a histogram, a counter "
                "or a record_func (for example timed('request_duration_seconds', client=metrics))"
            )
        if not _all_callable(record_func, extract_labels, outcome_labels, error_if, clock):
            for role, hook in (
                ("record_func", record_func),
                ("extract_labels", extract_labels),
                ("outcome_labels", outcome_labels),
                ("error_if", error_if),
                ("clock", clock),
            ):
                check_callable(hook, role)
        hist = cnt = None
        name: object = None
        if histogram is not None:
            hist, name = resolve(histogram, client, "histogram", "histogram")
        if counter is not None:
            cnt, counter_name = resolve(counter, client, "counter", "counter")
            name = name or counter_name
        self.name: str = str(name or getattr(record_func, "__qualname__", "record_func"))
        self._static, self._static_clean, self._ok_attrs, self._ok_labels = _static_parts(
            labels, self.name
        )
        self._clock = perf_counter if clock is None else self._guarded_clock(clock)
        self._record_func = record_func
        self._extract = extract_labels
        self._outcome_hook = outcome_labels
        self._error_if = error_if
        #: No hook can change the outcome or add labels at the end.
        self._plain = outcome_labels is None and error_if is None
        self._pair = None if hist is None and cnt is None else Pair(cnt, hist, self._ok_attrs)
        #: A success without labels set records the prebuilt attributes and nothing else
        #: (engine instruments only: they never raise, so nothing is left to report).
        self._ok_only = (
            self._plain
            and record_func is None
            and all(i is None or isinstance(i, Instrument) for i in (hist, cnt))
            and self._pair is not None
        )
        self.enabled = hist is not None or cnt is not None or record_func is not None

    def _for_target(self, func: Any) -> Timed:
        # The same aspect, whose warnings name *func* (decided once, here).
        twin = _new(type(self))
        twin.__dict__.update(self.__dict__)
        twin._decorating = True
        twin._target = target_name(func)
        twin._begin = partial(Run, twin)  # Run(twin, args, kwargs): the one constructor
        twin._begin = partial(Run, twin)
        return twin

    def _guarded_clock(self, clock: Callable[[], float]) -> Callable[[], float]:
        def guarded() -> float:
            try:
                return float(clock())
            except Exception as exc:
                self._hook_failed("clock", exc)
                return perf_counter()

        return guarded

    # ------------------------------------------------------------------ recording

    def _record(
        self,
        duration: float,
        labels: dict[str, Any] | None,
        success: bool | None,
        dirty: bool,
        result: object,
        exc: BaseException | None,
    ) -> None:
        """Decide the outcome and the labels of one run, and record it (never raises).

        *labels* are the run's labels (``None``: only the static ones), *success*
        what ``set_success`` asked, *dirty* whether some label may need cleaning.
        """
        if labels is None and success is None and exc is None and self._plain:
            # Static labels, success, no hook: the attributes built once, at construction.
            attrs = self._ok_attrs
            merged = None
        else:
            merged = dict(self._static if labels is None else labels)
            ok = True
            if exc is None and self._error_if is not None:
                try:
                    ok = not self._error_if(result)
                except Exception as hook_exc:
                    self._hook_failed("error_if", hook_exc)
            if success is not None:
                ok = success
            if self._outcome_hook is not None:
                try:
                    more = self._outcome_hook(result, exc)
                    if more:
                        merged.update(drop_reserved(more))
                        dirty = True
                except Exception as hook_exc:
                    self._hook_failed("outcome_labels", hook_exc)
            if exc is None:
                merged[STATUS] = SUCCESS if ok else FAILURE
            else:
                merged.update(outcome_labels(exc, ok))
                dirty = True
            clean = self._static_clean and not dirty
            attrs = merged if clean or self._pair is None else clean_attributes(merged, self.name)
        if self._pair is not None:
            try:
                self._pair.record(duration, attrs)
            except Exception as record_exc:
                self._hook_failed("recording", record_exc)
        if self._record_func is not None:
            try:
                self._record_func(duration, dict(self._ok_labels) if merged is None else merged)
            except Exception as hook_exc:
                self._hook_failed("record_func", hook_exc)

    #: The decorated callable's name (set on the per-target copy), for warnings.
    _target: str | None = None

    def _hook_failed(self, role: str, exc: BaseException) -> None:
        where = (
            f"timed block {self.name!r}" if self._target is None else f"function {self._target!r}"
        )
        hook_failed(where, role, exc, self._effect(role))

    def _effect(self, role: str) -> str:
        """What became of the call's measurement when *role* failed (built only then)."""
        pair = self._pair
        targets = " and ".join(
            f"{kind} {getattr(inst, 'name', kind)!r}"
            for kind, inst in (
                ("counter", pair.counter if pair else None),
                ("histogram", pair.histogram if pair else None),
            )
            if inst is not None
        )
        if role == "recording":
            return (
                "This call is missing from the instrument that raised and from any after it "
                "(the counter is recorded before the histogram)"
                + ("; record_func still received it" if self._record_func is not None else "")
            )
        if role == "record_func":
            if targets:
                return f"record_func did not record this call; the {targets} did record it"
            return "Nothing was recorded for this call"
        return _EFFECTS[role]

    # ------------------------------------------------------------------ hooks of @

    def _extracted(self, args: Args, kwargs: Kwargs) -> dict[str, Any] | None:
        """The static labels plus ``extract_labels(*args, **kwargs)``, or ``None``."""
        try:
            extracted = self._extract(*args, **kwargs)  # type: ignore[misc]
            if extracted:
                return {**self._static, **drop_reserved(extracted)}
        except Exception as exc:
            self._hook_failed("extract_labels", exc)
        return None

    # The hooks the wrappers of `@` drive: the run's own methods (no frame of ours between).
    _finish = staticmethod(Run.close)
    _fail = staticmethod(Run.failed)
    _suspend = staticmethod(Run.exit_scope)
    _resume = staticmethod(Run.enter_scope)

    # ------------------------------------------------------------------ with / async with

    def __enter__(self) -> Run:
        if not self.enabled:
            return NULL_RUN
        frame = _getframe(1)
        run = Run(self)
        if frame.f_code.co_flags & GEN_FLAGS:
            # The block can be suspended at a `yield` while the consumer runs in the same
            # context: a stand-in scope steps aside while the generator is suspended.
            enter_in_generator(run, frame)
        return run

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> Literal[False]:
        if not self.enabled:
            return False
        end = self._clock()
        scope = _get_active()
        if scope.__class__ is not Run or not scope.close(None, exc, end, self):
            exit_unnested(self, scope, end, exc)
        return False

    async def __aenter__(self) -> Run:
        if not self.enabled:
            return NULL_RUN
        frame = _getframe(1)  # the frame of the `async with`
        run = Run(self)
        if frame.f_code.co_flags & GEN_FLAGS:
            enter_in_generator(run, frame)
        return run

    async def __aexit__(
        self, exc_type: object, exc: BaseException | None, tb: object
    ) -> Literal[False]:
        # __exit__'s body (a coroutine frame calling __exit__ would add one per block).
        if not self.enabled:
            return False
        end = self._clock()
        scope = _get_active()
        if scope.__class__ is not Run or not scope.close(None, exc, end, self):
            exit_unnested(self, scope, end, exc)
        return False

    # ------------------------------------------------------------------ sample style

    def start(self) -> Run:
        """Start a measurement to :meth:`Run.stop` later (not a scope for ``set_label``).

        >>> from otel_aspects import timed
        >>> t = timed(record_func=lambda d, labels: print(labels["status"]))
        >>> sample = t.start()
        >>> _ = sample.stop(success=False)
        failure
        """
        if not self.enabled:
            return NULL_RUN
        return Run(self, scope=False)

    def __repr__(self) -> str:
        state = "" if self.enabled else ", disabled"
        return f"<timed {self.name!r}{state}>"


#: The spelling used in ``@timed(...)`` and ``with timed(...)``.
timed = Timed


def _all_callable(*hooks: object) -> bool:
    # A loop, not all(<generator>): no generator frame per construction.
    for hook in hooks:  # noqa: SIM110
        if hook is not None and not callable(hook):
            return False
    return True


_StaticParts = tuple[dict[str, Any], bool, dict[str, Any], dict[str, Any]]
#: Static labels seen before -> what construction derives from them (bounded): a
#: ``timed`` built per call with the same labels derives nothing twice.
_static_cache: dict[tuple[str, tuple[tuple[Any, Any], ...]], _StaticParts] = {}
_STATIC_CACHE_SIZE = 512


def _static_parts(labels: object, name: str) -> _StaticParts:
    """``(static labels, already clean, success attributes, success labels)``; never shared
    mutably (nothing derived is changed after construction)."""
    key = None
    if labels.__class__ is dict:
        try:
            key = (name, tuple(labels.items()))
            parts = _static_cache.get(key)
        except Exception:  # an unhashable value
            key = parts = None
        if parts is not None:
            return parts
    static = _static_labels(labels)
    cleaned = clean_attributes(static, name) if static else static
    parts = (static, cleaned is static, {**cleaned, STATUS: SUCCESS}, {**static, STATUS: SUCCESS})
    if (
        key is not None
        and len(_static_cache) < _STATIC_CACHE_SIZE
        and all(k.__class__ is str and v.__class__ is str for k, v in labels.items())  # type: ignore[attr-defined]
    ):
        # Only str values: True == 1 == 1.0 as keys, but no other value equals a str,
        # so a hit always has exactly these labels.
        _static_cache[key] = parts
    return parts


def _static_labels(labels: object) -> dict[str, Any]:
    """The static ``labels=`` as a new dict without reserved keys (decoration-time errors)."""
    if labels is None:
        return {}
    if labels.__class__ is not dict:
        if not isinstance(labels, Mapping):
            raise TypeError(
                f"otel_aspects: labels= must be a mapping of label names to values, "
                f"got {type(labels).__name__}"
            )
        try:
            labels = dict(labels)
        except Exception as exc:
            raise TypeError(
                f"otel_aspects: labels= could not be read ({type(exc).__name__}: "
                f"{str(exc)[:100]}); pass a plain dict of label names to values"
            ) from exc
    return drop_reserved(labels)
