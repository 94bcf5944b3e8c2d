"""The auth server's core and its metrics (services/auth_server)."""

from __future__ import annotations

import base64
import json
import time

import pytest

from otel_aspects.testing import counter_value, histogram_data
from services._sim import Simulation
from services.auth_server.core import jwt
from services.auth_server.core.passwords import hash_password, verify_password
from services.auth_server.core.service import (
    AuthError,
    AuthServer,
    SimulatedIdentityProvider,
    basic_header,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def server(auth_metrics) -> AuthServer:  # type: ignore[no-untyped-def]
    sim = Simulation(seed=1, latency_scale=0, failure_rate=0)
    idp = SimulatedIdentityProvider(users={"bob": "pw-bob"}, simulation=sim)
    s = AuthServer(
        secret=b"k" * 32,
        metrics=auth_metrics,
        simulation=sim,
        identity_provider=idp,
        password_iterations=1_000,
    )
    s.add_user("alice", "pw-alice", scopes=("read", "write"))
    return s


class TestJWT:
    def test_round_trip(self) -> None:
        """A token decodes to its claims with the right key."""
        token = jwt.encode({"sub": "a", "exp": time.time() + 60}, b"key")
        assert jwt.decode(token, b"key", now=time.time())["sub"] == "a"

    def test_wrong_key_expired_alg_none(self) -> None:
        """Bad signature, expiry and alg=none are refused with a fixed reason."""
        now = time.time()
        token = jwt.encode({"sub": "a", "exp": now - 1}, b"key")
        with pytest.raises(jwt.InvalidTokenError, match="bad_signature"):
            jwt.decode(token, b"other", now=now)
        with pytest.raises(jwt.InvalidTokenError, match="expired"):
            jwt.decode(token, b"key", now=now)
        header = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).decode()
        forged = header.rstrip("=") + "." + token.split(".")[1] + "."
        with pytest.raises(jwt.InvalidTokenError, match="unsupported_alg"):
            jwt.decode(forged, b"key", now=now)
        for junk in ("", "a.b", "a.b.c", "x" * 10_000):
            with pytest.raises(jwt.InvalidTokenError):
                jwt.decode(junk, b"key", now=now)

    def test_passwords(self) -> None:
        """Salted hashes differ per call and verify only the right password."""
        a, b = hash_password("pw", iterations=1000), hash_password("pw", iterations=1000)
        assert a != b and verify_password("pw", a) and not verify_password("nope", a)
        assert not verify_password("pw", "garbage")


class TestAuthenticate:
    async def test_mechanisms(self, server: AuthServer, metrics_reader) -> None:  # type: ignore[no-untyped-def]
        """Basic, JWT and API key succeed; each attempt is counted and timed by mechanism."""
        principal = await server.authenticate(basic_header("alice", "pw-alice"))
        tokens = await server.generate_token(principal)
        assert (await server.authenticate(f"Bearer {tokens.access_token}")).subject == "alice"
        key = server.create_api_key("bot", ("read",))
        assert (await server.authenticate(f"ApiKey {key}")).subject == "bot"
        for mech in ("basic", "jwt", "api_key"):
            attrs = {"mechanism": mech, "status": "success"}
            assert counter_value(metrics_reader, "auth_requests_total", attrs) == 1
            assert histogram_data(metrics_reader, "auth_request_duration_seconds", attrs).count == 1

    async def test_failures(self, server: AuthServer, metrics_reader) -> None:  # type: ignore[no-untyped-def]
        """Wrong password, unknown user, forged token, bad key, unknown scheme all fail."""
        for header in (
            basic_header("alice", "wrong"),
            basic_header("nobody", "x"),
            "Basic !!!notbase64",
            "Bearer not.a.token",
            "ApiKey ak_nope",
            "Digest whatever",
            "",
        ):
            with pytest.raises(AuthError):
                await server.authenticate(header)
        assert (
            counter_value(
                metrics_reader, "auth_requests_total", {"mechanism": "basic", "status": "failure"}
            )
            == 3
        )
        assert (
            counter_value(
                metrics_reader, "auth_requests_total", {"mechanism": "unknown", "status": "failure"}
            )
            == 2
        )
        assert (
            counter_value(
                metrics_reader, "auth_requests_total", {"status": "success"} | {"mechanism": "jwt"}
            )
            == 0
        )


