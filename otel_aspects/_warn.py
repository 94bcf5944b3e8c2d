"""One log line per cause, never one per call.

Record-time problems (a bad attribute, a failing label extractor, an exporter
outage) must never raise into business code, and must not flood the log either.
:func:`warn_once` logs a message the first time a given *cause* is seen and stays
silent afterwards.  Causes are small hashable keys chosen by the caller, such as
``("negative", "requests_total")``; the set of remembered causes is bounded so
that hostile input cannot grow it without limit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable

__all__ = ("MAX_CAUSES", "reset_warned", "warn_once")

#: After this many distinct causes, further new causes are summarised by one
#: last warning and then dropped silently.
MAX_CAUSES = 1024

_lock = threading.Lock()
_seen: set[Hashable] = set()
_overflowed = False


def warn_once(
    logger: logging.Logger,
    cause: Hashable,
    msg: str,
    *args: object,
    level: int = logging.WARNING,
    budget: str = "values",
) -> bool:
    """Log ``msg % args`` at *level* the first time *cause* is seen.

    Returns ``True`` if the message was logged.  Never raises.
    """
    global _overflowed
    try:
        if cause in _seen:
            return False
        with _lock:
            if cause in _seen:
                return False
            if len(_seen) >= MAX_CAUSES:
                if _overflowed:
                    return False
                _overflowed = True
                logger.warning(
                    "otel_aspects: more than %d distinct record-time problems; "
                    "further new ones are not logged",
                    MAX_CAUSES,
                )
                return False
            _seen.add(cause)
        # Formatted here, once per cause, so that an argument whose __str__ raises (a
        # user's exception, say) still gives the line instead of a logging error.
        logger.log(level, "%s", _format(msg, args))
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


def _format(msg: str, args: tuple[object, ...]) -> str:
    if not args:
        return msg
    try:
        return msg % args
    except Exception:
        shown = tuple(_printable(a) for a in args)
        try:
            return msg % shown
        except Exception:  # a format that does not fit: show the arguments after the text
            return f"{msg} {tuple(str(a) for a in shown)}"


def reset_warned() -> None:
    """Forget every cause seen so far (for tests)."""
    global _overflowed
    with _lock:
        _seen.clear()
        _overflowed = False
