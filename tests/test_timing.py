"""Tests for otel_aspects.timing (``timed``) and otel_aspects.labels."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
import wrapt

import otel_aspects
import otel_aspects.labels
import otel_aspects.timing
from otel_aspects import current_labels, set_label, set_success, timed
from otel_aspects._wrap import _passthrough
from otel_aspects.client import OTelMetricsClient
from otel_aspects.config import MetricsConfig, MetricsConfigError, MetricSpec, as_metrics_config
from otel_aspects.decorators import create_timed_context
from otel_aspects.labels import is_cancellation, outcome_labels
from otel_aspects.testing import counter_value, histogram_data
from tests._support import Recorder


class FakeClock:
    """A deterministic clock: each read returns the current time; advance() moves it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


CONFIG = MetricsConfig(
    "svc",
    {
        "op_seconds": MetricSpec("histogram", "op_seconds", unit="s"),
        "ops_total": MetricSpec("counter", "ops_total"),
        "inflight": MetricSpec("up_down_counter", "inflight"),
        "errors_total": MetricSpec("counter", "errors_total"),
        "off_seconds": MetricSpec("histogram", "off_seconds", unit="s", capture=False),
        "off_total": MetricSpec("counter", "off_total", capture=False),
    },
)


@pytest.fixture
def client(metrics_client_factory: Any) -> OTelMetricsClient:
    c: OTelMetricsClient = metrics_client_factory("svc", CONFIG)
    return c


@pytest.fixture
def warnings_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="otel_aspects"):
        yield caplog