class TestTokens:
    async def test_refresh_rotates_and_revoke(self, server: AuthServer, metrics_reader) -> None:  # type: ignore[no-untyped-def]
        """Refresh revokes the used refresh token; a revoked access token is refused."""
        principal = await server.authenticate(basic_header("alice", "pw-alice"))
        tokens = await server.generate_token(principal)
        new = await server.refresh_token(tokens.refresh_token)
        with pytest.raises(AuthError, match="revoked"):
            await server.refresh_token(tokens.refresh_token)
        with pytest.raises(AuthError, match="wrong_token_type"):
            await server.refresh_token(new.access_token)
        await server.revoke_token(new.access_token)
        with pytest.raises(AuthError, match="revoked"):
            await server.authenticate(f"Bearer {new.access_token}")
        with pytest.raises(AuthError):
            await server.revoke_token("forged.token.value")
        assert counter_value(metrics_reader, "token_refreshes_total", {"status": "success"}) == 1
        assert counter_value(metrics_reader, "token_refreshes_total", {"status": "failure"}) == 2
        assert counter_value(metrics_reader, "token_revocations_total", {"status": "success"}) == 1
        assert counter_value(metrics_reader, "token_revocations_total", {"status": "failure"}) == 1

    async def test_generation_scope(self, server: AuthServer, metrics_reader) -> None:  # type: ignore[no-untyped-def]
        """Asking for a scope the principal lacks is a failed generation."""
        principal = await server.authenticate(basic_header("alice", "pw-alice"))
        await server.generate_token(principal, ["read"])
        with pytest.raises(AuthError, match="insufficient_scope"):
            await server.generate_token(principal, ["admin"])
        assert counter_value(metrics_reader, "token_generations_total", {"status": "success"}) == 1
        failed = histogram_data(
            metrics_reader, "token_generation_duration_seconds", {"status": "failure"}
        )
        assert failed is not None and failed.count == 1


class TestSessions:
    async def test_create_validate_limit(self, server: AuthServer, metrics_reader) -> None:  # type: ignore[no-untyped-def]
        """Sessions validate until ended; the per-subject limit fails creation."""
        principal = await server.authenticate(basic_header("alice", "pw-alice"))
        sessions = [
            await server.create_session(principal) for _ in range(server.max_sessions_per_subject)
        ]
        with pytest.raises(AuthError, match="session_limit"):
            await server.create_session(principal)
        assert (await server.validate_session(sessions[0])).subject == "alice"
        server.end_session(sessions[0])
        with pytest.raises(AuthError, match="invalid_session"):
            await server.validate_session(sessions[0])
        assert counter_value(metrics_reader, "session_creations_total", {"status": "success"}) == 5
        assert counter_value(metrics_reader, "session_creations_total", {"status": "failure"}) == 1
        assert (
            counter_value(metrics_reader, "session_validations_total", {"status": "success"}) == 1
        )
        assert (
            histogram_data(
                metrics_reader, "session_validation_duration_seconds", {"status": "failure"}
            ).count
            == 1
        )

    async def test_expiry(self, auth_metrics, metrics_reader) -> None:  # type: ignore[no-untyped-def]
        """An expired session fails validation (injected clock)."""
        now = [1000.0]
        s = AuthServer(
            metrics=auth_metrics,
            simulation=Simulation(latency_scale=0),
            clock=lambda: now[0],
            password_iterations=1000,
        )
        s.add_user("u", "p")
        sid = await s.create_session(await s.authenticate(basic_header("u", "p")))
        now[0] += s.session_ttl + 1
        with pytest.raises(AuthError, match="expired"):
            await s.validate_session(sid)


class TestOAuth:
    async def _flow(self, server: AuthServer, password: str = "pw-bob") -> str:
        url = await server.oauth_authorize(server.idp.name)
        redirect = await server.idp.login(url, "bob", password)
        p = server.callback_params(redirect)
        return await server.oauth_callback(
            server.idp.name, state=p["state"], code=p.get("code"), error=p.get("error")
        )

    async def test_full_flow(self, server: AuthServer, metrics_reader) -> None:  # type: ignore[no-untyped-def]
        """Authorize, log in at the provider, callback: a session, and one flow timed."""
        sid = await self._flow(server)
        assert (await server.validate_session(sid)).subject == "bob"
        assert (
            counter_value(metrics_reader, "oauth_authorizations_total", {"status": "success"}) == 1
        )
        assert counter_value(metrics_reader, "oauth_callbacks_total", {"status": "success"}) == 1
        flow = histogram_data(metrics_reader, "oauth_flow_duration_seconds", {"status": "success"})
        assert flow is not None and flow.count == 1

    async def test_failed_flows(self, server: AuthServer, metrics_reader) -> None:  # type: ignore[no-untyped-def]
        """Denied login, replayed state, unknown provider: failures, flows end failed."""
        with pytest.raises(AuthError, match="access_denied"):
            await self._flow(server, password="wrong")
        with pytest.raises(AuthError, match="invalid_state"):
            await server.oauth_callback(server.idp.name, state="made-up", code="x")
        with pytest.raises(AuthError, match="unknown_provider"):
            await server.oauth_authorize("nope")
        assert counter_value(metrics_reader, "oauth_callbacks_total", {"status": "failure"}) == 2
        assert (
            counter_value(metrics_reader, "oauth_authorizations_total", {"status": "failure"}) == 1
        )
        # The denied flow and the one that could not start; the made-up state is no flow.
        assert (
            histogram_data(
                metrics_reader, "oauth_flow_duration_seconds", {"status": "failure"}
            ).count
            == 2
        )

    async def test_expired_flow_ends_once(self, server: AuthServer, metrics_reader) -> None:  # type: ignore[no-untyped-def]
        """A flow whose state expires ends failed when the next flow starts; its late
        callback is an invalid state, not a second flow."""
        now = [1_000.0]
        server._clock = lambda: now[0]
        url = await server.oauth_authorize(server.idp.name)
        state = server.callback_params(url)["state"]
        now[0] += server.oauth_state_ttl + 1
        await server.oauth_authorize(server.idp.name)  # expires the first flow
        with pytest.raises(AuthError, match="invalid_state"):
            await server.oauth_callback(server.idp.name, state=state, code="x")
        failed = histogram_data(
            metrics_reader, "oauth_flow_duration_seconds", {"status": "failure"}
        )
        assert failed is not None and failed.count == 1 and failed.sum > 0

    async def test_code_is_single_use(self, server: AuthServer) -> None:
        """A code cannot be exchanged twice."""
        url = await server.oauth_authorize(server.idp.name)
        p = server.callback_params(await server.idp.login(url, "bob", "pw-bob"))
        await server.oauth_callback(server.idp.name, state=p["state"], code=p["code"])
        url2 = await server.oauth_authorize(server.idp.name)
        p2 = server.callback_params(await server.idp.login(url2, "bob", "pw-bob"))
        with pytest.raises(AuthError, match="invalid_grant"):
            await server.oauth_callback(server.idp.name, state=p2["state"], code=p["code"])


