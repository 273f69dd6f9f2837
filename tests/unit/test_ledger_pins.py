"""pins: password hashes peppered with the secret (SPEC §10), old ones upgraded, the cache."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from smsmenu.keys import SecretKeys
from smsmenu.ledger.pins import PinVault

PIN = "135790"


def vault(secret: bytes = b"the deployment's own secret") -> PinVault:
    return PinVault(SecretKeys(secret).derive("pin-pepper"))


def test_a_stored_hash_gives_nothing_without_the_secret() -> None:
    stored = vault().hash(PIN)
    assert vault().verify(1, stored, PIN)
    assert not vault().verify(1, stored, "135791")
    # a database dump alone: argon2 of the PIN does not match, whatever part of it is tried
    for candidate in (stored, stored[stored.index("$argon2") :]):
        with pytest.raises((VerificationError, InvalidHashError)):
            PasswordHasher().verify(candidate, PIN)
    assert not vault(b"another deployment's secret").verify(1, stored, PIN)
    assert not vault().needs_rehash(stored)


def test_a_hash_of_an_older_release_verifies_and_asks_to_be_redone() -> None:
    legacy = PasswordHasher(time_cost=2, memory_cost=4096, parallelism=1).hash(PIN)
    pins = vault()
    assert pins.needs_rehash(legacy)
    assert pins.verify(1, legacy, PIN)
    assert not pins.verify(1, legacy, "000000")
    assert pins.known(1, legacy, PIN) is None  # never cached: its next verify redoes it


def test_the_cache_knows_only_what_verified() -> None:
    pins = vault()
    stored = pins.hash(PIN)
    assert pins.known(7, stored, PIN) is None
    assert pins.verify(7, stored, PIN) and pins.slow_verifies == 1
    assert pins.known(7, stored, PIN) is True
    assert pins.known(7, stored, "000000") is False
    assert pins.verify(7, stored, PIN) and not pins.verify(7, stored, "000000")
    assert pins.slow_verifies == 1
    assert pins.known(8, stored, PIN) is None  # per owner, per stored hash


async def test_a_slow_verify_leaves_the_event_loop_running() -> None:
    """``check`` runs argon2 in a thread: other tasks go on while it works (one verify here is
    made slow on purpose), and a second check of the same PIN comes from the cache."""
    import asyncio

    slow = PinVault(b"p" * 32, PasswordHasher(time_cost=3, memory_cost=65536, parallelism=1))
    stored = slow.hash(PIN)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    running = asyncio.create_task(ticker())
    try:
        assert await slow.check(1, stored, PIN)
    finally:
        running.cancel()
    assert ticks >= 3, ticks  # the loop ran while argon2 worked
    assert await slow.check(1, stored, PIN) and slow.slow_verifies == 1
    assert not await slow.check(1, stored, "135791") and slow.slow_verifies == 1
