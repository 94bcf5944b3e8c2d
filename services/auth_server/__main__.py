"""``python -m services.auth_server``: the auth server's HTTP app under uvicorn.

Accounts come from the ``AUTH_SERVER_ACCOUNTS`` environment variable (JSON, kept out of
the command line): ``{"users": [{"name", "password", "scopes"}], "api_keys": [{"owner",
"key", "scopes"}]}``; the users are also those of the simulated identity provider.
Metrics: ``setup_metrics("auth_server", prometheus_server=False)`` in the app's
lifespan, exporters from the ``OTEL_*`` variables; ``/metrics`` on the app's port.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from services._http import serve, service_parser
from services._sim import Simulation
from services.auth_server.app import create_app
from services.auth_server.core.service import AuthServer, SimulatedIdentityProvider

ACCOUNTS_ENV = "AUTH_SERVER_ACCOUNTS"


def build_server(
    accounts: dict[str, list[dict[str, object]]],
    simulation: Simulation,
    *,
    password_iterations: int = 600_000,
    max_sessions_per_subject: int = 5,
) -> AuthServer:
    """An :class:`AuthServer` with *accounts* (the shape of ``AUTH_SERVER_ACCOUNTS``)."""
    users = accounts.get("users", [])
    idp = SimulatedIdentityProvider(
        users={str(u["name"]): str(u["password"]) for u in users}, simulation=simulation
    )
    server = AuthServer(
        simulation=simulation,
        identity_provider=idp,
        password_iterations=password_iterations,
        max_sessions_per_subject=max_sessions_per_subject,
    )
    for user in users:
        server.add_user(str(user["name"]), str(user["password"]), _scopes(user))
    for key in accounts.get("api_keys", []):
        server.add_api_key(str(key["key"]), str(key["owner"]), _scopes(key))
    return server


def _scopes(entry: dict[str, object]) -> tuple[str, ...]:
    scopes = entry.get("scopes", ())
    return tuple(str(s) for s in scopes) if isinstance(scopes, list | tuple) else ()


def main(argv: Sequence[str] | None = None) -> int:
    parser = service_parser("python -m services.auth_server")
    parser.add_argument("--password-iterations", type=int, default=600_000)
    parser.add_argument("--max-sessions-per-subject", type=int, default=5)
    args = parser.parse_args(argv)
    accounts = json.loads(os.environ.get(ACCOUNTS_ENV) or "{}")
    server = build_server(
        accounts,
        Simulation(args.seed, args.latency_scale, args.failure_rate),
        password_iterations=args.password_iterations,
        max_sessions_per_subject=args.max_sessions_per_subject,
    )
    serve(create_app(server), fd=args.fd, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
