"""Tests for otel_aspects.decorators and the wrappers of otel_aspects._wrap."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from otel_aspects import current_labels, set_label, timed
from otel_aspects.client import OTelMetricsClient
from otel_aspects.config import MetricsConfig, MetricSpec
from otel_aspects.decorators import (
    count_exceptions,
    counted,
    create_timed_context,
    track_duration,
    track_inprogress,
)
from otel_aspects.testing import counter_value
from tests._support import Recorder

ROOT = Path(__file__).resolve().parent.parent


class TickClock:
    """Each read advances one second: a call's duration counts the clock reads around it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


# ------------------------------------------------------------------ every kind x placement

KINDS = ("sync", "coroutine", "generator", "async_generator")
#: (kind, anyio backend): the async kinds run on both backends, the sync ones need none.
RUNS = [
    pytest.param("sync", None, id="sync"),
    pytest.param("generator", None, id="generator"),
    pytest.param("coroutine", "asyncio", id="coroutine-asyncio"),
    pytest.param("coroutine", "trio", id="coroutine-trio"),
    pytest.param("async_generator", "asyncio", id="async_generator-asyncio"),
    pytest.param("async_generator", "trio", id="async_generator-trio"),
]
PLACEMENTS = (
    "function",
    "method",
    "classmethod_above",
    "classmethod_below",
    "staticmethod_above",
    "staticmethod_below",
)


def _body(kind: str) -> Callable[..., Any]:
    """An undecorated function of *kind* taking (x); it sets a label and gives back x."""
    if kind == "sync":

        def sync_fn(x: Any) -> Any:
            """Doc of the target."""
            set_label("inner", x)
            if x == "boom":
                raise ValueError(x)
            return x

        return sync_fn
    if kind == "coroutine":

        async def coro_fn(x: Any) -> Any:
            """Doc of the target."""
            await anyio.sleep(0)
            set_label("inner", x)
            if x == "boom":
                raise ValueError(x)
            return x

        return coro_fn
    if kind == "generator":

        def gen_fn(x: Any) -> Iterator[Any]:
            """Doc of the target."""
            set_label("inner", x)
            yield x
            if x == "boom":
                raise ValueError(x)
            yield x

        return gen_fn

    async def agen_fn(x: Any) -> AsyncIterator[Any]:
        """Doc of the target."""
        set_label("inner", x)
        yield x
        await anyio.sleep(0)
        if x == "boom":
            raise ValueError(x)
        yield x

    return agen_fn


def _strip_self(func: Callable[..., Any]) -> Callable[..., Any]:
    """A (self_or_cls, x) variant of *func* keeping its kind."""
    if inspect.isasyncgenfunction(func):

        async def agen_m(self: Any, x: Any) -> AsyncIterator[Any]:
            async for item in func(x):
                yield item

        return agen_m
    if inspect.iscoroutinefunction(func):

        async def coro_m(self: Any, x: Any) -> Any:
            return await func(x)

        return coro_m
    if inspect.isgeneratorfunction(func):

        def gen_m(self: Any, x: Any) -> Iterator[Any]:
            return (yield from func(x))

        return gen_m

    def sync_m(self: Any, x: Any) -> Any:
        return func(x)

    return sync_m


def build(kind: str, placement: str, aspect: Any) -> Callable[..., Any]:
    """The decorated callable for *kind* and *placement*, bound and ready to call with x."""
    body = _body(kind)
    if placement == "function":
        return aspect(body)  # type: ignore[no-any-return]
    if placement == "staticmethod_above":
        return type("C", (), {"f": aspect(staticmethod(body))})().f  # type: ignore[no-any-return]
    if placement == "staticmethod_below":
        return type("C", (), {"f": staticmethod(aspect(body))})().f  # type: ignore[no-any-return]
    method = _strip_self(body)
    if placement == "method":
        cls = type("C", (), {"f": aspect(method)})
        return cls().f  # type: ignore[no-any-return]
    if placement == "classmethod_above":
        return type("C", (), {"f": aspect(classmethod(method))}).f  # type: ignore[no-any-return]
    return type("C", (), {"f": classmethod(aspect(method))}).f  # type: ignore[no-any-return]


