"""Property tests for the aspects: transparency, one record per call, no label leaks."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import otel_aspects
from otel_aspects import set_label, timed
from otel_aspects.decorators import track_duration

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    st.builds(object),
)
exception_classes = st.sampled_from(
    [ValueError, KeyError, RuntimeError, OSError, ZeroDivisionError, StopIteration, Exception]
)
exceptions = st.builds(lambda cls, arg: cls(arg), exception_classes, st.text(max_size=10))
label_values = st.one_of(
    st.text(max_size=30), st.integers(), st.floats(allow_nan=True), st.booleans(), st.none()
)
label_dicts = st.dictionaries(st.text(min_size=1, max_size=8), label_values, max_size=4)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[float, dict[str, Any]]] = []

    def __call__(self, duration: float, labels: dict[str, Any]) -> None:
        self.calls.append((duration, labels))


def run_kind(kind: str, outcome: Any, raise_it: bool, aspect: Any) -> tuple[Any, Any]:
    """Run the same body plain and decorated; return (plain outcome, decorated outcome)."""

    def sync_body() -> Any:
        if raise_it:
            raise outcome
        return outcome

    async def coro_body() -> Any:
        await anyio.sleep(0)
        return sync_body()

    def gen_body() -> Iterator[Any]:
        yield 1
        return sync_body()

    async def agen_body() -> AsyncIterator[Any]:
        yield sync_body()

    def call(f: Any) -> tuple[str, Any]:
        try:
            if kind == "sync":
                return "value", f()
            if kind == "coroutine":
                return "value", anyio.run(f)
            if kind == "generator":
                g = f()
                next(g)
                try:
                    next(g)
                except StopIteration as stop:
                    return "value", stop.value
                raise AssertionError("generator did not stop")

            async def drain() -> Any:
                items = [item async for item in f()]
                return items[0]

            return "value", anyio.run(drain)
        except Exception as exc:
            return "raised", exc

    body = {"sync": sync_body, "coroutine": coro_body, "generator": gen_body}.get(kind, agen_body)
    return call(body), call(aspect(body))


@pytest.mark.parametrize("kind", ["sync", "coroutine", "generator", "async_generator"])
@SETTINGS
@given(outcome=st.one_of(values, exceptions), labels=label_dicts)
def test_decorated_is_transparent_and_records_once(
    kind: str, outcome: Any, labels: dict[str, Any]
) -> None:
    """Same value / same exception object as undecorated; exactly one finite, >= 0 record."""
    raise_it = isinstance(outcome, BaseException)
    if raise_it and kind == "async_generator" and isinstance(outcome, StopIteration):
        outcome = ValueError("a StopIteration cannot leave an async generator")
    rec = Recorder()
    plain, decorated = run_kind(kind, outcome, raise_it, timed(record_func=rec, labels=labels))
    assert plain[0] == decorated[0]
    if (raise_it and not (kind != "sync" and isinstance(outcome, StopIteration))) or not raise_it:
        assert decorated[1] is outcome
    assert len(rec.calls) == 1
    duration, recorded = rec.calls[0]
    assert math.isfinite(duration) and duration >= 0
    assert recorded["status"] == ("failure" if plain[0] == "raised" else "success")
    for key, value in labels.items():
        if key not in ("status", "error_type"):
            assert recorded[key] is value


@SETTINGS
@given(outcome=st.one_of(values, exceptions), where=st.sampled_from(["record", "extract", "both"]))
def test_raising_hooks_never_propagate(outcome: Any, where: str) -> None:
    """A record target or label extractor that raises never changes the call's outcome."""

    def bad_record(duration: float, labels: dict[str, Any]) -> None:
        raise RuntimeError("record broken")

    def bad_extract(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise TypeError("extract broken")

    rec = Recorder()
    aspect = track_duration(
        bad_record if where != "extract" else rec,
        extract_labels=bad_extract if where != "record" else None,
    )
    raise_it = isinstance(outcome, BaseException)
    plain, decorated = run_kind("sync", outcome, raise_it, aspect)
    assert plain[0] == decorated[0]
    assert decorated[1] is outcome


@SETTINGS
@given(durations=st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=5))
def test_fake_clock_durations_are_exact(durations: list[float]) -> None:
    """With an injected clock, each block records exactly its length."""
    now = [0.0]
    rec = Recorder()
    t = timed(record_func=rec, clock=lambda: now[0])
    for d in durations:
        with t:
            now[0] += d
    recorded = [duration for duration, _ in rec.calls]
    starts = [sum(durations[:i]) for i in range(len(durations))]
    assert recorded == [(s + d) - s for s, d in zip(starts, durations, strict=True)]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@SETTINGS
@given(per_task=st.lists(label_dicts, min_size=1, max_size=6), delays=st.randoms())
def test_labels_never_leak_between_tasks(
    backend: str, per_task: list[dict[str, Any]], delays: Any
) -> None:
    """Tasks in one task group, each in its own block with random labels, record only theirs."""
    rec = Recorder()

    @timed(record_func=rec)
    async def work(i: int, labels: dict[str, Any]) -> None:
        set_label("task", i)
        for key, value in labels.items():
            await anyio.sleep(delays.random() * 0.001)
            set_label(key, value)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for i, labels in enumerate(per_task):
                tg.start_soon(work, i, labels)

    anyio.run(main, backend=backend)
    assert len(rec.calls) == len(per_task)
    for _, recorded in rec.calls:
        i = recorded["task"]
        expected = {
            k: v for k, v in per_task[i].items() if k not in ("status", "error_type", "task")
        }
        got = {k: v for k, v in recorded.items() if k not in ("status", "task")}
        if "task" in per_task[i]:
            expected.pop("task", None)
        assert got.keys() == expected.keys()
        assert all(got[k] is expected[k] for k in expected)


