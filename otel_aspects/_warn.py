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
        logger.log(level, msg, *args)
        return True
    except Exception:  # pragma: no cover - an unhashable cause, a broken handler
        return False


def reset_warned() -> None:
    """Forget every cause seen so far (for tests)."""
    global _overflowed
    with _lock:
        _seen.clear()
        _overflowed = False