class TestWithBlock:
    def test_records_exact_duration_from_clock(self, rec: Recorder, clock: FakeClock) -> None:
        """A block of known length on an injected clock records exactly that length."""
        with timed(record_func=rec, clock=clock, labels={"op": "x"}):
            clock.advance(0.25)
        assert rec.calls == [(0.25, {"op": "x", "status": "success"})]

    def test_success_is_the_default(self, rec: Recorder) -> None:
        """Without an exception or set_success, the outcome is success (the seed's default)."""
        with timed(record_func=rec):
            pass
        with create_timed_context(rec):
            pass
        assert [labels["status"] for labels in rec.labels] == ["success", "success"]

    def test_exception_is_failure_with_type_and_unchanged(self, rec: Recorder) -> None:
        """An exception is recorded as failure with error_type and re-raised as the same object."""
        err = KeyError("k")
        with pytest.raises(KeyError) as info, timed(record_func=rec):
            raise err
        assert info.value is err
        assert rec.labels == [{"status": "failure", "error_type": "KeyError"}]

    def test_exit_never_swallows(self, rec: Recorder) -> None:
        """__exit__ returns False, so the exception propagates."""
        t = timed(record_func=rec)
        t.__enter__()
        assert t.__exit__(ValueError, ValueError("x"), None) is False

    def test_set_success_false_without_exception(self, rec: Recorder) -> None:
        """ctx.set_success(False) records failure, with no error_type."""
        with timed(record_func=rec) as ctx:
            ctx.set_success(False)
        assert rec.labels == [{"status": "failure"}]

    def test_exception_wins_over_set_success_true(self, rec: Recorder) -> None:
        """An exception is a failure whatever set_success said."""
        with pytest.raises(ValueError), timed(record_func=rec):
            set_success(True)
            raise ValueError
        assert rec.labels[0]["status"] == "failure"

    def test_set_label_on_ctx_and_from_nested_code(self, rec: Recorder) -> None:
        """Labels set on the object and from nested code both land on the measurement."""

        def nested() -> None:
            set_label("server", "s1")

        with timed(record_func=rec, labels={"op": "fetch"}) as ctx:
            ctx.set_label("shard", 2)
            nested()
            assert current_labels() == {"op": "fetch", "shard": 2, "server": "s1"}
        assert rec.labels == [{"op": "fetch", "shard": 2, "server": "s1", "status": "success"}]

    def test_reserved_labels_cannot_be_set(
        self, rec: Recorder, warnings_log: pytest.LogCaptureFixture
    ) -> None:
        """status/error_type come from the outcome only; trying to set them warns once."""
        with timed(record_func=rec, labels={"status": "static"}) as ctx:
            ctx.set_label("status", "nope")
            set_label("status", "nope2")
            set_label("error_type", "x")
        assert rec.labels == [{"status": "success"}]
        reserved = [r for r in warnings_log.records if "cannot be set by hand" in r.getMessage()]
        assert len(reserved) == 2  # one per key

    def test_outside_any_scope_is_a_silent_noop(self, caplog: pytest.LogCaptureFixture) -> None:
        """set_label/set_success outside a scope do nothing and log nothing."""
        with caplog.at_level(logging.DEBUG):
            set_label("a", 1)
            set_success(False)
        assert current_labels() is None
        assert caplog.records == []

    def test_nested_blocks_keep_their_own_labels(self, rec: Recorder) -> None:
        """An inner block does not inherit the outer's labels; set_label reaches the innermost."""
        outer_rec, inner_rec = Recorder(), Recorder()
        with timed(record_func=outer_rec, labels={"level": "outer"}):
            set_label("before", 1)
            with timed(record_func=inner_rec, labels={"level": "inner"}):
                set_label("inside", 2)
                set_success(False)
            set_label("after", 3)
        assert inner_rec.labels == [{"level": "inner", "inside": 2, "status": "failure"}]
        assert outer_rec.labels == [
            {"level": "outer", "before": 1, "after": 3, "status": "success"}
        ]

    def test_reused_object_is_reentrant(self, rec: Recorder) -> None:
        """One timed object can be entered again inside itself; each entry is its own run."""
        t = timed(record_func=rec)
        with t as a:
            a.set_label("who", "a")
            with t as b:
                b.set_label("who", "b")
        assert rec.labels == [
            {"who": "b", "status": "success"},
            {"who": "a", "status": "success"},
        ]

    def test_label_set_after_exit_is_ignored(self, rec: Recorder) -> None:
        """A closed run ignores further changes (the measurement is already recorded)."""
        with timed(record_func=rec) as ctx:
            pass
        ctx.set_label("late", 1)
        ctx.set_success(False)
        assert rec.labels == [{"status": "success"}]
        assert current_labels() is None

    def test_misnested_exit_warns_and_does_not_raise(
        self, rec: Recorder, warnings_log: pytest.LogCaptureFixture
    ) -> None:
        """Exiting a block that is not the innermost active one drops it with one warning."""
        a, b = timed(record_func=rec), timed(record_func=rec)
        a.__enter__()
        b.__enter__()
        assert a.__exit__(None, None, None) is False
        assert b.__exit__(None, None, None) is False
        assert a.__exit__(None, None, None) is False
        assert len(rec.calls) == 2
        assert any("out of order" in r.getMessage() for r in warnings_log.records)

    def test_keyboard_interrupt_recorded_as_failure_and_reraised(self, rec: Recorder) -> None:
        """KeyboardInterrupt and SystemExit are recorded (failure + error_type) and re-raised."""
        with pytest.raises(KeyboardInterrupt), timed(record_func=rec):
            raise KeyboardInterrupt
        with pytest.raises(SystemExit), timed(record_func=rec):
            raise SystemExit(3)
        assert rec.labels == [
            {"status": "failure", "error_type": "KeyboardInterrupt"},
            {"status": "failure", "error_type": "SystemExit"},
        ]


