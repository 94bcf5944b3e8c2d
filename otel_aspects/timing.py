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
"""

from __future__ import annotations

import dis
import logging
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping
from contextvars import Token
from sys import _getframe
from time import perf_counter
from types import CodeType
from typing import Any, Literal, Protocol

from opentelemetry.metrics import Counter, Histogram, UpDownCounter

from ._attributes import MAX_VALUE_LENGTH, clean_attributes
from ._warn import warn_once
from ._wrap import Args, Aspect, Kwargs, _kind_target, target_name
from .labels import (
    ACTIVE,
    FAILURE,
    RESERVED_LABELS,
    STATUS,
    SUCCESS,
    LabelScope,
    drop_reserved,
    outcome_labels,
    warn_reserved,
)

__all__ = ("MetricsSource", "RecordFunc", "Run", "Timed", "timed")

logger = logging.getLogger("otel_aspects.aspects")

#: ``record_func(duration_seconds, labels)``: called once per measured call.
RecordFunc = Callable[[float, dict[str, Any]], object]
ExtractLabels = Callable[..., Mapping[str, Any] | None]
OutcomeLabels = Callable[[Any, BaseException | None], Mapping[str, Any] | None]

_lock = threading.Lock()
_acquire, _release = _lock.acquire, _lock.release
_new = object.__new__
_set_active = ACTIVE.set
_get_active = ACTIVE.get


class MetricsSource(Protocol):
    """What the aspects need from a client (``OTelMetricsClient`` fits)."""

    def get_counter(self, name: str) -> Counter | None: ...
    def get_histogram(self, name: str) -> Histogram | None: ...
    def get_up_down_counter(self, name: str) -> UpDownCounter | None: ...


def resolve(
    target: Any, client: MetricsSource | None, kind: str, role: str
) -> tuple[Any, str | None]:
    """``(instrument or None, metric name)`` for a name or an instrument (config-time check)."""
    if target is None:
        return None, None
    if isinstance(target, str):
        if client is None:
            raise ValueError(
                f"otel_aspects: {role}={target!r} names a metric but no client= was given; "
                f"pass client=<OTelMetricsClient>, or pass the OTel {kind} instrument itself"
            )
        getter = getattr(client, "get_" + kind)
        instrument = getter(target)
        return instrument, target
    method = "record" if kind == "histogram" else "add"
    if not callable(getattr(target, method, None)):
        raise TypeError(
            f"otel_aspects: {role}= must be a metric name or an OTel {kind} "
            f"(with .{method}()), got {target!r}"
        )
    return target, getattr(target, "name", None) or role


def check_callable(value: object, role: str) -> None:
    """Fail loudly at decoration time on a hook that cannot be called."""
    if value is not None and not callable(value):
        raise TypeError(f"otel_aspects: {role}= must be callable or None, got {value!r}")


#: What to do about a failing hook, by role.
_FIX = {
    "extract_labels": "Fix extract_labels: it is called with exactly the decorated callable's "
    "own arguments (for a method without self/cls; with none in a `with` block)",
    "record_func": "Fix record_func: it is called as record_func(duration_seconds, labels)",
    "outcome_labels": "Fix outcome_labels: it is called as outcome_labels(result, exc)",
    "error_if": "Fix error_if: it is called as error_if(result)",
}
_FIX_RECORDING = "Check the OpenTelemetry instrument that raised, or the meter provider behind it"


def hook_failed(where: str, role: str, exc: Exception, effect: str) -> None:
    """One WARNING per (decorated target or block, hook, exception class); never raises.

    *where* names the decorated callable (``function 'mod.f'``) or the block
    (``timed block 'request_duration_seconds'``); *effect* says what became of
    this call's measurement.  Both are built once, when the hooks are built.
    """
    warn_once(
        logger,
        ("hook", where, role, type(exc).__name__),
        "otel_aspects: %s of %s raised %s: %s. %s; the call's own result or exception is "
        "untouched. %s. (Logged once per cause.)",
        role,
        where,
        type(exc).__name__,
        exc,
        effect,
        _FIX.get(role, _FIX_RECORDING),
    )


class Run:
    """One measurement in progress: the ``as`` target of ``with timed(...)``.

    Also what :meth:`Timed.start` returns (Micrometer's ``Timer.Sample`` style:
    start now, decide the labels and outcome at :meth:`stop`).  After the
    measurement is recorded the run is closed and further changes are ignored.
    """

    __slots__ = ("_dirty", "_done", "_extra", "_parent", "_start", "_success", "_timed", "_token")

    _timed: Timed
    _start: float
    _token: Token[LabelScope | None] | None
    #: ``None`` until a label is set or extracted; then every label so far
    #: (static first, then extracted and set ones, later wins), raw.
    _extra: dict[str, Any] | None
    #: Some label in ``_extra`` may need cleaning before it reaches OpenTelemetry.
    _dirty: bool
    _success: bool | None
    _done: bool
    #: Set only when a block exited out of order: the scope to restore on this
    #: run's exit (its token is then invalid); read with :func:`_parent_of`.
    _parent: LabelScope | None

    def __init__(self, owner: Timed) -> None:
        self._timed = owner
        self._token = None
        self._extra = None
        self._success = None
        self._done = False
        self._dirty = False

    def set_label(self, key: str, value: object) -> None:
        """Add or replace label *key* (``status``/``error_type`` are reserved)."""
        if self._done:
            return
        if key.__class__ is not str or key in RESERVED_LABELS:
            key = _checked_key(key)
            if key is _UNSET:
                return
        extra = self._extra
        if extra is None:
            _acquire()  # a child thread may set the first label concurrently
            try:
                extra = self._extra
                if extra is None:
                    extra = self._extra = self._timed._static.copy()
            finally:
                _release()
        extra[key] = value
        # Only this value is checked here; anything unusual is cleaned at record time.
        cls = value.__class__
        if not (
            key.__class__ is str
            and 0 < len(key) <= MAX_VALUE_LENGTH
            and (
                (cls is str and len(value) <= MAX_VALUE_LENGTH)  # type: ignore[arg-type]
                or cls is int
                or cls is bool
                or (cls is float and value == value)
            )
        ):
            self._dirty = True

    def set_success(self, success: bool) -> None:
        """Record this measurement as ``success`` or ``failure`` (an exception still wins)."""
        if not self._done:
            self._success = bool(success)

    @property
    def labels(self) -> dict[str, Any]:
        """Labels known so far, without the outcome."""
        extra = self._extra
        return dict(self._timed._static if extra is None else extra)

    def stop(
        self,
        *,
        labels: Mapping[str, Any] | None = None,
        success: bool | None = None,
        error: BaseException | None = None,
    ) -> float:
        """Record now, once: returns the duration (``0.0`` if already recorded).

        *labels* are added last (before the outcome); *error* makes the outcome
        ``failure``/``cancelled`` as if it had been raised.

        >>> import otel_aspects
        >>> sample = otel_aspects.timed(record_func=lambda d, labels: None).start()
        >>> sample.stop(labels={"route": "/a"}) >= 0
        True
        """
        timed = self._timed
        end = timed._clock()
        if self._done:
            return 0.0
        if labels:
            for key, value in labels.items():
                self.set_label(key, value)
        if success is not None:
            self.set_success(success)
        self._done = True
        duration = end - self._start
        timed._record(self, duration, None, error)
        return duration


class _NullRun(Run):
    """What a disabled ``timed`` hands out: every method does nothing."""

    __slots__ = ()

    def set_label(self, key: str, value: object) -> None:
        return None

    def set_success(self, success: bool) -> None:
        return None

    def stop(
        self,
        *,
        labels: Mapping[str, Any] | None = None,
        success: bool | None = None,
        error: BaseException | None = None,
    ) -> float:
        return 0.0

    @property
    def labels(self) -> dict[str, Any]:
        return {}


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

    Instruments are resolved once, here.  If every target is disabled
    (``capture: false`` or undeclared) and there is no *record_func*, the
    aspect is transparent: ``@`` adds only a trivial wrapt pass-through and
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
    _static: dict[str, Any]
    _record: Callable[[Run, float, object, BaseException | None], None]
    _fast: _FastPath | None
    _extract: bool
    #: This is the per-target copy made by ``@`` (its runs are never `with` blocks).
    _decorating = False
    #: What the hooks are built from (again per decorated target, see ``_for_target``).
    _parts: tuple[
        Histogram | None,
        Counter | None,
        RecordFunc | None,
        ExtractLabels | None,
        OutcomeLabels | None,
        Callable[[Any], object] | None,
    ]

    def __init__(
        self,
        histogram: str | Histogram | None = None,
        *,
        counter: str | Counter | None = None,
        client: MetricsSource | None = None,
        labels: Mapping[str, Any] | None = None,
        record_func: RecordFunc | None = None,
        extract_labels: ExtractLabels | None = None,
        outcome_labels: OutcomeLabels | None = None,
        error_if: Callable[[Any], object] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__()
        if histogram is None and counter is None and record_func is None:
            raise ValueError(
                "otel_aspects: timed() needs somewhere to record: a histogram, a counter "
                "or a record_func (for example timed('request_duration_seconds', client=metrics))"
            )
        for role, hook in (
            ("record_func", record_func),
            ("extract_labels", extract_labels),
            ("outcome_labels", outcome_labels),
            ("error_if", error_if),
            ("clock", clock),
        ):
            check_callable(hook, role)
        if labels is not None and not isinstance(labels, Mapping):
            raise TypeError(f"otel_aspects: labels= must be a mapping, got {labels!r}")
        hist, hist_name = resolve(histogram, client, "histogram", "histogram")
        cnt, cnt_name = resolve(counter, client, "counter", "counter")
        name = hist_name or cnt_name or getattr(record_func, "__qualname__", "record_func")
        self.name: str = str(name)
        static = drop_reserved(labels or {})
        self._static = static
        self._clock = clock or perf_counter
        self.enabled = hist is not None or cnt is not None or record_func is not None
        self._parts = (hist, cnt, record_func, extract_labels, outcome_labels, error_if)
        self._make_hooks(f"timed block {self.name!r}")

    def _for_target(self, func: Any) -> Timed:
        # The same aspect with hooks whose warnings name *func* (built once, here).
        twin = _new(type(self))
        twin.__dict__.update(self.__dict__)
        twin._decorating = True
        twin._make_hooks(f"function {target_name(func)!r}")
        if twin._fast is not None:
            twin._fast.none_only = _returns_only_none(func)
        return twin

    def _make_hooks(self, where: str) -> None:
        """Build the per-call hooks; their warnings say they come from *where*."""
        hist, cnt, record_func, extract_labels, outcome_hook, error_if = self._parts
        clock = self._clock
        name = self.name
        static = self._static
        cleaned = clean_attributes(static, name)
        static_clean = cleaned is static  # returned as is only when already clean
        clean_static = dict(cleaned)
        ok_attrs = {**clean_static, STATUS: SUCCESS}
        ok_labels = {**static, STATUS: SUCCESS}
        hist_record = None if hist is None else hist.record
        counter_add = None if cnt is None else cnt.add
        instruments = hist_record is not None or counter_add is not None
        plain = outcome_hook is None and error_if is None
        labels_only = plain and record_func is None and static_clean
        set_var, reset_var = ACTIVE.set, ACTIVE.reset
        new = object.__new__
        targets = " and ".join(
            f"{kind} {getattr(inst, 'name', kind)!r}"
            for kind, inst in (("counter", cnt), ("histogram", hist))
            if inst is not None
        )
        lost = (
            "This call is missing from the instrument that raised and from any after it "
            "(the counter is recorded before the histogram)"
            + ("; record_func still received it" if record_func is not None else "")
        )
        effects = {
            "recording": lost,
            "record_func": (
                f"record_func did not record this call; the {targets} did record it"
                if instruments
                else "Nothing was recorded for this call"
            ),
            "extract_labels": "This call is recorded without the extracted labels "
            "(static labels, set_label values and the outcome are kept)",
            "outcome_labels": "This call is recorded without outcome_labels' labels",
            "error_if": "This call's status ignores error_if: failure only if it raised or "
            "set_success(False) was called",
        }

        def failed_hook(role: str, exc: Exception) -> None:
            hook_failed(where, role, exc, effects[role])

        def emit(duration: float, attrs: dict[str, Any], labels: dict[str, Any]) -> None:
            try:
                if counter_add is not None:
                    counter_add(1, attrs)
                if hist_record is not None:
                    hist_record(duration, attrs)
            except Exception as exc:
                failed_hook("recording", exc)
            if record_func is not None:
                try:
                    record_func(duration, labels)
                except Exception as exc:
                    failed_hook("record_func", exc)

        def record(run: Run, duration: float, result: object, exc: BaseException | None) -> None:
            # The general path: anything changed labels or outcome.
            extra = run._extra
            if (
                labels_only
                and exc is None
                and extra is not None
                and run._success is None
                and not run._dirty
            ):
                # Only clean labels were set, and it succeeded: straight to the instruments.
                attrs = dict(extra)
                attrs[STATUS] = SUCCESS
                try:
                    if counter_add is not None:
                        counter_add(1, attrs)
                    if hist_record is not None:
                        hist_record(duration, attrs)
                except Exception as record_exc:
                    failed_hook("recording", record_exc)
                return
            labels = dict(static if extra is None else extra)
            dirty = not static_clean or (extra is not None and run._dirty)
            success = True
            if exc is None and error_if is not None:
                try:
                    success = not error_if(result)
                except Exception as hook_exc:
                    failed_hook("error_if", hook_exc)
            if run._success is not None:
                success = run._success
            if outcome_hook is not None:
                try:
                    more = outcome_hook(result, exc)
                    if more:
                        labels.update(drop_reserved(more))
                        dirty = True
                except Exception as hook_exc:
                    failed_hook("outcome_labels", hook_exc)
            if exc is None:
                labels[STATUS] = SUCCESS if success else FAILURE
            else:
                labels.update(outcome_labels(exc, success))
                dirty = True
            attrs = clean_attributes(labels, name) if dirty and instruments else labels
            emit(duration, attrs, labels)

        def begin(args: Args, kwargs: Kwargs) -> Run:
            # Run(self) without the __init__ frame: this is the per-call hot path.
            run = new(Run)
            run._timed = self
            run._extra = run._success = None
            run._done = run._dirty = False
            if extract_labels is not None:
                try:
                    extracted = extract_labels(*args, **kwargs)
                    if extracted:
                        run._extra = {**static, **drop_reserved(extracted)}
                        run._dirty = True
                except Exception as exc:
                    failed_hook("extract_labels", exc)
            run._token = set_var(run)
            run._start = clock()
            return run

        def finish(run: Run, result: object) -> None:
            end = clock()
            reset_var(run._token)  # type: ignore[arg-type]
            if run._done:  # stopped by hand (Run.stop)
                return
            run._done = True
            if plain and run._extra is None and run._success is None:
                if record_func is not None:
                    emit(end - run._start, ok_attrs, ok_labels.copy())
                    return
                try:
                    if counter_add is not None:
                        counter_add(1, ok_attrs)
                    if hist_record is not None:
                        hist_record(end - run._start, ok_attrs)
                except Exception as exc:
                    failed_hook("recording", exc)
            else:
                record(run, end - run._start, result, None)

        def fail(run: Run, exc: BaseException) -> None:
            end = clock()
            reset_var(run._token)  # type: ignore[arg-type]
            if run._done:
                return
            run._done = True
            record(run, end - run._start, None, exc)

        def suspend(run: Run) -> None:
            reset_var(run._token)  # type: ignore[arg-type]

        def resume(run: Run) -> None:
            run._token = set_var(run)

        self._begin, self._finish, self._fail = begin, finish, fail
        self._suspend, self._resume = suspend, resume
        self._record = record
        # The fast path: instruments only, no hook that can change labels or outcome.
        self._fast = None
        self._extract = extract_labels is not None
        if record_func is None and extract_labels is None and plain:
            self._fast = _FastPath(
                self, ok_attrs, counter_add, hist_record, record, clock, failed_hook
            )
            self._fast.labels_clean = labels_only

    # ------------------------------------------------------------------ with / async with

    def _wrapper_for(self, kind: str) -> Callable[..., Any] | None:
        return None if self._fast is None else self._fast.wrapper(kind)

    def __enter__(self) -> Run:
        if not self.enabled:
            return _NULL_RUN
        frame = _getframe(1)
        if self._extract or frame.f_code.co_flags & _GEN_FLAGS:
            return self._enter(frame)
        run = _new(Run)  # begin() inline: nothing to extract
        run._timed = self
        run._extra = run._success = None
        run._done = run._dirty = False
        run._token = _set_active(run)
        run._start = self._clock()
        return run

    def _enter(self, frame: Any) -> Run:
        """``__enter__`` with labels to extract, or in a generator (*frame*: the block's)."""
        run: Run = self._begin((), {})
        if frame.f_code.co_flags & _GEN_FLAGS:
            # The block can be suspended at a `yield` while the consumer runs in the same
            # context: its scope stands in for the run and steps aside while suspended.
            _reset_active(run._token)  # type: ignore[arg-type]
            scope = _GenScope(run, frame, ACTIVE.get())
            run._token = _set_active(scope)
        return run

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> Literal[False]:
        if not self.enabled:
            return False
        run = _get_active()
        if run.__class__ is Run and run._timed is self and (token := run._token) is not None:
            fast = self._fast
            if exc is None and fast is not None:
                # finish() and record()'s clean-labels path inline (one frame, no closures):
                # the same checks in the same order, recording exactly the same data.
                end = fast.clock()
                try:
                    _reset_active(token)
                except (ValueError, RuntimeError):  # its token belongs to another context
                    self._exit_unnested(run, exc)
                    return False
                if run._done:  # stopped by hand (Run.stop)
                    return False
                run._done = True
                extra = run._extra
                if run._success is None:
                    if extra is None:
                        attrs = fast.attrs
                    elif fast.labels_clean and not run._dirty:
                        attrs = dict(extra)  # a copy: a straggler may still write to extra
                        attrs[STATUS] = SUCCESS
                    else:
                        fast.record(run, end - run._start, None, None)
                        return False
                    try:
                        if fast.counter_add is not None:
                            fast.counter_add(1, attrs)
                        if fast.hist_record is not None:
                            fast.hist_record(end - run._start, attrs)
                    except Exception as record_exc:
                        fast.failed_hook("recording", record_exc)
                    return False
                fast.record(run, end - run._start, None, None)
                return False
            try:
                if exc is None:
                    self._finish(run, None)
                else:
                    self._fail(run, exc)
                return False
            except (ValueError, RuntimeError):  # its token belongs to another context
                pass
        self._exit_unnested(run, exc)
        return False

    def _exit_unnested(self, top: LabelScope | None, exc: BaseException | None) -> None:
        """Exit this block's innermost open run when it is not the plain innermost scope.

        It was entered in a generator (its scope is a :class:`_GenScope`), or blocks
        exited out of order (manual ``__enter__``/``__exit__``, a generator suspended
        inside a block and resumed after the consumer's block ended).  The run is
        found in the chain of active scopes, recorded, and unlinked: the scope
        entered just after it will restore its parent instead; if it is innermost,
        its parent is restored now.  Never raises.
        """
        end = self._clock()
        child: LabelScope | None = None
        scope = top
        for _ in range(_MAX_CHAIN):
            if scope is None:
                break
            run = scope.run if scope.__class__ is _GenScope else scope
            if isinstance(run, Run) and run._timed is self and not run._done:
                parent = _parent_of(scope)
                if child is None:
                    _set_active(parent)
                else:
                    _relink(child, parent)
                    if child.__class__ is not _GenScope:  # a generator's is legitimate
                        _warn_unnested(self.name)
                run._token = None
                run._done = True
                self._record(run, end - run._start, None, exc)
                return
            child = scope
            scope = _parent_of(scope)
        warn_once(
            logger,
            ("misnested", self.name),
            "otel_aspects: timed %r exited in a thread, task or context where it was not "
            "entered (or exited twice); that measurement is dropped",
            self.name,
        )

    async def __aenter__(self) -> Run:
        if not self.enabled:
            return _NULL_RUN
        return self._enter(_getframe(1))  # the frame of the `async with`

    async def __aexit__(
        self, exc_type: object, exc: BaseException | None, tb: object
    ) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)

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
            return _NULL_RUN
        run = Run(self)
        run._start = self._clock()
        return run

    def __repr__(self) -> str:
        state = "" if self.enabled else ", disabled"
        return f"<timed {self.name!r}{state}>"


