"""What an aspect records into: a metric name looked up on a client, or an instrument.

Resolved once, when the aspect is built (a configuration-time check: a name
without a client, or an object that is not an instrument, is a clear error).
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ("MetricsSource", "resolve")


class MetricsSource(Protocol):
    """What the aspects need from a client (``OTelMetricsClient`` fits)."""

    def get_counter(self, name: str) -> Any: ...
    def get_histogram(self, name: str) -> Any: ...
    def get_up_down_counter(self, name: str) -> Any: ...


def resolve(
    target: Any, client: MetricsSource | None, kind: str, role: str
) -> tuple[Any, str | None]:
    """``(instrument or None, metric name)`` for a name or an instrument (config-time check)."""
    if target is None:
        return None, None
    if isinstance(target, str):
        if client is None:
            raise ValueError(
                f"otel_aspects: {role}={target[:100]!r} names a metric but no client= was "
                f"given; pass client=<OTelMetricsClient>, or pass the OTel {kind} instrument "
                "itself"
            )
        getter = getattr(client, "get_" + kind)
        return getter(target), target
    method = "record" if kind == "histogram" else "add"
    if not callable(getattr(target, method, None)):
        raise TypeError(
            f"otel_aspects: {role}= must be a metric name or an OTel {kind} "
            f"(with .{method}()), got {type(target).__name__}"
        )
    return target, getattr(target, "name", None) or role