class TestOutcomeHooks:
    def test_error_if_marks_failure_from_the_result(self, rec: Recorder) -> None:
        """error_if(result) truthy records failure; the result is returned unchanged."""

        @timed(record_func=rec, error_if=lambda r: r is None)
        def find(x: int) -> int | None:
            return x if x > 0 else None

        assert find(1) == 1
        assert find(0) is None
        assert [lab["status"] for lab in rec.labels] == ["success", "failure"]

    def test_explicit_set_success_wins_over_error_if(self, rec: Recorder) -> None:
        """An explicit set_success inside the call beats error_if."""

        @timed(record_func=rec, error_if=lambda r: True)
        def f() -> int:
            set_success(True)
            return 1

        f()
        assert rec.labels == [{"status": "success"}]

    def test_outcome_labels_from_result_and_exception(self, rec: Recorder) -> None:
        """outcome_labels(result, exc) adds labels decided at the end, not the reserved ones."""

        def by_outcome(result: Any, exc: BaseException | None) -> dict[str, Any]:
            if exc is not None:
                return {"code": 500, "status": "ignored"}
            return {"code": result}

        @timed(record_func=rec, outcome_labels=by_outcome)
        def handle(code: int) -> int:
            if code >= 500:
                raise RuntimeError
            return code

        handle(200)
        with pytest.raises(RuntimeError):
            handle(503)
        assert rec.labels == [
            {"code": 200, "status": "success"},
            {"code": 500, "status": "failure", "error_type": "RuntimeError"},
        ]

    def test_sample_start_stop_decides_labels_at_stop(
        self, rec: Recorder, clock: FakeClock
    ) -> None:
        """start()/stop() (Timer.Sample style) records once, with labels given at stop."""
        t = timed(record_func=rec, clock=clock, labels={"op": "job"})
        sample = t.start()
        clock.advance(2.0)
        assert current_labels() is None  # a sample is not a set_label scope
        assert sample.stop(labels={"queue": "q1"}, success=False) == 2.0
        assert sample.stop() == 0.0
        err = TimeoutError()
        t.start().stop(error=err)
        assert rec.calls == [
            (2.0, {"op": "job", "queue": "q1", "status": "failure"}),
            (0.0, {"op": "job", "status": "failure", "error_type": "TimeoutError"}),
        ]

    def test_stop_inside_a_with_block_records_once(self, rec: Recorder) -> None:
        """Stopping the run by hand inside its block records once and still restores the scope."""
        with timed(record_func=rec) as run:
            run.stop(labels={"early": True})
            set_label("late", 1)
        assert rec.labels == [{"early": True, "status": "success"}]
        assert current_labels() is None


class TestFailingHooks:
    def test_raising_record_func_never_reaches_caller(
        self, warnings_log: pytest.LogCaptureFixture
    ) -> None:
        """A record_func that raises is logged once per cause; the result is untouched."""

        def broken(duration: float, labels: dict[str, Any]) -> None:
            raise RuntimeError("exporter down")

        @timed(record_func=broken)
        def f(x: int) -> int:
            return x * 2

        assert [f(i) for i in range(5)] == [0, 2, 4, 6, 8]
        with pytest.raises(ZeroDivisionError), timed(record_func=broken):
            1 / 0  # noqa: B018
        msgs = [r.getMessage() for r in warnings_log.records if "record_func" in r.getMessage()]
        assert all(r.levelno == logging.WARNING for r in warnings_log.records)
        # One per cause: the decorated function, and the block (named after its target).
        assert len(msgs) == 2
        assert "function 'test_timing." in msgs[0] and ".<locals>.f'" in msgs[0]
        assert "timed block '" in msgs[1] and "broken'" in msgs[1]
        for msg in msgs:
            assert "Nothing was recorded for this call" in msg
            assert "recorded without" not in msg
            assert "record_func(duration_seconds, labels)" in msg

    def test_shared_record_func_warns_once_per_decorated_function(
        self, warnings_log: pytest.LogCaptureFixture
    ) -> None:
        """Two functions sharing a failing record_func each get their own warning, naming them."""

        def broken(duration: float, labels: dict[str, Any]) -> None:
            raise RuntimeError("exporter down")

        aspect = timed(record_func=broken)

        @aspect
        def first() -> int:
            return 1

        @aspect
        def second() -> int:
            return 2

        assert [first(), second(), first(), second()] == [1, 2, 1, 2]
        msgs = [r.getMessage() for r in warnings_log.records]
        assert len(msgs) == 2
        assert ".first'" in msgs[0] and ".second'" in msgs[1]

    def test_record_func_failure_with_instruments_says_they_recorded(
        self, warnings_log: pytest.LogCaptureFixture
    ) -> None:
        """With instruments beside record_func, the warning says the instruments still recorded."""
        hist = FakeHistogram()

        def broken(duration: float, labels: dict[str, Any]) -> None:
            raise RuntimeError("exporter down")

        @timed(hist, record_func=broken)
        def f() -> int:
            return 1

        assert f() == 1
        assert len(hist.values) == 1
        (msg,) = [r.getMessage() for r in warnings_log.records]
        assert "record_func did not record this call; the histogram 'h' did record it" in msg

    def test_raising_outcome_hooks_never_reach_caller(
        self, rec: Recorder, warnings_log: pytest.LogCaptureFixture
    ) -> None:
        """error_if and outcome_labels that raise are logged once; the measurement is kept."""

        def bad(*_: Any) -> Any:
            raise LookupError("bug")

        @timed(record_func=rec, error_if=bad, outcome_labels=bad)
        def f() -> str:
            return "ok"

        assert f() == "ok"
        assert f() == "ok"
        assert rec.labels == [{"status": "success"}] * 2
        assert len([r for r in warnings_log.records if "LookupError" in r.getMessage()]) == 2


