"""otel_aspects.labels at its edges (survivors of a mutation run, docs/MUTATION.md)."""

from __future__ import annotations

import asyncio
import logging
import sys
import types

import pytest

from otel_aspects import timed
from otel_aspects.decorators import track_duration
from otel_aspects.labels import drop_reserved, is_cancellation, outcome_labels
from tests._support import Recorder


def test_a_trio_without_a_cancelled_class_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever sits in sys.modules["trio"], outcomes are still decided (never a TypeError)."""
    monkeypatch.setitem(sys.modules, "trio", types.SimpleNamespace(Cancelled="not a class"))
    assert outcome_labels(ValueError()) == {"status": "failure", "error_type": "ValueError"}
    assert is_cancellation(asyncio.CancelledError())
    monkeypatch.setitem(sys.modules, "trio", types.SimpleNamespace())
    assert not is_cancellation(ValueError())


def test_a_trio_cancelled_that_is_no_exception_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    class Cancelled:  # not a BaseException: cannot be raised, must not be matched on
        pass

    monkeypatch.setitem(sys.modules, "trio", types.SimpleNamespace(Cancelled=Cancelled))
    group = BaseExceptionGroup("g", [asyncio.CancelledError()])
    assert is_cancellation(group)
    assert not is_cancellation(BaseExceptionGroup("g", [ValueError()]))


def test_drop_reserved_drops_both_keys_and_warns_per_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    labels = {"status": "static", "error_type": "Fake", "op": "x"}
    with caplog.at_level(logging.WARNING, logger="otel_aspects"):
        assert drop_reserved(labels) == {"op": "x"}
    assert labels == {"status": "static", "error_type": "Fake", "op": "x"}  # not mutated
    assert len(caplog.records) == 2


def test_static_and_extracted_reserved_labels_never_reach_a_record() -> None:
    """A static or extracted ``error_type`` on a success would claim an error that never
    happened: both are dropped, and ``status`` comes from the outcome."""
    rec = Recorder()
    with timed(record_func=rec, labels={"error_type": "Fake", "status": "static", "op": "x"}):
        pass

    @track_duration(rec, extract_labels=lambda v: {"error_type": v, "arg": v})
    def f(v: str) -> str:
        return v

    f("Fake")
    assert rec.labels == [{"op": "x", "status": "success"}, {"arg": "Fake", "status": "success"}]
