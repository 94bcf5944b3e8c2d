"""The engine on its own terms: concurrency, bounds, fork, recording modes, per-call aspects.

Real SDK providers and readers, real threads, real ``os.fork`` children, asyncio and trio
tasks through anyio.  Point-by-point equality with the SDK's own instruments is
tests/test_engine_differential.py's; these tests check what that one cannot: exact totals
under contention, bounded tables whatever the order of setup, a forked child's fresh
state, the switch between recording modes, and aspects built per call.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import select
import signal
import threading
import time
import traceback
import tracemalloc
from collections import Counter as Tally
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics import Counter as SdkCounter
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)

from otel_aspects import (
    create_timed_context,
    current_setup,
    load_metrics_config,
    set_label,
    setup_metrics,
    shutdown_metrics,
    timed,
    track_duration,
)
from otel_aspects import engine as engine_module
from otel_aspects.client import OTelMetricsClient, create_metrics_client
from otel_aspects.engine import DEFAULT_MAX_SERIES, OVERFLOW_ATTRIBUTES
from otel_aspects.testing import counter_value, histogram_data, metric_points
from tests._support import new_provider as _provider

DELTA = {SdkCounter: AggregationTemporality.DELTA, SdkHistogram: AggregationTemporality.DELTA}
CONFIG: dict[str, Any] = {
    "counters": [{"name": "ops_total"}, {"name": "calls_total"}],
    "histograms": [
        {"name": "op_seconds", "unit": "s", "buckets": [0.5, 1.0, 10.0]},
        {"name": "timed_seconds", "unit": "s"},
    ],
}


pytestmark = pytest.mark.usefixtures("clean_sdk")


def _points(data: MetricsData | None, name: str) -> list[Any]:
    if data is None:
        return []
    return [
        point
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def _key(attributes: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(dict(attributes or {}).items()))


def _sums(data: MetricsData | None, name: str) -> Tally[tuple[tuple[str, Any], ...]]:
    """``{attributes: value}`` of a sum (or ``{attributes: count}`` of a histogram)."""
    out: Tally[tuple[tuple[str, Any], ...]] = Tally()
    for point in _points(data, name):
        out[_key(point.attributes)] += (
            point.count if isinstance(point, HistogramDataPoint) else point.value
        )
    return out


class MemoryExporter(MetricExporter):
    """Keeps every exported batch (the SDK has no in-memory metric exporter)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[MetricsData] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.batches.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


# ---------------------------------------------------------------------- 6. concurrency


