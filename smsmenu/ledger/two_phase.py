"""Recharges through an external billing backend: reserve, credit, then post or void.

TigerBeetle's pending → post | void. The reservation (``accounts.pending``, a ``pending``
recharge row) commits first; the backend is credited (idempotently, by the same key); then a
second transaction inserts the ``resolutions`` row — at most once per recharge, its primary key
is the recharge — and posts or voids. ``recover_pending`` asks the backend what became of
reservations a crash left behind and resolves them the same way, so no fen is lost or created.
A time-out is never taken as a failure without asking ``status`` first: a late credit must be
posted, not voided. When ``status`` does not answer either, the outcome is unknown and nothing
is guessed: the recharge stays pending (its reservation kept, the agent told that the result
follows by SMS) until the recovery pass gets an answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import bindparam, select

from smsmenu.ledger import notices, passwords, queries, rules
from smsmenu.ledger.api import Kind, RechargeRequest, RechargeView
from smsmenu.ledger.billing import BillingError, Credit
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.entries import PENDING
from smsmenu.ledger.models import agents, recharges, txns
from smsmenu.ledger.recharge_plan import Validity
from smsmenu.ledger.writer import RechargeOp, Resolution
from smsmenu.messages import Route

_RESOLUTION_FACTS = (
    select(recharges, txns.c.key, agents.c.phone)
    .join(txns, txns.c.id == recharges.c.tx_id)
    .join(agents, agents.c.id == recharges.c.agent_id)
    .where(recharges.c.tx_id == bindparam("tx_id"))
)


async def recharge(
    ctx: LedgerContext,
    request: RechargeRequest,
    fingerprint: str,
    before_check: Callable[[], Awaitable[None]] | None = None,
) -> RechargeView:
    """Reserve (the writer, its password counted first if the cache does not know it, after
    ``before_check``), credit, then post or void."""
    written = await passwords.checked(
        ctx,
        passwords.TRADE,
        request.agent_id,
        request.pin,
        lambda proof: ctx.writer.reserve(RechargeOp(request, fingerprint, proof, None)),
        before_check=before_check,
    )
    assert written.view is not None
    txn, price = written.txn, rules.Price(written.view.amount_fen, written.view.commission_fen)
    ctx.fault("committed")
    outcome, error = await credit(ctx, request.key, request.number, request.kind, price)
    if outcome is None:  # billing answered neither: pending, for ``recover_pending``
        return written.view
    ctx.fault("credited")
    return await resolve(ctx, txn, outcome, error, request.reply_route)


async def credit(
    ctx: LedgerContext, key: str, number: str, kind: Kind, price: rules.Price
) -> tuple[Credit | None, str | None]:
    """Ask billing to credit; on a time-out or error ask once what became of the key
    (a late credit must be posted, not voided), and void only if it did not happen.
    None: billing answered neither, the outcome is unknown."""
    try:
        outcome = await asyncio.wait_for(
            ctx.billing.credit(key, number, kind.value, price.amount_fen), ctx.billing_timeout_s
        )
    except (TimeoutError, BillingError) as exc:
        error = "billing timed out" if isinstance(exc, TimeoutError) else f"billing: {exc}"
        try:
            outcome = await asyncio.wait_for(ctx.billing.status(key), ctx.billing_timeout_s)
        except (TimeoutError, BillingError):
            return None, None
        if outcome is Credit.CREDITED:
            return outcome, None
        return Credit.FAILED, error[:200]
    if outcome is Credit.CREDITED:
        return outcome, None
    return Credit.FAILED, "billing refused the credit"


async def resolve(
    ctx: LedgerContext, txn: int, outcome: Credit, error: str | None, route: Route | None
) -> RechargeView:
    """Post (credited) or void (anything else) the reservation of recharge ``txn``, once."""
    posted = outcome is Credit.CREDITED
    async with ctx.engine.connect() as conn:
        rec = (await conn.execute(_RESOLUTION_FACTS, {"tx_id": txn})).one()
    rows = notices.recharge_result(
        ctx,
        now=ctx.clock.now(),
        key=rec.key,
        txn=txn,
        agent_id=rec.agent_id,
        agent_phone=rec.phone,
        kind=Kind(rec.kind),
        number=rec.number,
        notify=rec.notify,
        price=rules.Price(rec.amount_fen, rec.commission_fen),
        float_after=notices.MARK,
        target_balance=notices.MARK if posted else None,
        route=route,
        error=None if posted else (error or "failed"),
    )
    validity = Validity.of(ctx, rec.amount_fen)
    resolution = Resolution(txn, posted, error, tuple(rows), ctx.claim(), validity)
    written = await ctx.writer.resolve(resolution)
    if written is not None:
        ctx.committed(written.notices)
    return await queries.recharge(ctx.engine, txn)


async def recover_pending(ctx: LedgerContext, older_than_s: float = 60.0) -> list[RechargeView]:
    """Resolve reservations left pending (by a crash) for at least ``older_than_s``: post those
    the billing backend credited, void the rest. The grace period keeps it off recharges
    another worker is still completing."""
    cutoff = ctx.clock.now() - timedelta(seconds=older_than_s)
    async with ctx.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(recharges.c.tx_id, txns.c.key)
                .join(txns, txns.c.id == recharges.c.tx_id)
                .where(recharges.c.status == PENDING, recharges.c.created_at <= cutoff)
                .order_by(recharges.c.tx_id)
            )
        ).all()
    resolved = []
    for row in rows:
        if ctx.billing.internal:
            outcome = Credit.FAILED
        else:
            try:
                outcome = await asyncio.wait_for(ctx.billing.status(row.key), ctx.billing_timeout_s)
            except (TimeoutError, BillingError):
                continue  # ask again on the next pass; never guess
        error = None if outcome is Credit.CREDITED else "recovered: not credited"
        resolved.append(await resolve(ctx, row.tx_id, outcome, error, None))
    return resolved
