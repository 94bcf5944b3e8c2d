"""One log line per cause, never one per call; every quoted value short.

Record-time problems (a bad attribute, a failing label extractor, an exporter
outage) must never raise into business code, and must not flood the log either.
:func:`warn_once` logs a message the first time a given *cause* is seen and stays
silent afterwards.  Causes are small hashable keys chosen by the caller, such as
``("negative", "requests_total")``; the set of remembered causes is bounded so
that hostile input cannot grow it without limit.

Causes are counted in separate *budgets*, one per kind of cause
(:data:`BUDGET_CONFIG`, :data:`BUDGET_VALUES`, :data:`BUDGET_LABELS`,
:data:`BUDGET_HOOKS`), so that a flood of one kind (a config file with a thousand
bad entries, say) never silences another (a negative increment at record time).
When a budget is used up, one line names it and its further new causes are dropped.

:func:`short_repr` is the one way to quote a value in a message: a ``repr`` cut to
a bounded length, that looks at a bounded part of a nested structure only (a YAML
alias bomb shares its objects: walking it whole would take forever).
"""

from __future__ import annotations

import logging
import reprlib
import threading
from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from itertools import islice
from typing import Final, Literal

__all__ = (
    "BUDGETS",
    "BUDGET_CONFIG",
    "BUDGET_HOOKS",
    "BUDGET_LABELS",
    "BUDGET_VALUES",
    "MAX_CAUSES",
    "MAX_MESSAGE_CHARS",
    "Budget",
    "reset_warned",
    "short_repr",
    "warn_once",
)

#: Configuration problems: a bad entry, a missing file (``config.py``).
BUDGET_CONFIG: Final = "config"
#: Record-time values: a negative increment, NaN, a wrong kind, a non-``str`` name.
BUDGET_VALUES: Final = "values"
#: Labels and attributes: ``None`` values, non-``str`` keys, reserved keys.
BUDGET_LABELS: Final = "labels"
#: User hooks and targets that raised: ``extract_labels``, ``record_func``, an instrument.
BUDGET_HOOKS: Final = "hooks"

Budget = Literal["config", "values", "labels", "hooks"]

#: Distinct causes logged per budget; the next new cause of a full budget gives one
#: line naming the budget, and later ones are dropped silently.
MAX_CAUSES = 1024

#: Budget name -> what its causes are, as the overflow line says it.
BUDGETS: Final[Mapping[str, str]] = {
    BUDGET_CONFIG: "configuration problems",
    BUDGET_VALUES: "record-time value problems",
    BUDGET_LABELS: "label problems",
    BUDGET_HOOKS: "hook problems",
}

#: A logged line longer than this is cut (a safety net: callers quote values with
#: :func:`short_repr`).
MAX_MESSAGE_CHARS = 8192

_lock = threading.Lock()
_seen: dict[str, set[Hashable]] = {name: set() for name in BUDGETS}
_overflowed: set[str] = set()


def warn_once(
    logger: logging.Logger,
    cause: Hashable,
    msg: str,
    *args: object,
    level: int = logging.WARNING,
    budget: Budget = BUDGET_VALUES,
) -> bool:
    """Log ``msg % args`` at *level* the first time *cause* is seen in *budget*.

    *budget* is one of :data:`BUDGETS` (an unknown name counts as
    :data:`BUDGET_VALUES`); each holds :data:`MAX_CAUSES` causes.  Returns ``True``
    if the message was logged.  Never raises.
    """
    try:
        seen = _seen.get(budget)
        if seen is None:
            budget, seen = BUDGET_VALUES, _seen[BUDGET_VALUES]
        if cause in seen:
            return False
        with _lock:
            if cause in seen:
                return False
            if len(seen) >= MAX_CAUSES:
                if budget in _overflowed:
                    return False
                _overflowed.add(budget)
                logger.warning(
                    "otel_aspects: more than %d distinct %s (warning budget %r); "
                    "further new ones are not logged",
                    MAX_CAUSES,
                    BUDGETS[budget],
                    budget,
                )
                return False
            seen.add(cause)
        # Formatted here, once per cause, so that an argument whose __str__ raises (a
        # user's exception, say) still gives the line instead of a logging error.
        logger.log(level, "%s", _cut(*_format(msg, args)))
        return True
    except Exception:  # pragma: no cover - an unhashable cause, a broken handler
        return False


def _printable(value: object) -> object:
    """*value* itself if ``str()`` works on it, else a placeholder naming its type."""
    try:
        str(value)
    except Exception:
        return f"<{type(value).__name__} whose str() failed>"
    return value


def _format(msg: str, args: tuple[object, ...]) -> tuple[str, int]:
    """``msg % args``, and how many characters of huge string arguments were left out."""
    if not args:
        return msg, 0
    # A huge string argument is sliced before formatting: no megabyte-long line is built.
    dropped = sum(
        len(a) - MAX_MESSAGE_CHARS - 1
        for a in args
        if isinstance(a, str) and len(a) > MAX_MESSAGE_CHARS
    )
    args = tuple(
        a[: MAX_MESSAGE_CHARS + 1] if isinstance(a, str) and len(a) > MAX_MESSAGE_CHARS else a
        for a in args
    )
    try:
        return msg % args, dropped
    except Exception:
        shown = tuple(_printable(a) for a in args)
        try:
            return msg % shown, dropped
        except Exception:  # a format that does not fit: show the arguments after the text
            return f"{msg} {tuple(str(a) for a in shown)}", dropped