class TestConcurrency:
    def test_threads_with_a_collector_in_a_loop(self, providers: list[MeterProvider]) -> None:
        """8 threads recording through the client and a ``timed`` with a dynamic set_label, while
        another thread collects a delta and a cumulative reader: totals are exact and the delta
        points of all collections add up to them."""
        delta, cumulative = (
            InMemoryMetricReader(preferred_temporality=DELTA),
            InMemoryMetricReader(),
        )
        client = create_metrics_client(
            "conc", CONFIG, meter_provider=_provider(providers, delta, cumulative)
        )
        threads_n, n = 8, 1500

        @timed("timed_seconds", counter="calls_total", client=client, labels={"op": "work"})
        def work(worker: int) -> None:
            set_label("worker", worker)

        delta_sums: dict[str, Tally[Any]] = {m: Tally() for m in CONFIG_NAMES}
        delta_buckets: list[int] = [0, 0, 0, 0]
        collections = 0
        stop = threading.Event()

        def absorb(data: MetricsData | None) -> None:
            for name in CONFIG_NAMES:
                delta_sums[name].update(_sums(data, name))
            for point in _points(data, "op_seconds"):
                for i, c in enumerate(point.bucket_counts):
                    delta_buckets[i] += c

        def collector() -> None:
            nonlocal collections
            while not stop.is_set():
                absorb(delta.get_metrics_data())
                cumulative.get_metrics_data()
                collections += 1

        start = threading.Barrier(threads_n + 1)

        def recorder(worker: int) -> None:
            attrs = {"half": str(worker % 2)}
            start.wait()
            for i in range(n):
                client.record_counter("ops_total", 1, attrs)
                client.record_histogram("op_seconds", 0.25 if i % 2 else 2.0, attrs)
                work(worker)

        workers = [threading.Thread(target=recorder, args=(w,)) for w in range(threads_n)]
        watcher = threading.Thread(target=collector)
        for thread in (*workers, watcher):
            thread.start()
        start.wait()
        for thread in workers:
            thread.join()
        stop.set()
        watcher.join()
        absorb(delta.get_metrics_data())
        final = cumulative.get_metrics_data()
        assert collections >= 1
        half = threads_n // 2 * n
        assert _sums(final, "ops_total") == {(("half", "0"),): half, (("half", "1"),): half}
        assert _sums(final, "op_seconds") == {(("half", "0"),): half, (("half", "1"),): half}
        total_sum = sum(p.sum for p in _points(final, "op_seconds"))
        assert total_sum == threads_n * (n // 2 * 0.25 + n // 2 * 2.0)
        per_worker = {
            (("op", "work"), ("status", "success"), ("worker", w)): n for w in range(threads_n)
        }
        assert _sums(final, "calls_total") == per_worker
        assert _sums(final, "timed_seconds") == per_worker
        for name in CONFIG_NAMES:
            assert delta_sums[name] == _sums(final, name), name
        cumulative_buckets = [
            sum(p.bucket_counts[i] for p in _points(final, "op_seconds")) for i in range(4)
        ]
        assert delta_buckets == cumulative_buckets == [threads_n * n // 2, 0, threads_n * n // 2, 0]

    @pytest.mark.anyio
    async def test_two_thousand_tasks_with_their_own_labels(
        self, providers: list[MeterProvider], anyio_backend: str
    ) -> None:
        """2,000 interleaved tasks (asyncio and trio) each setting their own label inside an
        ``async with timed`` get exact counts per label set."""
        reader = InMemoryMetricReader()
        client = create_metrics_client("tasks", CONFIG, meter_provider=_provider(providers, reader))
        tasks, groups = 2000, 16

        async def task(i: int) -> None:
            async with timed("timed_seconds", counter="calls_total", client=client) as run:
                run.set_label("group", i % groups)
                await anyio.sleep(0)
                set_label("parity", i % 2)
                await anyio.sleep(0)
                client.record_counter("ops_total", 1, {"group": i % groups})

        async with anyio.create_task_group() as tg:
            for i in range(tasks):
                tg.start_soon(task, i)
        data = reader.get_metrics_data()
        expected = {
            (("group", g), ("parity", g % 2), ("status", "success")): tasks // groups
            for g in range(groups)
        }
        assert _sums(data, "calls_total") == expected
        assert _sums(data, "timed_seconds") == expected
        assert _sums(data, "ops_total") == {(("group", g),): tasks // groups for g in range(groups)}


CONFIG_NAMES = ("ops_total", "op_seconds", "calls_total", "timed_seconds")


# ---------------------------------------------------------------------- 7. bounds

CAPPED = {"counters": [{"name": "capped_total", "max_series": 3}]}


def _record_distinct(client: OTelMetricsClient, name: str, count: int) -> None:
    for i in range(count):
        client.record_counter(name, 1, {"i": str(i)})


def _check_capped(reader: Any, name: str, kept: int, total: int) -> None:
    points = metric_points(reader, name)
    overflow = [p for p in points if dict(p.attributes) == OVERFLOW_ATTRIBUTES]
    assert len(points) == kept + 1, [dict(p.attributes) for p in points]
    assert len(overflow) == 1 and overflow[0].value == total - kept
    assert sum(p.value for p in points) == total


class TestBounds:
    @pytest.mark.parametrize(
        "order",
        ["client_before_setup", "client_after_setup", "config_after_setup", "user_provider"],
    )
    def test_max_series_from_the_yaml_whatever_the_order(
        self, order: str, providers: list[MeterProvider], tmp_path: Any
    ) -> None:
        """max_series from the YAML caps series at max_series plus one overflow series holding
        the rest, whether the client or its config comes before or after setup_metrics, or
        the client is on a user's provider."""
        service = f"bounds_{order}"
        path = tmp_path / f"{service}.yml"
        path.write_text("counters:\n  - name: capped_total\n    max_series: 3\n")
        if order == "client_before_setup":
            client = create_metrics_client(service, load_metrics_config(service, path))
            reader = setup_metrics(service).memory_reader
        elif order == "client_after_setup":
            load_metrics_config(service, path)
            reader = setup_metrics(service).memory_reader
            client = create_metrics_client(service, load_metrics_config(service, path))
        elif order == "config_after_setup":
            reader = setup_metrics(service).memory_reader
            client = create_metrics_client(service, load_metrics_config(service, path))
        else:
            reader = InMemoryMetricReader()
            provider = _provider(providers, reader)
            client = create_metrics_client(
                service, load_metrics_config(service, path), meter_provider=provider
            )
        _record_distinct(client, "capped_total", 20)
        _check_capped(reader, "capped_total", 3, 20)
        instrument = client.get_counter("capped_total")
        assert instrument is not None and len(instrument.table.series) == 4

    def test_default_limit_is_2000(self, providers: list[MeterProvider]) -> None:
        """Without max_series in the YAML an instrument keeps 2000 attribute sets, then
        overflows."""
        reader = InMemoryMetricReader()
        client = create_metrics_client(
            "defaults",
            {"counters": [{"name": "wide_total"}]},
            meter_provider=_provider(providers, reader),
        )
        assert DEFAULT_MAX_SERIES == 2000
        _record_distinct(client, "wide_total", 2100)
        _check_capped(reader, "wide_total", 2000, 2100)

    def test_hostile_labels_keep_tables_bounded(self, providers: list[MeterProvider]) -> None:
        """10,000 distinct label values, through the client and a ``timed`` set_label, leave at
        most max_series+1 series and a bounded alias table, and more values keep no memory."""
        reader = InMemoryMetricReader()
        client = create_metrics_client(
            "hostile",
            {
                "counters": [{"name": "calls_total"}, {"name": "hits_total", "max_series": 50}],
                "histograms": [{"name": "timed_seconds", "unit": "s", "max_series": 50}],
            },
            meter_provider=_provider(providers, reader),
        )
        hits = client.get_counter("hits_total")
        calls = client.get_counter("calls_total")
        latency = client.get_histogram("timed_seconds")
        assert hits is not None and calls is not None and latency is not None

        @timed(latency, counter=calls)  # one aspect for every call: whatever it caches stays
        def handle(i: int) -> None:
            set_label("user", i)

        def flood(offset: int, count: int) -> None:
            for i in range(offset, offset + count):
                client.record_counter("hits_total", 1, {"user": f"u{i}"})
                handle(i)

        def sizes() -> list[tuple[int, int]]:
            return [(len(i.table.series), len(i.table.aliases)) for i in (hits, calls, latency)]

        flood(0, 10_000)
        first = sizes()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            flood(10_000, 3_000)  # traced: slower, so fewer
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert sizes() == first
        # 3,000 more distinct values keep nothing each (a kept one would be ~100+ bytes).
        assert grown < 100_000, f"memory grew by {grown} bytes"
        for instrument in (hits, calls, latency):
            assert len(instrument.table.series) == instrument.max_series + 1
            assert len(instrument.table.aliases) <= 4 * instrument.max_series + 16
        assert counter_value(reader, "hits_total") == 13_000
        assert counter_value(reader, "hits_total", OVERFLOW_ATTRIBUTES) == 13_000 - 50
        assert counter_value(reader, "calls_total") == 13_000


# ---------------------------------------------------------------------- 8. fork


def _in_child(body: Callable[[], dict[str, Any]], timeout: float = 5.0) -> dict[str, Any]:
    """Run *body* in a forked child (killed by SIGALRM after *timeout*); its JSON result."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            os.close(read_end)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)  # a handler would let it hang
            signal.alarm(int(timeout))
            try:
                result = body()
            except BaseException:
                result = {"error": traceback.format_exc()}
                code = 1
            os.write(write_end, json.dumps(result).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    deadline = time.monotonic() + timeout + 2  # also covers a hang in an at-fork handler
    try:
        while True:
            ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                pytest.fail("the forked child hung")
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), f"child killed by signal {os.WTERMSIG(status)} (hung?)"
    result: dict[str, Any] = json.loads(b"".join(chunks) or b"{}")
    assert "error" not in result, result.get("error")
    assert os.WEXITSTATUS(status) == 0
    return result


class TestFork:
    def test_child_starts_empty_with_a_new_instance_id(
        self, providers: list[MeterProvider]
    ) -> None:
        """A child forked after setup starts with no series (global and a user's provider) and a
        new service.instance.id, and exports only what it records itself."""
        setup = setup_metrics("forked")
        assert setup.memory_reader is not None
        client = create_metrics_client("forked", CONFIG)
        user_reader = InMemoryMetricReader()
        user = create_metrics_client(
            "forked_user", CONFIG, meter_provider=_provider(providers, user_reader)
        )
        client.record_counter("ops_total", 5)
        user.record_counter("ops_total", 5)
        parent_id = setup.service_instance_id

        def child() -> dict[str, Any]:
            ops, user_ops = client.get_counter("ops_total"), user.get_counter("ops_total")
            assert ops is not None and user_ops is not None
            before = (len(ops.table.series), len(user_ops.table.series))
            client.record_counter("ops_total", 1)
            user.record_counter("ops_total", 2)
            now = current_setup()
            assert now is not None and now.memory_reader is not None
            return {
                "before": before,
                "id": now.service_instance_id,
                "resource_id": now.resource.attributes["service.instance.id"],  # type: ignore[union-attr]
                "ops": counter_value(now.memory_reader, "ops_total"),
                "user_ops": counter_value(user_reader, "ops_total"),
            }

        result = _in_child(child)
        assert result["before"] == [0, 0]
        assert result["id"] != parent_id and result["resource_id"] == result["id"]
        assert result["ops"] == 1
        assert result["user_ops"] == 2
        assert counter_value(setup.memory_reader, "ops_total") == 5  # the parent's own, untouched

    def test_lock_held_across_fork_does_not_deadlock_the_child(self) -> None:
        """With another thread holding the store's generation lock at fork time, the child's
        first recordings (a counter and a timed pair) complete and are exported."""
        setup = setup_metrics("forked_lock")
        client = create_metrics_client("forked_lock", CONFIG)
        client.record_counter("ops_total", 1)
        lock = engine_module.global_store().gen.lock
        held, release = threading.Event(), threading.Event()

        def holder() -> None:
            with lock:
                held.set()
                release.wait(10)

        thread = threading.Thread(target=holder)
        thread.start()
        try:
            assert held.wait(5)

            def child() -> dict[str, Any]:
                client.record_counter("ops_total", 3)
                with timed("timed_seconds", counter="calls_total", client=client):
                    pass
                now = current_setup()
                assert now is not None and now.memory_reader is not None
                return {
                    "ops": counter_value(now.memory_reader, "ops_total"),
                    "calls": counter_value(now.memory_reader, "calls_total"),
                    "old_lock_held": lock.locked(),
                }

            result = _in_child(child)
        finally:
            release.set()
            thread.join()
        assert result == {"ops": 3, "calls": 1, "old_lock_held": True}
        client.record_counter("ops_total", 1)
        assert setup.memory_reader is not None
        assert counter_value(setup.memory_reader, "ops_total") == 2


# ---------------------------------------------------------------------- 9. modes


def _no_warnings(caplog: pytest.LogCaptureFixture) -> None:
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == []


class TestModes:
    def test_env_sdk_on_a_users_provider(
        self, monkeypatch: pytest.MonkeyPatch, providers: list[MeterProvider]
    ) -> None:
        """OTEL_ASPECTS_ENGINE=sdk: a user's provider's client records through SDK instruments (the
        engine keeps no series, the SDK's aggregation gives the points)."""
        monkeypatch.setenv("OTEL_ASPECTS_ENGINE", "sdk")
        reader = InMemoryMetricReader()
        client = create_metrics_client(
            "mode_env", CONFIG, meter_provider=_provider(providers, reader)
        )
        ops, hist = client.get_counter("ops_total"), client.get_histogram("op_seconds")
        assert ops is not None and ops.sdk is not None
        assert hist is not None and hist.sdk is not None
        client.record_counter("ops_total", 4, {"a": "b"})
        client.record_histogram("op_seconds", 0.75)
        assert not ops.table.series and not hist.table.series
        assert counter_value(reader, "ops_total", {"a": "b"}) == 4
        data = histogram_data(reader, "op_seconds")
        assert data is not None and data.bucket_counts == (0, 1, 0, 0)

    @pytest.mark.parametrize("how", ["env", "argument"])
    def test_global_sdk_mode(self, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """OTEL_ASPECTS_ENGINE=sdk or setup_metrics(engine="sdk"): global clients record through
        SDK instruments into the setup's reader."""
        if how == "env":
            monkeypatch.setenv("OTEL_ASPECTS_ENGINE", "sdk")
            setup = setup_metrics("mode_global")
        else:
            setup = setup_metrics("mode_global", engine="sdk")
        assert setup.engine == "sdk" and setup.memory_reader is not None
        client = create_metrics_client("mode_global", CONFIG)
        ops = client.get_counter("ops_total")
        assert ops is not None and ops.sdk is not None
        client.record_counter("ops_total", 3)
        assert not ops.table.series
        assert counter_value(setup.memory_reader, "ops_total") == 3

    def test_switching_engine_sdk_engine_keeps_recording(self) -> None:
        """setup_metrics(engine=) switched engine -> sdk -> engine: every setup's reader gets what
        was recorded during it, through the route that setup chose."""
        client = create_metrics_client("mode_switch", CONFIG)
        ops = client.get_counter("ops_total")
        assert ops is not None
        seen = []
        for mode, amount in (("engine", 1), ("sdk", 2), ("engine", 3)):
            setup = setup_metrics("mode_switch", engine=mode)
            assert setup.memory_reader is not None
            client.record_counter("ops_total", amount)
            with timed("timed_seconds", counter="calls_total", client=client):
                pass
            seen.append(
                (
                    ops.sdk is not None,
                    counter_value(setup.memory_reader, "ops_total"),
                    counter_value(setup.memory_reader, "calls_total"),
                )
            )
        assert seen == [(False, 1, 1), (True, 2, 1), (False, 3, 1)]

    def test_sdk_disabled_is_a_quiet_no_op(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """OTEL_SDK_DISABLED=true: setup installs nothing, recordings keep no series anywhere and
        log no warning."""
        monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
        caplog.set_level(logging.DEBUG)
        setup = setup_metrics("disabled")
        assert not setup.active and setup.readers == () and setup.memory_reader is None
        client = create_metrics_client("disabled", CONFIG)
        client.record_counter("ops_total", 1)
        client.record_histogram("op_seconds", 1.0)
        with timed("timed_seconds", counter="calls_total", client=client):
            pass
        for name in ("ops_total", "calls_total"):
            instrument = client.get_counter(name)
            assert instrument is not None and not instrument.table.series
        _no_warnings(caplog)

    def test_capture_false_is_a_quiet_no_op(
        self, caplog: pytest.LogCaptureFixture, providers: list[MeterProvider]
    ) -> None:
        """A ``capture: false`` metric gives no instrument, no point and no warning, globally and
        on a user's provider."""
        caplog.set_level(logging.DEBUG)
        config = {"counters": [{"name": "off_total", "capture": False}, {"name": "on_total"}]}
        setup = setup_metrics("capture_off")
        user_reader = InMemoryMetricReader()
        clients = [
            (create_metrics_client("capture_off", config), setup.memory_reader),
            (
                create_metrics_client(
                    "capture_off_user", config, meter_provider=_provider(providers, user_reader)
                ),
                user_reader,
            ),
        ]
        for client, reader in clients:
            client.record_counter("off_total", 1)
            client.record_counter("on_total", 1)
            assert client.get_counter("off_total") is None
            assert metric_points(reader, "off_total") == []
            assert counter_value(reader, "on_total") == 1
        _no_warnings(caplog)

    def test_global_client_made_before_setup(self) -> None:
        """A global client (and a ``timed`` on it) made before setup_metrics records into the
        setup's readers after it."""
        client = create_metrics_client("early", CONFIG)

        @timed("timed_seconds", counter="calls_total", client=client)
        def handler() -> None:
            pass

        client.record_counter("ops_total", 100)  # before any setup: goes nowhere
        handler()
        setup = setup_metrics("early")
        assert setup.memory_reader is not None
        client.record_counter("ops_total", 2)
        client.record_histogram("op_seconds", 0.1)
        handler()
        assert counter_value(setup.memory_reader, "calls_total", {"status": "success"}) == 1
        timed_data = histogram_data(setup.memory_reader, "timed_seconds")
        assert timed_data is not None and timed_data.count == 1
        assert counter_value(setup.memory_reader, "ops_total") == 2
        data = histogram_data(setup.memory_reader, "op_seconds")
        assert data is not None and data.count == 1

    def test_repeated_setup_starts_empty_after_the_final_flush(self) -> None:
        """A second setup_metrics starts with empty series, and the first setup's final flush
        still exported what it had recorded."""
        exporters = [MemoryExporter(), MemoryExporter()]
        readers = [
            PeriodicExportingMetricReader(e, export_interval_millis=3_600_000) for e in exporters
        ]
        client = create_metrics_client("again", CONFIG)
        setup_metrics("again", extra_readers=[readers[0]])
        client.record_counter("ops_total", 5)
        with timed("timed_seconds", counter="calls_total", client=client):
            pass
        setup_metrics("again", extra_readers=[readers[1]])
        ops = client.get_counter("ops_total")
        assert ops is not None and not ops.table.series
        # Cumulative batches (a flush, then the shutdown's own): the last one is the total.
        first = exporters[0].batches
        assert first, "the first setup's final flush exported nothing"
        assert _sums(first[-1], "ops_total").total() == 5
        assert _sums(first[-1], "calls_total").total() == 1
        client.record_counter("ops_total", 2)
        shutdown_metrics()
        second = exporters[1].batches
        assert second and _sums(second[-1], "ops_total").total() == 2
        assert _sums(second[-1], "calls_total").total() == 0
        assert len(exporters[0].batches) == len(first)  # the retired setup exports no more


# ---------------------------------------------------------------------- 10. per-call aspects


class TestPerCallAspects:
    def test_aspects_built_per_call_record_once_per_call(
        self, providers: list[MeterProvider]
    ) -> None:
        """timed (with and @), create_timed_context and track_duration built inside a function
        on every call record exactly once per call, with that call's labels and outcome."""
        reader = InMemoryMetricReader()
        client = create_metrics_client(
            "percall", CONFIG, meter_provider=_provider(providers, reader)
        )
        recorded: list[tuple[str, dict[str, Any]]] = []

        def record(kind: str) -> Callable[[float, dict[str, Any]], None]:
            def func(duration: float, labels: dict[str, Any]) -> None:
                assert duration >= 0
                recorded.append((kind, labels))
                client.record_histogram("op_seconds", duration, labels)

            return func

        def handler(i: int) -> None:
            route = f"/r{i % 3}"
            with timed(
                "timed_seconds", counter="calls_total", client=client, labels={"form": "with"}
            ) as run:
                run.set_label("route", route)

            @timed("timed_seconds", counter="calls_total", client=client, labels={"form": "deco"})
            def decorated() -> None:
                set_label("route", route)
                if i % 5 == 0:
                    raise KeyError(route)

            try:
                decorated()
            except KeyError:
                pass
            with create_timed_context(record("ctx"), labels={"route": route}) as ctx:
                ctx.set_success(i % 2 == 0)
            track_duration(record("track"), extract_labels=lambda r: {"route": r})(lambda r: r)(
                route
            )

        for i in range(30):
            handler(i)
        calls = _sums(reader.get_metrics_data(), "calls_total")
        expected: Tally[Any] = Tally()
        for i in range(30):
            route = f"/r{i % 3}"
            expected[(("form", "with"), ("route", route), ("status", "success"))] += 1
            if i % 5 == 0:
                key = (
                    ("error_type", "KeyError"),
                    ("form", "deco"),
                    ("route", route),
                    ("status", "failure"),
                )
            else:
                key = (("form", "deco"), ("route", route), ("status", "success"))
            expected[key] += 1
        assert calls == expected
        assert _sums(reader.get_metrics_data(), "timed_seconds") == expected
        assert len(recorded) == 60
        ctx = Tally(_key(labels) for kind, labels in recorded if kind == "ctx")
        track = Tally(_key(labels) for kind, labels in recorded if kind == "track")
        assert ctx == {
            (("route", f"/r{r}"), ("status", status)): 5
            for r in range(3)
            for status in ("success", "failure")
        }
        assert track == {(("route", f"/r{r}"), ("status", "success")): 10 for r in range(3)}
        assert _sums(reader.get_metrics_data(), "op_seconds") == ctx + track


def test_a_sampled_measurement_is_added_after_the_queued_ones(
    providers: list[MeterProvider],
) -> None:
    """Measurements that may become exemplars go straight into the series; those queued
    before them are added first, so a float sum is added in measurement order, as the
    SDK adds it (found by the differential test: 0.1, then +1 and -1 in a sampled span)."""
    from opentelemetry.sdk.trace import TracerProvider

    reader = InMemoryMetricReader()
    provider = _provider(providers, reader)
    client = create_metrics_client(
        "ordered",
        config={"service_name": "ordered", "up_down_counters": [{"name": "depth"}]},
        meter_provider=provider,
    )
    client.record_up_down_counter("depth", 0.1)  # no span: queued
    with TracerProvider().get_tracer("t").start_as_current_span("sampled"):
        client.record_up_down_counter("depth", 1)
        client.record_up_down_counter("depth", -1)
    assert counter_value(reader, "depth") == (0.1 + 1) - 1 == 0.10000000000000009
