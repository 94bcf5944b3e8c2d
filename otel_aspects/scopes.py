"""Scopes that do not nest plainly: blocks in generators, and out-of-order exits.

A ``with timed()`` block is a ``set_label`` scope: its run is the innermost
scope of the current context (``labels.ACTIVE``) until the block exits, when the
run's token restores the enclosing one.  Two cases break that plain nesting:

- **A block in a generator** can be suspended at ``yield`` while the consumer
  runs in the same context.  :class:`GenScope` stands in for the run: it passes
  ``set_label``/``set_success`` to the run only while the generator body runs
  (its frame has a caller), otherwise to the enclosing scope, as if the block
  were not there.
- **Out-of-order exits** (manual ``__enter__``/``__exit__``, an ``ExitStack``
  misused, a generator resumed after the consumer's block ended):
  :func:`exit_unnested` finds the innermost open run of that ``timed`` in the
  chain of active scopes, unlinks it (the scope entered inside it will restore
  its parent instead), and records it with its own labels.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._warn import warn_once
from .labels import ACTIVE, LabelScope
from .run import Run

if TYPE_CHECKING:
    from .timing import Timed

__all__ = ("GEN_FLAGS", "GenScope", "exit_unnested")

logger = logging.getLogger("otel_aspects.aspects")

#: Code flags of a generator or async generator: a block in one can be suspended at ``yield``.
GEN_FLAGS = 0x20 | 0x200  # inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR
#: Longest chain of active scopes searched by an out-of-order exit.
MAX_CHAIN = 1000


class GenScope:
    """The active scope of a ``with timed()`` block written in a generator."""

    __slots__ = ("frame", "parent", "run")

    def __init__(self, run: Run, frame: Any, parent: LabelScope | None) -> None:
        self.run = run
        self.frame = frame
        self.parent = parent

    def _target(self) -> LabelScope | None:
        scope: Any = self
        for _ in range(MAX_CHAIN):
            if scope.__class__ is not GenScope:
                return scope  # type: ignore[no-any-return]
            if scope.frame.f_back is not None and not scope.run.is_recorded():
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


def enter_in_generator(run: Run, frame: Any) -> None:
    """Make a block entered in generator *frame* active through a :class:`GenScope`."""
    run.exit_scope()
    scope = GenScope(run, frame, ACTIVE.get())
    run.detach()
    scope_token = ACTIVE.set(scope)
    del scope_token  # restored by exit_unnested, which unlinks the scope explicitly


def _parent_of(scope: LabelScope) -> LabelScope | None:
    if scope.__class__ is GenScope:
        return scope.parent
    if isinstance(scope, Run):
        return scope.parent_scope()
    return None


def _relink(scope: LabelScope, parent: LabelScope | None) -> None:
    """Make *scope* restore *parent* on its exit (its token would restore a closed run)."""
    if scope.__class__ is GenScope:
        scope.parent = parent
    elif isinstance(scope, Run) and scope.in_block():
        # A `with` block's run (a decorated call's wrapper resets its own token, which
        # restores the closed run: set_label there is then ignored, as for a straggler).
        scope.relink(parent)


def exit_unnested(
    timed: Timed, top: LabelScope | None, end: float, exc: BaseException | None
) -> None:
    """Exit *timed*'s innermost open run when it is not the plain innermost scope; never raises."""
    child: LabelScope | None = None
    scope = top
    for _ in range(MAX_CHAIN):
        if scope is None:
            break
        run = scope.run if scope.__class__ is GenScope else scope
        if isinstance(run, Run) and run.is_open(timed):
            parent = _parent_of(scope)
            if child is None:
                ACTIVE.set(parent)
            else:
                _relink(child, parent)
                if child.__class__ is not GenScope:  # a generator's is legitimate
                    _warn_unnested(timed.name)
            run.detach()
            run.close(None, exc, end)
            return
        child = scope
        scope = _parent_of(scope)
    warn_once(
        logger,
        ("misnested", timed.name),
        "otel_aspects: timed %.100r exited in a thread, task or context where it was not "
        "entered (or exited twice); that measurement is dropped",
        timed.name,
        budget="hooks",
    )


def _warn_unnested(name: str) -> None:
    warn_once(
        logger,
        ("unnested", name),
        "otel_aspects: timed %.100r exited before a block entered inside it (manual "
        "__enter__/__exit__ or an ExitStack out of order); both are recorded, each with "
        "its own labels. (Logged once.)",
        name,
        budget="hooks",
    )
