"""The wrapt wrappers shared by every aspect, one per kind of callable.

An *aspect* (:class:`Aspect`) is an object with enter/exit semantics split in
five hooks; the wrappers here drive those hooks around a call and know nothing
else about the aspect:

- ``_begin(args, kwargs) -> call``: a call starts (a generator: its first step).
  ``args``/``kwargs`` are exactly the caller's arguments -- wrapt hands the bound
  ``self``/``cls`` separately, so they never include it.
- ``_finish(call, result)``: it returned (a generator: it was exhausted).
- ``_fail(call, exc)``: it raised ``exc`` (a generator closed early: ``GeneratorExit``).
- ``_suspend(call)`` / ``_resume(call)``: a generator yields / is resumed, so
  per-call context state is active only while the generator body runs.

The kind of wrapper is chosen once, at decoration time, from the target's code
flags (``inspect.iscoroutinefunction`` and friends, looking through
``classmethod``/``staticmethod`` and ``functools.partial``).  wrapt's proxy keeps
name, docstring, signature and those code flags of the original.

The hooks must not raise (aspects guard their recording); the user's result and
exception pass through untouched -- exceptions are re-raised with a bare ``raise``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any, Literal, ParamSpec, TypeVar, overload

import wrapt

from . import _stacking

__all__ = ("Aspect", "target_name", "wrap")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

Args = tuple[Any, ...]
Kwargs = dict[str, Any]


class Aspect:
    """Base of the aspects: a decorator made of enter/exit hooks.

    Subclasses implement the hooks; ``__call__`` decorates any callable, and
    the default ``with``/``async with`` support suits aspects whose per-call
    state is ``None`` (:class:`~otel_aspects.timing.Timed` overrides them).
    """

    #: ``False`` when nothing would be recorded: decorating then only adds a
    #: trivial wrapt pass-through, and ``with`` does nothing.
    enabled: bool
    # The hooks are closures built by each subclass's ``__init__``, binding
    # what the hot path needs as locals (no attribute lookups per call).
    _begin: Callable[[Args, Kwargs], Any]
    _finish: Callable[[Any, object], object]
    _fail: Callable[[Any, BaseException], None]

    def __init__(self) -> None:
        self.enabled = True

    #: A generator yields / is resumed: per-call context state steps aside and back
    #: (nothing by default).
    _suspend: Callable[[Any], None] = staticmethod(lambda call: None)
    _resume: Callable[[Any], None] = staticmethod(lambda call: None)

    def _for_target(self, func: Any) -> Aspect:
        """The aspect whose hooks run for the calls of *func* (called once, at decoration).

        By default ``self``.  An aspect whose warnings should name the decorated
        callable returns a copy with hooks built for it (:func:`target_name`),
        so nothing per call has to look the target up.
        """
        return self

    @overload
    def __call__(self, func: classmethod[T, P, R]) -> classmethod[T, P, R]: ...
    @overload
    def __call__(self, func: staticmethod[P, R]) -> staticmethod[P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, func: Any) -> Any:
        """Decorate *func* (any kind of callable); the wrapper kind is chosen now."""
        return wrap(self, func)

    def __enter__(self) -> Any:
        if self.enabled:
            self._begin((), {})
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> Literal[False]:
        if self.enabled:
            if exc is None:
                self._finish(None, None)
            else:
                self._fail(None, exc)
        return False

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: object, exc: BaseException | None, tb: object
    ) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)


def target_name(func: Any) -> str:
    """``module.qualname`` of a decorated callable (through classmethod/staticmethod)."""
    if isinstance(func, classmethod | staticmethod):
        func = func.__func__
    qualname = getattr(func, "__qualname__", None)
    if not isinstance(qualname, str):  # a callable instance
        qualname = type(func).__qualname__
    module = getattr(func, "__module__", None)
    return f"{module}.{qualname}" if isinstance(module, str) else qualname


def _passthrough(wrapped: Callable[..., Any], instance: object, args: Args, kwargs: Kwargs) -> Any:
    return wrapped(*args, **kwargs)


def _kind_target(func: Any) -> Any:
    """What to inspect for the callable kind of *func*."""
    if isinstance(func, classmethod | staticmethod):
        return func.__func__
    if (
        not inspect.isroutine(func)
        and not isinstance(func, type)
        and callable(func)
        and not hasattr(func, "__code__")
    ):
        call = getattr(type(func), "__call__", None)  # noqa: B004 - an instance's __call__
        if call is not None and inspect.isfunction(call):
            return call
    return func


def wrap(aspect: Aspect, func: Any) -> Any:
    """Wrap *func* with the wrapper for its kind, driving *aspect*'s hooks."""
    if not callable(func) and not isinstance(func, classmethod | staticmethod):
        raise TypeError(
            f"otel_aspects: cannot decorate {func!r}: not callable. "
            "Use @timed(...) on a function or method, or `with timed(...):` around a block."
        )
    _stacking.check(aspect, func, 2)  # once per decoration: above a route decorator?
    if not aspect.enabled:
        # enabled=False (wrapt's public switch): wrapt calls the target directly,
        # bound or not, without calling the wrapper.
        return wrapt.FunctionWrapper(func, _passthrough, enabled=False)
    aspect = aspect._for_target(func)
    target = _kind_target(func)
    if inspect.isasyncgenfunction(target):
        kind = "async_gen"
    elif inspect.iscoroutinefunction(target):
        kind = "coroutine"
    elif inspect.isgeneratorfunction(target):
        kind = "gen"
    else:
        kind = "sync"
    wrapper = _GENERAL[kind](aspect)
    if inspect.isfunction(func) and not _in_class_body(func):
        if kind == "sync":
            return _PlainSyncFunction(func, wrapper, aspect)
        return _PlainFunctionWrapper(func, wrapper)
    return wrapt.FunctionWrapper(func, wrapper)


