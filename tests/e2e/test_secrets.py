"""Nothing the product logs or stores reveals a password or a message (SPEC §10).

A known dialogue with passwords runs through the whole product (PostgreSQL and Redis, over
SMPP): a menu recharge confirmed with the trade password, ``YE`` and ``CZ`` shortcuts, a
trade and a management password change. Then every identifier the product wrote — log lines,
every Redis key and value, every column of every table — is brute-forced: for each of the
10^6 six-digit passwords, the unkeyed digests of the texts that carried it are looked for. None
is found. With the secret, the same search finds the password in the keyed fingerprints: the
search works, the secret is what stands in its way.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Iterable

import pytest
from sqlalchemy import MetaData, select

from smsmenu.keys import SecretKeys
from tests.e2e.stack import AGENT, MOBILE, Stack, running_stack
from tests.e2e.test_serve_dialogues import expect_recharge_notices
from tests.ledger_fixtures import MGMT_PIN, TRADE_PIN, truncate
from tests.servers import TEST_SECRET_KEY

pytestmark = pytest.mark.timeout(300)

NEW_TRADE_PIN = "246135"
NEW_MGMT_PIN = "802468"
SERVICE = "10001"
_HEX = re.compile(r"[0-9a-fA-F]{16,}")


#: What came before the password in the dialogue's messages that carried one.
CZ = f"CZ 2 {MOBILE} 20 "
HEADS = (b"", b"YE ", CZ.encode())
#: How an unkeyed identifier could have been made of a message: the text alone, or joined
#: with its addresses.
FORMS = (b"", f"{AGENT}\x1f{SERVICE}\x1f".encode())
PINS = [b"%06d" % p for p in range(10**6)]


def windows(strings: Iterable[str]) -> set[bytes]:
    """Every 8-octet window of every hex run of 16+ digits: a digest written whole,
    truncated or embedded in a longer identifier shows up here."""
    found = set()
    for text in strings:
        for run in _HEX.findall(text):
            raw = run if len(run) % 2 == 0 else run[:-1]
            for start in (0, 1):
                octets = bytes.fromhex(raw[start : start + (len(raw) - start) // 2 * 2])
                found.update(octets[i : i + 8] for i in range(len(octets) - 7))
    return found


def brute_force(
    found: set[bytes],
    digest: Callable[[bytes], bytes],
    tail: bytes = b"",
    forms: Iterable[bytes] = FORMS,
    heads: Iterable[bytes] = HEADS,
) -> list[str]:
    """The passwords ``p`` for which ``digest(form + head + p + tail)``, for any of the forms
    and heads, begins with one of the windows ``found``."""
    hits = []
    for form in forms:
        for head in heads:
            start = form + head
            hits += [p.decode() for p in PINS if digest(start + p + tail)[:8] in found]
    return hits


async def dialogue(stack: Stack) -> None:
    for text in ("x", "1", "1", "1", "2", MOBILE, "50"):
        await stack.say(text)
    stack.send(TRADE_PIN)
    await expect_recharge_notices(stack, MOBILE, 50, MOBILE)
    assert "余额" in await stack.say(f"YE {TRADE_PIN}")
    stack.send(CZ + TRADE_PIN)
    await expect_recharge_notices(stack, MOBILE, 20, MOBILE)
    for text in ("x", "1", "1", "3", "2", TRADE_PIN, NEW_TRADE_PIN):
        await stack.say(text)
    assert "成功" in await stack.say(NEW_TRADE_PIN)
    for text in ("x", "1", "1", "4", "1", MGMT_PIN, NEW_MGMT_PIN):
        await stack.say(text)
    assert "成功" in await stack.say(NEW_MGMT_PIN)


async def everything_written(stack: Stack, prefix: str, logs: str) -> list[str]:
    """The log lines, every Redis key and value under ``prefix``, every value of every
    column of every table: as strings."""
    written = logs.splitlines()
    client = stack.server.store.client  # type: ignore[attr-defined]
    async for raw_key in client.scan_iter(match=f"{prefix}*"):
        key = raw_key.decode()
        written.append(key)
        kind = (await client.type(key)).decode()
        if kind == "string":
            written.append(repr(await client.get(key)))
        elif kind == "hash":
            written += [repr(v) for pair in (await client.hgetall(key)).items() for v in pair]
        elif kind == "zset":
            written += [repr(v) for v in await client.zrange(key, 0, -1)]
    metadata = MetaData()
    async with stack.server.ledger.engine.connect() as conn:
        await conn.run_sync(metadata.reflect)
        for table in metadata.sorted_tables:
            for row in (await conn.execute(select(table))).all():
                written += [str(value) for value in row]
    return written


async def test_no_identifier_reveals_a_password(
    ledger_pg_url: str, redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    await truncate(ledger_pg_url)
    caplog.set_level(logging.DEBUG, logger="smsmenu")
    async with running_stack(ledger_pg_url, redis_url, store_prefix=redis_prefix) as stack:
        await dialogue(stack)
        written = await everything_written(stack, redis_prefix, caplog.text)
    everything = "\n".join(written)
    for secret in (TRADE_PIN, NEW_TRADE_PIN, MGMT_PIN, NEW_MGMT_PIN):
        assert secret not in everything, f"{secret} written in clear"
    found = windows(written)
    assert len(found) > 100  # there are identifiers to look at

    assert brute_force(found, lambda message: hashlib.sha256(message).digest()) == []

    # with the secret, the fingerprint of the CZ (kept in its idempotency key) is found
    key = SecretKeys(TEST_SECRET_KEY.encode()).derive("inbound")
    assert TRADE_PIN in brute_force(
        found,
        lambda message: hmac.digest(key, message, hashlib.sha256),
        tail=b"\x1f",
        forms=FORMS[1:],
        heads=HEADS[2:],
    )