async def test_concurrent_session_creation_respects_the_limit(
    server: AuthServer, metrics_reader
) -> None:  # type: ignore[no-untyped-def]
    """Concurrent logins of one subject all pass the limit check before the store-write
    await; only ``max_sessions_per_subject`` of them may get a session, the rest fail
    with ``session_limit`` (status=failure), not exceed the limit."""
    import anyio

    principal = await server.authenticate(basic_header("alice", "pw-alice"))
    limit = server.max_sessions_per_subject
    outcomes: list[str] = []

    async def attempt() -> None:
        try:
            await server.create_session(principal)
            outcomes.append("ok")
        except AuthError as exc:
            outcomes.append(exc.reason)

    async with anyio.create_task_group() as tg:
        for _ in range(limit + 3):
            tg.start_soon(attempt)
    assert sorted(outcomes) == ["ok"] * limit + ["session_limit"] * 3
    live = [s for s in server._sessions.values() if s.principal.subject == "alice"]
    assert len(live) == limit
    assert counter_value(metrics_reader, "session_creations_total", {"status": "success"}) == limit
    assert counter_value(metrics_reader, "session_creations_total", {"status": "failure"}) == 3


async def test_concurrent_refresh_revoke_and_callback_replay(
    server: AuthServer, metrics_reader
) -> None:  # type: ignore[no-untyped-def]
    """Pins the single-use operations under concurrency: one refresh token refreshed twice
    at once succeeds once (rotation), a token revoked twice at once is fine twice (RFC
    7009), and an OAuth callback replayed concurrently succeeds once (state consumed)."""
    import anyio

    outcomes: dict[str, list[str]] = {"refresh": [], "revoke": [], "callback": []}

    async def attempt(kind: str, call) -> None:  # type: ignore[no-untyped-def]
        try:
            await call()
            outcomes[kind].append("ok")
        except AuthError as exc:
            outcomes[kind].append(exc.reason)

    pair = await server.generate_token(await server.authenticate(basic_header("alice", "pw-alice")))
    url = await server.oauth_authorize(server.idp.name)
    p = server.callback_params(await server.idp.login(url, "bob", "pw-bob"))

    def callback():  # type: ignore[no-untyped-def]
        return server.oauth_callback(server.idp.name, state=p["state"], code=p["code"])

    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(attempt, "refresh", lambda: server.refresh_token(pair.refresh_token))
            tg.start_soon(attempt, "revoke", lambda: server.revoke_token(pair.access_token))
            tg.start_soon(attempt, "callback", callback)
    assert sorted(outcomes["refresh"]) == ["ok", "revoked"]
    assert outcomes["revoke"] == ["ok", "ok"]
    assert sorted(outcomes["callback"]) == ["invalid_state", "ok"]
    assert counter_value(metrics_reader, "token_refreshes_total", {"status": "success"}) == 1
    assert counter_value(metrics_reader, "token_refreshes_total", {"status": "failure"}) == 1
    assert counter_value(metrics_reader, "oauth_callbacks_total", {"status": "success"}) == 1
    assert counter_value(metrics_reader, "oauth_callbacks_total", {"status": "failure"}) == 1
    flows = histogram_data(metrics_reader, "oauth_flow_duration_seconds", {"status": "success"})
    assert flows is not None and flows.count == 1  # the flow ended once
