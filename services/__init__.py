"""Two example services instrumented with :mod:`otel_aspects`, in the seed's pattern.

- :mod:`services.registry`: an MCP server registry and proxy (simulated in-memory MCP
  servers), with an auth middleware.
- :mod:`services.auth_server`: JWT / API key / basic authentication, tokens, sessions and
  an OAuth authorization-code flow against a simulated identity provider.

Each service has ``utils/otel_metrics.py`` (its metrics client, built from
``config/metrics/<service>.yml``, and its domain recording functions) and
``core/telemetry_decorators.py`` (its context managers and decorators, built on
:func:`otel_aspects.timed`); the plumbing they share (client building, the
counter-and-histogram step, the timed context base) is :mod:`services._metrics`.
``python -m services.demo`` runs a workload against both.
"""

from __future__ import annotations

__all__: tuple[str, ...] = ()
