"""Property tests for the aspects: transparency, one record per call, no label leaks."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import otel_aspects
from otel_aspects import current_labels, set_label, timed
from otel_aspects._attributes import clean_attributes
from otel_aspects._warn import reset_warned
from otel_aspects.config import MetricsConfig, MetricSpec
from otel_aspects.decorators import track_duration
from tests._support import Recorder

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
#: The kinds of callable, each async one on both anyio backends.
RUNS = [
    pytest.param("sync", None, id="sync"),
    pytest.param("generator", None, id="generator"),
    pytest.param("coroutine", "asyncio", id="coroutine-asyncio"),
    pytest.param("coroutine", "trio", id="coroutine-trio"),
    pytest.param("async_generator", "asyncio", id="async_generator-asyncio"),
    pytest.param("async_generator", "trio", id="async_generator-trio"),
]
backends = st.sampled_from(["asyncio", "trio"])


def run_kind(
    kind: str, outcome: Any, raise_it: bool, aspect: Any, backend: str | None = None
) -> tuple[Any, Any]:
    """Run the same body plain and decorated; return (plain outcome, decorated outcome).

    Coroutines and async generators run in ``anyio.run`` on *backend*.
    """

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
                return "value", anyio.run(f, backend=backend)
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

            return "value", anyio.run(drain, backend=backend)
        except Exception as exc:
            return "raised", exc

    body = {"sync": sync_body, "coroutine": coro_body, "generator": gen_body}.get(kind, agen_body)
    return call(body), call(aspect(body))


@pytest.mark.parametrize(("kind", "backend"), RUNS)
@SETTINGS
@given(outcome=st.one_of(values, exceptions), labels=label_dicts)
def test_decorated_is_transparent_and_records_once(
    kind: str, backend: str | None, outcome: Any, labels: dict[str, Any]
) -> None:
    """Same value / same exception object as undecorated; exactly one finite, >= 0 record."""
    raise_it = isinstance(outcome, BaseException)
    if raise_it and kind == "async_generator" and isinstance(outcome, StopIteration):
        outcome = ValueError("a StopIteration cannot leave an async generator")
    rec = Recorder()
    aspect = timed(record_func=rec, labels=labels)
    started = time.perf_counter()
    plain, decorated = run_kind(kind, outcome, raise_it, aspect, backend)
    elapsed = time.perf_counter() - started  # around both calls: an upper bound
    assert plain[0] == decorated[0]
    if (raise_it and not (kind != "sync" and isinstance(outcome, StopIteration))) or not raise_it:
        assert decorated[1] is outcome
    assert len(rec.calls) == 1
    duration, recorded = rec.calls[0]
    assert 0 <= duration <= elapsed, (duration, elapsed)  # a difference, not a timestamp
    assert recorded["status"] == ("failure" if plain[0] == "raised" else "success")
    for key, value in labels.items():
        if key not in ("status", "error_type"):
            assert recorded[key] is value


class LogList(logging.Handler):
    """Keeps the otel_aspects WARNINGs (caplog is function-scoped: not for Hypothesis)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize(("kind", "backend"), RUNS)
