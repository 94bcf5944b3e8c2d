"""warn_once at its edges: the cause cap, the overflow line, races, bad causes
(mutation survivors, docs/MUTATION.md)."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time

import pytest

from otel_aspects import _warn
from otel_aspects._warn import MAX_CAUSES, reset_warned, warn_once

log = logging.getLogger("otel_aspects.test_warn_edges")
OVERFLOW = "more than 1024 distinct"


def test_the_cap_is_1024_causes() -> None:
    assert MAX_CAUSES == 1024


def fill(n: int) -> list[bool]:
    return [warn_once(log, ("cause", i), "problem %d", i) for i in range(n)]


def test_1024_causes_log_then_one_overflow_line_then_silence(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_aspects"):
        assert fill(1024) == [True] * 1024
        assert len(caplog.records) == 1024  # the 1024th cause still logs its own line
        assert warn_once(log, "one more", "x") is False
        assert warn_once(log, "and another", "y") is False
        assert warn_once(log, ("cause", 5), "seen") is False
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1025
    assert OVERFLOW in messages[-1] and messages[-2] == "problem 1023"


def test_reset_forgets_the_overflow_too(caplog: pytest.LogCaptureFixture) -> None:
    fill(1025)
    reset_warned()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="otel_aspects"):
        assert warn_once(log, ("cause", 0), "again") is True
        fill(1025)
    overflow = [r for r in caplog.records if OVERFLOW in r.getMessage()]
    assert len(overflow) == 1


def test_a_fresh_process_logs_the_overflow_line() -> None:
    """Without any reset_warned (the conftest calls it): the module's initial state."""
    code = (
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stdout, format='%(message)s')\n"
        "from otel_aspects._warn import warn_once\n"
        "log = logging.getLogger('x')\n"
        "print(sum(warn_once(log, i, 'p') for i in range(1030)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out.count("p") == 1024 and out[-1] == "1024"
    assert sum(OVERFLOW in line for line in out) == 1


def test_unhashable_cause_is_no_error(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_aspects"):
        assert warn_once(log, ["not", "hashable"], "x") is False  # type: ignore[arg-type]
    assert caplog.records == []


def test_a_cause_won_by_another_thread_while_waiting_for_the_lock() -> None:
    """Double-checked: a thread that passed the first check but finds the cause taken
    once it holds the lock reports False (it logged nothing)."""
    results: list[bool] = []
    with _warn._lock:
        thread = threading.Thread(target=lambda: results.append(warn_once(log, "race", "x")))
        thread.start()
        time.sleep(0.2)  # the thread is past the first check, waiting for the lock
        _warn._seen["values"].add("race")  # another thread won the cause meanwhile
    thread.join(5)
    assert results == [False]


def test_short_repr_cuts_nested_mappings_at_its_depth() -> None:
    """Post-merge survivors in short_repr: the depth limit holds for dict values as for
    list items, and a cut mapping shows as ``{...}``."""
    from otel_aspects._warn import short_repr

    assert short_repr({"a": {"b": {"c": {"d": 1}}}}, 200) == "{'a': {'b': {'c': {...}}}}"
    assert short_repr([{"k": {"x": {"y": 1}}}], 200) == "[{'k': {'x': {...}}}]"
    assert short_repr({"a": [[[[1]]]]}, 200) == "{'a': [[[...]]]}"
