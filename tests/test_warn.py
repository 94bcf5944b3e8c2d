"""warn_once: one line per cause, whatever the arguments."""

from __future__ import annotations

import logging

import pytest

from otel_aspects._warn import warn_once

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