#: The spelling used in ``@timed(...)`` and ``with timed(...)``.
timed = Timed

_NULL_RUN = _NullRun.__new__(_NullRun)

#: What ``next(gen, _END)`` returns when ``gen`` is exhausted (never yielded by it).
_END: Any = object()


def _returns_only_none(func: Any) -> bool:
    """Whether generator function *func* provably never returns a value other than ``None``.

    Conservative, from its bytecode: every return is ``return None`` (``LOAD_CONST None``
    just before a ``RETURN_VALUE`` that nothing jumps to, or ``RETURN_CONST None``).
    Anything else, or no code object to read (a ``functools.partial``), is ``False``.
    Only picks the generator fast path's step: a ``None`` return needs no
    ``StopIteration`` to carry it, so ``next(gen, _END)`` can end the iteration.
    """
    code = getattr(_kind_target(func), "__code__", None)
    if not isinstance(code, CodeType):
        return False
    previous = None
    for instruction in dis.get_instructions(code):
        name = instruction.opname
        if name == "RETURN_VALUE":
            if (
                instruction.is_jump_target
                or previous is None
                or previous.opname != "LOAD_CONST"
                or previous.argval is not None
            ):
                return False
        elif name == "RETURN_CONST" and instruction.argval is not None:
            return False
        previous = instruction
    return True


