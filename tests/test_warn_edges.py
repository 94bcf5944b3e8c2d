"""warn_once at its edges: the cause cap, the overflow line, races, bad causes
(mutation survivors, docs/MUTATION.md)."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator, Mapping

import pytest

from otel_aspects import _warn
from otel_aspects._warn import MAX_CAUSES, reset_warned, short_repr, warn_once

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
    assert short_repr({"a": {"b": {"c": {"d": 1}}}}, 200) == "{'a': {'b': {'c': {...}}}}"
    assert short_repr([{"k": {"x": {"y": 1}}}], 200) == "[{'k': {'x': {...}}}]"
    assert short_repr({"a": [[[[1]]]]}, 200) == "{'a': [[[...]]]}"


# ------------------------------------------------ the open survivors of the merged re-run


def only_message(caplog: pytest.LogCaptureFixture, *args: object) -> str:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="otel_aspects"):
        assert warn_once(log, "line", *args)
    (record,) = caplog.records
    reset_warned()
    return record.getMessage()


def test_a_cut_line_says_how_many_characters_were_cut(caplog: pytest.LogCaptureFixture) -> None:
    """8192 characters are kept; the count is of the whole line, also when a huge argument
    was sliced before formatting (it said "[cut: 10 more characters]" for a megabyte)."""
    assert only_message(caplog, "m" * 10_000) == "m" * 8192 + "... [cut: 1808 more characters]"
    # "bad " + 1,000,000 + " here": 1,000,009 characters, 8192 kept
    assert only_message(caplog, "bad %s here", "n" * 1_000_000) == (
        "bad " + "n" * 8188 + "... [cut: 991817 more characters]"
    )
    assert only_message(caplog, "%s", "a" * 8192) == "a" * 8192
    assert only_message(caplog, "%s", "a" * 8193) == "a" * 8192 + "... [cut: 1 more characters]"
    assert only_message(caplog, "%s|%s", "b" * 9000, "c" * 9000) == (
        "b" * 8192 + "... [cut: 9809 more characters]"
    )
    # only the arguments over the limit were sliced: 5 + 1 + 9000 characters
    assert only_message(caplog, "%s %s", "short", "l" * 9000) == (
        "short " + "l" * 8186 + "... [cut: 814 more characters]"
    )
    assert (
        only_message(caplog, "%s%s", "a" * 8192, "b") == "a" * 8192 + "... [cut: 1 more characters]"
    )


def test_a_huge_argument_is_not_copied_whole(caplog: pytest.LogCaptureFixture) -> None:
    """The line is built from a slice: a 20 MB argument costs no 20 MB line."""
    huge = "h" * 20_000_000
    with caplog.at_level(logging.WARNING, logger="otel_aspects"):
        tracemalloc.start()
        try:
            assert warn_once(log, "huge argument", "bad %s", huge)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 1_000_000, peak
    assert caplog.records[0].getMessage().endswith("... [cut: 19991812 more characters]")


def test_short_repr_counts_items_up_to_six() -> None:
    assert short_repr(list(range(6)), 200) == "[0, 1, 2, 3, 4, 5]"
    assert short_repr(list(range(7)), 200) == "[0, 1, 2, 3, 4, 5, ...]"
    assert short_repr(tuple(range(10)), 200) == "(0, 1, 2, 3, 4, 5, ...)"
    assert short_repr({"a": 1, "b": 2, "c": 3}, 200) == "{'a': 1, 'b': 2, 'c': 3}"
    assert short_repr({"a": 1, "b": 2, "c": 3, "d": 4}, 200) == "{'a': 1, 'b': 2, 'c': 3, ...}"


def test_short_repr_of_sets() -> None:
    assert short_repr(set()) == "set()"
    assert short_repr(frozenset()) == "frozenset()"
    assert short_repr({1}) == "{1}"
    assert short_repr(frozenset({2})) == "frozenset({2})"


def test_short_repr_empty_containers_at_the_depth_limit_stay_empty() -> None:
    assert short_repr([[[{}]]], 200) == "[[[{}]]]"
    assert short_repr([[[[]]]], 200) == "[[[[]]]]"
    assert short_repr([[[{"k": 1}]]], 200) == "[[[{...}]]]"


def test_short_repr_cuts_mapping_keys_at_the_depth_of_values() -> None:
    assert short_repr({(1, (2, (3, (4,)))): 0}, 200) == "{(1, (2, (...))): 0}"
    assert short_repr({0: (1, (2, (3, (4,))))}, 200) == "{0: (1, (2, (...)))}"


def test_short_repr_of_bytes() -> None:
    assert short_repr(b"abc") == "b'abc'"
    assert short_repr(bytearray(b"abc")) == "b'abc'"
    assert short_repr(b"x" * 100, 24) == "b'xxxxxxx... (100 bytes)"
    # " (100 bytes)" is 12 characters: more than half of 16, no room to say it
    assert short_repr(b"x" * 100, 16) == "b'xxxxxxxxxxx..."


def test_short_repr_of_huge_ints() -> None:
    """Up to 4000 bits an int is shown in decimal; above, its size, about right."""
    decimal = str(2**3999)  # 4000 bits, 1204 digits
    shown = short_repr(2**3999)
    assert len(shown) == 80 and shown.startswith(decimal[:30]) and shown.endswith(decimal[-30:])
    assert short_repr(2**4000) == "<int of about 1204 digits>"  # 4001 bits, 1205 digits
    for x in (2**4000, 10**5000, 7**9999):
        digits = int(math.log10(x)) + 1
        reported = int(short_repr(x).removeprefix("<int of about ").removesuffix(" digits>"))
        assert digits - 1 <= reported <= digits, (digits, reported)


def test_short_repr_limits() -> None:
    """80 characters by default, 16 at least; a string that fits is not given its size."""
    assert len(short_repr("x" * 1000)) == 80
    assert len(short_repr(["abcdefghij"] * 20)) == 80
    assert len(short_repr("x" * 1000, limit=1)) == 16
    assert len(short_repr(["abcdefghij"] * 20, limit=0)) == 16
    assert short_repr("x" * 80, 80) == "'" + "x" * 37 + "..." + "x" * 38 + "'"
    assert short_repr("x" * 81, 80) == "'" + "x" * 29 + "..." + "x" * 30 + "' (81 characters)"


def test_short_repr_never_raises() -> None:
    class BadLength(Mapping[str, int]):
        def __getitem__(self, key: str) -> int:
            return 1

        def __iter__(self) -> Iterator[str]:
            return iter(())

        def __len__(self) -> int:
            raise RuntimeError("no length")

    class Nameless(type):
        @property
        def __name__(cls) -> str:  # type: ignore[override]
            raise RuntimeError("no name")

    class Unprintable(metaclass=Nameless):
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    assert short_repr(BadLength()) == "<BadLength object>"
    try:
        shown = short_repr(Unprintable())
    except Exception as exc:  # pytest could not even name the object in its report
        pytest.fail(f"short_repr raised {type(exc).__name__}", pytrace=False)
    assert shown == "<object>"


def test_an_argument_whose_str_fails_is_still_shown_by_its_repr(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only a format that fails falls back to placeholders: ``%r`` needs no ``str()``."""

    class NoStr:
        def __str__(self) -> str:
            raise RuntimeError("no str")

        def __repr__(self) -> str:
            return "NoStr()"

    assert only_message(caplog, "bad %r here", NoStr()) == "bad NoStr() here"
    assert only_message(caplog, "bad %s here", NoStr()) == "bad <NoStr whose str() failed> here"
