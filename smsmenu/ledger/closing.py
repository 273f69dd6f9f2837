"""销户 of a subscriber account (SPEC §8): from the phone with a verification code, or at the
counter without one (staff check identity in person). The same rules either way: refused while
anything is owed (CLOSE_OWED, naming the amount) or while the number is an agent's bound phone
(CLOSE_BOUND_PHONE); a positive remainder is booked to the refunds account (``models.REFUNDS``:
owed back to the subscriber); the number is ``closed`` for good and gets a confirmation SMS.

The code: 6 random digits sent by SMS through the outbox (so never in a log line), kept only as
an HMAC under a key derived from ``SECRET_KEY`` (purpose ``closing-code``), valid 5 minutes and
for 3 tries: each try is a guarded write that takes one (committed before the comparison, so
concurrent guesses get at most 3 comparisons); then, or after 5 minutes, a new code is needed.
Asking for a new code replaces the old one.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from datetime import timedelta

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from smsmenu.ledger import outbox, queries
from smsmenu.ledger import statements as sql
from smsmenu.ledger.api import ClosedView, Refusal, Rule, SubscriberStatus, SubscriberView
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.models import (
    REFUNDS,
    UTCDateTime,
    accounts,
    agents,
    closing_codes,
    subscribers,
    txns,
)
from smsmenu.ledger.unit_of_work import KeyTaken, claim_key, first_result, unit_of_work
from smsmenu.messages import SMS, Route
from smsmenu.money import format_yuan

CODE_VALID = timedelta(minutes=5)
CODE_TRIES = 3

_TAKE_TRY = (
    update(closing_codes)
    .where(
        closing_codes.c.number == bindparam("b_number"),
        closing_codes.c.tries > 0,
        closing_codes.c.expires_at > bindparam("now", type_=UTCDateTime()),
    )
    .values(tries=closing_codes.c.tries - 1)
    .returning(closing_codes.c.code_hash, closing_codes.c.tries)
)


def _mac(ctx: LedgerContext, number: str, code: str) -> str:
    return ctx.keys.mac("closing-code", number, code)


async def _rules(conn: AsyncConnection, number: str) -> tuple[int, int]:
    """The number's account and balance, if it may be closed (read with the rows locked on
    PostgreSQL); else the refusal."""
    row = (
        await conn.execute(
            select(subscribers.c.status, subscribers.c.account_id, accounts.c.balance)
            .join(accounts, accounts.c.id == subscribers.c.account_id)
            .where(subscribers.c.number == number)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise Refusal(Rule.TARGET_UNKNOWN, number=number)
    if row.status == SubscriberStatus.CLOSED:
        raise Refusal(Rule.SUBSCRIBER_CLOSED, number=number)
    if row.balance < 0:
        raise Refusal(Rule.CLOSE_OWED, owed_fen=-row.balance)
    bound = (await conn.execute(select(agents.c.id).where(agents.c.bound_phone == number))).first()
    if bound is not None:
        raise Refusal(Rule.CLOSE_BOUND_PHONE, number=number)
    return int(row.account_id), int(row.balance)


async def check(ctx: LedgerContext, number: str) -> SubscriberView:
    """The account as 销户 shows it first, if it may be closed; else the refusal."""
    async with ctx.engine.connect() as conn:
        await _rules(conn, number)
    view = await queries.subscriber(ctx.engine, number, ctx.today())
    assert view is not None
    return view


async def send_code(ctx: LedgerContext, number: str, route: Route | None) -> SubscriberView:
    """Check the rules, then store a new code (replacing any) and queue its SMS."""
    code = f"{secrets.randbelow(1_000_000):06d}"
    now = ctx.clock.now()
    async with unit_of_work(ctx.engine) as conn:
        await conn.execute(delete(closing_codes).where(closing_codes.c.number == number))
        await conn.execute(
            insert(closing_codes).values(
                number=number,
                code_hash=_mac(ctx, number, code),
                expires_at=now + CODE_VALID,
                tries=CODE_TRIES,
            )
        )
        await _rules(conn, number)
        await outbox.add(
            conn,
            outbox.row(
                now=now,
                source=ctx.service_number,
                destination=number,
                text=ctx.text("notice_closing_code", code=code),
                kind="closing_code",
                dedup_key=f"closing-code:{number}:{uuid.uuid4().hex}",
                route=SMS,
            ),
        )
        await conn.commit()
    ctx.queued()
    view = await queries.subscriber(ctx.engine, number, ctx.today())
    assert view is not None
    return view


async def _try_code(ctx: LedgerContext, number: str, code: str) -> str:
    """Take one try (committed) and compare; the code's hash if right, else the refusal."""
    async with unit_of_work(ctx.engine) as conn:
        taken = (
            await conn.execute(_TAKE_TRY, {"b_number": number, "now": ctx.clock.now()})
        ).first()
        await conn.commit()
    if taken is None:
        raise Refusal(Rule.CLOSE_CODE_EXPIRED)
    if not hmac.compare_digest(taken.code_hash, _mac(ctx, number, code)):
        if taken.tries == 0:
            raise Refusal(Rule.CLOSE_CODE_EXPIRED)
        raise Refusal(Rule.CLOSE_CODE_WRONG, remaining=taken.tries)
    return str(taken.code_hash)