def _in_class_body(func: Any) -> bool:
    """Whether *func* was defined in a class body (``Cls.meth``, ``f.<locals>.Cls.meth``).

    Only picks the faster wrapper: wrapt binds instances of a ``FunctionWrapper``
    subclass through Python-level lookups (~0.5 us more per ``obj.method``), so
    methods keep wrapt's own class.  A module-level function later set on a class
    still works, with that slower binding.
    """
    owner, _, _ = str(getattr(func, "__qualname__", "")).rpartition(".")
    return bool(owner) and not owner.endswith("<locals>")


class _PlainFunctionWrapper(wrapt.FunctionWrapper[..., Any]):
    """``wrapt.FunctionWrapper`` for a plain function, minus one failed lookup per call.

    Called directly (not through a class), wrapt 2.5's C ``__call__`` looks up
    ``wrapped.__self__`` on every call, to pass it as ``instance``; on a plain
    function that raises and clears an ``AttributeError`` (~0.4 us).  Our wrappers
    never read ``instance``, so this ``__call__`` calls the same wrapper with
    ``instance=None`` directly.  Everything else is wrapt's own: binding through
    ``__get__`` (a function used as a method gets wrapt's ``BoundFunctionWrapper``
    and its normal call path), name, signature, the inspect predicates.  Used
    only for functions not defined in a class body (see :func:`_in_class_body`).
    ``_self_``-prefixed attributes are stored on the proxy itself (wrapt's rule).
    """

    __slots__ = ("_self_call",)

    def __init__(self, wrapped: Callable[..., Any], wrapper: Callable[..., Any]) -> None:
        super().__init__(wrapped, wrapper)
        self._self_call = functools.partial(wrapper, wrapped, None)

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        # `self` positional-only: the decorated function may take a keyword named `self`.
        return _call_of(self)(args, kwargs)


#: ``_call_of(w)`` is ``w._self_call``, read through the slot descriptor: ~40 ns
#: less than attribute access on a wrapt proxy, whose C ``getattro`` is not
#: specialised by the interpreter.
_call_of: Callable[[_PlainFunctionWrapper], Callable[[Args, Kwargs], Any]] = (
    _PlainFunctionWrapper.__dict__["_self_call"].__get__
)


