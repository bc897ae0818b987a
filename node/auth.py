"""Secret keys (HS_SECKEY) stored hashed, and who a credential makes a request: ``Authenticator``.

A prefix's admin handle ``<prefix>/ADMIN`` holds its secret at index 300 as
``pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>``, never in clear, with admin-only read
permission. Verifying PBKDF2 on every write would cost more than the write, so successful checks
are remembered (keyed by a SHA-256 of the secret, with the stored data they matched) until the
admin record changes, in this worker or another (the version counters of ``node.coherence``).
The parse of an identity handle is remembered too: every write of a client names the same one.
The node admin is ``300:0.NA/<prefix>`` with the node's own secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from collections.abc import Container

from node.cache import ResolutionCache
from node.config import Config
from node.store import Store
from protocol.codes import ResponseCode
from protocol.errors import ProtocolError
from protocol.identifiers import ascii_upper, parse_handle
from protocol.messages import Credential
from protocol.records import HS_SECKEY

ADMIN_SUFFIX = "ADMIN"  #: ``<prefix>/ADMIN`` holds a prefix's credentials

ITERATIONS = 20_000
SCHEME = "pbkdf2-sha256"
MAX_IDENTITIES = 4096  #: identity handles whose parse ``Authenticator`` remembers


def hash_secret(secret: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> bytes:
    """The HS_SECKEY data to store for ``secret``."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8"), salt, iterations)
    return f"{SCHEME}${iterations}${salt.hex()}${digest.hex()}".encode("ascii")


#: most PBKDF2 iterations of a stored hash accepted as such: one check of it takes about 0.1 s
MAX_ITERATIONS = 10 * ITERATIONS
_HASH = re.compile(rb"pbkdf2-sha256\$([1-9][0-9]{0,8})\$(?:[0-9a-f]{2}){8,64}\$[0-9a-f]{64}")


def is_checkable_hash(data: bytes) -> bool:
    """Whether HS_SECKEY ``data`` is a hash this node checks in bounded time (its own scheme, at
    most ``MAX_ITERATIONS``): a stored hash costs its iterations at every failed check."""
    match = _HASH.fullmatch(data)
    return match is not None and int(match.group(1)) <= MAX_ITERATIONS


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


def _failed(identity: str) -> ProtocolError:
    return ProtocolError(
        f"Authentication failed for {identity}", code=ResponseCode.AUTHENTICATION_FAILED
    )


def is_admin_key(key: str) -> bool:
    """Whether the comparison key ``key`` (``Handle.key``) is a prefix's ADMIN handle's: its
    suffix folded unless the node is case-sensitive, where ``Admin`` is another handle."""
    return key.partition("/")[2] == ADMIN_SUFFIX


class Principal:
    """Who a request is made as: the admin of ``prefix``, the node admin (``prefix`` None), or an
    authenticated identity that administers nothing (``prefix`` empty)."""

    __slots__ = ("identity", "prefix", "_own")

    def __init__(self, identity: str, prefix: str | None) -> None:
        self.identity = identity
        self.prefix = prefix
        self._own = ascii_upper(prefix) if prefix else ""

    def may_write(self, prefix: str, homed: Container[str]) -> bool:
        """Whether it may change handles under ``prefix``: the node admin may; a prefix's admin
        may under its prefix and those below it while its prefix is homed (``homed``: homed
        prefixes, ASCII upper-cased), as the ADMIN handle an unhoming leaves in the store no
        longer speaks for a prefix this node serves."""
        if self.prefix is None:
            return True
        own = self._own
        if not own or own not in homed:
            return False
        target = ascii_upper(prefix)
        return target == own or target.startswith(own + ".")


