"""Salted password hashes with ``hashlib.pbkdf2_hmac`` (SHA-256), stdlib only.

Stored form: ``pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>``.  Verification is
constant-time.  Hashing is CPU-bound: the auth server runs it in a worker thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ("DEFAULT_ITERATIONS", "hash_password", "verify_password")

#: OWASP's 2023 figure for PBKDF2-HMAC-SHA256 is 600 000; the demo lowers it for speed.
DEFAULT_ITERATIONS = 600_000
_PREFIX = "pbkdf2_sha256"


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS) -> str:
    """A new salted hash of *password*."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    salt_b64 = base64.b64encode(salt).decode()
    return f"{_PREFIX}${iterations}${salt_b64}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether *password* matches *stored* (a :func:`hash_password` result)."""
    try:
        prefix, iterations_text, salt_b64, digest_b64 = stored.split("$")
        iterations = int(iterations_text)
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
    except ValueError:
        return False
    if prefix != _PREFIX or not 0 < iterations <= 10_000_000:
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(errors="replace"), salt, iterations)
    return hmac.compare_digest(digest, expected)