_NULL_RUN._done = True
_NULL_RUN._extra = None
_NULL_RUN._dirty = False
_NULL_RUN._success = None
_NULL_RUN._token = None
_NULL_RUN._start = 0.0


#: Code flags of a generator or async generator: a block in one can be suspended at ``yield``.
_GEN_FLAGS = 0x20 | 0x200  # inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR
#: Longest chain of active scopes searched by an out-of-order exit.
_MAX_CHAIN = 1000
_reset_active = ACTIVE.reset
_UNSET: Any = object()


class _GenScope:
    """The active scope of a ``with timed()`` block written in a generator.

    Python runs a generator in its consumer's context, so while the generator is
    suspended at a ``yield`` inside the block, the block is still the innermost
    scope of the consumer.  This stand-in passes ``set_label``/``set_success`` to
    the block's run only while the generator body is running (its frame has a
    caller); otherwise to the enclosing scope, as if the block were not there.
    """

    __slots__ = ("frame", "parent", "run")

    def __init__(self, run: Run, frame: Any, parent: LabelScope | None) -> None:
        self.run = run
        self.frame = frame
        self.parent = parent

    def _target(self) -> LabelScope | None:
        scope: Any = self
        for _ in range(_MAX_CHAIN):
            if scope.__class__ is not _GenScope:
                return scope  # type: ignore[no-any-return]
            if scope.frame.f_back is not None and not scope.run._done:
                return scope.run
            scope = scope.parent
        return None

    def set_label(self, key: str, value: object) -> None:
        target = self._target()
        if target is not None:
            target.set_label(key, value)

    def set_success(self, success: bool) -> None:
        target = self._target()
        if target is not None:
            target.set_success(success)

    @property
    def labels(self) -> dict[str, Any] | None:
        target = self._target()
        return None if target is None else target.labels


