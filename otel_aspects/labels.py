"""Labels of the innermost active timed context, reachable from nested code.

A :func:`~otel_aspects.timed` block (or a ``@timed`` call) is a *scope*: while
it runs, :func:`set_label` and :func:`set_success` called from any code nested
in it -- in the same thread, or the same asyncio/trio task -- change the labels
of that scope, without the scope object being passed down::

    from otel_aspects import set_label, timed

    @timed("request_duration_seconds", client=metrics)
    async def handle(request):
        server = await db.fetch_server(request.server_id)
        set_label("server_name", server.name)   # lands on handle's measurement

Rules (see ``docs/DESIGN.md``, "Aspects"):

- **Innermost wins.**  Nested scopes each keep their own labels; an inner scope
  does not inherit the outer one's labels, and ``set_label`` only reaches the
  innermost active scope.
- **Outside any scope** both functions are silent no-ops.
- **Child tasks** (``asyncio.create_task``/``gather``, anyio task groups, and
  ``anyio.to_thread.run_sync``) copy the context when they are created, so a
  child started inside a scope targets that enclosing scope -- it runs on the
  scope's behalf.  Once the scope has ended (its measurement is recorded), the
  scope is closed and later calls from a straggling child are ignored.  A child
  that opens its own ``timed`` block gets its own scope; the parent's is
  untouched.
- **Sync and async are separate worlds**, as for structlog's contextvars: a
  plain ``threading.Thread`` starts with an empty context and sees no scope.
- ``status`` and ``error_type`` are reserved: they always come from the outcome
  (use :func:`set_success` to mark a failure without an exception).

The ContextVar holds the scope object itself; each scope sets it on entry and
resets it with its ``Token`` in ``finally`` (a generator's scope is active only
while the generator body runs, not while it is suspended at ``yield``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Final, Protocol

from ._warn import warn_once

__all__ = (
    "CANCELLED",
    "ERROR_TYPE",
    "FAILURE",
    "RESERVED_LABELS",
    "STATUS",
    "SUCCESS",
    "LabelScope",
    "current_labels",
    "is_cancellation",
    "outcome_labels",
    "set_label",
    "set_success",
)

logger = logging.getLogger("otel_aspects.aspects")

#: Label carrying the outcome of a measured call.
STATUS: Final = "status"
#: Label carrying the exception class name when ``status`` is ``failure``.
ERROR_TYPE: Final = "error_type"
SUCCESS: Final = "success"
FAILURE: Final = "failure"
CANCELLED: Final = "cancelled"
#: Keys that only the outcome may set.
RESERVED_LABELS: Final = frozenset((STATUS, ERROR_TYPE))


class LabelScope(Protocol):
    """What :func:`set_label` and :func:`set_success` talk to."""

    def set_label(self, key: str, value: object) -> None:
        """Add or replace one label of this scope's measurement."""

    def set_success(self, success: bool) -> None:
        """Mark the outcome (an exception still wins: it is always a failure)."""

    @property
    def labels(self) -> dict[str, Any] | None:
        """The labels known so far (static, extracted and set), without the outcome.

        ``None`` from a stand-in scope that currently reaches no scope (a block in a
        generator suspended at ``yield``, with nothing enclosing it).
        """


#: The innermost active scope of the current thread/task, or ``None``.
ACTIVE: ContextVar[LabelScope | None] = ContextVar("otel_aspects_active_scope", default=None)
#: ``ACTIVE.get``, bound once: no global plus attribute lookup per ``set_label``.
_get_active = ACTIVE.get


def set_label(key: str, value: object) -> None:
    """Set label *key* on the innermost active timed scope (no-op outside one).

    ``status``/``error_type`` are reserved: setting them is ignored (one
    WARNING).  Values are cleaned like any attribute when recorded.

    >>> set_label("route", "/users")  # outside any scope: nothing happens
    """
    scope = _get_active()
    if scope is not None:
        scope.set_label(key, value)


def set_success(success: bool) -> None:
    """Mark the innermost active timed scope as a success or failure (no-op outside one).

    An exception leaving the scope is recorded as ``failure`` (or ``cancelled``)
    whatever was set here.
    """
    scope = _get_active()
    if scope is not None:
        scope.set_success(success)


def current_labels() -> dict[str, Any] | None:
    """A copy of the innermost active scope's labels so far, or ``None`` outside one."""
    scope = ACTIVE.get()
    labels = None if scope is None else scope.labels
    return None if labels is None else dict(labels)


def warn_reserved(key: str) -> None:
    """One WARNING per reserved key that user code tried to set."""
    warn_once(
        logger,
        ("reserved-label", key),
        "otel_aspects: label %r is set from the outcome and cannot be set by hand; "
        "ignored (use set_success(False) to mark a failure)",
        key,
    )


def drop_reserved(labels: Mapping[str, Any]) -> dict[str, Any]:
    """*labels* without the reserved keys (each dropped key warned once)."""
    out = dict(labels)
    if not RESERVED_LABELS.isdisjoint(out):
        for key in RESERVED_LABELS.intersection(out):
            warn_reserved(key)
            del out[key]
    return out


def _cancel_classes() -> tuple[type[BaseException], ...]:
    classes: tuple[type[BaseException], ...] = (asyncio.CancelledError, GeneratorExit)
    trio = sys.modules.get("trio")
    cancelled = getattr(trio, "Cancelled", None)
    if isinstance(cancelled, type) and issubclass(cancelled, BaseException):
        classes += (cancelled,)
    return classes


def is_cancellation(exc: BaseException) -> bool:
    """True for asyncio/trio cancellation, ``GeneratorExit``, and groups of only those.

    trio is looked up only if already imported, so this never imports it and
    needs no running event loop (unlike ``anyio.get_cancelled_exc_class()``).
    """
    classes = _cancel_classes()
    if isinstance(exc, classes):
        return True
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(classes)
        return rest is None
    return False


def outcome_labels(exc: BaseException | None, success: bool = True) -> dict[str, str]:
    """The reserved labels for an outcome.

    >>> outcome_labels(None)
    {'status': 'success'}
    >>> outcome_labels(ValueError())
    {'status': 'failure', 'error_type': 'ValueError'}

    ``KeyboardInterrupt`` and ``SystemExit`` are failures (with their
    ``error_type``): the operation did not complete, and nobody cancelled it
    on purpose.
    """
    if exc is None:
        return {STATUS: SUCCESS if success else FAILURE}
    if is_cancellation(exc):
        return {STATUS: CANCELLED}
    return {STATUS: FAILURE, ERROR_TYPE: type(exc).__name__}