class FakeHistogram:
    """An OTel-like histogram keeping what it was given."""

    name = "h"

    def __init__(self) -> None:
        self.values: list[float] = []

    def record(self, amount: float, attributes: Any = None) -> None:
        self.values.append(amount)


class TestConstruction:
    def test_needs_a_target(self) -> None:
        """timed() with nowhere to record fails loudly, saying what to pass."""
        with pytest.raises(ValueError, match="histogram, a counter or a record_func"):
            timed()

    def test_metric_name_needs_a_client(self) -> None:
        """A metric name without client= is a decoration-time error."""
        with pytest.raises(ValueError, match="client="):
            timed("op_seconds")

    def test_bad_hooks_and_labels_fail_loudly(self, rec: Recorder) -> None:
        """Non-callable hooks, non-mapping labels and non-instruments are TypeErrors."""
        with pytest.raises(TypeError, match="extract_labels"):
            timed(record_func=rec, extract_labels=3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="labels"):
            timed(record_func=rec, labels=["a"])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="histogram"):
            timed(object())  # type: ignore[arg-type]

    def test_decorating_a_non_callable_fails(self, rec: Recorder) -> None:
        """@timed on something that is not callable is a TypeError."""
        with pytest.raises(TypeError, match="not callable"):
            timed(record_func=rec)(42)  # type: ignore[call-overload]


class TestClientTargets:
    def test_histogram_and_counter_by_name(
        self, client: OTelMetricsClient, metrics_reader: Any, clock: FakeClock
    ) -> None:
        """Durations go to the histogram and calls to the counter, labelled by outcome."""
        t = timed(
            "op_seconds", counter="ops_total", client=client, labels={"op": "read"}, clock=clock
        )

        @t
        def read(fail: bool) -> str:
            set_label("cache", "hit")
            clock.advance(0.06 if fail else 0.03)
            if fail:
                raise OSError
            return "data"

        assert read(False) == "data"
        with pytest.raises(OSError):
            read(True)
        with t:
            pass
        ok = {"op": "read", "cache": "hit", "status": "success"}
        bad = {"op": "read", "cache": "hit", "status": "failure", "error_type": "OSError"}
        assert counter_value(metrics_reader, "ops_total", ok) == 1
        assert counter_value(metrics_reader, "ops_total", bad) == 1
        assert counter_value(metrics_reader, "ops_total", {"op": "read", "status": "success"}) == 1
        data = histogram_data(metrics_reader, "op_seconds", ok)
        assert data is not None and data.count == 1 and data.sum == pytest.approx(0.03)
        assert data.boundaries[0] == 0.005  # seconds buckets from the config
        assert data.bucket_counts[3] == 1  # (0.025, 0.05]
        failed = histogram_data(metrics_reader, "op_seconds", bad)
        assert failed is not None and failed.sum == pytest.approx(0.06)
        assert failed.bucket_counts[4] == 1  # (0.05, 0.075]

    def test_set_label_values_are_cleaned(
        self, client: OTelMetricsClient, metrics_reader: Any
    ) -> None:
        """Values set at run time go through clean_attributes (None dropped, objects as str)."""
        with timed(counter="ops_total", client=client) as ctx:
            ctx.set_label("none", None)
            ctx.set_label("obj", {"x": 1})
        assert (
            counter_value(metrics_reader, "ops_total", {"obj": "{'x': 1}", "status": "success"})
            == 1
        )

    def test_counter_only_is_counted(self, client: OTelMetricsClient, metrics_reader: Any) -> None:
        """A counter target alone counts calls by outcome."""
        with timed(counter="ops_total", client=client):
            pass
        assert counter_value(metrics_reader, "ops_total", {"status": "success"}) == 1

    def test_disabled_metrics_make_a_transparent_aspect(
        self, client: OTelMetricsClient, metrics_reader: Any
    ) -> None:
        """All targets capture:false/undeclared: @ adds a bare pass-through, with does nothing."""
        t = timed("off_seconds", counter="never_declared", client=client)
        assert not t.enabled

        def f(x: int) -> int:
            return x + 1

        g = t(f)
        assert isinstance(g, wrapt.FunctionWrapper)
        assert g._self_wrapper is _passthrough
        assert g(1) == 2
        with t as ctx:
            ctx.set_label("a", 1)
            ctx.set_success(False)
            assert current_labels() is None  # no scope opened
        assert ctx.stop() == 0.0 and t.start().stop() == 0.0
        assert metrics_reader.get_metrics_data() is None or not any(
            m.data.data_points
            for rm in metrics_reader.get_metrics_data().resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        )

    def test_disabled_histogram_but_enabled_counter_still_counts(
        self, client: OTelMetricsClient, metrics_reader: Any
    ) -> None:
        """Only the enabled target is recorded when the other is capture:false."""
        with timed("off_seconds", counter="ops_total", client=client):
            pass
        assert counter_value(metrics_reader, "ops_total", {"status": "success"}) == 1

    def test_instruments_are_resolved_once(self, meter_provider: Any) -> None:
        """The client is asked for each instrument once, at construction, never per call."""
        asked: list[str] = []

        class Source:
            def __init__(self, real: OTelMetricsClient) -> None:
                self.real = real

            def get_histogram(self, name: str) -> Any:
                asked.append(name)
                return self.real.get_histogram(name)

            def get_counter(self, name: str) -> Any:
                asked.append(name)
                return self.real.get_counter(name)

            def get_up_down_counter(self, name: str) -> Any:
                raise AssertionError("not needed")

        real = OTelMetricsClient("svc", CONFIG, meter_provider=meter_provider)
        t = timed("op_seconds", counter="ops_total", client=Source(real))
        for _i in range(3):
            with t:
                pass
        assert asked == ["op_seconds", "ops_total"]

    def test_otel_instruments_can_be_passed_directly(
        self, meter_provider: Any, metrics_reader: Any
    ) -> None:
        """An OTel histogram/counter object works without a client."""
        meter = meter_provider.get_meter("t")
        with timed(meter.create_histogram("h"), counter=meter.create_counter("c")):
            pass
        assert counter_value(metrics_reader, "c", {"status": "success"}) == 1
        data = histogram_data(metrics_reader, "h", {"status": "success"})
        assert data is not None and data.count == 1