def _cut(text: str, dropped: int) -> str:
    """*text* cut to :data:`MAX_MESSAGE_CHARS`, saying how many characters were cut
    (*dropped*: those already sliced off its arguments by :func:`_format`)."""
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    more = len(text) - MAX_MESSAGE_CHARS + dropped
    return f"{text[:MAX_MESSAGE_CHARS]}... [cut: {more} more characters]"


def reset_warned() -> None:
    """Forget every cause seen so far, in every budget (for tests)."""
    with _lock:
        for seen in _seen.values():
            seen.clear()
        _overflowed.clear()


# --------------------------------------------------------------------------- short_repr

#: Nesting levels and items per container that :func:`short_repr` looks at.
_MAX_LEVEL = 3
_MAX_ITEMS = 6
#: Above this many bits an int is not converted to decimal (quadratic, and refused by
#: Python beyond 4300 digits); its size is shown instead.
_MAX_INT_BITS = 4000


class _ShortRepr(reprlib.Repr):
    """``reprlib.Repr`` that never sorts or walks a whole container, whatever its type."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.maxlevel = _MAX_LEVEL
        self.maxtuple = self.maxlist = self.maxset = self.maxfrozenset = _MAX_ITEMS
        self.maxdeque = self.maxarray = _MAX_ITEMS
        self.maxdict = _MAX_ITEMS // 2
        self.maxstring = self.maxlong = self.maxother = limit

    def repr1(self, x: object, level: int) -> str:
        # By isinstance, not by type name: subclasses (a str subclass, a user Mapping)
        # would otherwise reach repr_instance, which calls repr() on the whole object.
        if x is None or isinstance(x, bool | float):
            return self.repr_instance(x, level)
        if isinstance(x, str):
            return self.repr_str(x, level)
        if isinstance(x, bytes | bytearray):
            return self._repr_bytes(x)
        if isinstance(x, int):
            return self.repr_int(x, level)
        if isinstance(x, Mapping):
            return self._repr_mapping(x, level)
        if isinstance(x, list):
            return self._repr_items(x, len(x), level, "[", "]")
        if isinstance(x, tuple):
            return self._repr_items(x, len(x), level, "(", ",)" if len(x) == 1 else ")")
        if isinstance(x, set | frozenset):
            if not x:
                return f"{type(x).__name__}()"
            left, right = ("{", "}") if isinstance(x, set) else ("frozenset({", "})")
            return self._repr_items(x, len(x), level, left, right)  # never sorted
        if isinstance(x, deque):
            return self._repr_items(x, len(x), level, "deque([", "])")
        return super().repr1(x, level)

    def _repr_items(self, x: Iterable[object], n: int, level: int, left: str, right: str) -> str:
        if n and level <= 0:
            return f"{left}{self.fillvalue}{right}"
        pieces = [self.repr1(item, level - 1) for item in islice(x, _MAX_ITEMS)]
        if n > _MAX_ITEMS:
            pieces.append(self.fillvalue)
        return f"{left}{', '.join(pieces)}{right}"

    def _repr_mapping(self, x: Mapping[object, object], level: int) -> str:
        n = len(x)
        if n == 0:
            return "{}"
        if level <= 0:
            return "{" + self.fillvalue + "}"
        pieces = [
            f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}"
            for k, v in islice(x.items(), self.maxdict)
        ]
        if n > self.maxdict:
            pieces.append(self.fillvalue)
        return "{" + ", ".join(pieces) + "}"

    def _repr_bytes(self, x: bytes | bytearray) -> str:
        shown = repr(bytes(x[: self.maxstring]))
        return shown if len(x) <= self.maxstring else shown + self.fillvalue

    def repr_int(self, x: int, level: int) -> str:
        bits = x.bit_length()
        if bits > _MAX_INT_BITS:
            return f"<int of about {int(bits * 0.30103)} digits>"
        return super().repr_int(int(x), level)


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` in at most *limit* characters (16 at least); never raises.

    Looks at no more than a few levels and items of a nested structure, so that
    a value built from shared objects (a YAML alias bomb) costs no more than a
    small one.  A long string keeps its start and end and says how long it was.

    >>> short_repr("requests_total")
    "'requests_total'"
    >>> short_repr("x" * 1_000_000, limit=50)
    "'xxxxxxxxxxxx...xxxxxxxxxxxx' (1000000 characters)"
    >>> short_repr([[1, 2, 3]] * 1000, limit=40)
    '[[1, 2, 3], [1, 2, 3], [1, 2, 3], [1,...'
    """
    limit = max(int(limit), 16)
    try:
        size = ""
        if isinstance(value, str | bytes | bytearray) and len(value) > limit:
            size = f" ({len(value)} {'characters' if isinstance(value, str) else 'bytes'})"
        if len(size) > limit // 2:  # no room to say the size
            size = ""
        room = limit - len(size)
        text = _ShortRepr(room).repr(value)
        if len(text) > room:
            text = text[: room - 3] + "..."
        return text + size
    except Exception:
        try:
            return f"<{type(value).__name__[:limit]} object>"
        except Exception:  # a type whose name cannot be read (a metaclass property)
            return "<object>"
