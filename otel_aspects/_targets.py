"""What an aspect records into: a metric name looked up on a client, or an instrument.

Resolved once, when the aspect is built (a configuration-time check: a name
without a client, or an object that is not an instrument, is a clear error).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from ._warn import short_repr, warn_once
from .config import MetricsConfigError, did_you_mean, strict_mode

__all__ = ("MetricsSource", "resolve")

logger = logging.getLogger("otel_aspects.aspects")


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
        instrument = getattr(client, "get_" + kind)(target)
        if instrument is None:
            _check_declared(client, target, kind, role)
        return instrument, target
    method = "record" if kind == "histogram" else "add"
    if not callable(getattr(target, method, None)):
        raise TypeError(
            f"otel_aspects: {role}= must be a metric name or an OTel {kind} "
            f"(with .{method}()), got {type(target).__name__}"
        )
    return target, getattr(target, "name", None) or role


def _check_declared(client: MetricsSource, name: str, kind: str, role: str) -> None:
    """A name the client's config does not declare at all is a typo until shown otherwise.

    ``capture: false`` (declared, switched off) stays silent.  Otherwise one WARNING
    with a "did you mean" from the declared names; ``OTEL_ASPECTS_STRICT=1`` raises.
    """
    spec = getattr(client, "spec", None)
    config = getattr(client, "config", None)
    if spec is None or config is None or spec(name) is not None:
        return
    declared = list(getattr(config, "metrics", {}))
    service = getattr(client, "service_name", "?")
    message = (
        f"otel_aspects: {role}={short_repr(name)} is not declared in the metrics config of "
        f"{short_repr(service)}{did_you_mean(name, declared)}; this aspect records nothing "
        f"into it. Declare it under the {kind}s of config/metrics/<service>.yml, or fix the name"
    )
    if strict_mode():
        raise MetricsConfigError([message])
    warn_once(logger, ("undeclared", service, name, role), "%s", message, budget="config")