@SETTINGS
@given(outcome=st.one_of(values, exceptions), where=st.sampled_from(["record", "extract", "both"]))
def test_raising_hooks_never_propagate(
    kind: str, backend: str | None, outcome: Any, where: str
) -> None:
    """A raising record target or label extractor never changes the call's outcome.

    Over two calls: the record target is still called exactly once per call,
    and each broken hook logs exactly one WARNING (one cause each).
    """
    raise_it = isinstance(outcome, BaseException)
    if raise_it and kind != "sync" and isinstance(outcome, StopIteration):
        outcome = ValueError("a StopIteration cannot leave a generator or a coroutine unchanged")
    record_calls: list[dict[str, Any]] = []

    def bad_record(duration: float, labels: dict[str, Any]) -> None:
        record_calls.append(labels)
        raise RuntimeError("record broken")

    def good_record(duration: float, labels: dict[str, Any]) -> None:
        record_calls.append(labels)

    def bad_extract(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise TypeError("extract broken")

    reset_warned()
    log = LogList()
    logger = logging.getLogger("otel_aspects")
    logger.addHandler(log)
    try:
        aspect = track_duration(
            bad_record if where != "extract" else good_record,
            extract_labels=bad_extract if where != "record" else None,
        )
        for _ in range(2):
            plain, decorated = run_kind(kind, outcome, raise_it, aspect, backend)
            assert plain[0] == decorated[0]
            assert decorated[1] is outcome
    finally:
        logger.removeHandler(log)
    status = "failure" if raise_it else "success"
    assert [labels["status"] for labels in record_calls] == [status, status]
    assert all(set(labels) <= {"status", "error_type"} for labels in record_calls)
    broken = {"record": ["record_func"], "extract": ["extract_labels"]}.get(
        where, ["extract_labels", "record_func"]
    )
    assert len(log.messages) == len(broken), log.messages
    for role in broken:
        (message,) = [m for m in log.messages if m.startswith(f"otel_aspects: {role} of ")]
        assert "function 'test_aspects_properties.run_kind.<locals>." in message


@SETTINGS
@given(
    start=st.integers(0, 2**30),
    ticks=st.lists(st.integers(min_value=0, max_value=2**30), min_size=1, max_size=5),
)
def test_fake_clock_durations_are_exact(start: int, ticks: list[int]) -> None:
    """With an injected clock, each block records exactly its length.

    Times are multiples of 1/1024 s below ~2**21 s: exact binary fractions, so
    every clock reading and every difference is exact and equality is the property.
    """
    durations = [t / 1024 for t in ticks]
    now = [start / 1024]
    rec = Recorder()
    t = timed(record_func=rec, clock=lambda: now[0])
    for d in durations:
        with t:
            now[0] += d
        now[0] += 0.5  # time between blocks is not recorded
    assert [duration for duration, _ in rec.calls] == durations


@SETTINGS
@given(
    start=st.floats(min_value=0, max_value=1e6),
    durations=st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=5),
)
def test_fake_clock_durations_match_arbitrary_floats(start: float, durations: list[float]) -> None:
    """With any float clock, each recorded duration is its block's length, to float precision."""
    now = [start]
    rec = Recorder()
    t = timed(record_func=rec, clock=lambda: now[0])
    for d in durations:
        with t:
            now[0] += d
    # Readings near 6e6 are exact to ~1e-9 s: that is the only slack allowed.
    for (recorded, _), d in zip(rec.calls, durations, strict=True):
        assert math.isclose(recorded, d, rel_tol=0, abs_tol=4 * math.ulp(start + sum(durations)))


#: Keys the leak test must not generate: the reserved outcome labels and its own "task".
LEAK_TEST_KEYS = frozenset({"status", "error_type", "task"})


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@SETTINGS
@given(
    per_task=st.lists(
        st.dictionaries(
            st.text(min_size=1, max_size=8).filter(lambda k: k not in LEAK_TEST_KEYS),
            label_values,
            max_size=4,
        ),
        min_size=1,
        max_size=6,
    ),
    delays=st.randoms(),
)
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
    assert sorted(recorded["task"] for _, recorded in rec.calls) == list(range(len(per_task)))
    for _, recorded in rec.calls:
        own = per_task[recorded["task"]]
        assert recorded.keys() == {*own, "task", "status"}
        assert recorded["status"] == "success"
        assert all(recorded[k] is own[k] for k in own)


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
    kind: str,
    aspect: Any,
    sets: dict[str, Any],
    success: bool | None,
    exc: BaseException | None,
    backend: str = "asyncio",
) -> Any:
    """Call a decorated body of *kind* that sets labels, maybe set_success, maybe raises.

    Coroutines and async generators run in ``anyio.run`` on *backend*.
    """

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
            return anyio.run(aspect(coro_body), backend=backend)
        if kind == "gen":
            return list(aspect(gen_body)())
        if kind == "async_gen":
            return anyio.run(consume_agen, aspect(agen_body)(), backend=backend)
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


def expected_attributes(
    static: dict[str, Any], sets: dict[str, Any], success: bool | None, exc: BaseException | None
) -> dict[str, Any]:
    """What one measured call records, stated from the rules: static labels, then the
    non-reserved ``set_label`` values, then the outcome; cleaned like any attributes."""
    labels = {k: v for k, v in static.items() if k not in ("status", "error_type")}
    labels.update({k: v for k, v in sets.items() if k not in ("status", "error_type")})
    if exc is None:
        labels["status"] = "failure" if success is False else "success"
    elif isinstance(exc, GeneratorExit):
        labels["status"] = "cancelled"
    else:
        labels.update(status="failure", error_type=type(exc).__name__)
    return clean_attributes(labels, "fake")


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
    backend=backends,
)
def test_every_form_records_what_the_rules_say(
    kind: str,
    static: dict[str, Any],
    sets: dict[str, Any],
    success: bool | None,
    exc: BaseException | None,
    backend: str,
) -> None:
    """Every kind of call records one counter +1 and one histogram duration, with the
    labels and outcome the merge rules give, through the one recording path."""
    inst = FakeInstrument()
    aspect = timed(inst, counter=inst, labels=static, clock=Tick())
    drive_kind(kind, aspect, sets, success, exc, backend)
    expected = expected_attributes(static, sets, success, exc)
    assert [(method, attrs) for method, _, attrs in inst.calls] == [
        ("add", expected),
        ("record", expected),
    ]
    assert inst.calls[0][1] == 1 and inst.calls[1][1] == 0.25  # one tick of the fake clock


