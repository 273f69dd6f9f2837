"""Trade and management passwords: peppered slow hashes (argon2id) and a verify cache.

A 6-digit PIN has only a million values: a slow hash alone makes guessing from a database dump
merely tedious (a million argon2 runs). So what is hashed is not the PIN but an HMAC of it under
the pepper, a key derived from ``SECRET_KEY`` (``keys``, purpose ``pin-pepper``) that is kept
outside the database and the logs (SPEC §10): without it the dump gives nothing to guess
against. A peppered hash carries a version mark (``PEPPERED``); a hash without it was stored by
an older release (argon2 of the PIN itself): it still verifies, and ``needs_rehash`` tells the
caller to store a new one (``passwords`` does, in the operation's transaction).

One verify must stay a few milliseconds, yet hot paths (every recharge) would pay it each time,
so a per-process cache remembers ``(owner, stored hash) -> HMAC(random process key, pin)`` for
PINs that verified against a current hash: a later verify against the same stored hash compares
HMACs only. The key lives in memory only, so the cache is no offline oracle; it is keyed by the
stored hash, so it misses after a password change; a hash to be replaced is never cached, so
its next verify is a slow one again, whose caller replaces it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# About 3 ms per hash or verify on the 2-core reference machine.
_HASHER = PasswordHasher(time_cost=2, memory_cost=4096, parallelism=1)

#: The mark of a hash of the peppered PIN (version 1), before the argon2 encoding.
PEPPERED = "pepper1:"


class PinVault:
    """Hashes PINs peppered with ``pepper`` and verifies them, with the per-process cache
    described above."""

    def __init__(
        self, pepper: bytes, hasher: PasswordHasher = _HASHER, cache_size: int = 100_000
    ) -> None:
        self._pepper = pepper
        self._hasher = hasher
        self._key = secrets.token_bytes(32)
        self._cache: dict[tuple[int, str], bytes] = {}
        self._cache_size = cache_size
        self.slow_verifies = 0  # how many times the slow hash ran (tests look at it)

    def hash(self, pin: str) -> str:
        return PEPPERED + self._hasher.hash(self._peppered(pin))

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` (a hash that verified) should be replaced by ``hash(pin)``: not
        peppered (an older release's), or made with other argon2 parameters."""
        if not stored.startswith(PEPPERED):
            return True
        return self._hasher.check_needs_rehash(stored.removeprefix(PEPPERED))

    def _peppered(self, pin: str) -> bytes:
        return hmac.digest(self._pepper, pin.encode(), hashlib.sha256)

    def _mac(self, pin: str) -> bytes:
        return hmac.new(self._key, pin.encode(), hashlib.sha256).digest()

    def known(self, owner: int, stored: str, pin: str) -> bool | None:
        """What the cache knows of ``pin`` against ``stored``: right, wrong (another PIN
        verified), or nothing (None)."""
        cached = self._cache.get((owner, stored))
        return None if cached is None else hmac.compare_digest(cached, self._mac(pin))

    async def check(self, owner: int, stored: str, pin: str) -> bool:
        """``verify`` for a running server: a slow verify runs in a thread (argon2 releases
        the GIL), so the event loop goes on with other messages meanwhile."""
        known = self.known(owner, stored, pin)
        if known is not None:
            return known
        return await asyncio.to_thread(self.verify, owner, stored, pin)

    def verify(self, owner: int, stored: str, pin: str) -> bool:
        """Whether ``pin`` matches ``stored`` (the hash kept for ``owner``)."""
        known = self.known(owner, stored, pin)
        if known is not None:
            return known
        self.slow_verifies += 1
        if stored.startswith(PEPPERED):
            encoded, secret = stored.removeprefix(PEPPERED), self._peppered(pin)
        else:  # an older release's hash: argon2 of the PIN itself
            encoded, secret = stored, pin.encode()
        try:
            self._hasher.verify(encoded, secret)
        except (VerificationError, InvalidHashError):
            return False
        if not self.needs_rehash(stored):  # else the next verify comes here again, and rehashes
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[(owner, stored)] = self._mac(pin)
        return True
