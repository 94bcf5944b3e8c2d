"""Failing hooks: what an aspect says when user code it calls raises.

The hooks are the user's callables an aspect calls around a measured call --
``extract_labels``, ``record_func``, ``outcome_labels``, ``error_if`` -- and the
instruments it records into.  None of them is ever raised into the call.  Each
failure logs one WARNING per cause, the cause being (decorated callable or block,
hook, exception class), and says what became of this call's measurement and what
to fix.
"""

from __future__ import annotations

import logging

from ._warn import warn_once

__all__ = ("check_callable", "hook_failed")

logger = logging.getLogger("otel_aspects.aspects")

#: What to do about a failing hook, by role.
_FIX = {
    "extract_labels": "Fix extract_labels: it is called with exactly the decorated callable's "
    "own arguments (for a method without self/cls; with none in a `with` block)",
    "record_func": "Fix record_func: it is called as record_func(duration_seconds, labels)",
    "outcome_labels": "Fix outcome_labels: it is called as outcome_labels(result, exc)",
    "error_if": "Fix error_if: it is called as error_if(result)",
    "clock": "Fix clock: it is called as clock() and must return seconds as a float",
}
_FIX_RECORDING = "Check the OpenTelemetry instrument that raised, or the meter provider behind it"


def check_callable(value: object, role: str) -> None:
    """Fail loudly at decoration time on a hook that cannot be called."""
    if value is not None and not callable(value):
        raise TypeError(
            f"otel_aspects: {role}= must be callable or None, got {type(value).__name__}"
        )


def hook_failed(where: str, role: str, exc: BaseException, effect: str) -> None:
    """One WARNING per (decorated target or block, hook, exception class); never raises.

    *where* names the decorated callable (``function 'mod.f'``) or the block
    (``timed block 'request_duration_seconds'``); *effect* says what became of
    this call's measurement.
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
        budget="hooks",
    )