def consume(kind: str, func: Callable[..., Any], x: Any, backend: str | None = None) -> Any:
    """Call *func* with x to the end, returning its result (a list of items for generators).

    Coroutines and async generators run in ``anyio.run`` on *backend*.
    """
    if kind == "sync":
        return func(x)
    if kind == "generator":
        return list(func(x))
    assert backend is not None, "an async kind needs a backend"
    if kind == "coroutine":
        return anyio.run(func, x, backend=backend)

    async def drain() -> list[Any]:
        return [item async for item in func(x)]

    return anyio.run(drain, backend=backend)


@pytest.mark.parametrize("placement", PLACEMENTS)
class TestEveryKind:
    @pytest.mark.parametrize(("kind", "backend"), RUNS)
    def test_result_labels_and_extract_labels_args(
        self, kind: str, backend: str | None, placement: str
    ) -> None:
        """One record per call, labels from extract_labels (own args, no self/cls) and set_label."""
        rec = Recorder()
        seen_args: list[tuple[Any, ...]] = []

        def extract(*args: Any, **kwargs: Any) -> dict[str, Any]:
            seen_args.append(args)
            return {"arg": args[0]}

        f = build(kind, placement, track_duration(rec, extract_labels=extract))
        expected = "v" if kind in ("sync", "coroutine") else ["v", "v"]
        assert consume(kind, f, "v", backend) == expected
        assert seen_args == [("v",)]
        assert rec.labels == [{"arg": "v", "inner": "v", "status": "success"}]

    @pytest.mark.parametrize(("kind", "backend"), RUNS)
    def test_failure_recorded_and_exception_unchanged(
        self, kind: str, backend: str | None, placement: str
    ) -> None:
        """A raising call records failure + error_type and raises the same exception."""
        rec = Recorder()
        f = build(kind, placement, timed(record_func=rec))
        with pytest.raises(ValueError, match="boom"):
            consume(kind, f, "boom", backend)
        assert rec.labels == [{"inner": "boom", "status": "failure", "error_type": "ValueError"}]

    @pytest.mark.parametrize("kind", KINDS)
    def test_metadata_and_kind_preserved(self, kind: str, placement: str) -> None:
        """Name, docstring, signature and the four inspect predicates survive decoration."""
        body = _body(kind)
        f = build(kind, placement, timed(record_func=Recorder()))
        names = {"function": body.__name__, "staticmethod_above": body.__name__}
        names["staticmethod_below"] = body.__name__
        assert f.__name__ == names.get(placement, _strip_self(body).__name__)
        assert inspect.iscoroutinefunction(f) == inspect.iscoroutinefunction(body)
        assert inspect.isgeneratorfunction(f) == inspect.isgeneratorfunction(body)
        assert inspect.isasyncgenfunction(f) == inspect.isasyncgenfunction(body)
        assert list(inspect.signature(f).parameters) == ["x"]


def test_function_metadata_exact() -> None:
    """The decorated function keeps its name, qualname, docstring and full signature."""

    def original(a: int, b: str = "x", *rest: int, flag: bool = False) -> str:
        """Original doc."""
        return b

    f = timed(record_func=Recorder())(original)
    assert f.__name__ == "original"
    assert f.__qualname__ == original.__qualname__
    assert f.__doc__ == "Original doc."
    assert inspect.signature(f) == inspect.signature(original)
    assert f.__wrapped__ is original


# ------------------------------------------------------------------ generators


