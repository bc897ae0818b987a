"""Secret keys (HS_SECKEY) stored hashed, and the check of a write's credential against them.

A prefix's admin handle ``<prefix>/ADMIN`` holds its secret at index 300 as
``pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>``, never in clear, with admin-only read
permission. Verifying PBKDF2 on every write would cost more than the write, so successful checks
are remembered (keyed by a SHA-256 of the secret) until the admin record changes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

ITERATIONS = 20_000
SCHEME = "pbkdf2-sha256"


def hash_secret(secret: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> bytes:
    """The HS_SECKEY data to store for ``secret``."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8"), salt, iterations)
    return f"{SCHEME}${iterations}${salt.hex()}${digest.hex()}".encode("ascii")


def verify_secret(secret: str, stored: bytes) -> bool:
    """Whether ``secret`` matches the stored HS_SECKEY data (constant-time compare)."""
    try:
        scheme, iterations, salt, digest = stored.decode("ascii").split("$")
        if scheme != SCHEME:
            return False
        computed = hashlib.pbkdf2_hmac(
            "sha256", secret.encode("utf-8"), bytes.fromhex(salt), int(iterations)
        )
    except (UnicodeDecodeError, ValueError):
        return False
    return hmac.compare_digest(computed.hex(), digest)


def fingerprint(secret: str) -> str:
    """A key for the cache of verified secrets (the secret itself is never kept)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