class Authenticator:
    """Checks credentials for one service, remembering the ones that passed (see above)."""

    def __init__(self, config: Config, store: Store, cache: ResolutionCache) -> None:
        self.config = config
        self.store = store
        self.cache = cache
        self.versions = cache.versions
        #: key -> (its bucket's version when last confirmed, {(index, fingerprint of a secret):
        #: the HS_SECKEY data the secret was verified against})
        self._verified: dict[str, tuple[int, dict[tuple[int, str], bytes]]] = {}
        #: checks under way: (key, (index, fingerprint), stored data) -> their outcome
        self._checking: dict[tuple[str, tuple[int, str], bytes], asyncio.Future[bool]] = {}
        #: identity handle text -> (its key, the prefix it administers, the key's version bucket),
        #: or None for a ``0.NA/<prefix>`` handle (the node admin); only handles that parsed
        self._identities: dict[str, tuple[str, str, int] | None] = {}

    def forget(self, key: str) -> None:
        """``key`` was written: its remembered checks no longer hold."""
        self._verified.pop(key, None)

    async def principal(self, credential: Credential | None) -> Principal:
        """Who ``credential`` is; AUTHENTICATION_NEEDED, INVALID_CREDENTIAL or _FAILED if none."""
        if credential is None:
            raise ProtocolError("Authentication needed", code=ResponseCode.AUTHENTICATION_NEEDED)
        identity = f"{credential.index}:{credential.handle}"
        try:
            parsed = self._identities[credential.handle]
        except KeyError:
            parsed = self._identity(credential.handle)
        if parsed is None:  # 0.NA/<prefix>: the node admin
            secret = self.config.admin_secret
            if secret and hmac.compare_digest(credential.secret.encode(), secret.encode()):
                return Principal(identity, None)
            raise _failed(identity)
        key, owns, bucket = parsed
        checked = (credential.index, fingerprint(credential.secret))
        versions = self.versions
        memo = self._verified.get(key)
        if memo is not None and versions[bucket] == memo[0] and checked in memo[1]:
            return Principal(identity, owns)
        version = versions[bucket]
        record = await self.store.get(key)
        stored = next(
            (
                v.data
                for v in (record.values if record else ())
                if v.index == credential.index and v.type == HS_SECKEY
            ),
            None,
        )
        if stored is None:
            raise _failed(identity)
        # A secret once verified against the very data now stored needs no second PBKDF2: so a
        # bucket bumped by another key's write (a collision), or many requests that missed the
        # memo together (the first one verifies), cost a store read, not a key derivation each.
        memo = self._verified.get(key)  # read again: it may have changed while the store read
        known = memo is not None and memo[1].get(checked) == stored
        if not known and not await self._verify(key, checked, credential.secret, stored):
            raise _failed(identity)
        # No write of the key since the read, here or in another worker (every committed write
        # bumps its bucket before it is answered): safe to remember. Writes of other keys do not
        # matter, so a node under write load still gets its checks remembered.
        if version == versions[bucket]:
            if memo is None or memo[0] != version:
                kept = {c: d for c, d in memo[1].items() if d == stored} if memo else {}
                memo = self._verified[key] = (version, kept)
            memo[1][checked] = stored
        return Principal(identity, owns)

    async def _verify(self, key: str, checked: tuple[int, str], secret: str, stored: bytes) -> bool:
        """PBKDF2 in a thread (it releases the interpreter lock, so other requests go on), once
        for any number of requests checking the same secret against the same data together."""
        flight = (key, checked, stored)
        pending = self._checking.get(flight)
        if pending is None:
            pending = asyncio.ensure_future(asyncio.to_thread(verify_secret, secret, stored))
            self._checking[flight] = pending
            pending.add_done_callback(lambda _: self._checking.pop(flight, None))
        return await asyncio.shield(pending)

    def _identity(self, text: str) -> tuple[str, str, int] | None:
        """Parse the identity handle ``text`` (see ``_identities``); INVALID_CREDENTIAL if it is
        not a handle."""
        try:
            handle = parse_handle(text)
        except ProtocolError:
            raise ProtocolError(
                "the identity is not a handle", code=ResponseCode.INVALID_CREDENTIAL
            ) from None
        parsed: tuple[str, str, int] | None = None
        if not handle.is_prefix_handle:
            key = handle.key(case_sensitive_suffix=self.config.case_sensitive_suffix)
            # only a prefix's ADMIN handle administers it; other identities own nothing
            owns = handle.prefix if is_admin_key(key) else ""
            parsed = (key, owns, self.versions.bucket(key))
        identities = self._identities
        if len(identities) >= MAX_IDENTITIES:
            identities.clear()
        identities[text] = parsed
        return parsed