def test_fast_path_success_reuses_prebuilt_attributes() -> None:
    """On success the fast path hands the instruments one pre-built dict, not one per call."""
    inst = FakeInstrument()
    passed: list[tuple[str, Any]] = []  # the attribute objects themselves: all stay alive
    inst.add = lambda amount, attributes=None: passed.append(("add", attributes))  # type: ignore[method-assign]
    inst.record = lambda amount, attributes=None: passed.append(("record", attributes))  # type: ignore[method-assign]
    f = timed(inst, counter=inst, labels={"a": "b"})(lambda: None)
    for _ in range(3):
        f()
    assert [kind for kind, _ in passed] == ["add", "record"] * 3
    first = passed[0][1]
    assert first == {"a": "b", "status": "success"}
    assert all(attributes is first for _, attributes in passed)


def test_with_exit_records_set_labels_from_a_copy() -> None:
    """The inline ``with`` exit hands the instruments a copy of the run's labels plus status.

    The run's own dict never reaches an instrument (an SDK keeps the attribute dict of a new
    series; a straggler's late ``set_label`` must not change it), and keeps no status.
    """
    inst = FakeInstrument()
    passed: list[tuple[str, Any]] = []
    inst.add = lambda amount, attributes=None: passed.append(("add", attributes))  # type: ignore[method-assign]
    inst.record = lambda amount, attributes=None: passed.append(("record", attributes))  # type: ignore[method-assign]
    t = timed(inst, counter=inst, labels={"a": "b"})
    with t as run:
        set_label("k", "v")
    assert [kind for kind, _ in passed] == ["add", "record"]
    attrs = passed[0][1]
    assert attrs == {"a": "b", "k": "v", "status": "success"} and passed[1][1] is attrs
    assert run.labels == {"a": "b", "k": "v"}
    run.set_label("late", 1)  # closed: ignored
    assert attrs == {"a": "b", "k": "v", "status": "success"}
    passed.clear()
    with t as run:
        run.stop(labels={"early": True})  # recorded here, once; the exit records nothing
        set_label("late", 1)
    assert [kind for kind, _ in passed] == ["add", "record"]
    assert passed[0][1] == {"a": "b", "early": True, "status": "success"}
    assert current_labels() is None


DISABLED = MetricsConfig(
    "svc",
    {
        "off_seconds": MetricSpec("histogram", "off_seconds", capture=False),
        "off_total": MetricSpec("counter", "off_total", capture=False),
    },
)


def test_disabled_decorator_is_pass_through_for_every_binding(
    metrics_client_factory: Any, metrics_reader: Any
) -> None:
    """capture:false metrics: every binding calls the target directly and nothing is recorded."""
    client = metrics_client_factory("svc", DISABLED)
    clock_reads: list[None] = []

    def clock() -> float:
        clock_reads.append(None)
        return 0.0

    t = timed("off_seconds", counter="off_total", client=client, clock=clock)
    assert not t.enabled
    scopes: list[object] = []

    def plain(x: int) -> int:
        scopes.append(current_labels())
        return x

    class C:
        @t
        def m(self, x: int) -> int:
            scopes.append(current_labels())
            return x

        @t
        @classmethod
        def c(cls, x: int) -> int:
            scopes.append(current_labels())
            return x

        @t
        @staticmethod
        def s(x: int) -> int:
            scopes.append(current_labels())
            return x

    f = t(plain)
    assert f.__wrapped__ is plain
    assert [f(0), C().m(1), C.c(2), C.s(3), C.m(C(), 4)] == [0, 1, 2, 3, 4]
    assert scopes == [None] * 5  # no scope was opened around any call
    assert clock_reads == []  # nothing was timed
    data = metrics_reader.get_metrics_data()
    points = (
        []
        if data is None
        else [
            point
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            for point in m.data.data_points
        ]
    )
    assert points == []


