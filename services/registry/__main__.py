"""``python -m services.registry``: the registry's HTTP app under uvicorn.

``--auth-url`` is the auth server every API call is authenticated against; the MCP
servers it can register are the demo's simulated ones (``mem://weather`` ...,
:func:`~services.registry.core.mcp.demo_backends`).  Metrics:
``setup_metrics("registry", prometheus_server=False)`` in the app's lifespan, exporters
from the ``OTEL_*`` variables; ``/metrics`` on the app's port.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services._http import serve, service_parser
from services._sim import Simulation
from services.registry.app import AuthServerAuthenticator, create_app
from services.registry.core.mcp import demo_backends
from services.registry.core.registry import Registry


def main(argv: Sequence[str] | None = None) -> int:
    parser = service_parser("python -m services.registry")
    parser.add_argument("--auth-url", required=True, help="e.g. http://127.0.0.1:8001")
    args = parser.parse_args(argv)
    simulation = Simulation(args.seed, args.latency_scale, args.failure_rate)
    authenticator = AuthServerAuthenticator(args.auth_url)
    registry = Registry(
        backends=demo_backends(simulation), authenticator=authenticator, simulation=simulation
    )
    serve(
        create_app(registry, authenticator=authenticator),
        fd=args.fd,
        host=args.host,
        port=args.port,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