class TestGenerators:
    def test_timed_from_first_step_not_creation(self) -> None:
        """Creating the generator object records nothing and starts no clock."""
        rec, clock = Recorder(), TickClock()

        @timed(record_func=rec, clock=clock)
        def gen() -> Iterator[int]:
            yield 1

        g = gen()
        assert rec.calls == [] and clock.now == 0.0
        assert list(g) == [1]
        assert rec.calls == [(1.0, {"status": "success"})]

    def test_partial_consumption_then_close_is_cancelled_once(self) -> None:
        """close() after a partial read records one `cancelled`, and closes the inner generator."""
        rec = Recorder()
        closed: list[bool] = []

        @timed(record_func=rec)
        def gen() -> Iterator[int]:
            try:
                yield 1
                yield 2
            finally:
                closed.append(True)

        g = gen()
        assert next(g) == 1
        g.close()
        g.close()
        assert closed == [True]
        assert rec.labels == [{"status": "cancelled"}]

    def test_close_before_start_records_nothing(self) -> None:
        """A generator closed before its first step never ran: nothing is recorded."""
        rec = Recorder()
        g = timed(record_func=rec)(_body("generator"))("x")
        g.close()
        assert rec.calls == []

    def test_send_throw_and_return_value_forwarded(self) -> None:
        """send() and throw() reach the inner generator; its return value comes through."""
        rec = Recorder()

        @timed(record_func=rec)
        def echo() -> Iterator[Any]:
            received = []
            while True:
                try:
                    value = yield len(received)
                except KeyError as exc:
                    value = f"caught {exc.args[0]}"
                if value is None:
                    return received
                received.append(value)

        g = echo()
        assert next(g) == 0
        assert g.send("a") == 1
        assert g.throw(KeyError("k")) == 2
        with pytest.raises(StopIteration) as stop:
            g.send(None)
        assert stop.value.value == ["a", "caught k"]
        assert rec.labels == [{"status": "success"}]

    def test_uncaught_throw_is_failure(self) -> None:
        """An exception thrown in and not caught is recorded as failure and propagates."""
        rec = Recorder()
        g = timed(record_func=rec)(_body("generator"))("x")
        next(g)
        err = OSError("in")
        with pytest.raises(OSError) as info:
            g.throw(err)
        assert info.value is err
        assert rec.labels == [{"inner": "x", "status": "failure", "error_type": "OSError"}]

    def test_scope_is_active_only_inside_the_generator(self) -> None:
        """Between steps the consumer's own scope is active, not the generator's."""
        gen_rec, outer_rec = Recorder(), Recorder()

        @timed(record_func=gen_rec)
        def gen() -> Iterator[int]:
            set_label("in_gen", 1)
            yield 1
            set_label("in_gen_again", 2)
            yield 2

        with timed(record_func=outer_rec):
            for _item in gen():
                set_label("consumer", "yes")
                assert current_labels() == {"consumer": "yes"}
        assert gen_rec.labels == [{"in_gen": 1, "in_gen_again": 2, "status": "success"}]
        assert outer_rec.labels == [{"consumer": "yes", "status": "success"}]

    def test_inner_generator_ignoring_close_is_failure(self) -> None:
        """An inner generator that yields on close raises RuntimeError: recorded as failure."""
        rec = Recorder()

        @timed(record_func=rec)
        def stubborn() -> Iterator[int]:
            refusals = 0
            while True:
                try:
                    yield 1
                except GeneratorExit:
                    refusals += 1
                    if refusals > 1:  # let the garbage collector close it
                        return

        g = stubborn()
        next(g)
        with pytest.raises(RuntimeError):
            g.close()
        assert rec.labels == [{"status": "failure", "error_type": "RuntimeError"}]