def test_disabled_record_target_is_never_called() -> None:
    """A Timed switched off (as capture:false does) never calls its record target."""
    rec = Recorder()
    t = timed(record_func=rec)
    t.enabled = False

    @t
    def f(x: int) -> int:
        return x

    assert f(1) == 1
    with t as run:
        run.set_label("k", "v")
    assert rec.calls == []


def test_wrapper_class_by_definition_site() -> None:
    import wrapt

    from otel_aspects._wrap import _PlainFunctionWrapper, _PlainSyncFunction

    t = timed(FakeInstrument(), counter=FakeInstrument())

    def nested(x: int) -> int:
        return x

    async def nested_coroutine(x: int) -> int:
        return x

    class C:
        @t
        def m(self, x: int) -> int:
            return x

    plain = t(nested)
    # A plain function skips wrapt's per-call __self__ lookup; a method keeps wrapt's
    # own class (its C binding is faster for it).  Both behave the same.
    # A plain sync function's wrapper body is the proxy's own __call__ (one frame of ours).
    assert type(plain) is _PlainSyncFunction
    assert type(t(nested_coroutine)) is _PlainFunctionWrapper
    assert type(C.__dict__["m"]) is wrapt.FunctionWrapper
    assert plain(1) == C().m(1) == C.m(C(), 1) == 1
    assert plain.__name__ == "nested" and plain.__wrapped__ is nested


def _echo_returning_none() -> Iterator[int]:
    received: list[Any] = []
    set_label("first", 1)
    while True:
        try:
            value = yield len(received)
        except KeyError as exc:
            value = f"caught {exc.args[0]}"
        set_label("step", len(received))
        if value == "stop":
            return
        received.append(value)


def _echo_returning_value() -> Iterator[int]:
    received: list[Any] = []
    set_label("first", 1)
    while True:
        try:
            value = yield len(received)
        except KeyError as exc:
            value = f"caught {exc.args[0]}"
        set_label("step", len(received))
        if value == "stop":
            return received  # type: ignore[return-value]
        received.append(value)


def _gen_script(gen: Any, script: str) -> list[Any]:
    """Drive *gen* by *script*; what the consumer sees, step by step (scope included)."""
    seen: list[Any] = []
    steps = {
        "next": lambda: next(gen),
        "send_a": lambda: gen.send("a"),
        "send_none": lambda: gen.send(None),
        "throw_key": lambda: gen.throw(KeyError("k")),
        "throw_os": lambda: gen.throw(OSError("o")),
        "stop": lambda: gen.send("stop"),
        "close": gen.close,
    }
    for name in script.split():
        try:
            seen.append((name, steps[name]()))
        except StopIteration as stop:
            seen.append((name, "StopIteration", stop.value))
        except BaseException as exc:
            seen.append((name, type(exc).__name__))
        seen.append(("consumer scope", current_labels()))
    return seen


@pytest.mark.parametrize("body", [_echo_returning_none, _echo_returning_value])
@pytest.mark.parametrize(
    "script",
    [
        "next send_a next send_none throw_key stop",
        "next send_a close close",
        "close next",
        "next throw_os next",
        "throw_key",
        "next stop next",
    ],
)
def test_decorated_generator_protocol_is_the_bare_one(body: Any, script: str) -> None:
    """send/throw/close and the return value reach the consumer exactly as from the bare
    generator; the consumer is never in the generator's scope; one record per started run."""
    inst = FakeInstrument()
    decorated = timed(inst, counter=inst, labels={"s": 1}, clock=Tick())
    with timed(record_func=lambda d, labels: None, labels={"consumer": 1}):
        seen = _gen_script(decorated(body)(), script)
    bare = _gen_script(body(), script)
    assert [step for step in seen if step[0] != "consumer scope"] == [
        step for step in bare if step[0] != "consumer scope"
    ]
    assert all(step[1] == {"consumer": 1} for step in seen if step[0] == "consumer scope")
    assert len(inst.calls) == (0 if script.startswith(("close", "throw")) else 2)


def test_a_decorated_call_adds_one_frame_of_ours() -> None:
    """During a decorated plain function's call, one Python frame of otel_aspects is on
    the stack (issue 9, item 11: each call used to add three)."""
    import sys

    seen: list[list[str]] = []
    t = timed(FakeInstrument(), counter=FakeInstrument())

    @t
    def inner() -> None:
        frame = sys._getframe(1)
        names = []
        while frame is not None and frame.f_code.co_name != "caller":
            names.append(frame.f_code.co_filename)
            frame = frame.f_back
        seen.append(names)

    def caller() -> None:
        inner()

    caller()
    (between,) = seen
    assert len(between) == 1 and between[0].endswith("otel_aspects/_wrap.py")