# --------------------------------------------------------------------------- fast path


class FakeInstrument:
    """Counter and histogram at once: keeps (method, amount, attributes)."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, dict[str, Any]]] = []

    def add(self, amount: float, attributes: Any = None) -> None:
        self.calls.append(("add", amount, dict(attributes)))

    def record(self, amount: float, attributes: Any = None) -> None:
        self.calls.append(("record", amount, dict(attributes)))


class Tick:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.25
        return self.now


def drive_kind(
    kind: str, aspect: Any, sets: dict[str, Any], success: bool | None, exc: BaseException | None
) -> Any:
    """Call a decorated body of *kind* that sets labels, maybe set_success, maybe raises."""

    def inside() -> None:
        for key, value in sets.items():
            set_label(key, value)
        if success is not None:
            otel_aspects.set_success(success)
        if exc is not None:
            raise exc

    def sync_body() -> int:
        inside()
        return 1

    async def coro_body() -> int:
        inside()
        return 1

    def gen_body() -> Iterator[int]:
        yield 1
        inside()
        yield 2

    async def agen_body() -> AsyncIterator[int]:
        yield 1
        inside()
        yield 2

    async def consume_agen(agen: Any) -> list[int]:
        return [x async for x in agen]

    try:
        if kind == "sync":
            return aspect(sync_body)()
        if kind == "coroutine":
            return anyio.run(aspect(coro_body))
        if kind == "gen":
            return list(aspect(gen_body)())
        if kind == "async_gen":
            return anyio.run(consume_agen, aspect(agen_body)())
        if kind == "with":
            with aspect:
                return sync_body()
        if kind == "method":

            class Svc:
                @aspect
                def method(self, x: int) -> int:
                    inside()
                    return x

            return Svc().method(3)
    except BaseException as caught:
        return type(caught)
    raise AssertionError(kind)


@SETTINGS
@given(
    kind=st.sampled_from(["sync", "coroutine", "gen", "async_gen", "with", "method"]),
    static=label_dicts,
    sets=st.dictionaries(
        st.one_of(st.text(max_size=8), st.sampled_from(["status", "error_type", "x" * 300])),
        st.one_of(label_values, st.builds(object), st.text(min_size=257, max_size=300)),
        max_size=3,
    ),
    success=st.sampled_from([None, True, False]),
    exc=st.sampled_from([None, ValueError("v"), KeyboardInterrupt(), GeneratorExit()]),
)
def test_fast_path_records_what_the_general_path_records(
    kind: str,
    static: dict[str, Any],
    sets: dict[str, Any],
    success: bool | None,
    exc: BaseException | None,
) -> None:
    # Instruments only: the fast wrappers; the same plus a never-true error_if: the general path.
    fast_inst, general_inst = FakeInstrument(), FakeInstrument()
    fast = timed(fast_inst, counter=fast_inst, labels=static, clock=Tick())
    general = timed(
        general_inst, counter=general_inst, labels=static, clock=Tick(), error_if=lambda r: False
    )
    assert fast._fast is not None and general._fast is None
    assert drive_kind(kind, fast, sets, success, exc) == drive_kind(
        kind, general, sets, success, exc
    )
    assert fast_inst.calls == general_inst.calls
    assert len(fast_inst.calls) == 2


def test_fast_path_success_reuses_prebuilt_attributes() -> None:
    inst = FakeInstrument()
    seen: list[int] = []
    inst.add = lambda amount, attributes=None: seen.append(id(attributes))  # type: ignore[method-assign]
    f = timed(inst, counter=inst, labels={"a": "b"})(lambda: None)
    f()
    f()
    assert len(seen) == 2 and seen[0] == seen[1]


def test_disabled_decorator_is_pass_through_for_every_binding() -> None:
    t = timed(record_func=lambda d, labels: None)
    t.enabled = False  # what a capture:false metric gives

    class C:
        @t
        def m(self, x: int) -> int:
            return x

        @t
        @classmethod
        def c(cls, x: int) -> int:
            return x

        @t
        @staticmethod
        def s(x: int) -> int:
            return x

    assert C().m(1) == C.c(2) - 1 == C.s(3) - 2 == 1
    assert C.m(C(), 4) == 4


def test_wrapper_class_by_definition_site() -> None:
    import wrapt

    from otel_aspects._wrap import _PlainFunctionWrapper

    t = timed(FakeInstrument(), counter=FakeInstrument())

    def nested(x: int) -> int:
        return x

    class C:
        @t
        def m(self, x: int) -> int:
            return x

    plain = t(nested)
    # A plain function skips wrapt's per-call __self__ lookup; a method keeps wrapt's
    # own class (its C binding is faster for it).  Both behave the same.
    assert type(plain) is _PlainFunctionWrapper
    assert type(C.__dict__["m"]) is wrapt.FunctionWrapper
    assert plain(1) == C().m(1) == C.m(C(), 1) == 1
    assert plain.__name__ == "nested" and plain.__wrapped__ is nested