class TestAsync:
    @pytest.mark.anyio
    async def test_async_with_and_set_success(self, rec: Recorder) -> None:
        """The seed's `async with create_timed_context(...) as ctx` with ctx.set_success(False)."""
        async with create_timed_context(rec, labels={"operation": "fetch"}) as ctx:
            await anyio.sleep(0)
            ctx.set_success(False)
        assert rec.labels == [{"operation": "fetch", "status": "failure"}]

    @pytest.mark.anyio
    async def test_duration_spans_awaits(self, rec: Recorder) -> None:
        """A coroutine sleeping 0.05 s across awaits records at least 0.05 s."""

        @timed(record_func=rec)
        async def slow() -> str:
            await anyio.sleep(0.025)
            await anyio.sleep(0.025)
            return "done"

        assert await slow() == "done"
        ((duration, labels),) = rec.calls
        assert 0.05 <= duration < 1.0
        assert labels == {"status": "success"}

    @pytest.mark.anyio
    async def test_cancel_scope_is_cancelled_not_success(self, rec: Recorder) -> None:
        """A call cancelled by a cancel scope (asyncio or trio Cancelled) records `cancelled`."""

        @timed(record_func=rec)
        async def forever() -> None:
            await anyio.sleep(10)

        with anyio.move_on_after(0.01):
            await forever()
        with anyio.move_on_after(0.01):
            async with timed(record_func=rec):
                await anyio.sleep(10)
        assert rec.labels == [{"status": "cancelled"}, {"status": "cancelled"}]

    def test_asyncio_task_cancel_is_cancelled(self, rec: Recorder) -> None:
        """asyncio Task.cancel() is recorded as cancelled and CancelledError propagates."""

        @timed(record_func=rec)
        async def forever() -> None:
            await asyncio.sleep(10)

        async def main() -> None:
            task = asyncio.ensure_future(forever())
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        assert rec.labels == [{"status": "cancelled"}]


