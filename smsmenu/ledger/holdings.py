"""What a subscriber holds besides its balance (SPEC §8), written inside the operation's
unit of work: its prepaid validity (有效期: every top-up of a prepaid number extends it by the
days of its amount band, ``products``, never shortening it; one already past runs from today)
and the data packs and plans it bought (``allowances``)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from smsmenu.ledger.api import Billing
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.models import allowances, subscribers
from smsmenu.ledger.products import Item


async def extend_validity(
    conn: AsyncConnection, ctx: LedgerContext, number: str, amount_fen: int
) -> date | None:
    """In the top-up's transaction (after its first write, so that SQLite's write lock holds;
    the row is locked on PostgreSQL): the number's validity after a top-up of ``amount_fen``
    (None for a postpaid or unknown number)."""
    row = (
        await conn.execute(
            select(subscribers.c.billing, subscribers.c.valid_until)
            .where(subscribers.c.number == number)
            .with_for_update()
        )
    ).first()
    if row is None or row.billing != Billing.PREPAID:
        return None
    extended = ctx.products.extended(row.valid_until, ctx.today(), amount_fen)
    if extended != row.valid_until:
        await conn.execute(
            update(subscribers).where(subscribers.c.number == number).values(valid_until=extended)
        )
    return extended


async def grant(
    conn: AsyncConnection, number: str, item: Item, txn: int, today: date, now: datetime
) -> None:
    """``number`` holds ``item`` from ``today`` (bought in ``txn``)."""
    await conn.execute(
        insert(allowances).values(
            number=number,
            code=item.code,
            kind=item.kind,
            data_mb=item.data_mb,
            valid_until=item.valid_until(today),
            txn_id=txn,
            created_at=now,
        )
    )