class TestAsyncGenerators:
    @pytest.mark.anyio
    async def test_partial_then_aclose_is_cancelled(self) -> None:
        """aclose() after a partial read records `cancelled` once and closes the inner one."""
        rec = Recorder()
        closed: list[bool] = []

        @timed(record_func=rec)
        async def agen() -> AsyncIterator[int]:
            try:
                yield 1
                await anyio.sleep(0)
                yield 2
            finally:
                closed.append(True)

        g = agen()
        assert await g.__anext__() == 1
        await g.aclose()
        assert closed == [True]
        assert rec.labels == [{"status": "cancelled"}]

    @pytest.mark.anyio
    async def test_asend_athrow_forwarded(self) -> None:
        """asend() and athrow() reach the inner async generator."""
        rec = Recorder()

        @timed(record_func=rec)
        async def echo() -> AsyncIterator[Any]:
            value: Any = None
            while True:
                try:
                    value = yield value
                except KeyError:
                    value = "caught"

        g = echo()
        assert await g.asend(None) is None
        assert await g.asend("a") == "a"
        assert await g.athrow(KeyError("k")) == "caught"
        await g.aclose()
        assert rec.labels == [{"status": "cancelled"}]

    @pytest.mark.anyio
    async def test_duration_spans_iteration(self) -> None:
        """An async generator is timed across its awaits, to exhaustion."""
        rec = Recorder()

        @timed(record_func=rec)
        async def agen() -> AsyncIterator[int]:
            await anyio.sleep(0.03)
            yield 1
            await anyio.sleep(0.03)

        assert [i async for i in agen()] == [1]
        assert rec.calls[0][0] >= 0.06
        assert rec.labels == [{"status": "success"}]


# ------------------------------------------------------------------ seed examples and pitfalls