async def close(
    ctx: LedgerContext, number: str, key: str, code: str | None, route: Route | None
) -> ClosedView:
    """Close ``number`` (see the module notes); a repeat of ``key`` gets the first result."""
    fingerprint = number
    try:
        txn = await first_result(ctx.engine, key, "subscriber_close", fingerprint)
    except Refusal:
        txn = None
    if txn is None:
        code_hash = None if code is None else await _try_code(ctx, number, code)
        try:
            txn = await _close(ctx, number, key, fingerprint, code_hash, route)
        except KeyTaken:
            txn = await first_result(ctx.engine, key, "subscriber_close", fingerprint)
    row = await queries.txn(ctx.engine, txn)
    return ClosedView(row.id, number, row.amount_fen, row.created_at)


async def _close(
    ctx: LedgerContext,
    number: str,
    key: str,
    fingerprint: str,
    code_hash: str | None,
    route: Route | None,
) -> int:
    now = ctx.clock.now()
    async with unit_of_work(ctx.engine) as conn:
        txn = await claim_key(conn, key, "subscriber_close", fingerprint, now, number=number)
        if code_hash is not None:
            used = await conn.execute(
                delete(closing_codes).where(
                    closing_codes.c.number == number, closing_codes.c.code_hash == code_hash
                )
            )
            if used.rowcount == 0:  # a new code was asked for meanwhile
                raise Refusal(Rule.CLOSE_CODE_EXPIRED)
        account, refund = await _rules(conn, number)
        if refund:
            await conn.execute(
                sql.INSERT_LINES,
                [
                    {"txn_id": txn, "account_id": account, "amount_fen": -refund},
                    {"txn_id": txn, "account_id": REFUNDS, "amount_fen": refund},
                ],
            )
            await conn.execute(
                update(accounts)
                .where(accounts.c.id == account, accounts.c.balance == refund)
                .values(balance=0)
            )
        await conn.execute(
            update(subscribers)
            .where(subscribers.c.number == number)
            .values(status=SubscriberStatus.CLOSED.value)
        )
        await conn.execute(delete(closing_codes).where(closing_codes.c.number == number))
        await conn.execute(update(txns).where(txns.c.id == txn).values(amount_fen=refund))
        await outbox.add(
            conn,
            outbox.row(
                now=now,
                source=ctx.service_number,
                destination=number,
                text=ctx.text("notice_closed", number=number, refund=format_yuan(refund)),
                kind="subscriber_closed",
                dedup_key=f"{key}:subscriber_closed",
                ref=txn,
                route=route or SMS,
            ),
        )
        await conn.commit()
    return txn