class TestOutcomeHelpers:
    def test_cancellation_classes(self) -> None:
        """Cancellation is recognised for asyncio, trio, GeneratorExit and groups of them."""
        import trio

        assert is_cancellation(asyncio.CancelledError())
        assert is_cancellation(GeneratorExit())
        assert is_cancellation(trio.Cancelled._create())
        assert is_cancellation(BaseExceptionGroup("g", [asyncio.CancelledError()]))
        assert not is_cancellation(BaseExceptionGroup("g", [asyncio.CancelledError(), KeyError()]))
        assert not is_cancellation(KeyboardInterrupt())

    def test_outcome_labels(self) -> None:
        """The outcome convention: status, plus error_type on failure only."""
        assert outcome_labels(None) == {"status": "success"}
        assert outcome_labels(None, success=False) == {"status": "failure"}
        assert outcome_labels(asyncio.CancelledError()) == {"status": "cancelled"}
        assert outcome_labels(ExceptionGroup("g", [ValueError()])) == {
            "status": "failure",
            "error_type": "ExceptionGroup",
        }

    def test_top_level_exports(self) -> None:
        """The aspects are importable from the package top."""
        for name in ("timed", "Timed", "set_label", "set_success", "current_labels"):
            assert name in otel_aspects.__all__
            home = otel_aspects.timing if name in ("timed", "Timed") else otel_aspects.labels
            assert getattr(otel_aspects, name) is getattr(home, name)


class TestUnnestedBlocks:
    """Regression: a block whose exit is not the innermost one (generators, manual exits)."""

    def test_block_in_generator_suspended_inside_consumer_block(self) -> None:
        """A `with timed()` in a plain generator spanning a `yield`, stepped inside another
        block: each block records its own measurement with its own labels, set_label between
        the steps lands on the consumer's block, and no scope is left afterwards."""
        rows_rec, request_rec = Recorder(), Recorder()

        def rows() -> Iterator[int]:
            with timed(record_func=rows_rec):
                set_label("table", "users")
                yield 1
                set_label("page", 2)
                yield 2

        gen = rows()
        with timed(record_func=request_rec):
            assert next(gen) == 1
            set_label("user", "alice")
            assert current_labels() == {"user": "alice"}
        assert request_rec.labels == [{"user": "alice", "status": "success"}]
        assert current_labels() is None  # the suspended generator's block is not a scope here
        set_label("stray", 1)  # a silent no-op: not moved onto the generator's block
        assert list(gen) == [2]
        assert rows_rec.labels == [{"table": "users", "page": 2, "status": "success"}]
        assert current_labels() is None

    @pytest.mark.anyio
    async def test_block_in_async_generator_suspended_inside_consumer_block(
        self, anyio_backend: str
    ) -> None:
        rows_rec, request_rec = Recorder(), Recorder()

        async def rows() -> AsyncIterator[int]:
            async with timed(record_func=rows_rec):
                set_label("table", "users")
                yield 1
                yield 2

        agen = rows()
        async with timed(record_func=request_rec):
            assert await agen.__anext__() == 1
            set_label("user", "alice")
        assert request_rec.labels == [{"user": "alice", "status": "success"}]
        assert [item async for item in agen] == [2]
        assert rows_rec.labels == [{"table": "users", "status": "success"}]
        assert current_labels() is None

    def test_out_of_order_exits_record_both_and_leave_no_scope(
        self, warnings_log: pytest.LogCaptureFixture
    ) -> None:
        """enter a, enter b, exit a, exit b: both recorded with their own labels, then no
        scope is active (set_label is a silent no-op), and one WARNING at most."""
        rec_a, rec_b = Recorder(), Recorder()
        a, b = timed(record_func=rec_a), timed(record_func=rec_b)
        run_a = a.__enter__()
        run_a.set_label("which", "a")
        b.__enter__()
        set_label("which", "b")
        a.__exit__(None, None, None)
        assert current_labels() == {"which": "b"}  # b is still open and innermost
        b.__exit__(None, None, None)
        assert rec_a.labels == [{"which": "a", "status": "success"}]
        assert rec_b.labels == [{"which": "b", "status": "success"}]
        assert current_labels() is None
        set_label("leak", 1)
        assert current_labels() is None
        assert len(warnings_log.records) == 1  # a's misnested exit; the leak is silent

    def test_out_of_order_exits_of_one_shared_timed(self, rec: Recorder) -> None:
        """The same timed object entered twice and exited out of order (an ExitStack misuse)."""
        t = timed(record_func=rec)
        first = t.__enter__()
        first.set_label("n", 1)
        second = t.__enter__()
        second.set_label("n", 2)
        t.__exit__(None, None, None)  # exits the innermost open run of t: the second
        t.__exit__(None, None, None)
        assert rec.labels == [{"n": 2, "status": "success"}, {"n": 1, "status": "success"}]
        assert current_labels() is None

    def test_exit_without_enter_is_dropped_with_a_warning(
        self, rec: Recorder, warnings_log: pytest.LogCaptureFixture
    ) -> None:
        t = timed(record_func=rec)
        with t:
            pass
        t.__exit__(None, None, None)
        assert len(rec.calls) == 1
        assert "dropped" in warnings_log.text
        assert current_labels() is None

    @pytest.mark.anyio
    async def test_concurrent_async_with_on_one_shared_timed(
        self, rec: Recorder, anyio_backend: str
    ) -> None:
        """One timed object used by several tasks at once: each gets its own run and labels."""
        t = timed(record_func=rec)

        async def job(n: int) -> None:
            async with t:
                set_label("n", n)
                await anyio.sleep(0.001 * (5 - n))
                assert current_labels() == {"n": n}

        async with anyio.create_task_group() as tg:
            for n in range(5):
                tg.start_soon(job, n)
        assert sorted(labels["n"] for labels in rec.labels) == list(range(5))
        assert current_labels() is None


