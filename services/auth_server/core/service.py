"""The auth server's in-memory core.

:class:`AuthServer` authenticates requests (JWT bearer tokens, API keys, HTTP basic
with salted PBKDF2 hashes), generates, refreshes and revokes tokens, creates and
validates sessions, and runs an OAuth authorization-code flow against a
:class:`SimulatedIdentityProvider` (the external provider -- Cognito, GitHub... -- the
real auth server delegates to).

Every operation is measured through :mod:`services.auth_server.core.telemetry_decorators`;
failures raise :class:`AuthError`, whose ``reason`` is one of a fixed set and whose
message never contains a credential.

All state is bounded: revoked token ids, sessions and pending OAuth states expire and
are capped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio.to_thread

from otel_aspects.timing import Run
from services._sim import Simulation
from services.auth_server.core import jwt
from services.auth_server.core.passwords import hash_password, verify_password
from services.auth_server.core.telemetry_decorators import (
    AuthRequestContext,
    OAuthCallbackContext,
    oauth_flow_timer,
    track_oauth_authorization,
    track_outcome,
    track_session_validation,
    track_token_generation,
)
from services.auth_server.utils.otel_metrics import AuthServerMetrics, default_metrics

__all__ = (
    "AuthError",
    "AuthServer",
    "Principal",
    "SimulatedIdentityProvider",
    "TokenPair",
    "basic_header",
)


class AuthError(Exception):
    """An authentication or authorization failure.

    ``reason`` is one of a small fixed set (``bad_credentials``, ``expired``,
    ``revoked``, ``unsupported_mechanism``, ...).  The message never contains the
    credential that was presented.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Principal:
    """An authenticated subject."""

    subject: str
    scopes: tuple[str, ...]
    mechanism: str


@dataclass(frozen=True)
class TokenPair:
    """An access token and the refresh token that renews it."""

    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"


@dataclass
class _User:
    password_hash: str
    scopes: tuple[str, ...]


@dataclass
class _Session:
    principal: Principal
    expires_at: float


@dataclass
class _PendingOAuth:
    provider: str
    redirect_uri: str
    flow: Run  # oauth_flow_duration_seconds, started at the authorization request
    created_at: float  # wall clock, for expiry


