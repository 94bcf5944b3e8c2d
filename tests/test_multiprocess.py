"""Multi-process mode with real processes: a file per process, one total for all.

Workers are forked children of the test process (the exporting one, set up with
``aggregate=True``), or of a small churn script (``_children/mp_churn.py``).  Every
expected value is what the test made the children record, never read back from the
library.  The gunicorn/Prometheus/OTLP end-to-end tests are in
``test_multiprocess_servers.py``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _differential import DELTA_TEMPORALITY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_aspects import (
    create_metrics_client,
    mpfile,
    multiprocess,
    setup_metrics,
    shutdown_metrics,
    timed,
)
from otel_aspects.config import MetricsConfigError, load_metrics_config
from otel_aspects.multiprocess import MultiprocessError, compact, read_totals
from otel_aspects.testing import metric_points

ROOT = Path(__file__).resolve().parent.parent
BOUNDS = (0.01, 0.1, 1.0, 10.0)
CONFIG: dict[str, Any] = {
    "service_name": "mp",
    "counters": [{"name": "jobs_total"}, {"name": "calls_total"}],
    "histograms": [
        {"name": "calls_seconds", "unit": "s", "buckets": list(BOUNDS)},
        {"name": "sizes", "unit": "By", "buckets": list(BOUNDS)},
    ],
    "gauges": [
        {"name": "g_last"},
        {"name": "g_sum", "multiprocess": "sum"},
        {"name": "g_max", "multiprocess": "max"},
        {"name": "g_min", "multiprocess": "min"},
        {"name": "g_live", "multiprocess": "live_sum"},
    ],
    "up_down_counters": [{"name": "active"}, {"name": "queued", "multiprocess": "sum"}],
}


@pytest.fixture
def folder(tmp_path: Path, clean_sdk: None) -> Iterator[Path]:
    path = tmp_path / "mp"
    path.mkdir()
    yield path
    shutdown_metrics()


def exporter(folder: Path, **kwargs: Any) -> Any:
    """This test process as the exporting one: setup + a client on the global provider."""
    client = create_metrics_client("mp", config=CONFIG)
    setup = setup_metrics("mp", multiprocess_dir=folder, aggregate=True, **kwargs)
    return setup, client


def run_child(work: Callable[[], None], *, kill: bool = False) -> int:
    """Run *work* in a forked child; return its pid after it ended (SIGKILLed if *kill*)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            work()
        except BaseException:
            traceback.print_exc()
            code = 1
        if kill:
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if kill:
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    else:
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    return pid


