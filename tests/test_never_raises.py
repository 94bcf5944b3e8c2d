"""The holes "never raises" had (issue 9, item 9): record time never raises, one WARNING
per cause; decoration time gives a clear error."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from otel_aspects import timed
from otel_aspects.config import as_metrics_config
from otel_aspects.testing import counter_value, histogram_data

CONFIG = {
    "counters": [{"name": "jobs_total"}],
    "histograms": [{"name": "job_seconds", "unit": "s"}],
}


class HashRaises(str):
    """A str subclass whose __hash__ raises (a name or a label key)."""

    def __hash__(self) -> int:
        raise RuntimeError("no hash")


class FloatRaises(float):
    """A float subclass whose __float__ raises something else than the usual three."""

    def __float__(self) -> float:
        raise RuntimeError("no float")


class BrokenMapping(Mapping[str, Any]):
    """A mapping whose iteration raises."""

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("cannot iterate")

    def __len__(self) -> int:
        return 1


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_name_whose_hash_raises(
    metrics_client_factory: Any, metrics_reader: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A metric name whose __hash__ raises is one WARNING, never an exception."""
    client = metrics_client_factory("svc", as_metrics_config(CONFIG, "svc"))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            client.record_counter(HashRaises("jobs_total"), 1)
            client.record_histogram(HashRaises("job_seconds"), 0.1)
            client.record_metric(HashRaises("jobs_total"), 1)
    assert counter_value(metrics_reader, "jobs_total") == 0
    assert len(warnings_of(caplog)) == 1  # one cause: a name that is not a plain str


def test_a_float_whose_conversion_raises(
    metrics_client_factory: Any, metrics_reader: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A float subclass whose __float__ raises RuntimeError is dropped with one WARNING."""
    client = metrics_client_factory("svc", as_metrics_config(CONFIG, "svc"))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            client.record_counter("jobs_total", FloatRaises(2.0))
            client.record_histogram("job_seconds", FloatRaises(0.5))
        client.record_counter("jobs_total", 1)
    assert counter_value(metrics_reader, "jobs_total") == 1
    messages = warnings_of(caplog)
    assert len(messages) == 2 and all("not convertible" in m for m in messages)


def test_a_set_label_key_whose_hash_raises(metrics_reader: Any) -> None:
    """set_label with such a key converts it to a plain str; the call records once."""
    seen: list[dict[str, Any]] = []
    with timed(record_func=lambda d, labels: seen.append(labels)) as run:
        run.set_label(HashRaises("tenant"), "a")
    assert seen == [{"tenant": "a", "status": "success"}]
    assert all(type(key) is str for key in seen[0])


def test_a_clock_that_raises(
    metrics_client_factory: Any, metrics_reader: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A user clock that raises: the call runs, the duration comes from perf_counter, and
    one WARNING names the clock."""
    client = metrics_client_factory("svc", as_metrics_config(CONFIG, "svc"))

    def clock() -> float:
        raise RuntimeError("clock broke")

    @timed("job_seconds", counter="jobs_total", client=client, clock=clock)
    def job(x: int) -> int:
        return x + 1

    with caplog.at_level(logging.WARNING):
        assert [job(i) for i in range(3)] == [1, 2, 3]
    data = histogram_data(metrics_reader, "job_seconds")
    assert data is not None and data.count == 3
    messages = warnings_of(caplog)
    assert len(messages) == 1 and "clock" in messages[0] and "perf_counter" in messages[0]


def test_labels_whose_iteration_raises_is_a_type_error_at_decoration() -> None:
    """labels= a mapping whose iteration raises: a clear TypeError, not a raw RuntimeError."""
    with pytest.raises(TypeError, match="labels= could not be read"):
        timed(record_func=lambda d, labels: None, labels=BrokenMapping())
    with pytest.raises(TypeError, match="labels= must be a mapping"):
        timed(record_func=lambda d, labels: None, labels=[("a", 1)])  # type: ignore[arg-type]
