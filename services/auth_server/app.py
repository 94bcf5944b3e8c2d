"""The auth server as an ASGI app (Starlette): its HTTP API over :class:`AuthServer`.

Every endpoint calls one operation of the core, which records the domain metrics as in
process (``auth_requests_total``, ``token_generations_total``...); the app adds the HTTP
layer: JSON bodies, status codes, ``/metrics`` (Prometheus, on this port:
:mod:`otel_aspects.exposition`) and ``/healthz``.

=======================  ==============================================  ==================
endpoint                 core operation                                  body / answer
=======================  ==============================================  ==================
``POST /authenticate``   ``authenticate(Authorization header)``          principal + ticket
``POST /tokens``         ``generate_token(ticket's principal, scopes)``  token pair
``POST /tokens/refresh`` ``refresh_token``                               token pair
``POST /tokens/revoke``  ``revoke_token``                                ``{"revoked"}``
``POST /sessions``       ``create_session(ticket's principal)``          ``{"session_id"}``
``POST /sessions/validate``  ``validate_session``                        principal
``POST /sessions/end``   ``end_session`` (not measured)                  ``{"ended"}``
``GET /oauth/authorize`` ``oauth_authorize(provider)``                   302 to the provider
``GET /oauth/callback``  ``oauth_callback(provider, state, code, error)`` ``{"session_id"}``
``POST /idp/login``      the simulated identity provider's login page    ``{"redirect"}``
=======================  ==============================================  ==================

A *ticket* is the signed, short-lived proof of one authentication
(:meth:`AuthServer.issue_ticket`): token generation and session creation take it, so one
authentication is counted once, as in process.  Failures answer ``{"error": reason}``
with the core's reason (never a credential): 401 by default, 403 ``insufficient_scope``,
429 ``session_limit``, 400 ``unknown_provider`` and bad requests, 502 when the identity
provider fails.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from otel_aspects.exposition import metrics_app
from services._http import (
    BadRequest,
    add_http_metrics,
    error,
    lifespan,
    read_json,
    text,
    upstream_failure,
)
from services._sim import SimulatedFailure
from services.auth_server.core.service import AuthError, AuthServer, Principal, TokenPair
from services.auth_server.utils.otel_metrics import SERVICE_NAME

__all__ = ("STATUS_BY_REASON", "create_app")

#: The status of an ``AuthError`` by reason (401 for any other).
STATUS_BY_REASON = {"insufficient_scope": 403, "session_limit": 429, "unknown_provider": 400}

Endpoint = Callable[[Request], Awaitable[Response]]


def _principal(principal: Principal) -> dict[str, Any]:
    return {
        "subject": principal.subject,
        "scopes": list(principal.scopes),
        "mechanism": principal.mechanism,
    }


def _pair(pair: TokenPair) -> JSONResponse:
    return JSONResponse(asdict(pair))


def _guarded(endpoint: Endpoint) -> Endpoint:
    """The core's exceptions as ``{"error": reason}`` responses."""

    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except AuthError as exc:
            return error(exc.reason, STATUS_BY_REASON.get(exc.reason, 401))
        except BadRequest:
            return error("bad_request", 400)
        except (SimulatedFailure, ConnectionError) as exc:
            return upstream_failure(exc)

    return run


def _scopes(body: dict[str, Any]) -> tuple[str, ...] | None:
    scopes = body.get("scopes")
    if scopes is None:
        return None
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise BadRequest("scopes must be a list of strings")
    return tuple(scopes)


def create_app(server: AuthServer, *, set_up_metrics: bool = True) -> Starlette:
    """The HTTP app over *server*.  Its lifespan calls ``setup_metrics("auth_server",
    prometheus_server=False)`` unless *set_up_metrics* is false (the process sets up)."""

    async def authenticate(request: Request) -> Response:
        principal = await server.authenticate(request.headers.get("authorization", ""))
        return JSONResponse({**_principal(principal), "ticket": server.issue_ticket(principal)})

    async def tokens(request: Request) -> Response:
        body = await read_json(request)
        principal = server.redeem_ticket(text(body, "ticket"))
        return _pair(await server.generate_token(principal, _scopes(body)))

    async def refresh(request: Request) -> Response:
        body = await read_json(request)
        return _pair(await server.refresh_token(text(body, "refresh_token")))

    async def revoke(request: Request) -> Response:
        body = await read_json(request)
        await server.revoke_token(text(body, "token"))
        return JSONResponse({"revoked": True})

    async def create_session(request: Request) -> Response:
        body = await read_json(request)
        principal = server.redeem_ticket(text(body, "ticket"))
        session_id = await server.create_session(principal)
        return JSONResponse({"session_id": session_id}, status_code=201)

    async def validate_session(request: Request) -> Response:
        body = await read_json(request)
        return JSONResponse(_principal(await server.validate_session(text(body, "session_id"))))

    async def end_session(request: Request) -> Response:
        body = await read_json(request)
        return JSONResponse({"ended": server.end_session(text(body, "session_id"))})

    async def oauth_authorize(request: Request) -> Response:
        url = await server.oauth_authorize(request.query_params.get("provider", ""))
        return RedirectResponse(url, status_code=302)

    async def oauth_callback(request: Request) -> Response:
        q = request.query_params
        session_id = await server.oauth_callback(
            q.get("provider", ""),
            state=q.get("state", ""),
            code=q.get("code"),
            error=q.get("error"),
        )
        return JSONResponse({"session_id": session_id})

    async def idp_login(request: Request) -> Response:
        body = await read_json(request)
        redirect = await server.idp.login(
            text(body, "url"), text(body, "username"), text(body, "password")
        )
        return JSONResponse({"redirect": redirect})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": SERVICE_NAME})

    routes = [
        Route("/authenticate", _guarded(authenticate), methods=["POST"]),
        Route("/tokens", _guarded(tokens), methods=["POST"]),
        Route("/tokens/refresh", _guarded(refresh), methods=["POST"]),
        Route("/tokens/revoke", _guarded(revoke), methods=["POST"]),
        Route("/sessions", _guarded(create_session), methods=["POST"]),
        Route("/sessions/validate", _guarded(validate_session), methods=["POST"]),
        Route("/sessions/end", _guarded(end_session), methods=["POST"]),
        Route("/oauth/authorize", _guarded(oauth_authorize), methods=["GET"]),
        Route("/oauth/callback", _guarded(oauth_callback), methods=["GET"]),
        Route("/idp/login", _guarded(idp_login), methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_app()),  # a Route, not a Mount: no redirect to /metrics/
    ]
    app = Starlette(routes=routes, lifespan=lifespan(SERVICE_NAME) if set_up_metrics else None)
    add_http_metrics(app, server.metrics.client)
    return app