class TestSetLabelKeys:
    def test_unhashable_key_is_converted_not_raised(
        self, rec: Recorder, warnings_log: pytest.LogCaptureFixture
    ) -> None:
        """Regression: set_label(["a"], 1) raised TypeError into the caller."""
        with timed(record_func=rec):
            set_label(["a"], 1)  # type: ignore[arg-type]
            set_label(["a"], 2)  # type: ignore[arg-type]
        assert rec.labels == [{"['a']": 2, "status": "success"}]
        assert len([r for r in warnings_log.records if "list" in r.getMessage()]) == 1

    def test_unhashable_key_on_instruments(
        self, client: OTelMetricsClient, metrics_reader: Any
    ) -> None:
        with timed("op_seconds", client=client, counter="ops_total"):
            set_label({"k": 1}, "v")  # type: ignore[arg-type]
        attrs = {"{'k': 1}": "v", "status": "success"}
        assert counter_value(metrics_reader, "ops_total", attrs) == 1


class TestUndeclaredNames:
    """A name the config does not declare is reported at decoration time (issue 9, item 10)."""

    CONFIG = {
        "counters": [{"name": "good_total"}, {"name": "off_total", "capture": False}],
        "histograms": [{"name": "request_duration_seconds", "unit": "s"}],
    }

    def test_typo_warns_once_with_a_suggestion(
        self, metrics_client_factory: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        """timed('request_duraton_seconds', counter='good_totl') names both with a fix."""
        client = metrics_client_factory("svc", as_metrics_config(self.CONFIG, "svc"))
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                timed("request_duraton_seconds", counter="good_totl", client=client)
        messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(messages) == 2
        assert "did you mean 'request_duration_seconds'" in messages[0]
        assert "did you mean 'good_total'" in messages[1]

    def test_capture_false_stays_silent(
        self, metrics_client_factory: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A declared but disabled metric is a silent no-op, not a typo."""
        client = metrics_client_factory("svc", as_metrics_config(self.CONFIG, "svc"))
        with caplog.at_level(logging.DEBUG, logger="otel_aspects.aspects"):
            aspect = timed(counter="off_total", client=client)
        assert not aspect.enabled
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    def test_strict_mode_raises(
        self, metrics_client_factory: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """OTEL_ASPECTS_STRICT=1 turns the undeclared name into an error at decoration."""
        client = metrics_client_factory("svc", as_metrics_config(self.CONFIG, "svc"))
        monkeypatch.setenv("OTEL_ASPECTS_STRICT", "1")
        with pytest.raises(MetricsConfigError, match="request_duraton_seconds"):
            timed("request_duraton_seconds", client=client)
