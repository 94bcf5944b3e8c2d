"""Metrics client and domain recording functions of the auth server.

The client comes from ``config/metrics/auth_server.yml`` (see :mod:`services._config`
for how the file is found).  The domain functions are the only place that builds label
sets; their labels are exactly those of the seed's "Standard Metrics Reference" table:

=====================================  ======================
metric                                 labels
=====================================  ======================
``auth_requests_total``                mechanism, status
``auth_request_duration_seconds``      mechanism, status
``token_generations_total``            status
``token_generation_duration_seconds``  status
``token_refreshes_total``              status
``token_revocations_total``            status
``oauth_authorizations_total``         status
``oauth_callbacks_total``              status
``oauth_flow_duration_seconds``        status
``session_creations_total``            status
``session_validations_total``          status
``session_validation_duration_seconds`` status
=====================================  ======================

``mechanism`` is one of :data:`MECHANISMS` (else ``"unknown"``) and ``status`` one of
``success | failure | cancelled``: no value is ever taken from a credential.

Production code uses the module-level :data:`metrics` / functions (global meter
provider); tests build an isolated instance with :func:`build_metrics`.
"""

from __future__ import annotations

from opentelemetry.metrics import MeterProvider

from services._labels import one_of, outcome
from services._metrics import Clock, DomainMetrics, build_client

__all__ = (
    "MECHANISMS",
    "SERVICE_NAME",
    "AuthServerMetrics",
    "build_metrics",
    "default_metrics",
    "metrics",
    "record_auth_request",
    "record_oauth_authorization",
    "record_oauth_callback",
    "record_oauth_flow",
    "record_session_creation",
    "record_session_validation",
    "record_token_generation",
    "record_token_refresh",
    "record_token_revocation",
)

SERVICE_NAME = "auth_server"

#: The authentication mechanisms; any other value is recorded as ``"unknown"``.
MECHANISMS: frozenset[str] = frozenset({"jwt", "api_key", "basic"})


class AuthServerMetrics(DomainMetrics):
    """The auth server's domain recording functions over one metrics client."""

    def record_auth_request(
        self, mechanism: str, success: bool | str, duration_seconds: float | None = None
    ) -> None:
        """An authentication attempt (JWT, API key, basic)."""
        self.count_and_time(
            "auth_requests_total",
            "auth_request_duration_seconds",
            {"mechanism": one_of(mechanism, MECHANISMS), "status": outcome(success)},
            duration_seconds,
        )

    def record_token_generation(
        self, success: bool | str, duration_seconds: float | None = None
    ) -> None:
        """A token (pair) generation."""
        self.count_and_time(
            "token_generations_total",
            "token_generation_duration_seconds",
            {"status": outcome(success)},
            duration_seconds,
        )

    def record_token_refresh(self, success: bool | str) -> None:
        """A refresh-token exchange."""
        self.client.record_counter("token_refreshes_total", 1, {"status": outcome(success)})

    def record_token_revocation(self, success: bool | str) -> None:
        """A revocation request."""
        self.client.record_counter("token_revocations_total", 1, {"status": outcome(success)})

    def record_oauth_authorization(self, success: bool | str) -> None:
        """Step 1 of the OAuth flow: the authorization request."""
        self.client.record_counter("oauth_authorizations_total", 1, {"status": outcome(success)})

    def record_oauth_callback(self, success: bool | str) -> None:
        """Step 2 of the OAuth flow: the callback from the identity provider."""
        self.client.record_counter("oauth_callbacks_total", 1, {"status": outcome(success)})

    def record_oauth_flow(self, success: bool | str, duration_seconds: float) -> None:
        """A whole OAuth flow ended (authorization request to end of callback)."""
        self.client.record_histogram(
            "oauth_flow_duration_seconds", duration_seconds, {"status": outcome(success)}
        )

    def record_session_creation(self, success: bool | str) -> None:
        """A new user session."""
        self.client.record_counter("session_creations_total", 1, {"status": outcome(success)})

    def record_session_validation(
        self, success: bool | str, duration_seconds: float | None = None
    ) -> None:
        """A session validation check."""
        self.count_and_time(
            "session_validations_total",
            "session_validation_duration_seconds",
            {"status": outcome(success)},
            duration_seconds,
        )


def build_metrics(
    meter_provider: MeterProvider | None = None, *, clock: Clock | None = None
) -> AuthServerMetrics:
    """A fresh :class:`AuthServerMetrics` on *meter_provider* (default: the global one);
    *clock* times its blocks (default ``time.perf_counter``)."""
    return AuthServerMetrics(build_client(SERVICE_NAME, meter_provider), clock)


#: The production instance, on the global meter provider (a proxy until setup_metrics).
default_metrics = build_metrics()
#: The seed's name for the service's client.
metrics = default_metrics.client

record_auth_request = default_metrics.record_auth_request
record_token_generation = default_metrics.record_token_generation
record_token_refresh = default_metrics.record_token_refresh
record_token_revocation = default_metrics.record_token_revocation
record_oauth_authorization = default_metrics.record_oauth_authorization
record_oauth_callback = default_metrics.record_oauth_callback
record_oauth_flow = default_metrics.record_oauth_flow
record_session_creation = default_metrics.record_session_creation
record_session_validation = default_metrics.record_session_validation
