"""Small fakes shared by the aspects tests."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider


class Recorder:
    """A record_func that keeps what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, dict[str, Any]]] = []

    def __call__(self, duration: float, labels: dict[str, Any]) -> None:
        self.calls.append((duration, labels))

    @property
    def labels(self) -> list[dict[str, Any]]:
        return [labels for _, labels in self.calls]


def new_provider(made: list[MeterProvider], *readers: Any, **kwargs: Any) -> MeterProvider:
    """An SDK provider with *readers*, remembered in *made* (the ``providers`` fixture)."""
    provider = MeterProvider(metric_readers=list(readers), **kwargs)
    made.append(provider)
    return provider
