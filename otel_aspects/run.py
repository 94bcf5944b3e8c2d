"""One measurement in progress, and its labels: what ``with timed(...) as run`` gives.

A :class:`Run` is made by one constructor for every form (a decorated call, a
``with`` block, :meth:`~otel_aspects.timing.Timed.start`).  It holds the labels
set so far and the outcome asked for, and is closed exactly once by
:meth:`Run.close`, which hands what it holds to its ``timed``'s one recording
function.  After that, changes are ignored (a straggling child task's
``set_label`` lands nowhere).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from contextvars import Token
from typing import TYPE_CHECKING, Any

from ._attributes import MAX_VALUE_LENGTH
from ._values import INT64_MAX, INT64_MIN
from ._warn import warn_once
from .labels import ACTIVE, RESERVED_LABELS, LabelScope, warn_reserved

if TYPE_CHECKING:
    from .timing import Timed

__all__ = ("NULL_RUN", "Run")

logger = logging.getLogger("otel_aspects.aspects")

_lock = threading.Lock()
_set_active = ACTIVE.set
_reset_active = ACTIVE.reset
#: What a key check answers for a key to ignore.
_IGNORE: Any = object()


class Run:
    """One measurement in progress: the ``as`` target of ``with timed(...)``.

    Also what :meth:`Timed.start` returns (Micrometer's ``Timer.Sample`` style:
    start now, decide the labels and outcome at :meth:`stop`).  After the
    measurement is recorded the run is closed and further changes are ignored.
    """

    __slots__ = ("_dirty", "_done", "_labels", "_parent", "_start", "_success", "_timed", "_token")

    _token: Token[LabelScope | None] | None
    #: ``None`` until a label is set or extracted; then every label so far
    #: (static first, then extracted and set ones, later wins), raw.
    _labels: dict[str, Any] | None
    #: Some label in ``_labels`` may need cleaning before it reaches OpenTelemetry.
    _dirty: bool
    _success: bool | None
    _done: bool
    #: Set only when a block exited out of order: the scope to restore on this
    #: run's exit (its token is then invalid); see :meth:`parent_scope`.
    _parent: LabelScope | None

    def __init__(
        self,
        owner: Timed,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        scope: bool = True,
    ) -> None:
        """Start measuring now, for a call with *args* and *kwargs* (a block has none).

        The labels start as *owner*'s static ones, plus what its ``extract_labels``
        finds in the arguments; with *scope*, the run becomes the innermost
        ``set_label`` scope.
        """
        self._timed = owner
        labels = None if owner._extract is None else owner._extracted(args, kwargs or {})
        self._labels = labels
        self._dirty = labels is not None
        self._success = None
        self._done = False
        self._token = _set_active(self) if scope else None
        self._start = owner._clock()

    # ------------------------------------------------------------------ the user's API

    def set_label(self, key: str, value: object) -> None:
        """Add or replace label *key* (``status``/``error_type`` are reserved)."""
        if self._done:
            return
        if key.__class__ is not str or key in RESERVED_LABELS:
            key = _checked_key(key)
            if key is _IGNORE:
                return
        labels = self._labels
        if labels is None:
            with _lock:  # a child thread may set the first label concurrently
                labels = self._labels
                if labels is None:
                    labels = self._labels = dict(self._timed._static)
        labels[key] = value
        # Only this value is checked here; anything unusual is cleaned at record time.
        cls = value.__class__
        if not (
            key.__class__ is str
            and 0 < len(key) <= MAX_VALUE_LENGTH
            and (
                (cls is str and len(value) <= MAX_VALUE_LENGTH and value.isascii())  # type: ignore[attr-defined, arg-type]
                or (cls is int and INT64_MIN <= value <= INT64_MAX)  # type: ignore[operator]
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
        labels = self._labels
        return dict(self._timed._static if labels is None else labels)

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
        end = self._timed._clock()
        if self._done:
            return 0.0
        if labels:
            for key, value in labels.items():
                self.set_label(key, value)
        if success is not None:
            self.set_success(success)
        duration = end - self._start
        self.close(None, error, end)
        return duration

    # ------------------------------------------------------------------ lifecycle

    def close(
        self,
        result: object = None,
        exc: BaseException | None = None,
        end: float | None = None,
        block_of: Timed | None = None,
    ) -> bool:
        """Close the run, once, and record it: every form of ``timed`` ends here.

        *result* or *exc* is the outcome.  Without *end*, this is a decorated call
        that returned or raised: the run reads the clock and leaves its scope.
        With *end*, the caller has read the clock (a ``with`` block, :meth:`stop`, an
        out-of-order exit).  With *block_of*, this is that ``timed``'s ``with`` block
        exiting: the run restores the enclosing scope itself, or answers ``False``
        (nothing done) when it is not that block's plain innermost scope or its token
        belongs to another context -- the out-of-order exit of
        :mod:`otel_aspects.scopes` then takes over.
        """
        timed = self._timed
        if end is None:
            end = timed._clock()
            _reset_active(self._token)  # type: ignore[arg-type]
        elif block_of is not None:
            if timed is not block_of or self._token is None:
                return False
            try:
                _reset_active(self._token)
            except (ValueError, RuntimeError):  # entered in another context
                return False
        if self._done:
            return True
        self._done = True
        if exc is None and self._labels is None and self._success is None and timed._ok_only:
            # What _record decides for this case, without its frame (the common outcome
            # of an instruments-only timed: DESIGN, "Cost").
            timed._pair.record_ok(end - self._start)  # type: ignore[union-attr]
            return True
        timed._record(end - self._start, self._labels, self._success, self._dirty, result, exc)
        return True

    def failed(self, exc: BaseException) -> None:
        """A decorated call raised *exc* (a generator closed early: ``GeneratorExit``)."""
        self.close(None, exc)

    def exit_scope(self) -> None:
        """Stop being the innermost scope (a decorated call returned, a generator yields).

        Raises ``ValueError``/``RuntimeError`` if the scope was entered in another context.
        """
        _reset_active(self._token)  # type: ignore[arg-type]

    def enter_scope(self) -> None:
        """Become the innermost scope again (a generator is resumed)."""
        self._token = _set_active(self)

    def is_recorded(self) -> bool:
        """Already closed: recorded, or handed out by a disabled ``timed``."""
        return self._done

    def in_block(self) -> bool:
        """A ``with`` block's run (not a decorated call's)."""
        return not self._timed._decorating

    def is_open(self, owner: Timed) -> bool:
        """Still to be recorded, and measured by *owner*."""
        return not self._done and self._timed is owner

    def parent_scope(self) -> LabelScope | None:
        """The scope that was active when this run was entered (or relinked to)."""
        if hasattr(self, "_parent"):
            return self._parent
        token = self._token
        if token is None:
            return None
        old = token.old_value
        return None if old is Token.MISSING else old

    def relink(self, parent: LabelScope | None) -> None:
        """Restore *parent* on exit instead of what the token would restore."""
        self._parent = parent
        self._token = None

    def detach(self) -> None:
        """Forget the scope token (the run is recorded by an out-of-order exit)."""
        self._token = None


class _NullRun(Run):
    """What a disabled ``timed`` hands out: every method does nothing."""

    __slots__ = ()

    def __init__(self) -> None:
        self._done = True
        self._labels = None
        self._dirty = False
        self._success = None
        self._token = None
        self._start = 0.0

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


NULL_RUN: Run = _NullRun()


def _checked_key(key: Any) -> Any:
    """*key* as ``set_label`` stores it, or ``_IGNORE`` (a reserved key, warned once).

    Only for keys that are not a plain ``str`` or are reserved: an unhashable key,
    or one whose ``__hash__`` raises, is converted with ``str()``; other keys are
    kept as they are (cleaned at record time).
    """
    try:
        reserved = key in RESERVED_LABELS
    except Exception:  # unhashable (a list...), or a __hash__ that raises
        converted = _key_to_str(key)
        if converted is None:
            return _IGNORE
        key = converted
        reserved = key in RESERVED_LABELS
    if reserved:
        warn_reserved(key)
        return _IGNORE
    return key


def _key_to_str(key: object) -> str | None:
    """A label key that cannot be hashed, as a plain ``str`` (one WARNING per type)."""
    kind = type(key).__name__
    try:
        converted: str | None = str.__str__(key) if isinstance(key, str) else str(key)
    except Exception:
        converted = None
    warn_once(
        logger,
        ("label-key-type", kind),
        "otel_aspects: set_label key of type %.60s %s",
        kind,
        "converted to str" if converted is not None else "cannot be converted to str; ignored",
        budget="labels",
    )
    return converted
