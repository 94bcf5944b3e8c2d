"""Simulated latency and failures for the in-memory services.

One :class:`Simulation` per service instance, with its own seeded ``random.Random``,
so a workload can be replayed with ``--seed``.  ``latency_scale=0`` turns every delay
into a bare checkpoint (tests run at full speed).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

__all__ = ("SimulatedFailure", "Simulation")


class SimulatedFailure(RuntimeError):
    """An injected failure of a simulated dependency (an MCP server, the identity provider)."""


@dataclass
class Simulation:
    """Seeded latency and failure injection."""

    seed: int | None = None
    latency_scale: float = 1.0
    failure_rate: float = 0.03
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    async def delay(self, mean_seconds: float) -> None:
        """Sleep an exponentially distributed time of mean ``mean_seconds * latency_scale``."""
        if self.latency_scale <= 0 or mean_seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        await anyio.sleep(self.rng.expovariate(1.0 / (mean_seconds * self.latency_scale)))

    def fails(self, rate: float | None = None) -> bool:
        """Whether this call should fail (probability ``rate``, default ``failure_rate``)."""
        return self.rng.random() < (self.failure_rate if rate is None else rate)

    def maybe_fail(self, what: str, rate: float | None = None) -> None:
        """Raise :class:`SimulatedFailure` with probability *rate*."""
        if self.fails(rate):
            raise SimulatedFailure(f"simulated failure: {what}")