def points(setup: Any, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
    return {
        tuple(sorted(dict(p.attributes or {}).items())): p
        for p in metric_points(setup.memory_reader, name)
    }


def process_files(folder: Path) -> list[str]:
    return sorted(
        n for n in os.listdir(folder) if n.startswith("process-") and n.endswith(".otelmp")
    )


# --------------------------------------------------------------------------- totals


def test_every_process_writes_its_own_file_and_the_export_is_their_total(folder: Path) -> None:
    setup, client = exporter(folder)

    @timed("calls_seconds", counter="calls_total", client=client, labels={"route": "/a"})
    def handler() -> None:
        pass

    per_child = [(3, [0.005, 0.5]), (5, [2]), (7, [0.05, 20.0, 0.05])]
    for calls, sizes in per_child:

        def work(calls: int = calls, sizes: list[float] = sizes) -> None:
            for _ in range(calls):
                handler()
            client.record_counter("jobs_total", 2, {"queue": "q"})
            for size in sizes:
                client.record_histogram("sizes", size)

        run_child(work)
    assert len(process_files(folder)) == 3  # one file per process, none for the exporter

    calls = points(setup, "calls_total")[(("route", "/a"), ("status", "success"))]
    assert calls.value == 15 and isinstance(calls.value, int)
    assert points(setup, "calls_seconds")[(("route", "/a"), ("status", "success"))].count == 15
    assert points(setup, "jobs_total")[(("queue", "q"),)].value == 6
    sizes = points(setup, "sizes")[()]
    values = [s for _, ss in per_child for s in ss]
    assert sizes.count == len(values)
    assert sizes.bucket_counts == (1, 2, 1, 1, 1)  # <=0.01, <=0.1, <=1, <=10, +Inf
    assert sizes.min == 0.005 and sizes.max == 20.0
    assert math.isclose(sizes.sum, sum(values), rel_tol=1e-12)


def test_a_worker_killed_with_sigkill_loses_nothing_it_recorded(folder: Path) -> None:
    setup, client = exporter(folder)

    def work() -> None:
        for i in range(1000):
            client.record_counter("jobs_total", 1, {"queue": "q"})
            client.record_histogram("sizes", i % 3)

    run_child(work, kill=True)
    assert points(setup, "jobs_total")[(("queue", "q"),)].value == 1000
    sizes = points(setup, "sizes")[()]
    assert sizes.count == 1000 and sizes.sum == sum(i % 3 for i in range(1000))
    assert isinstance(sizes.sum, int)  # only ints measured: an int sum, as the SDK gives


def test_gauge_and_up_down_counter_modes_combine_processes(folder: Path) -> None:
    setup, client = exporter(folder)
    values = [5, 9, 2]
    release_r, release_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pids = []
    for value in values:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(release_w)
            for name in ("g_last", "g_sum", "g_max", "g_min", "g_live"):
                client.record_gauge(name, value)
            client.record_up_down_counter("active", value)
            client.record_up_down_counter("queued", value)
            os.write(ready_w, b"x")
            os.read(release_r, 1)  # stay alive until the parent has read
            os._exit(0)
        pids.append(pid)
        os.read(ready_r, 1)  # one after the other: the last one set g_last last
    try:
        live = {name: points(setup, name)[()].value for name in CONFIG_NAMES}
    finally:
        os.close(release_w)
        for pid in pids:
            os.waitpid(pid, 0)
    dead, again = collect_values(setup), collect_values(setup)
    assert live == {
        "g_last": 2,
        "g_sum": 16,
        "g_max": 9,
        "g_min": 2,
        "g_live": 16,
        "active": 16,  # up-down counters default to live_sum
        "queued": 16,
    }
    # Dead processes' live_sum shares are gone (one last point at 0, then none); the
    # other modes keep what they set.
    kept = {"g_last": 2, "g_sum": 16, "g_max": 9, "g_min": 2, "queued": 16}
    assert dead == {**kept, "g_live": 0, "active": 0}
    assert again == kept


CONFIG_NAMES = ("g_last", "g_sum", "g_max", "g_min", "g_live", "active", "queued")


def collect_values(setup: Any) -> dict[str, Any]:
    """One collection: the value of each of CONFIG_NAMES' points without attributes."""
    data = setup.memory_reader.get_metrics_data()
    return {
        metric.name: point.value
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        for point in metric.data.data_points
        if metric.name in CONFIG_NAMES and not point.attributes
    }


def test_exemplars_of_sampled_spans_reach_the_export(folder: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    setup, client = exporter(folder)
    tracer = TracerProvider().get_tracer("t")
    ids: list[tuple[int, int]] = []
    r, w = os.pipe()

    def work() -> None:
        with tracer.start_as_current_span("s") as span:
            client.record_histogram("sizes", 0.5)
            ctx = span.get_span_context()
            os.write(w, json.dumps([ctx.span_id, ctx.trace_id]).encode())

    run_child(work)
    span_id, trace_id = json.loads(os.read(r, 200))
    ids.append((span_id, trace_id))
    (point,) = points(setup, "sizes").values()
    (exemplar,) = point.exemplars
    assert (exemplar.value, exemplar.span_id, exemplar.trace_id) == (0.5, span_id, trace_id)
    # Given once, as the SDK's reservoirs are emptied at each collection.
    (point,) = points(setup, "sizes").values()
    assert point.exemplars == []


def test_a_delta_reader_gets_the_differences(folder: Path) -> None:
    delta = InMemoryMetricReader(preferred_temporality=DELTA_TEMPORALITY)
    setup, client = exporter(folder, extra_readers=[delta])
    seen = []
    for n in (4, 0, 6):

        def work(n: int = n) -> None:
            for _ in range(n):
                client.record_counter("jobs_total", 1)

        run_child(work)
        seen.append([p.value for p in metric_points(delta, "jobs_total")])
    assert seen == [[4], [], [6]]
    assert points(setup, "jobs_total")[()].value == 10  # the cumulative reader: the total


def test_a_child_of_the_exporting_process_exports_nothing_of_the_folder(folder: Path) -> None:
    setup, client = exporter(folder)
    client.record_counter("jobs_total", 3)
    r, w = os.pipe()

    def work() -> None:
        from otel_aspects import current_setup

        child = current_setup()
        assert child is not None and child.memory_reader is not None
        os.write(w, str(len(metric_points(child.memory_reader, "jobs_total"))).encode())

    run_child(work)
    assert os.read(r, 10) == b"0"  # only the parent exports the folder: no double count
    assert points(setup, "jobs_total")[()].value == 3


# --------------------------------------------------------------------------- compaction


def test_compaction_folds_dead_files_into_the_archive_keeping_every_count(folder: Path) -> None:
    setup, client = exporter(folder)
    for i in range(20):

        def work(i: int = i) -> None:
            client.record_counter("jobs_total", i, {"queue": "q"})
            client.record_counter("calls_total", 0.5)
            client.record_histogram("sizes", i)
            client.record_gauge("g_max", i)
            client.record_up_down_counter("active", 1)  # live_sum: gone with its process

        run_child(work)
    assert len(process_files(folder)) == 20
    before = {n: points(setup, n) for n in ("jobs_total", "calls_total", "sizes", "g_max")}
    assert setup.compact() == 20
    assert process_files(folder) == [] and (folder / mpfile.ARCHIVE_NAME).exists()
    assert setup.compact() == 0
    after = {n: points(setup, n) for n in ("jobs_total", "calls_total", "sizes", "g_max")}
    assert after["jobs_total"][(("queue", "q"),)].value == sum(range(20))
    assert isinstance(after["jobs_total"][(("queue", "q"),)].value, int)
    assert after["calls_total"][()].value == 10.0
    assert after["sizes"][()].count == 20 and after["sizes"][()].sum == sum(range(20))
    assert after["sizes"][()].bucket_counts == before["sizes"][()].bucket_counts
    assert after["g_max"][()].value == 19
    assert points(setup, "active") == {}
    assert {k: v[()].start_time_unix_nano for k, v in after.items() if () in v} == {
        k: v[()].start_time_unix_nano for k, v in before.items() if () in v
    }


def test_compaction_racing_with_collections_and_churn_counts_each_once(folder: Path) -> None:
    """Workers start and die while one thread compacts and another collects: every
    collection's total never decreases, and the last one is exact."""
    setup, client = exporter(folder)
    stop = threading.Event()
    totals: list[int] = []
    problems: list[str] = []

    def collect() -> None:
        while not stop.is_set():
            found = read_totals(folder)
            value = sum(t.value for t in found.values() if t.meta.name == "jobs_total")
            if totals and value < totals[-1]:
                problems.append(f"{totals[-1]} -> {value}")
            totals.append(int(value))

    def compactor() -> None:
        while not stop.is_set():
            compact(folder)

    threads = [threading.Thread(target=collect), threading.Thread(target=compactor)]
    for thread in threads:
        thread.start()
    try:
        for i in range(60):

            def work(i: int = i) -> None:
                for _ in range(i % 7 + 1):
                    client.record_counter("jobs_total", 1, {"worker": str(i % 5)})

            run_child(work)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    expected = sum(i % 7 + 1 for i in range(60))
    assert problems == []
    assert len(totals) > 10  # the collections really raced with the churn
    compact(folder)
    by_worker = {k: p.value for k, p in points(setup, "jobs_total").items()}
    assert sum(by_worker.values()) == expected
    assert by_worker == {
        (("worker", str(w)),): sum(i % 7 + 1 for i in range(60) if i % 5 == w) for w in range(5)
    }


def test_scrape_time_stays_flat_after_2000_worker_lifetimes(folder: Path) -> None:
    """2,000 processes record and die (a churn script forks them); with compaction the
    folder keeps one archive, and a collection costs what it did after the first one."""
    setup, _client = exporter(folder)

    def churn(n: int) -> None:
        subprocess.run(
            [sys.executable, str(ROOT / "tests/_children/mp_churn.py"), str(folder), str(n)],
            check=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def scrape_seconds() -> float:
        samples = []
        for _ in range(7):
            t = time.perf_counter()
            setup.memory_reader.get_metrics_data()
            samples.append(time.perf_counter() - t)
        return sorted(samples)[3]

    churn(1)
    setup.compact()
    first = scrape_seconds()
    for _ in range(4):
        churn(500)
        setup.compact()
    later = scrape_seconds()
    assert process_files(folder) == []
    assert points(setup, "jobs_total")[(("queue", "churn"),)].value == 2001 * 3
    assert later <= 2 * first + 0.002, (first, later)


# --------------------------------------------------------------------------- the folder


def test_setup_checks_the_folder(tmp_path: Path, clean_sdk: None) -> None:
    with pytest.raises(ValueError, match="aggregate=True"):
        setup_metrics("one", aggregate=True)
    with pytest.raises(MultiprocessError, match="does not exist; create it"):
        setup_metrics("mp", multiprocess_dir=tmp_path / "missing")
    (tmp_path / "file").write_text("")
    with pytest.raises(MultiprocessError, match="is not a folder"):
        setup_metrics("mp", multiprocess_dir=tmp_path / "file")
    shared = tmp_path / "shared"
    shared.mkdir()
    setup_metrics("one", multiprocess_dir=shared)
    with pytest.raises(MultiprocessError, match="belongs to service 'one', not 'two'"):
        setup_metrics("two", multiprocess_dir=shared)
    with pytest.raises(ValueError, match="needs the engine"):
        setup_metrics("one", multiprocess_dir=shared, engine="sdk")


def test_the_environment_variable_switches_it_on(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(multiprocess.ENV_VAR, str(folder))
    client = create_metrics_client("mp", config=CONFIG)
    setup = setup_metrics("mp")
    client.record_counter("jobs_total", 1)
    assert setup.multiprocess_dir == str(folder)
    assert len(process_files(folder)) == 1
    # A worker exports nothing of the folder itself.
    assert metric_points(setup.memory_reader, "jobs_total") == []


def test_a_worker_does_not_bind_the_prometheus_port(folder: Path) -> None:
    setup = setup_metrics("mp", multiprocess_dir=folder, exporters="prometheus", prometheus_port=0)
    assert setup.prometheus_port is None
    exporting = setup_metrics(
        "mp", multiprocess_dir=folder, aggregate=True, exporters="prometheus", prometheus_port=0
    )
    assert exporting.prometheus_port


def test_a_stale_folder_is_reported_once(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    setup, client = exporter(folder)
    run_child(lambda: client.record_counter("jobs_total", 1))
    shutdown_metrics()
    with caplog.at_level(logging.WARNING, logger="otel_aspects"):
        setup, _ = exporter(folder)
    stale = [r.getMessage() for r in caplog.records if "earlier run" in r.getMessage()]
    assert len(stale) == 1 and str(folder) in stale[0] and "rm -rf" in stale[0]
    assert points(setup, "jobs_total")[()].value == 1  # counters continue from it


def test_a_file_of_another_format_version_is_left_out_with_one_error(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    setup, client = exporter(folder)
    run_child(lambda: client.record_counter("jobs_total", 2))
    run_child(lambda: client.record_counter("jobs_total", 5))
    newer = folder / process_files(folder)[0]
    data = bytearray(newer.read_bytes())
    data[8:12] = (mpfile.FORMAT_VERSION + 1).to_bytes(4, "little")
    newer.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="otel_aspects"):
        values = [points(setup, "jobs_total")[()].value for _ in range(3)]
    assert values[0] in (2, 5) and len(set(values)) == 1
    errors = [r.getMessage() for r in caplog.records if "format version" in r.getMessage()]
    assert len(errors) == 1 and newer.name in errors[0]


def test_the_yaml_multiprocess_key_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "m.yml"
    path.write_text(
        "service_name: m\n"
        "counters:\n  - name: c\n    multiprocess: max\n"
        "gauges:\n  - name: g\n    multiprocess: avg\n"
        "up_down_counters:\n  - name: u\n    multiprocess: last\n"
    )
    with pytest.raises(MetricsConfigError) as info:
        load_metrics_config("m", path, strict=True)
    text = str(info.value)
    assert "counters[0] 'c': key 'multiprocess': counters and histograms always add up" in text
    assert "gauges[0] 'g': key 'multiprocess': 'avg' is not a mode for gauges" in text
    assert "up_down_counters[0] 'u': key 'multiprocess': 'last' is not a mode" in text


# --------------------------------------------------------------------------- differential

measurement = st.tuples(
    st.integers(0, 2),  # which process
    st.sampled_from(["jobs_total", "sizes", "queued"]),
    st.one_of(st.integers(0, 10**6), st.floats(0, 100, allow_nan=False)),
    st.sampled_from(["a", "b"]),
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(measurement, max_size=30))
def test_the_total_is_what_the_sdk_gives_for_the_same_measurements(
    tmp_path_factory: pytest.TempPathFactory, measurements: list[tuple[int, str, Any, str]]
) -> None:
    """Counts, bucket counts, int sums, min and max equal the SDK's fed every measurement
    in one process; float sums agree up to the order of addition."""
    folder = tmp_path_factory.mktemp("mp")
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            del os.environ[name]
    try:
        setup, client = exporter(folder)
        for process in range(3):
            mine = [m for m in measurements if m[0] == process]
            if mine:
                run_child(lambda mine=mine: _record(client, mine))
        ours = {n: points(setup, n) for n in ("jobs_total", "sizes", "queued")}
    finally:
        shutdown_metrics()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        sdk_client = create_metrics_client("mp", config=CONFIG, meter_provider=provider)
        _record(sdk_client, measurements)
        sdk = {
            n: {tuple(sorted(dict(p.attributes).items())): p for p in metric_points(reader, n)}
            for n in ("jobs_total", "sizes", "queued")
        }
    finally:
        provider.shutdown()
    assert {n: set(v) for n, v in ours.items()} == {n: set(v) for n, v in sdk.items()}
    for name, by_key in sdk.items():
        for key, expected in by_key.items():
            got = ours[name][key]
            if name == "sizes":
                assert (got.count, got.bucket_counts) == (expected.count, expected.bucket_counts)
                assert (got.min, got.max) == (expected.min, expected.max)
                _same_sum(got.sum, expected.sum)
            else:
                _same_sum(got.value, expected.value)


def _record(client: Any, measurements: list[tuple[int, str, Any, str]]) -> None:
    for _, name, value, label in measurements:
        if name == "sizes":
            client.record_histogram(name, value, {"l": label})
        elif name == "queued":
            client.record_up_down_counter(name, value, {"l": label})
        else:
            client.record_counter(name, value, {"l": label})


def _same_sum(got: float, expected: float) -> None:
    assert type(got) is type(expected), (got, expected)
    if isinstance(expected, int):
        assert got == expected
    else:
        assert math.isclose(got, expected, rel_tol=1e-12, abs_tol=1e-9), (got, expected)


def test_any_process_can_render_the_folder_total_for_prometheus(folder: Path) -> None:
    from prometheus_client import generate_latest

    client = create_metrics_client("mp", config=CONFIG)
    setup_metrics("mp", multiprocess_dir=folder)  # a worker: it exports nothing itself
    client.record_counter("jobs_total", 2, {"queue": "q"})
    run_child(lambda: client.record_counter("jobs_total", 5, {"queue": "q"}))
    registry = multiprocess.prometheus_registry(multiprocess.prepare(folder, "mp"))
    lines = [
        line
        for line in generate_latest(registry).decode().splitlines()
        if line.startswith("jobs_total{")
    ]
    assert len(lines) == 1 and 'queue="q"' in lines[0] and lines[0].endswith(" 7.0"), lines


def test_metrics_on_a_workers_own_port_serve_the_whole_servers_total(folder: Path) -> None:
    from otel_aspects.exposition import render

    client = create_metrics_client("mp", config=CONFIG)
    setup_metrics("mp", multiprocess_dir=folder)  # a worker, no Prometheus reader of its own
    run_child(lambda: client.record_counter("jobs_total", 4, {"queue": "q"}))
    client.record_counter("jobs_total", 1, {"queue": "q"})
    body, content_type = render()
    assert content_type.startswith("text/plain")
    lines = [line for line in body.decode().splitlines() if line.startswith("jobs_total{")]
    assert len(lines) == 1 and lines[0].endswith(" 5.0"), lines


# --------------------------------------------------------------------------- hostile folders


@pytest.mark.parametrize("damage", ["json", "unknown_kind", "huge_used", "truncated", "directory"])
def test_a_damaged_file_is_left_out_and_moved_aside_the_rest_exported(
    folder: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    setup, client = exporter(folder)
    run_child(lambda: client.record_counter("jobs_total", 10, {"who": "a"}))
    run_child(lambda: client.record_counter("jobs_total", 7, {"who": "b"}))
    first = process_files(folder)[0]
    bad = folder / first
    data = bytearray(bad.read_bytes())
    survivor = ((("who", "b"),), 7) if b'"a"' in data else ((("who", "a"),), 10)
    if damage == "json":
        at = data.index(b'"kind"')
        data[at : at + 6] = b"\xff\xfe{[}!"
    elif damage == "unknown_kind":
        at = data.index(b'"counter"')
        data[at : at + 9] = b'"counteR"'
    elif damage == "huge_used":
        data[16:24] = (2**62).to_bytes(8, "little")
    elif damage == "truncated":
        used = int.from_bytes(data[16:24], "little")
        data = data[: used - 4]
    if damage == "directory":
        bad.unlink()
        bad.mkdir()
    else:
        bad.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="otel_aspects"):
        seen = [{k: p.value for k, p in points(setup, "jobs_total").items()} for _ in range(3)]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and first in errors[0], errors
    assert seen == [dict([survivor])] * 3  # the other file's count, every time
    assert setup.compact() == 1  # the good dead file; the damaged one moved aside
    assert process_files(folder) == []
    assert (folder / (first + ".damaged")).exists()
    assert {k: p.value for k, p in points(setup, "jobs_total").items()} == dict([survivor])


def test_a_second_exporter_of_one_folder_is_refused(folder: Path) -> None:
    exporter(folder)
    command = [
        sys.executable,
        "-m",
        "otel_aspects",
        "serve-metrics",
        str(folder),
        "--port",
        "0",
        "--service",
        "mp",
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2
    assert "is already exported by another process" in result.stderr
    assert f"pid {os.getpid()}" in result.stderr
    # The same process setting up again stays the exporter.
    setup_metrics("mp", multiprocess_dir=folder, aggregate=True)


def test_a_deleted_folder_is_made_again_and_workers_still_boot(
    folder: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    monkeypatch.setenv(multiprocess.ENV_VAR, str(folder))
    setup, client = exporter(folder)
    run_child(lambda: client.record_counter("jobs_total", 3))
    shutil.rmtree(folder)

    def worker() -> None:  # a new worker boots: setup_metrics from the variable
        setup_metrics("mp")
        client.record_counter("jobs_total", 4)

    run_child(worker)  # boots although the folder is gone (it makes it again)
    run_child(lambda: client.record_counter("jobs_total", 5))  # the inherited setup
    assert points(setup, "jobs_total")[()].value == 9  # the 3 went with the folder
    shutil.rmtree(folder)
    with caplog.at_level(logging.ERROR, logger="otel_aspects"):
        assert points(setup, "jobs_total") == {}
        points(setup, "jobs_total")
    errors = [r.getMessage() for r in caplog.records if "deleted while in use" in r.getMessage()]
    assert len(errors) == 1 and folder.is_dir()  # the exporter made it again, said so once


def test_max_series_holds_over_all_processes(folder: Path) -> None:
    config = {"service_name": "mp", "counters": [{"name": "labelled_total", "max_series": 10}]}
    client = create_metrics_client("mp", config=config)
    setup = setup_metrics("mp", multiprocess_dir=folder, aggregate=True)
    for lifetime in range(5):

        def work(lifetime: int = lifetime) -> None:
            for i in range(50):
                client.record_counter("labelled_total", 1, {"id": f"{lifetime}-{i}"})

        run_child(work)
    for _ in range(2):  # before and after compaction
        found = points(setup, "labelled_total")
        assert len(found) == 11, len(found)  # 10 attribute sets and the overflow series
        assert found[(("otel.metric.overflow", True),)].value == 240
        assert sum(p.value for p in found.values()) == 250
        setup.compact()


def test_a_restarted_exporter_does_not_send_a_delta_total_again(folder: Path) -> None:
    delta = InMemoryMetricReader(preferred_temporality=DELTA_TEMPORALITY)
    _setup, client = exporter(folder, extra_readers=[delta])
    run_child(lambda: client.record_counter("jobs_total", 10))
    assert [p.value for p in metric_points(delta, "jobs_total")] == [10]
    shutdown_metrics()
    again = InMemoryMetricReader(preferred_temporality=DELTA_TEMPORALITY)
    setup_metrics("mp", multiprocess_dir=folder, aggregate=True, extra_readers=[again])
    assert metric_points(again, "jobs_total") == []  # nothing new since it started
    run_child(lambda: client.record_counter("jobs_total", 2))
    assert [p.value for p in metric_points(again, "jobs_total")] == [2]


def test_a_live_sum_delta_goes_back_to_zero_when_its_processes_die(folder: Path) -> None:
    delta = InMemoryMetricReader(preferred_temporality=DELTA_TEMPORALITY)
    _setup, client = exporter(folder, extra_readers=[delta])
    release_r, release_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(release_w)
            client.record_up_down_counter("active", 5)
            os.write(ready_w, b"x")
            os.read(release_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"x"
    seen = [[p.value for p in metric_points(delta, "active")]]
    os.close(release_w)
    os.waitpid(pid, 0)
    seen.append([p.value for p in metric_points(delta, "active")])
    seen.append([p.value for p in metric_points(delta, "active")])
    assert seen == [[5], [-5], []]  # a consumer adding the deltas is back at 0


def test_histogram_integer_sums_past_int64_are_kept(folder: Path) -> None:
    setup, client = exporter(folder)

    def work() -> None:
        client.record_histogram("sizes", 2**62)
        client.record_histogram("sizes", 2**62)

    run_child(work)
    (point,) = points(setup, "sizes").values()
    assert point.count == 2 and point.sum == float(2**63)


def test_setup_passes_the_folder_to_processes_it_starts(folder: Path) -> None:
    setup_metrics("mp", multiprocess_dir=folder)
    assert os.environ[multiprocess.ENV_VAR] == str(folder)
    # Set up again without the argument: one process again, the variable taken back.
    assert setup_metrics("mp").multiprocess_dir is None
    assert multiprocess.ENV_VAR not in os.environ


def test_the_gunicorn_hook_serves_prometheus_and_otlp_when_an_endpoint_is_set(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_aspects.gunicorn import hooks

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    ready, _exited = hooks("mp", directory=folder, prometheus_port=0)
    ready(None)
    from otel_aspects import current_setup

    setup = current_setup()
    assert setup is not None and setup.prometheus_port
    assert set(setup.exporters) == {"prometheus", "otlp"}