def _parent_of(scope: LabelScope) -> LabelScope | None:
    """The scope that was active when *scope* was entered (or relinked to)."""
    if scope.__class__ is _GenScope:
        return scope.parent
    parent = getattr(scope, "_parent", _UNSET)
    if parent is not _UNSET:
        return parent  # type: ignore[no-any-return]
    token = getattr(scope, "_token", None)
    if token is None:
        return None
    old = token.old_value
    return None if old is Token.MISSING else old


def _relink(scope: LabelScope, parent: LabelScope | None) -> None:
    """Make *scope* restore *parent* on its exit (its token would restore a closed run)."""
    if scope.__class__ is _GenScope:
        scope.parent = parent
        scope.run._token = None
    elif isinstance(scope, Run) and not scope._timed._decorating:
        # A `with` block's run (a decorated call's wrapper resets its own token, which
        # restores the closed run: set_label there is then ignored, as for a straggler).
        scope._parent = parent
        scope._token = None


def _warn_unnested(name: str) -> None:
    warn_once(
        logger,
        ("unnested", name),
        "otel_aspects: timed %r exited before a block entered inside it (manual "
        "__enter__/__exit__ or an ExitStack out of order); both are recorded, each with "
        "its own labels. (Logged once.)",
        name,
    )


def _checked_key(key: Any) -> Any:
    """*key* as ``set_label`` stores it, or ``_UNSET`` to ignore it (a reserved key, warned).

    Only for keys that are not a plain ``str`` or are reserved (the hot path tests that
    inline): an unhashable key is converted with ``str()``; other keys are kept as they
    are (cleaned at record time).
    """
    try:
        reserved = key in RESERVED_LABELS
    except TypeError:  # an unhashable key (a list...): str() it, as the cleaning would
        converted = _key_to_str(key)
        if converted is None:
            return _UNSET
        key = converted
        reserved = key in RESERVED_LABELS
    if reserved:
        warn_reserved(key)
        return _UNSET
    return key


