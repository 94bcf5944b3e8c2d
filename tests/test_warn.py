"""warn_once: one line per cause, whatever the arguments, per budget; short_repr."""

from __future__ import annotations

import datetime
import logging
import time
from collections import deque

import pytest

from otel_aspects._warn import (
    BUDGET_CONFIG,
    BUDGET_HOOKS,
    BUDGET_LABELS,
    BUDGET_VALUES,
    BUDGETS,
    MAX_CAUSES,
    MAX_MESSAGE_CHARS,
    reset_warned,
    short_repr,
    warn_once,
)

log = logging.getLogger("otel_aspects.test_warn")


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def test_once_per_cause(caplog: pytest.LogCaptureFixture) -> None:
    """The same cause logs once; another cause logs again."""
    with caplog.at_level(logging.WARNING):
        results = [warn_once(log, ("c", 1), "problem %s", i) for i in range(5)]
        warn_once(log, ("c", 2), "other")
    assert results == [True, False, False, False, False]
    assert [r.getMessage() for r in caplog.records] == ["problem 0", "other"]


def test_argument_whose_str_raises_still_gives_the_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A user's exception with a broken __str__ does not swallow its one warning
    (logging's lazy formatting used to fail after the cause was marked as seen)."""
    with caplog.at_level(logging.WARNING):
        assert warn_once(log, "broken", "hook failed: %s (%d calls)", Unprintable(), 3)
    (record,) = caplog.records
    assert record.getMessage() == "hook failed: <Unprintable whose str() failed> (3 calls)"


def test_mismatched_format_still_gives_the_line(caplog: pytest.LogCaptureFixture) -> None:
    """A format that does not fit its arguments shows them after the text."""
    with caplog.at_level(logging.WARNING):
        assert warn_once(log, "mismatch", "count %d", "many")
    (record,) = caplog.records
    assert record.getMessage() == "count %d ('many',)"


# --------------------------------------------------------------------------- budgets


def _flood(budget: str, n: int = MAX_CAUSES + 50) -> None:
    for i in range(n):
        warn_once(log, ("flood", budget, i), "flood %d", i, budget=budget)  # type: ignore[arg-type]


def test_a_flood_of_one_budget_does_not_silence_another(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 9 item 7: after 1,100 config problems, a record-time problem is still logged
    (one shared budget used to silence it)."""
    with caplog.at_level(logging.WARNING):
        _flood(BUDGET_CONFIG, 1100)
        _flood(BUDGET_LABELS, 1100)
        caplog.clear()
        assert warn_once(log, ("negative", "requests_total"), "negative increment")
        assert warn_once(log, ("hook", "f"), "hook failed", budget=BUDGET_HOOKS)
    assert [r.getMessage() for r in caplog.records] == ["negative increment", "hook failed"]


def test_overflow_line_names_its_budget_once(caplog: pytest.LogCaptureFixture) -> None:
    """Each full budget says so once, naming itself and what it counts."""
    with caplog.at_level(logging.WARNING):
        _flood(BUDGET_CONFIG)
        _flood(BUDGET_LABELS)
        _flood(BUDGET_CONFIG)  # the same causes again: nothing new
    overflow = [r.getMessage() for r in caplog.records if "further new ones" in r.getMessage()]
    assert overflow == [
        f"otel_aspects: more than {MAX_CAUSES} distinct configuration problems "
        "(warning budget 'config'); further new ones are not logged",
        f"otel_aspects: more than {MAX_CAUSES} distinct label problems "
        "(warning budget 'labels'); further new ones are not logged",
    ]
    assert len(caplog.records) == 2 * MAX_CAUSES + 2


def test_each_budget_holds_max_causes(caplog: pytest.LogCaptureFixture) -> None:
    """Exactly MAX_CAUSES causes of a budget are logged, then the overflow line."""
    with caplog.at_level(logging.WARNING):
        _flood(BUDGET_HOOKS, MAX_CAUSES)
        assert len(caplog.records) == MAX_CAUSES
        assert not warn_once(log, "one more", "x", budget=BUDGET_HOOKS)
    assert "budget 'hooks'" in caplog.records[-1].getMessage()
    assert set(BUDGETS) == {BUDGET_CONFIG, BUDGET_VALUES, BUDGET_LABELS, BUDGET_HOOKS}


def test_default_and_unknown_budget_are_values(caplog: pytest.LogCaptureFixture) -> None:
    """Callers that pass no budget (and a misspelt one) use the 'values' budget."""
    with caplog.at_level(logging.WARNING):
        _flood(BUDGET_VALUES)
        assert not warn_once(log, "plain", "x")
        assert not warn_once(log, "typo", "x", budget="value")  # type: ignore[arg-type]
        assert warn_once(log, "other", "x", budget=BUDGET_CONFIG)
    assert "budget 'values'" in caplog.records[-2].getMessage()


def test_budgets_keep_causes_apart(caplog: pytest.LogCaptureFixture) -> None:
    """The same cause key in two budgets is two causes."""
    with caplog.at_level(logging.WARNING):
        assert warn_once(log, "same", "a", budget=BUDGET_CONFIG)
        assert warn_once(log, "same", "b", budget=BUDGET_LABELS)
        assert not warn_once(log, "same", "c", budget=BUDGET_LABELS)


def test_reset_warned_resets_every_budget(caplog: pytest.LogCaptureFixture) -> None:
    """After reset_warned() every budget logs again, overflow line included."""
    with caplog.at_level(logging.WARNING):
        _flood(BUDGET_CONFIG)
        _flood(BUDGET_LABELS)
        reset_warned()
        caplog.clear()
        assert warn_once(log, ("flood", BUDGET_CONFIG, 0), "again", budget=BUDGET_CONFIG)
        assert warn_once(log, ("flood", BUDGET_LABELS, 0), "again", budget=BUDGET_LABELS)
        _flood(BUDGET_CONFIG)
    assert sum("budget 'config'" in r.getMessage() for r in caplog.records) == 1


def test_a_huge_argument_gives_a_bounded_line(caplog: pytest.LogCaptureFixture) -> None:
    """A megabyte argument (a caller forgetting short_repr) is cut, not logged whole."""
    with caplog.at_level(logging.WARNING):
        assert warn_once(log, "huge", "bad name %s here", "n" * 1_000_000)
    (record,) = caplog.records
    message = record.getMessage()
    assert len(message) < MAX_MESSAGE_CHARS + 100
    assert message.startswith("bad name nnnn") and "[cut: " in message


# --------------------------------------------------------------------------- short_repr


def _alias_bomb(levels: int = 9) -> list[object]:
    """What PyYAML builds from a billion-laughs file: nine references to one list, nested."""
    value: list[object] = ["lol"] * 9
    for _ in range(levels):
        value = [value] * 9
    return value


@pytest.mark.parametrize(
    "value",
    [
        "x" * 1_000_000,
        b"\x00" * 100_000,
        bytearray(100_000),
        10**5000,  # repr() raises beyond 4300 digits
        -(2**20_000),
        12345678901234567890,
        list(range(100_000)),
        tuple(range(100_000)),
        set(range(100_000)),
        frozenset(range(100_000)),
        deque(range(100_000)),
        {str(i): "v" * 1000 for i in range(10_000)},
        _alias_bomb(),
        {"a": _alias_bomb()},
        type("Big", (str,), {})("y" * 100_000),
        datetime.date(2020, 1, 1),
        1.5e300,
        None,
        True,
    ],
    ids=lambda v: type(v).__name__,
)
@pytest.mark.parametrize("limit", [16, 80, 300])
def test_short_repr_is_bounded(value: object, limit: int) -> None:
    """Whatever the value, the result is at most *limit* characters, and quick."""
    start = time.perf_counter()
    text = short_repr(value, limit)
    assert time.perf_counter() - start < 0.05
    assert 0 < len(text) <= limit


def test_short_repr_is_repr_for_short_values() -> None:
    """Short values look exactly as with repr(), so messages do not change for them."""
    for value in ("requests_total", "it's", 42, 1.5, None, True, [1, "a"], {"k": 1}, (1,)):
        assert short_repr(value) == repr(value)


def test_short_repr_of_a_long_string_keeps_its_ends_and_says_its_length() -> None:
    """A long string shows its start, its end and its size."""
    text = short_repr("start" + "x" * 1_000_000 + "end")
    assert text.startswith("'startxxx") and text.endswith("xend' (1000008 characters)")
    assert len(text) <= 80


def test_short_repr_never_raises() -> None:
    """A __repr__ that raises gives a placeholder naming the type."""

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    assert "Broken" in short_repr(Broken())
    assert "Broken" in short_repr([Broken()])


def test_short_repr_does_not_sort_big_sets_or_dicts() -> None:
    """Mappings show their first items in order; sets are not sorted (bounded work)."""
    assert short_repr({"b": 1, "a": 2, "c": 3, "d": 4}) == "{'b': 1, 'a': 2, 'c': 3, ...}"
    big = set(range(2_000_000))
    start = time.perf_counter()
    short_repr(big)
    assert time.perf_counter() - start < 0.05