class _PlainSyncFunction(_PlainFunctionWrapper):
    """A decorated plain sync function: the sync wrapper's body is its ``__call__``.

    One Python frame of ours per call (the issue's recursion-depth complaint: each
    decorated call used to add three), and no ``partial`` in between.  The body is
    :func:`_sync_wrapper`'s, which every other sync target (methods, classmethods,
    callable objects) still uses; ``tests/test_aspects_properties.py`` drives both.
    """

    __slots__ = ("_self_hooks",)

    def __init__(
        self, wrapped: Callable[..., Any], wrapper: Callable[..., Any], aspect: Aspect
    ) -> None:
        super().__init__(wrapped, wrapper)
        self._self_hooks = (aspect._begin, aspect._finish, aspect._fail, wrapped)

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        begin, finish, fail, wrapped = _hooks_of(self)
        call = begin(args, kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            fail(call, exc)
            raise
        finish(call, result)
        return result


#: ``_hooks_of(w)`` is ``w._self_hooks`` read through the slot descriptor (see ``_call_of``).
_hooks_of: Callable[[_PlainSyncFunction], tuple[Any, Any, Any, Callable[..., Any]]] = (
    _PlainSyncFunction.__dict__["_self_hooks"].__get__
)


def _sync_wrapper(aspect: Aspect) -> Callable[..., Any]:
    begin, finish, fail = aspect._begin, aspect._finish, aspect._fail

    def wrapper(wrapped: Callable[..., Any], instance: object, args: Args, kwargs: Kwargs) -> Any:
        call = begin(args, kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            fail(call, exc)
            raise
        finish(call, result)
        return result

    return wrapper


def _coroutine_wrapper(aspect: Aspect) -> Callable[..., Any]:
    begin, finish, fail = aspect._begin, aspect._finish, aspect._fail

    async def wrapper(
        wrapped: Callable[..., Awaitable[Any]], instance: object, args: Args, kwargs: Kwargs
    ) -> Any:
        call = begin(args, kwargs)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            fail(call, exc)
            raise
        finish(call, result)
        return result

    return wrapper


def _gen_wrapper(aspect: Aspect) -> Callable[..., Any]:
    begin, finish, fail = aspect._begin, aspect._finish, aspect._fail
    suspend, resume = aspect._suspend, aspect._resume

    def drive(
        gen: Generator[Any, Any, Any], args: Args, kwargs: Kwargs
    ) -> Generator[Any, Any, Any]:
        # PEP 380's expansion of `yield from`, written out so the aspect's
        # context is active only while `gen` runs, never while it is suspended.
        call = begin(args, kwargs)
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                item = gen.send(value) if error is None else gen.throw(error)
            except StopIteration as stop:
                finish(call, stop.value)
                return stop.value
            except BaseException as exc:
                fail(call, exc)
                raise
            suspend(call)
            try:
                value = yield item
                error = None
            except GeneratorExit as closing:
                resume(call)
                try:
                    gen.close()
                except BaseException as exc:
                    fail(call, exc)
                    raise
                fail(call, closing)
                raise
            except BaseException as exc:
                value, error = None, exc
            resume(call)

    def wrapper(wrapped: Callable[..., Any], instance: object, args: Args, kwargs: Kwargs) -> Any:
        # Creating the generator object is not timed: the first step is.
        return drive(wrapped(*args, **kwargs), args, kwargs)

    return wrapper


def _async_gen_wrapper(aspect: Aspect) -> Callable[..., Any]:
    begin, finish, fail = aspect._begin, aspect._finish, aspect._fail
    suspend, resume = aspect._suspend, aspect._resume

    async def drive(
        agen: AsyncGenerator[Any, Any], args: Args, kwargs: Kwargs
    ) -> AsyncGenerator[Any, Any]:
        call = begin(args, kwargs)
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                if error is None:
                    item = await agen.asend(value)
                else:
                    item = await agen.athrow(error)
            except StopAsyncIteration:
                finish(call, None)
                return
            except BaseException as exc:
                fail(call, exc)
                raise
            suspend(call)
            try:
                value = yield item
                error = None
            except GeneratorExit as closing:
                resume(call)
                try:
                    await agen.aclose()
                except BaseException as exc:
                    fail(call, exc)
                    raise
                fail(call, closing)
                raise
            except BaseException as exc:
                value, error = None, exc
            resume(call)

    def wrapper(wrapped: Callable[..., Any], instance: object, args: Args, kwargs: Kwargs) -> Any:
        return drive(wrapped(*args, **kwargs), args, kwargs)

    return wrapper


_GENERAL: dict[str, Callable[[Aspect], Callable[..., Any]]] = {
    "sync": _sync_wrapper,
    "coroutine": _coroutine_wrapper,
    "gen": _gen_wrapper,
    "async_gen": _async_gen_wrapper,
}