def _key_to_str(key: object) -> str | None:
    """An unhashable label key as ``str(key)`` (one WARNING per type); ``None`` if that fails."""
    kind = type(key).__name__
    try:
        converted = str(key)
    except Exception:
        converted = None
    warn_once(
        logger,
        ("label-key-type", kind),
        "otel_aspects: set_label key of type %s %s",
        kind,
        "converted to str" if converted is not None else "cannot be converted to str; ignored",
    )
    return converted


class _FastPath:
    """The wrappers of a :class:`Timed` with instruments only (no ``record_func``,
    ``extract_labels``, ``outcome_labels`` or ``error_if``), one per kind.

    Each is the general wrapper of :mod:`otel_aspects._wrap` with the ``begin``,
    ``finish``, ``suspend`` and ``resume`` hooks written inline: one Python frame
    per call, and on the common outcome (success, no label set) the pre-built
    success attributes go straight to the instruments.  Anything else (a label
    set, ``set_success``, an exception, ``Run.stop``) goes to the general
    ``record`` and records exactly what the general path would.
    ``tests/test_aspects_properties.py`` checks the two paths record the same data.
    """

    __slots__ = (
        "attrs",
        "clock",
        "counter_add",
        "failed_hook",
        "hist_record",
        "labels_clean",
        "none_only",
        "owner",
        "record",
    )

    def __init__(
        self,
        owner: Timed,
        attrs: dict[str, Any],
        counter_add: Callable[..., None] | None,
        hist_record: Callable[..., None] | None,
        record: Callable[[Run, float, object, BaseException | None], None],
        clock: Callable[[], float],
        failed_hook: Callable[[str, Exception], None],
    ) -> None:
        self.owner = owner
        self.failed_hook = failed_hook
        self.attrs = attrs
        self.counter_add = counter_add
        self.hist_record = hist_record
        self.record = record
        self.clock = clock
        #: The decorated generator function returns only ``None`` (see ``_returns_only_none``).
        self.none_only = False
        #: The static labels are clean: clean labels set on a run that succeeded need no
        #: cleaning at record time (record()'s straight-to-the-instruments path).
        self.labels_clean = False

    def wrapper(self, kind: str) -> Callable[..., Any]:
        """The wrapt wrapper for *kind* (``sync``, ``coroutine``, ``gen``, ``async_gen``)."""
        owner, ok_attrs, record, clock = self.owner, self.attrs, self.record, self.clock
        counter_add, hist_record = self.counter_add, self.hist_record
        failed_hook = self.failed_hook
        set_var, reset_var = ACTIVE.set, ACTIVE.reset
        new = object.__new__
        step = next

        def start() -> Run:
            run: Run = new(Run)
            run._timed = owner
            run._extra = run._success = None
            run._done = run._dirty = False
            run._token = set_var(run)
            run._start = clock()
            return run

        def ok(run: Run, end: float, result: object) -> None:
            if run._done:  # stopped by hand (Run.stop)
                return
            run._done = True
            if run._extra is None and run._success is None:
                try:
                    if counter_add is not None:
                        counter_add(1, ok_attrs)
                    if hist_record is not None:
                        hist_record(end - run._start, ok_attrs)
                except Exception as exc:
                    failed_hook("recording", exc)
            else:
                record(run, end - run._start, result, None)

        def failed(run: Run, end: float, exc: BaseException) -> None:
            if not run._done:
                run._done = True
                record(run, end - run._start, None, exc)

        if kind == "sync":

            def sync(
                wrapped: Callable[..., Any], instance: object, args: Args, kwargs: Kwargs
            ) -> Any:
                run: Run = new(Run)
                run._timed = owner
                run._extra = run._success = None
                run._done = run._dirty = False
                run._token = token = set_var(run)
                run._start = begun = clock()
                try:
                    result = wrapped(*args, **kwargs)
                except BaseException as exc:
                    end = clock()
                    reset_var(token)
                    failed(run, end, exc)
                    raise
                end = clock()
                reset_var(token)
                if run._done:
                    return result
                run._done = True
                # (a plain bool: mypy would keep the None narrowed from above)
                unchanged = run._extra is None and run._success is None
                if unchanged:
                    try:
                        if counter_add is not None:
                            counter_add(1, ok_attrs)
                        if hist_record is not None:
                            hist_record(end - begun, ok_attrs)
                    except Exception as exc:
                        failed_hook("recording", exc)
                else:
                    record(run, end - begun, result, None)
                return result

            return sync

        if kind == "coroutine":

            async def coroutine(
                wrapped: Callable[..., Awaitable[Any]], instance: object, args: Args, kwargs: Kwargs
            ) -> Any:
                run: Run = new(Run)
                run._timed = owner
                run._extra = run._success = None
                run._done = run._dirty = False
                run._token = token = set_var(run)
                run._start = begun = clock()
                try:
                    result = await wrapped(*args, **kwargs)
                except BaseException as exc:
                    end = clock()
                    reset_var(token)
                    failed(run, end, exc)
                    raise
                end = clock()
                reset_var(token)
                if run._done:
                    return result
                run._done = True
                # (a plain bool: mypy would keep the None narrowed from above)
                unchanged = run._extra is None and run._success is None
                if unchanged:
                    try:
                        if counter_add is not None:
                            counter_add(1, ok_attrs)
                        if hist_record is not None:
                            hist_record(end - begun, ok_attrs)
                    except Exception as exc:
                        failed_hook("recording", exc)
                else:
                    record(run, end - begun, result, None)
                return result

            return coroutine

        if kind == "gen":
            # Whether the generator function provably returns only None: then a step
            # is next(gen, _END), which ends without raising StopIteration (~150 ns).
            none_only = self.none_only

            def drive(gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
                # PEP 380's expansion of `yield from` (as _wrap._gen_wrapper's drive), with
                # the scope switched inline: set while `gen` runs, reset at each `yield`.
                # One try covers every step: whatever ends `gen` (exhausted, raised, or
                # closed: GeneratorExit re-raised below) is handled once, after it or in
                # its handler, with the scope still set.
                run: Run = new(Run)  # start(), inline
                run._timed = owner
                run._extra = run._success = None
                run._done = run._dirty = False
                run._token = token = set_var(run)
                run._start = clock()
                send = gen.send
                try:
                    item = step(gen, _END) if none_only else send(None)
                    while item is not _END:
                        reset_var(token)
                        try:
                            value = yield item
                        except GeneratorExit:
                            token = set_var(run)
                            gen.close()
                            raise  # recorded below, as cancelled
                        except BaseException as exc:
                            token = set_var(run)
                            item = gen.throw(exc)
                        else:
                            token = set_var(run)
                            item = step(gen, _END) if none_only and value is None else send(value)
                    result = None
                except StopIteration as stop:
                    result = stop.value
                except BaseException as exc:
                    end = clock()
                    reset_var(token)
                    failed(run, end, exc)
                    raise
                end = clock()
                reset_var(token)
                if run._done:  # stopped by hand (Run.stop)
                    return result
                run._done = True
                # (a plain bool: mypy would keep the None narrowed from above)
                unchanged = run._extra is None and run._success is None
                if unchanged:
                    try:
                        if counter_add is not None:
                            counter_add(1, ok_attrs)
                        if hist_record is not None:
                            hist_record(end - run._start, ok_attrs)
                    except Exception as exc:
                        failed_hook("recording", exc)
                else:
                    record(run, end - run._start, result, None)
                return result

            def gen_wrapper(
                wrapped: Callable[..., Any], instance: object, args: Args, kwargs: Kwargs
            ) -> Any:
                return drive(wrapped(*args, **kwargs))

            return gen_wrapper

        async def adrive(agen: AsyncGenerator[Any, Any]) -> AsyncGenerator[Any, Any]:
            # As _wrap._async_gen_wrapper's drive, with the scope switched inline.
            run = start()
            value: Any = None
            error: BaseException | None = None
            while True:
                try:
                    if error is None:
                        item = await agen.asend(value)
                    else:
                        item = await agen.athrow(error)
                except StopAsyncIteration:
                    end = clock()
                    reset_var(run._token)  # type: ignore[arg-type]
                    ok(run, end, None)
                    return
                except BaseException as exc:
                    end = clock()
                    reset_var(run._token)  # type: ignore[arg-type]
                    failed(run, end, exc)
                    raise
                reset_var(run._token)  # type: ignore[arg-type]
                try:
                    value = yield item
                    error = None
                except GeneratorExit as closing:
                    run._token = set_var(run)
                    try:
                        await agen.aclose()
                    except BaseException as exc:
                        end = clock()
                        reset_var(run._token)
                        failed(run, end, exc)
                        raise
                    end = clock()
                    reset_var(run._token)
                    failed(run, end, closing)
                    raise
                except BaseException as exc:
                    value, error = None, exc
                run._token = set_var(run)

        def async_gen_wrapper(
            wrapped: Callable[..., Any], instance: object, args: Args, kwargs: Kwargs
        ) -> Any:
            return adrive(wrapped(*args, **kwargs))

        return async_gen_wrapper
