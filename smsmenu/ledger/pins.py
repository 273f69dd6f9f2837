"""Trade and management passwords: slow salted hashes (argon2id) and a verify cache.

A 6-digit PIN has only a million values, so the hash must be slow enough to make offline
guessing expensive, yet one verify must stay a few milliseconds. Hot paths (every recharge)
would still pay it each time, so a per-process cache remembers
``(agent, stored hash) -> HMAC(random process key, pin)`` for PINs that verified: a later verify
against the same stored hash compares HMACs only. The key lives in memory only, so the cache
is no offline oracle; it is keyed by the stored hash, so it misses after a password change.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# About 3 ms per hash or verify on the 2-core reference machine.
_HASHER = PasswordHasher(time_cost=2, memory_cost=4096, parallelism=1)


class PinVault:
    """Hashes PINs and verifies them, with the per-process cache described above."""

    def __init__(self, hasher: PasswordHasher = _HASHER, cache_size: int = 100_000) -> None:
        self._hasher = hasher
        self._key = secrets.token_bytes(32)
        self._cache: dict[tuple[int, str], bytes] = {}
        self._cache_size = cache_size
        self.slow_verifies = 0  # how many times the slow hash ran (tests look at it)

    def hash(self, pin: str) -> str:
        return self._hasher.hash(pin)

    def _mac(self, pin: str) -> bytes:
        return hmac.new(self._key, pin.encode(), hashlib.sha256).digest()

    def known(self, owner: int, stored: str, pin: str) -> bool | None:
        """What the cache knows of ``pin`` against ``stored``: right, wrong (another PIN
        verified), or nothing (None)."""
        cached = self._cache.get((owner, stored))
        return None if cached is None else hmac.compare_digest(cached, self._mac(pin))

    def verify(self, owner: int, stored: str, pin: str) -> bool:
        """Whether ``pin`` matches ``stored`` (the hash kept for ``owner``)."""
        known = self.known(owner, stored, pin)
        if known is not None:
            return known
        self.slow_verifies += 1
        try:
            self._hasher.verify(stored, pin)
        except (VerificationError, InvalidHashError):
            return False
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[(owner, stored)] = self._mac(pin)
        return True