class TestSeedAndPitfalls:
    @pytest.mark.anyio
    async def test_seed_track_duration_extract_labels(self) -> None:
        """The seed's `extract_labels=lambda x: {"type": x.type}` works as written."""
        rec = Recorder()

        @track_duration(rec, extract_labels=lambda x: {"type": x.type})
        async def my_operation(request: Any) -> str:
            return "ok"

        assert await my_operation(SimpleNamespace(type="read")) == "ok"
        assert rec.labels == [{"type": "read", "status": "success"}]

    def test_extract_labels_on_method_gets_args_without_self(self) -> None:
        """For a bound method, extract_labels gets the call's arguments without self."""
        rec = Recorder()

        class Service:
            @track_duration(rec, extract_labels=lambda x: {"type": x.type})
            def handle(self, request: Any) -> str:
                return "ok"

        assert Service().handle(SimpleNamespace(type="write")) == "ok"
        assert rec.labels == [{"type": "write", "status": "success"}]

    def test_result_and_error_parameters_do_not_collide(self) -> None:
        """A function with its own `result`/`error` parameters works with extract_labels."""
        rec = Recorder()

        @track_duration(rec, extract_labels=lambda result, error=None: {"r": result, "e": error})
        def f(result: int, error: str | None = None) -> int:
            return result

        assert f(1, error="x") == 1
        assert rec.labels == [{"r": 1, "e": "x", "status": "success"}]

    def test_raising_extract_labels_never_reaches_caller(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A failing extract_labels logs one WARNING per cause; the call still runs and records."""
        rec = Recorder()

        @track_duration(rec, extract_labels=lambda x: {"type": x.type})
        def f(x: Any) -> Any:
            return x

        assert f(1) == 1 and f(2) == 2
        assert rec.labels == [{"status": "success"}] * 2
        warns = [r for r in caplog.records if "extract_labels" in r.getMessage()]
        assert len(warns) == 1 and warns[0].levelname == "WARNING"

    def test_extract_labels_cannot_override_status(self) -> None:
        """status from extract_labels is dropped: the outcome decides it."""
        rec = Recorder()
        f = track_duration(rec, extract_labels=lambda x: {"status": "fake", "k": x})(_body("sync"))
        with pytest.raises(ValueError):
            f("boom")
        assert rec.labels == [
            {"k": "boom", "inner": "boom", "status": "failure", "error_type": "ValueError"}
        ]

    @pytest.mark.anyio
    async def test_seed_create_timed_context(self) -> None:
        """The seed's `async with create_timed_context(...) as ctx: ctx.set_success(False)`."""
        rec = Recorder()
        result = SimpleNamespace(error=True)
        async with create_timed_context(rec, labels={"operation": "fetch"}) as ctx:
            if result.error:
                ctx.set_success(False)
        with create_timed_context(rec, labels={"operation": "fetch"}):
            pass
        assert rec.labels == [
            {"operation": "fetch", "status": "failure"},
            {"operation": "fetch", "status": "success"},
        ]

    @pytest.mark.anyio
    async def test_seed_request_metrics_context_pattern(self) -> None:
        """The seed's RequestMetricsContext built on timed: labels resolved inside the block."""
        recorded: list[tuple[str, str, bool, float, str]] = []

        def record_request(
            endpoint: str, method: str, success: bool, duration: float, server_name: str
        ) -> None:
            recorded.append((endpoint, method, success, duration, server_name))

        def record(duration: float, labels: dict[str, Any]) -> None:
            record_request(
                labels["endpoint"],
                labels["method"],
                labels["status"] == "success",
                duration,
                labels["server_name"],
            )

        now = [5.0]  # a clock the block moves: the duration is known exactly

        async def proxy_request() -> None:
            labels = {"endpoint": "/proxy", "method": "GET"}
            async with timed(record_func=record, labels=labels, clock=lambda: now[0]):
                await anyio.sleep(0)
                set_label("server_name", "s1")
                now[0] += 0.125

        await proxy_request()
        assert recorded == [("/proxy", "GET", True, 0.125, "s1")]


# ------------------------------------------------------------------ other aspects

CONFIG = MetricsConfig(
    "svc",
    {
        "calls_total": MetricSpec("counter", "calls_total"),
        "errors_total": MetricSpec("counter", "errors_total"),
        "inflight": MetricSpec("up_down_counter", "inflight"),
        "off_total": MetricSpec("counter", "off_total", capture=False),
        "off_inflight": MetricSpec("up_down_counter", "off_inflight", capture=False),
    },
)


@pytest.fixture
def client(metrics_client_factory: Any) -> OTelMetricsClient:
    c: OTelMetricsClient = metrics_client_factory("svc", CONFIG)
    return c


def _probing(kind: str, probe: Callable[[Any], None]) -> Callable[..., Any]:
    """A function of *kind* taking (x) that calls probe(x) first, then runs _body(kind)."""
    body = _body(kind)
    if kind == "sync":

        def sync_target(x: Any) -> Any:
            probe(x)
            return body(x)

        return sync_target
    if kind == "coroutine":

        async def coro_target(x: Any) -> Any:
            probe(x)
            return await body(x)

        return coro_target
    if kind == "generator":

        def gen_target(x: Any) -> Iterator[Any]:
            probe(x)
            return (yield from body(x))

        return gen_target

    async def agen_target(x: Any) -> AsyncIterator[Any]:
        probe(x)
        async for item in body(x):
            yield item

    return agen_target


@pytest.mark.parametrize(("kind", "backend"), RUNS)
class TestOtherAspects:
    def test_counted_by_outcome(
        self, kind: str, backend: str | None, client: Any, metrics_reader: Any
    ) -> None:
        """counted counts calls by status for every kind of callable."""
        f = counted("calls_total", client=client, labels={"k": kind})(_body(kind))
        consume(kind, f, "a", backend)
        with pytest.raises(ValueError):
            consume(kind, f, "boom", backend)
        base = {"k": kind, "inner": "a", "status": "success"}
        assert counter_value(metrics_reader, "calls_total", base) == 1
        bad = {"k": kind, "inner": "boom", "status": "failure", "error_type": "ValueError"}
        assert counter_value(metrics_reader, "calls_total", bad) == 1

    def test_count_exceptions(
        self, kind: str, backend: str | None, client: Any, metrics_reader: Any
    ) -> None:
        """count_exceptions counts matching exceptions only, by error_type, re-raising them."""
        f = count_exceptions("errors_total", client=client, exceptions=ValueError)(_body(kind))
        consume(kind, f, "a", backend)
        with pytest.raises(ValueError):
            consume(kind, f, "boom", backend)
        assert counter_value(metrics_reader, "errors_total") == 1
        assert counter_value(metrics_reader, "errors_total", {"error_type": "ValueError"}) == 1

    def test_track_inprogress(
        self, kind: str, backend: str | None, client: Any, metrics_reader: Any
    ) -> None:
        """In flight is 1 while the call runs and back to 0 after success or failure."""
        seen: list[float] = []

        def probe(x: Any) -> None:
            seen.append(counter_value(metrics_reader, "inflight", {"k": "v"}))

        f = track_inprogress("inflight", client=client, labels={"k": "v"})(_probing(kind, probe))
        consume(kind, f, "a", backend)
        with pytest.raises(ValueError):
            consume(kind, f, "boom", backend)
        assert seen == [1, 1]
        assert counter_value(metrics_reader, "inflight", {"k": "v"}) == 0

    def test_track_inprogress_extract_labels(
        self, kind: str, backend: str | None, client: Any, metrics_reader: Any
    ) -> None:
        """extract_labels (the call's own arguments) labels the +1 and the -1 of each call."""
        seen: list[tuple[float, float]] = []
        extracted: list[tuple[Any, ...]] = []

        def extract(x: Any) -> dict[str, Any]:
            extracted.append((x,))
            return {"arg": x}

        def probe(x: Any) -> None:
            mine = counter_value(metrics_reader, "inflight", {"k": "v", "arg": x})
            seen.append((mine, counter_value(metrics_reader, "inflight", {"k": "v"})))

        aspect = track_inprogress(
            "inflight", client=client, labels={"k": "v"}, extract_labels=extract
        )
        f = aspect(_probing(kind, probe))
        consume(kind, f, "a", backend)
        with pytest.raises(ValueError):
            consume(kind, f, "boom", backend)
        assert extracted == [("a",), ("boom",)]
        assert seen == [(1, 0), (1, 0)]  # in flight under its own labels, not the static ones
        for x in ("a", "boom"):
            assert counter_value(metrics_reader, "inflight", {"k": "v", "arg": x}) == 0
        assert counter_value(metrics_reader, "inflight") == 0


class FakeUpDown:
    """An OTel-like up-down counter keeping (delta, the attributes object itself)."""

    name = "fake_inflight"

    def __init__(self) -> None:
        self.calls: list[tuple[int, Any]] = []

    def add(self, amount: int, attributes: Any = None) -> None:
        self.calls.append((amount, attributes))


class TestTrackInprogressLabels:
    @pytest.mark.parametrize("raises", [False, True])
    def test_minus_one_uses_exactly_the_plus_one_labels(self, raises: bool) -> None:
        """Labels are read at start: the -1 gets the +1's own attributes even if args change."""
        inst = FakeUpDown()
        request = SimpleNamespace(route="/a")

        @track_inprogress(
            inst, labels={"svc": "x"}, extract_labels=lambda req: {"route": req.route}
        )
        def handle(req: Any) -> str:
            req.route = "/changed-during-the-call"
            if raises:
                raise KeyError("k")
            return "ok"

        if raises:
            with pytest.raises(KeyError):
                handle(request)
        else:
            assert handle(request) == "ok"
        (up, up_attrs), (down, down_attrs) = inst.calls
        assert (up, down) == (1, -1)
        assert down_attrs is up_attrs
        assert up_attrs == {"svc": "x", "route": "/a"}

    def test_raising_extract_labels_uses_static_labels_for_both(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A failing extract_labels: static labels both ways, one WARNING naming the function."""
        inst = FakeUpDown()

        @track_inprogress(inst, labels={"svc": "x"}, extract_labels=lambda req: {"r": req.route})
        def handle(req: Any) -> int:
            return 1

        assert handle(1) == 1 and handle(2) == 1
        assert inst.calls == [(1, {"svc": "x"}), (-1, {"svc": "x"})] * 2
        warns = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warns) == 1
        assert "extract_labels of function" in warns[0] and ".handle'" in warns[0]
        assert "+1 and -1 both carry the static labels only" in warns[0]

    def test_block_uses_static_labels(self) -> None:
        """`with` has no arguments: extract_labels is not called, static labels both ways."""
        inst = FakeUpDown()
        calls: list[Any] = []
        aspect = track_inprogress(inst, labels={"svc": "x"}, extract_labels=calls.append)
        with aspect:
            pass
        assert calls == []
        assert inst.calls == [(1, {"svc": "x"}), (-1, {"svc": "x"})]

    def test_extract_labels_must_be_callable(self) -> None:
        """A non-callable extract_labels fails at decoration time."""
        with pytest.raises(TypeError, match="extract_labels="):
            track_inprogress(FakeUpDown(), extract_labels="route")  # type: ignore[arg-type]


class TestOtherAspectsBlocks:
    @pytest.mark.anyio
    async def test_with_and_async_with(self, client: Any, metrics_reader: Any) -> None:
        """Each aspect also works as `with` and `async with`."""
        inflight = track_inprogress("inflight", client=client)
        async with inflight:
            assert counter_value(metrics_reader, "inflight") == 1
        with inflight:
            assert counter_value(metrics_reader, "inflight") == 1
        assert counter_value(metrics_reader, "inflight") == 0
        with pytest.raises(KeyError), count_exceptions("errors_total", client=client):
            raise KeyError
        with pytest.raises(asyncio.CancelledError), count_exceptions("errors_total", client=client):
            raise asyncio.CancelledError  # not an Exception: not counted by default
        async with counted("calls_total", client=client):
            pass
        assert counter_value(metrics_reader, "errors_total") == 1
        assert counter_value(metrics_reader, "calls_total", {"status": "success"}) == 1

    def test_disabled_aspects_are_transparent(self, client: Any, metrics_reader: Any) -> None:
        """capture:false targets make every aspect a pass-through."""
        for aspect in (
            counted("off_total", client=client),
            count_exceptions("off_total", client=client),
            track_inprogress("off_inflight", client=client),
        ):
            assert not aspect.enabled
            assert aspect(_body("sync"))(1) == 1
            with aspect:
                pass
        assert metrics_reader.get_metrics_data() is None or all(
            not m.data.data_points
            for rm in metrics_reader.get_metrics_data().resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        )

    def test_bad_exceptions_argument(self, client: Any) -> None:
        """exceptions= must be exception classes: a decoration-time TypeError."""
        with pytest.raises(TypeError, match="exceptions="):
            count_exceptions("errors_total", client=client, exceptions=(int,))  # type: ignore[arg-type]


# ------------------------------------------------------------------ typing


def test_typing_api_checks_with_mypy() -> None:
    """mypy strict sees the original parameter and return types of decorated callables."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--warn-unused-ignores",
            "--no-incremental",
            str(ROOT / "tests" / "typing" / "check_api.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("fast", [False, True], ids=["record_func", "instruments"])
def test_keyword_arguments_named_like_wrapper_parameters(
    fast: bool, metrics_client_factory: Any
) -> None:
    """Regression: a decorated plain function could not take a keyword named `self`
    (_PlainFunctionWrapper.__call__(self, *args, **kwargs) took it as its own)."""
    if fast:
        client = metrics_client_factory(
            "svc", MetricsConfig("svc", {"c": MetricSpec("counter", "c")})
        )
        aspect = timed(counter="c", client=client)
    else:
        aspect = timed(record_func=lambda duration, labels: None)

    def f(
        self: int, wrapped: int, instance: int, args: int, kwargs: int, func: int
    ) -> tuple[int, ...]:
        return (self, wrapped, instance, args, kwargs, func)

    class C:
        @aspect
        @staticmethod
        def s(self: int, wrapped: int, instance: int, args: int, kwargs: int) -> tuple[int, ...]:
            return (self, wrapped, instance, args, kwargs)

    keywords = {"self": 1, "wrapped": 2, "instance": 3, "args": 4, "kwargs": 5}
    assert aspect(f)(**keywords, func=6) == (1, 2, 3, 4, 5, 6)
    assert C.s(**keywords) == (1, 2, 3, 4, 5)
