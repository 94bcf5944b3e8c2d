"""Checked by mypy --strict (tests/test_decorators.py): decorated callables keep their types.

Lines expected to fail carry ``# type: ignore[code]``; with --warn-unused-ignores
an ignore that is no longer needed fails the check too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from otel_aspects import Timed, set_label, set_success, timed
from otel_aspects.decorators import (
    count_exceptions,
    counted,
    create_timed_context,
    track_duration,
    track_inprogress,
)
from otel_aspects.timing import Run


def record(duration: float, labels: dict[str, Any]) -> None:
    pass


@timed(record_func=record)
def add(a: int, b: int = 1) -> int:
    return a + b


@track_duration(record, extract_labels=lambda x: {"type": x})
async def fetch(url: str) -> bytes:
    return b""


@counted("calls_total", client=None)
def numbers(n: int) -> Iterator[int]:
    yield from range(n)


@track_inprogress("inflight", client=None)
async def stream(n: int) -> AsyncIterator[str]:
    yield str(n)


@track_inprogress("inflight", client=None, extract_labels=lambda route: {"route": route})
def serve(route: str) -> int:
    return len(route)


class Service:
    @timed(record_func=record)
    def method(self, x: str) -> str:
        return x

    @timed(record_func=record)
    @classmethod
    def above_classmethod(cls, x: int) -> int:
        return x

    @classmethod
    @timed(record_func=record)
    def below_classmethod(cls, x: int) -> int:
        return x

    @timed(record_func=record)
    @staticmethod
    def above_staticmethod(x: float) -> float:
        return x

    @staticmethod
    @count_exceptions("errors_total", client=None)
    def below_staticmethod(x: float) -> float:
        return x


async def uses() -> None:
    total: int = add(1, b=2)
    data: bytes = await fetch("u")
    items: list[int] = list(numbers(3))
    texts: list[str] = [s async for s in stream(1)]
    text: str = Service().method("a")
    n1: int = Service.above_classmethod(1)
    n2: int = Service.below_classmethod(2)
    f1: float = Service.above_staticmethod(1.0)
    f2: float = Service.below_staticmethod(2.0)
    print(total, data, items, texts, text, n1, n2, f1, f2)

    add("x")  # type: ignore[arg-type]
    wrong: str = add(1)  # type: ignore[assignment]
    await fetch(1)  # type: ignore[arg-type]
    Service().method(1)  # type: ignore[arg-type]
    Service.above_classmethod("1")  # type: ignore[arg-type]
    print(wrong)

    ctx: Run
    with timed(record_func=record) as ctx:
        ctx.set_label("k", "v")
        ctx.set_success(False)
    async with create_timed_context(record, labels={"op": "x"}) as ctx:
        ctx.set_success(False)
    t: Timed = timed(record_func=record)
    duration: float = t.start().stop(labels={"a": 1}, success=True)
    print(duration)
    set_label("k", 1)
    set_success(True)
    timed(record_func=record, labels=3)  # type: ignore[arg-type]
    served: int = serve("/a")
    serve(1)  # type: ignore[arg-type]
    track_inprogress("inflight", client=None, extract_labels=3)  # type: ignore[arg-type]
    print(served)
    ctx.set_success()  # type: ignore[call-arg]
