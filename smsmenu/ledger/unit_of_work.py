"""The unit of work and the idempotency key, the two things every money operation starts with.

``unit_of_work`` is one transaction that rolls back unless the block called ``commit()``
(cosmicpython's unit of work): a ``Refusal`` raised inside leaves nothing behind.

Every money operation first inserts its ``txns`` row, whose ``key`` (the caller's idempotency
key) is unique: the key is stored before anything moves, in the same transaction as the money
(TigerBeetle: ids chosen by the caller and stored before acting). A second call with the same
key hits the unique index (``KeyTaken``), rolls back, and gets the first result when its fields
are the same (same ``fingerprint``), else ``Refusal(KEY_REUSED)``. On PostgreSQL a concurrent
duplicate waits on the index entry until the first transaction ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from smsmenu.ledger.api import Refusal, Rule
from smsmenu.ledger.statements import INSERT_TXN, KEY_LOOKUP

MAX_KEY_LENGTH = 200


class KeyTaken(Exception):
    """The idempotency key is stored already: the caller looks up the first result."""


@asynccontextmanager
async def unit_of_work(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One transaction; it rolls back unless the block called ``conn.commit()``."""
    async with engine.connect() as conn:
        await conn.begin()
        try:
            yield conn
        finally:
            if conn.in_transaction():
                await conn.rollback()


def check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"an idempotency key is 1 to {MAX_KEY_LENGTH} characters")


async def claim_key(
    conn: AsyncConnection,
    key: str,
    op: str,
    fingerprint: str,
    now: datetime,
    agent_id: int | None = None,
    number: str | None = None,
    amount_fen: int = 0,
    ref: int | None = None,
) -> int:
    """Store the idempotency key (the txn header) before acting; ``KeyTaken`` if taken."""
    check_key(key)
    try:
        result = await conn.execute(
            INSERT_TXN,
            {
                "key": key,
                "op": op,
                "fingerprint": fingerprint,
                "agent_id": agent_id,
                "number": number,
                "amount_fen": amount_fen,
                "ref": ref,
                "created_at": now,
            },
        )
    except IntegrityError:
        raise KeyTaken from None
    return int(result.scalar_one())


async def stored_key(engine: AsyncEngine, key: str) -> Any:
    """The txn row (id, op, fingerprint) stored under ``key``, if any."""
    async with engine.connect() as conn:
        return (await conn.execute(KEY_LOOKUP, {"key": key})).first()


async def first_result(engine: AsyncEngine, key: str, op: str, fingerprint: str) -> int:
    """The txn id stored under ``key`` for the same operation, or ``KEY_REUSED``."""
    row = await stored_key(engine, key)
    if row is None:  # the holder rolled back meanwhile: the caller may run again
        raise Refusal(Rule.KEY_REUSED, key=key)
    if row.op != op or row.fingerprint != fingerprint:
        raise Refusal(Rule.KEY_REUSED, key=key)
    return int(row.id)
