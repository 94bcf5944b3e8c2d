"""The seed's helpers, and the other aspects (counting, exceptions, in-flight calls).

Every aspect here is usable as ``@aspect``, ``with aspect:`` and
``async with aspect:``, on every kind of callable (functions, coroutine
functions, generators, async generators; plain, methods, classmethods,
staticmethods).  They share the wrappers of :mod:`otel_aspects._wrap`.

>>> from otel_aspects.decorators import track_duration
>>> def record(duration, labels):
...     print(labels)
>>> @track_duration(record, extract_labels=lambda x: {"type": x})
... def handle(x):
...     return x
>>> handle("a")
{'type': 'a', 'status': 'success'}
'a'
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal

from opentelemetry.metrics import Counter, UpDownCounter

from ._attributes import clean_attributes
from ._targets import MetricsSource, resolve
from ._wrap import Args, Aspect, Kwargs, target_name
from .hooks import check_callable, hook_failed
from .labels import ERROR_TYPE, drop_reserved
from .timing import ExtractLabels, OutcomeLabels, RecordFunc, Timed

__all__ = (
    "ExceptionCounter",
    "InProgress",
    "count_exceptions",
    "counted",
    "create_timed_context",
    "track_duration",
    "track_inprogress",
)

logger = logging.getLogger("otel_aspects.aspects")


def track_duration(
    record_func: RecordFunc,
    extract_labels: ExtractLabels | None = None,
    *,
    labels: Mapping[str, Any] | None = None,
    outcome_labels: OutcomeLabels | None = None,
    error_if: Callable[[Any], object] | None = None,
) -> Timed:
    """Decorator: call ``record_func(duration_seconds, labels)`` once per call.

    *extract_labels* is called with exactly the decorated function's own
    arguments (``extract_labels(*args, **kwargs)``; for a method, without
    ``self``/``cls``).  ``status`` (and ``error_type``) come from the outcome and
    cannot be overridden by it.  A raising *extract_labels* or *record_func* is
    logged once per cause; the call's result or exception is untouched.

    >>> @track_duration(lambda d, labels: None, extract_labels=lambda req: {"type": req})
    ... async def my_operation(req):
    ...     return req
    """
    return Timed(
        record_func=record_func,
        extract_labels=extract_labels,
        labels=labels,
        outcome_labels=outcome_labels,
        error_if=error_if,
    )


def create_timed_context(record_func: RecordFunc, labels: Mapping[str, Any] | None = None) -> Timed:
    """A block timer for ``with`` and ``async with`` (and ``@``); success by default.

    >>> def record(duration, labels):
    ...     print(labels)
    >>> with create_timed_context(record, labels={"operation": "fetch"}) as ctx:
    ...     ctx.set_success(False)
    {'operation': 'fetch', 'status': 'failure'}
    """
    try:
        key: tuple[Any, Any] | None = (
            record_func,
            None if labels is None else tuple(labels.items()),
        )
        cached = _contexts.get(key)  # type: ignore[arg-type]
    except Exception:  # not a dict, an unhashable record_func or label value
        key = cached = None
    if cached is not None:
        # Only str-valued labels are ever cached, and no other value equals a str:
        # a hit has exactly these labels (True == 1 never confuses two of them).
        return cached
    context = Timed(record_func=record_func, labels=labels)
    if (
        key is not None
        and len(_contexts) < _CONTEXTS_MAX
        and _long_lived(record_func)
        and (
            labels is None
            or (
                labels.__class__ is dict
                and all(k.__class__ is str and v.__class__ is str for k, v in labels.items())
            )
        )
    ):
        _contexts[key] = context
    return context


def _long_lived(func: object) -> bool:
    """A module-level function: caching a ``timed`` for it keeps nothing alive that its
    module does not (a bound method would keep its instance, a closure its cells)."""
    qualname = getattr(func, "__qualname__", "")
    return inspect.isfunction(func) and "<locals>" not in qualname and "." not in qualname


#: ``create_timed_context`` built inside a handler, once per call, is the seed's own
#: pattern: one ``timed`` per (record_func, labels) serves them all.  A ``timed`` keeps
#: no per-entry state of its own (each entry has its own ``Run``), so sharing it is
#: sharing nothing but what its construction derived.
_contexts: dict[tuple[Any, Any], Timed] = {}
_CONTEXTS_MAX = 256


def counted(
    counter: str | Counter,
    *,
    client: MetricsSource | None = None,
    labels: Mapping[str, Any] | None = None,
    error_if: Callable[[Any], object] | None = None,
) -> Timed:
    """Count calls by outcome (``status``, ``error_type``): a :class:`Timed` without histogram.

    >>> @counted("requests_total", client=metrics)
    ... def handle(request): ...
    >>> with counted("jobs_total", client=metrics):
    ...     run_job()
    """
    return Timed(counter=counter, client=client, labels=labels, error_if=error_if)


class ExceptionCounter(Aspect):
    """Count exceptions of some classes, by ``error_type``; see :func:`count_exceptions`."""

    def __init__(
        self,
        counter: str | Counter,
        *,
        client: MetricsSource | None = None,
        exceptions: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        labels: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        classes = exceptions if isinstance(exceptions, tuple) else (exceptions,)
        if not classes or not all(
            isinstance(c, type) and issubclass(c, BaseException) for c in classes
        ):
            raise TypeError(
                "otel_aspects: exceptions= must be an exception class or a non-empty tuple "
                f"of them, got {exceptions!r}"
            )
        instrument, name = resolve(counter, client, "counter", "counter")
        self.name = str(name)
        self.enabled = instrument is not None
        self._classes = classes
        self._static = dict(clean_attributes(drop_reserved(labels or {}), self.name))
        self._add = None if instrument is None else instrument.add
        self._make_hooks(f"count_exceptions block {self.name!r}")

    def _for_target(self, func: Any) -> ExceptionCounter:
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin._make_hooks(f"function {target_name(func)!r}")
        return twin

    def _make_hooks(self, where: str) -> None:
        classes, static, add = self._classes, self._static, self._add
        effect = f"This exception was not counted in {self.name!r}"

        def begin(args: Args, kwargs: Kwargs) -> None:
            return None

        def finish(call: None, result: object) -> None:
            return None

        def fail(call: None, exc: BaseException) -> None:
            if add is not None and isinstance(exc, classes):
                try:
                    add(1, {**static, ERROR_TYPE: type(exc).__name__})
                except Exception as record_exc:
                    hook_failed(where, "recording", record_exc, effect)

        self._begin, self._finish, self._fail = begin, finish, fail


def count_exceptions(
    counter: str | Counter,
    *,
    client: MetricsSource | None = None,
    exceptions: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
    labels: Mapping[str, Any] | None = None,
) -> ExceptionCounter:
    """Count raised exceptions of *exceptions* (re-raised untouched), by ``error_type``.

    Cancellation is not an ``Exception`` and is not counted unless asked for.

    >>> @count_exceptions("errors_total", client=metrics)
    ... def parse(text): ...
    >>> with count_exceptions("errors_total", client=metrics):
    ...     parse(text)
    """
    return ExceptionCounter(counter, client=client, exceptions=exceptions, labels=labels)


class InProgress(Aspect):
    """An up-down counter of calls in flight; see :func:`track_inprogress`."""

    def __init__(
        self,
        up_down_counter: str | UpDownCounter,
        *,
        client: MetricsSource | None = None,
        labels: Mapping[str, Any] | None = None,
        extract_labels: ExtractLabels | None = None,
    ) -> None:
        super().__init__()
        check_callable(extract_labels, "extract_labels")
        instrument, name = resolve(up_down_counter, client, "up_down_counter", "up_down_counter")
        self.name = str(name)
        self.enabled = instrument is not None
        self._static = dict(clean_attributes(labels or {}, self.name))
        self._extract = extract_labels
        self._add = None if instrument is None else instrument.add
        self._make_hooks(f"track_inprogress block {self.name!r}")

    def _for_target(self, func: Any) -> InProgress:
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin._make_hooks(f"function {target_name(func)!r}")
        return twin

    def _make_hooks(self, where: str) -> None:
        static, extract, add, name = self._static, self._extract, self._add, self.name
        up_lost = (
            "The +1 for this call was not recorded but its -1 will be, so the "
            f"in-flight count {name!r} for its labels reads one too low from then on"
        )
        down_lost = (
            f"The -1 for this call was not recorded, so the in-flight count {name!r} "
            "for its labels stays one too high"
        )

        def change(delta: int, attrs: dict[str, Any]) -> None:
            if add is not None:
                try:
                    add(delta, attrs)
                except Exception as exc:
                    if delta > 0:
                        hook_failed(where, "recording +1", exc, up_lost)
                    else:
                        hook_failed(where, "recording -1", exc, down_lost)

        def begin(args: Args, kwargs: Kwargs) -> dict[str, Any]:
            # The labels known at start: static, then extract_labels(*args, **kwargs).
            # finish/fail get this same dict back, so the -1 carries exactly the +1's labels.
            attrs = static
            if extract is not None:
                try:
                    extracted = extract(*args, **kwargs)
                    if extracted:
                        attrs = clean_attributes({**static, **extracted}, name)
                except Exception as exc:
                    hook_failed(
                        where,
                        "extract_labels",
                        exc,
                        "This call's +1 and -1 both carry the static labels only",
                    )
            change(1, attrs)
            return attrs

        def finish(attrs: dict[str, Any], result: object) -> None:
            change(-1, attrs)

        def fail(attrs: dict[str, Any], exc: BaseException) -> None:
            change(-1, attrs)

        self._begin, self._finish, self._fail = begin, finish, fail
        self._change = change

    # A block has no arguments to extract labels from: its +1 and -1 carry the static labels.

    def __enter__(self) -> InProgress:
        if self.enabled:
            self._change(1, self._static)
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> Literal[False]:
        if self.enabled:
            self._change(-1, self._static)
        return False


def track_inprogress(
    up_down_counter: str | UpDownCounter,
    *,
    client: MetricsSource | None = None,
    labels: Mapping[str, Any] | None = None,
    extract_labels: ExtractLabels | None = None,
) -> InProgress:
    """+1 when a call starts, -1 when it ends (any outcome), with the labels known at start.

    Those labels are the static *labels*, then ``extract_labels(*args, **kwargs)``
    called once at the start with exactly the decorated callable's own arguments
    (as :func:`track_duration`'s; for a method without ``self``/``cls``).  The -1
    carries exactly the labels of the +1, whatever the outcome.  A raising
    *extract_labels* is logged once per cause; that call then uses the static
    labels for both.  In a ``with`` block (no arguments) only static labels are
    used.  A generator is in flight from its first step to its end or close.

    >>> @track_inprogress("requests_in_flight", client=metrics,
    ...                   extract_labels=lambda request: {"route": request.route})
    ... async def handle(request): ...
    >>> with track_inprogress("jobs_in_flight", client=metrics):  # also `async with`
    ...     run_job()
    """
    return InProgress(up_down_counter, client=client, labels=labels, extract_labels=extract_labels)
