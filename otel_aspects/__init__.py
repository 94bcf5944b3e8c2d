"""OpenTelemetry metrics for Python services.

YAML-declared instruments (:mod:`otel_aspects.config`), a client that never
raises into business code (:mod:`otel_aspects.client`), SDK setup
(:mod:`otel_aspects.sdk`) and aspects -- decorators and ``timed`` blocks whose
labels nested code can set through contextvars (:mod:`otel_aspects.timing`).

This module only re-exports; see ``docs/DESIGN.md`` for the layout.
"""

from __future__ import annotations

__all__: tuple[str, ...] = ()