class SimulatedIdentityProvider:
    """An in-memory OAuth 2.0 provider: an authorization endpoint, a login page and a
    token endpoint, with simulated network latency and occasional failures."""

    def __init__(
        self,
        *,
        name: str = "example-idp",
        client_id: str = "auth-server",
        client_secret: str | None = None,
        users: dict[str, str] | None = None,
        simulation: Simulation | None = None,
        code_ttl: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self._users = dict(users or {})
        self.sim = simulation or Simulation()
        self._codes: OrderedDict[str, tuple[str, str, float]] = OrderedDict()
        self._code_ttl = code_ttl
        self._clock = clock

    def authorization_url(self, client_id: str, redirect_uri: str, state: str) -> str:
        """Where the auth server redirects the user's browser (step 1)."""
        query = urlencode({"client_id": client_id, "redirect_uri": redirect_uri, "state": state})
        return f"https://{self.name}/authorize?{query}"

    async def login(self, authorization_url: str, username: str, password: str) -> str:
        """The user logs in at the provider; returns the redirect URL to the callback.

        A wrong password returns an ``error=access_denied`` redirect, like a provider.
        """
        await self.sim.delay(0.02)
        query = parse_qs(urlsplit(authorization_url).query)
        state = query.get("state", [""])[0]
        redirect_uri = query.get("redirect_uri", [""])[0]
        expected = self._users.get(username)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return f"{redirect_uri}?{urlencode({'error': 'access_denied', 'state': state})}"
        code = secrets.token_urlsafe(24)
        self._codes[code] = (username, redirect_uri, self._clock())
        while len(self._codes) > 10_000:
            self._codes.popitem(last=False)
        return f"{redirect_uri}?{urlencode({'code': code, 'state': state})}"

    async def exchange_code(
        self, code: str, client_id: str, client_secret: str, redirect_uri: str
    ) -> str:
        """The token endpoint: a one-time *code* for the user's identity (its subject)."""
        await self.sim.delay(0.03)
        self.sim.maybe_fail("identity provider token endpoint")
        if client_id != self.client_id or not hmac.compare_digest(
            client_secret.encode(), self.client_secret.encode()
        ):
            raise AuthError("invalid_client")
        entry = self._codes.pop(code, None)
        if entry is None:
            raise AuthError("invalid_grant")
        username, expected_redirect, issued = entry
        if expected_redirect != redirect_uri or self._clock() - issued > self._code_ttl:
            raise AuthError("invalid_grant")
        return username


class AuthServer:
    """Authentication, tokens, sessions and OAuth, in memory.

    >>> server = AuthServer(secret=b"k" * 32)                      # doctest: +SKIP
    >>> server.add_user("alice", "wonderland", scopes=("read",))   # doctest: +SKIP
    >>> principal = await server.authenticate(basic_header("alice", "wonderland"))
    """

    def __init__(
        self,
        *,
        secret: bytes | None = None,
        metrics: AuthServerMetrics | None = None,
        simulation: Simulation | None = None,
        identity_provider: SimulatedIdentityProvider | None = None,
        callback_url: str = "https://auth.example/oauth2/callback",
        access_ttl: int = 900,
        refresh_ttl: int = 86_400,
        session_ttl: int = 3_600,
        oauth_state_ttl: float = 600.0,
        max_sessions: int = 10_000,
        max_sessions_per_subject: int = 5,
        max_pending_oauth: int = 10_000,
        password_iterations: int = 600_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics or default_metrics
        self._oauth_flow = oauth_flow_timer(self.metrics)
        self.sim = simulation or Simulation()
        self._key = secret or secrets.token_bytes(32)
        self.idp = identity_provider or SimulatedIdentityProvider(simulation=self.sim)
        self.providers: dict[str, SimulatedIdentityProvider] = {self.idp.name: self.idp}
        self.callback_url = callback_url
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.session_ttl = session_ttl
        self.oauth_state_ttl = oauth_state_ttl
        self.max_sessions = max_sessions
        self.max_sessions_per_subject = max_sessions_per_subject
        self.max_pending_oauth = max_pending_oauth
        self.password_iterations = password_iterations
        self._clock = clock
        self._users: dict[str, _User] = {}
        self._api_keys: dict[str, Principal] = {}  # sha256(key) hex -> principal
        self._revoked: dict[str, float] = {}  # jti -> exp
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._pending: OrderedDict[str, _PendingOAuth] = OrderedDict()
        # A hash to verify against for unknown users, so both paths cost the same.
        self._dummy_hash = hash_password(secrets.token_urlsafe(), iterations=password_iterations)

    # ------------------------------------------------------------------ accounts

    def add_user(self, username: str, password: str, scopes: Sequence[str] = ()) -> None:
        """Create a user for basic authentication (and token generation)."""
        self._users[username] = _User(
            hash_password(password, iterations=self.password_iterations), tuple(scopes)
        )

    def create_api_key(self, owner: str, scopes: Sequence[str] = ()) -> str:
        """A new API key for *owner*; only its SHA-256 digest is kept."""
        key = "ak_" + secrets.token_urlsafe(32)
        digest = hashlib.sha256(key.encode()).hexdigest()
        self._api_keys[digest] = Principal(owner, tuple(scopes), "api_key")
        return key

    def add_api_key(self, key: str, owner: str, scopes: Sequence[str] = ()) -> None:
        """Accept *key* (made elsewhere, e.g. by a deployment) for *owner*; only its
        SHA-256 digest is kept."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        self._api_keys[digest] = Principal(owner, tuple(scopes), "api_key")

    # ------------------------------------------------------------------ tickets (HTTP)

    def issue_ticket(self, principal: Principal, ttl: int = 300) -> str:
        """A short-lived signed proof of an authentication (not measured).

        The HTTP API returns it from ``/authenticate``; token generation and session
        creation take it instead of the credentials, so that one authentication is
        counted once, as in process."""
        now = int(self._clock())
        claims = {
            "sub": principal.subject,
            "scope": " ".join(principal.scopes),
            "mech": principal.mechanism,
            "typ": "ticket",
            "iat": now,
            "exp": now + ttl,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._key)

    def redeem_ticket(self, ticket: str) -> Principal:
        """The principal a ticket of :meth:`issue_ticket` proves (``AuthError`` else)."""
        claims = self._decode(ticket, expected_type="ticket")
        scopes = tuple(str(claims.get("scope", "")).split())
        return Principal(str(claims.get("sub", "")), scopes, str(claims.get("mech", "")))

    # ------------------------------------------------------------------ authentication

    async def authenticate(self, authorization: str) -> Principal:
        """Authenticate an ``Authorization`` header value.

        ``Bearer <jwt>`` (mechanism ``jwt``), ``ApiKey <key>`` (``api_key``),
        ``Basic <base64 user:password>`` (``basic``); anything else fails with
        mechanism ``unknown``.  Records ``auth_requests_total`` and
        ``auth_request_duration_seconds``.
        """
        scheme, _, credential = (authorization or "").strip().partition(" ")
        mechanism = _MECHANISM_BY_SCHEME.get(scheme.lower(), "unknown")
        async with AuthRequestContext(self.metrics, mechanism):
            credential = credential.strip()
            if mechanism == "jwt":
                return self._verify_access_token(credential)
            if mechanism == "api_key":
                return await self._verify_api_key(credential)
            if mechanism == "basic":
                return await self._verify_basic(credential)
            raise AuthError("unsupported_mechanism")

    def _verify_access_token(self, token: str) -> Principal:
        claims = self._decode(token, expected_type="access")
        scopes = claims.get("scope", "")
        return Principal(str(claims.get("sub", "")), tuple(str(scopes).split()), "jwt")

    async def _verify_api_key(self, key: str) -> Principal:
        await self.sim.delay(0.001)  # the key store lookup
        principal = self._api_keys.get(hashlib.sha256(key.encode(errors="replace")).hexdigest())
        if principal is None:
            raise AuthError("bad_credentials")
        return principal

    async def _verify_basic(self, credential: str) -> Principal:
        try:
            decoded = base64.b64decode(credential.encode("ascii"), validate=True).decode()
        except (binascii.Error, UnicodeError, ValueError) as exc:
            raise AuthError("malformed_credentials") from exc
        username, sep, password = decoded.partition(":")
        if not sep:
            raise AuthError("malformed_credentials")
        user = self._users.get(username)
        stored = user.password_hash if user is not None else self._dummy_hash
        ok = await anyio.to_thread.run_sync(verify_password, password, stored)
        if user is None or not ok:
            raise AuthError("bad_credentials")
        return Principal(username, user.scopes, "basic")

    # ------------------------------------------------------------------ tokens

    def _decode(self, token: str, *, expected_type: str) -> dict[str, object]:
        try:
            claims = jwt.decode(token, self._key, now=self._clock())
        except jwt.InvalidTokenError as exc:
            raise AuthError(exc.reason) from None
        if claims.get("typ") != expected_type:
            raise AuthError("wrong_token_type")
        if str(claims.get("jti", "")) in self._revoked:
            raise AuthError("revoked")
        return claims

    def _issue(self, subject: str, scopes: Sequence[str]) -> TokenPair:
        now = int(self._clock())
        scope = " ".join(scopes)

        def token(typ: str, ttl: int) -> str:
            jti = secrets.token_hex(8)
            claims = {"sub": subject, "scope": scope, "typ": typ, "iat": now, "exp": now + ttl}
            return jwt.encode({**claims, "jti": jti}, self._key)

        access = token("access", self.access_ttl)
        return TokenPair(access, token("refresh", self.refresh_ttl), self.access_ttl)

    @track_token_generation
    async def generate_token(
        self, principal: Principal, scopes: Sequence[str] | None = None
    ) -> TokenPair:
        """Tokens for an authenticated *principal*, for *scopes* (default: all of its own).

        Asking for a scope the principal lacks fails with ``insufficient_scope``.
        Records ``token_generations_total`` and ``token_generation_duration_seconds``.
        """
        wanted = tuple(principal.scopes if scopes is None else scopes)
        if not set(wanted) <= set(principal.scopes):
            raise AuthError("insufficient_scope")
        await self.sim.delay(0.002)  # the signing key lookup
        return self._issue(principal.subject, wanted)

    @track_outcome("record_token_refresh")
    async def refresh_token(self, refresh_token: str) -> TokenPair:
        """A new token pair for a valid refresh token, which is revoked (rotation).

        Records ``token_refreshes_total``.
        """
        claims = self._decode(refresh_token, expected_type="refresh")
        self._revoke_claims(claims)
        await self.sim.delay(0.002)
        return self._issue(str(claims.get("sub", "")), str(claims.get("scope", "")).split())

    @track_outcome("record_token_revocation")
    async def revoke_token(self, token: str) -> None:
        """Revoke an access or refresh token (RFC 7009 style: an already revoked token is
        fine; a forged or malformed one fails).  Records ``token_revocations_total``."""
        try:
            claims = jwt.decode(token, self._key, now=self._clock(), leeway=float("inf"))
        except jwt.InvalidTokenError as exc:
            raise AuthError(exc.reason) from None
        await self.sim.delay(0.001)
        self._revoke_claims(claims)

    def _revoke_claims(self, claims: dict[str, object]) -> None:
        now = self._clock()
        if len(self._revoked) > 50_000:  # expired entries no longer need remembering
            self._revoked = {j: e for j, e in self._revoked.items() if e > now}
        exp = claims.get("exp")
        self._revoked[str(claims.get("jti", ""))] = (
            float(exp) if isinstance(exp, (int, float)) else now + self.refresh_ttl
        )

    # ------------------------------------------------------------------ sessions

    @track_outcome("record_session_creation")
    async def create_session(self, principal: Principal) -> str:
        """A new session id for *principal*.  A subject may hold at most
        ``max_sessions_per_subject`` live sessions (``session_limit`` beyond).
        Records ``session_creations_total``."""
        self._check_session_limit(principal)
        await self.sim.delay(0.001)  # the session store write
        # Checked again after the await: concurrent logins of the same subject all
        # passed the first check, and only the limit's worth of them may get a session.
        self._check_session_limit(principal)
        session_id = secrets.token_urlsafe(32)
        self._sessions[session_id] = _Session(principal, self._clock() + self.session_ttl)
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return session_id

    def _check_session_limit(self, principal: Principal) -> None:
        self._purge_sessions()
        live = sum(1 for s in self._sessions.values() if s.principal.subject == principal.subject)
        if live >= self.max_sessions_per_subject:
            raise AuthError("session_limit")

    @track_session_validation
    async def validate_session(self, session_id: str) -> Principal:
        """The principal of a live session; ``invalid_session`` or ``expired`` else.
        Records ``session_validations_total`` and ``session_validation_duration_seconds``."""
        await self.sim.delay(0.0005)  # the session store read
        session = self._sessions.get(session_id)
        if session is None:
            raise AuthError("invalid_session")
        if session.expires_at < self._clock():
            del self._sessions[session_id]
            raise AuthError("expired")
        return session.principal

    def end_session(self, session_id: str) -> bool:
        """Log out (not measured); whether the session existed."""
        return self._sessions.pop(session_id, None) is not None

    def _purge_sessions(self) -> None:
        now = self._clock()
        expired = [sid for sid, s in self._sessions.items() if s.expires_at < now]
        for sid in expired:
            del self._sessions[sid]

    # ------------------------------------------------------------------ OAuth

    @track_oauth_authorization
    async def oauth_authorize(self, provider: str, redirect_uri: str | None = None) -> str:
        """Step 1: start a flow with *provider*; returns the provider's authorization URL.

        Records ``oauth_authorizations_total``; the flow's duration is recorded when it
        ends (callback, or expiry of its state), or now if it cannot start.
        """
        flow = self._oauth_flow.start()
        idp = self.providers.get(provider)
        if idp is None:
            flow.stop(success=False)
            raise AuthError("unknown_provider")
        self._expire_pending()
        state = secrets.token_urlsafe(24)
        self._pending[state] = _PendingOAuth(
            provider, redirect_uri or self.callback_url, flow, self._clock()
        )
        while len(self._pending) > self.max_pending_oauth:
            _, dropped = self._pending.popitem(last=False)
            dropped.flow.stop(success=False)
        return idp.authorization_url(idp.client_id, redirect_uri or self.callback_url, state)

    async def oauth_callback(
        self,
        provider: str,
        *,
        state: str,
        code: str | None = None,
        error: str | None = None,
    ) -> str:
        """Step 2: the provider redirected back; exchange *code* and open a session.

        Returns the new session id.  Records ``oauth_callbacks_total`` and, for a known
        *state*, ``oauth_flow_duration_seconds`` from the authorization request to now.
        """
        async with OAuthCallbackContext(self.metrics) as ctx:
            pending = self._pending.pop(state, None) if isinstance(state, str) else None
            if pending is None:
                raise AuthError("invalid_state")
            ctx.set_flow(pending.flow)
            if pending.provider != provider:
                raise AuthError("invalid_state")
            if self._clock() - pending.created_at > self.oauth_state_ttl:
                raise AuthError("expired")
            if error is not None or not code:
                raise AuthError("access_denied")
            idp = self.providers[pending.provider]
            subject = await idp.exchange_code(
                code, idp.client_id, idp.client_secret, pending.redirect_uri
            )
            principal = Principal(subject, ("read",), "oauth")
            return await self.create_session(principal)

    def callback_params(self, redirect_url: str) -> dict[str, str]:
        """The ``code``/``state``/``error`` query parameters of a provider's redirect."""
        query = parse_qs(urlsplit(redirect_url).query)
        return {k: v[0] for k, v in query.items() if k in ("code", "state", "error") and v}

    def _expire_pending(self) -> None:
        """End the flows whose state expired: each is a failed flow."""
        now = self._clock()
        while self._pending:
            state, pending = next(iter(self._pending.items()))
            if now - pending.created_at <= self.oauth_state_ttl:
                break
            del self._pending[state]
            pending.flow.stop(success=False)


_MECHANISM_BY_SCHEME = {"bearer": "jwt", "apikey": "api_key", "basic": "basic"}


def basic_header(username: str, password: str) -> str:
    """An ``Authorization`` header value for HTTP basic authentication."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
