"""Minimal JWT (HS256 only) with the standard library: ``hmac``, ``hashlib``, ``base64``.

Only what the auth server needs: compact serialisation, the ``alg`` header pinned to
``HS256`` (``none`` and every other algorithm are refused), constant-time signature
comparison, ``exp``/``nbf`` checks against an injectable clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

__all__ = ("InvalidTokenError", "decode", "encode")

_HEADER = {"alg": "HS256", "typ": "JWT"}


class InvalidTokenError(ValueError):
    """The token is malformed, badly signed or expired.

    ``reason`` is one of a fixed set (``malformed``, ``unsupported_alg``,
    ``bad_signature``, ``expired``, ``not_yet_valid``); the message never contains
    the token.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid token: {reason}")
        self.reason = reason


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(padded.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise InvalidTokenError("malformed") from exc


def _sign(signing_input: bytes, key: bytes) -> bytes:
    return hmac.new(key, signing_input, hashlib.sha256).digest()


def encode(claims: dict[str, Any], key: bytes) -> str:
    """Serialise *claims* as a compact HS256 JWT signed with *key*."""
    header = _b64encode(json.dumps(_HEADER, separators=(",", ":")).encode())
    payload = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    return f"{header}.{payload}.{_b64encode(_sign(signing_input, key))}"


def decode(token: str, key: bytes, *, now: float, leeway: float = 0.0) -> dict[str, Any]:
    """Verify *token* with *key* and return its claims; :class:`InvalidTokenError` else."""
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 8192:
        raise InvalidTokenError("malformed")
    header_b64, payload_b64, signature_b64 = token.split(".")
    try:
        header = json.loads(_b64decode(header_b64))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidTokenError("malformed") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise InvalidTokenError("unsupported_alg")
    expected = _sign(f"{header_b64}.{payload_b64}".encode("ascii", "replace"), key)
    if not hmac.compare_digest(expected, _b64decode(signature_b64)):
        raise InvalidTokenError("bad_signature")
    try:
        claims = json.loads(_b64decode(payload_b64))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidTokenError("malformed") from exc
    if not isinstance(claims, dict):
        raise InvalidTokenError("malformed")
    exp = claims.get("exp")
    if isinstance(exp, (int, float)) and now > exp + leeway:
        raise InvalidTokenError("expired")
    nbf = claims.get("nbf")
    if isinstance(nbf, (int, float)) and now + leeway < nbf:
        raise InvalidTokenError("not_yet_valid")
    return claims
