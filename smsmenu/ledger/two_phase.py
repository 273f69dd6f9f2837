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
from datetime import timedelta

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from smsmenu.ledger import admission, notices, outbox, passwords, queries, rules
from smsmenu.ledger import statements as sql
from smsmenu.ledger.api import Kind, RechargeRequest, RechargeView, Refusal, Rule
from smsmenu.ledger.billing import BillingError, Credit
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.entries import FAILED, PENDING, SUCCEEDED, posting_lines, recharge_row
from smsmenu.ledger.models import agents, recharges, resolutions, subscribers, txns
from smsmenu.ledger.unit_of_work import unit_of_work
from smsmenu.messages import Route
from smsmenu.money import format_yuan

_RESOLUTION_FACTS = (
    select(
        txns.c.key,
        agents.c.phone,
        agents.c.account_id.label("float_account"),
        subscribers.c.account_id.label("target_account"),
    )
    .select_from(
        txns.join(recharges, recharges.c.tx_id == txns.c.id)
        .join(agents, agents.c.id == recharges.c.agent_id)
        .join(subscribers, subscribers.c.number == recharges.c.number)
    )
    .where(txns.c.id == bindparam("tx_id"))
)


async def recharge(
    ctx: LedgerContext,
    request: RechargeRequest,
    fingerprint: str,
    retry_of: int | None,
    proof: passwords.Proof | None,
) -> RechargeView:
    """Reserve and commit, credit, then post or void (``proof``: ``passwords.checked``)."""
    now = ctx.clock.now()
    async with unit_of_work(ctx.engine) as conn:
        admitted = await admission.begin(ctx, conn, request, fingerprint, now, proof)
        txn, agent, price = admitted.txn, admitted.agent, admitted.price
        await conn.execute(
            sql.INSERT_RECHARGE, recharge_row(txn, request, price, PENDING, now, None, retry_of)
        )
        reserved = (
            await conn.execute(sql.RESERVE, {"acc": agent.account_id, "amount": price.debit_fen})
        ).scalar()
        if reserved is None:
            raise Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=agent.balance - agent.pending)
        await passwords.settle(conn, passwords.TRADE, agent, admitted.proof, now)
        ctx.fault("reserved")
        await conn.commit()
    ctx.fault("committed")
    outcome, error = await credit(ctx, request.key, request.number, request.kind, price)
    if outcome is None:  # billing answered neither: pending, for ``recover_pending``
        return await queries.recharge(ctx.engine, txn)
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
    now = ctx.clock.now()
    posted = outcome is Credit.CREDITED
    async with unit_of_work(ctx.engine) as conn:
        rec = (await conn.execute(sql.RECHARGE_BY_ID, {"tx_id": txn})).one()
        try:
            await conn.execute(
                insert(resolutions).values(
                    tx_id=txn, outcome="posted" if posted else "voided", created_at=now
                )
            )
        except IntegrityError:  # resolved already (by recovery or a concurrent call)
            await conn.rollback()
            return await queries.recharge(ctx.engine, txn)
        facts = (await conn.execute(_RESOLUTION_FACTS, {"tx_id": txn})).one()
        price = rules.Price(rec.amount_fen, rec.commission_fen)
        target_balance: str | None = None
        if posted:
            await conn.execute(
                sql.INSERT_LINES,
                posting_lines(txn, facts.float_account, facts.target_account, price),
            )
            credited = (
                await conn.execute(
                    sql.CREDIT, {"acc": facts.target_account, "amount": price.amount_fen}
                )
            ).one()
            target_balance = format_yuan(credited.balance)
        statement = sql.POST_RESERVED if posted else sql.VOID_RESERVED
        float_after = (
            await conn.execute(statement, {"acc": facts.float_account, "amount": price.debit_fen})
        ).scalar_one()
        await conn.execute(
            update(recharges)
            .where(recharges.c.tx_id == txn)
            .values(
                status=SUCCEEDED if posted else FAILED,
                float_after_fen=float_after,
                resolved_at=now,
                error=error,
            )
        )
        await outbox.add(
            conn,
            *notices.recharge_result(
                ctx,
                now=now,
                key=facts.key,
                txn=txn,
                agent_id=rec.agent_id,
                agent_phone=facts.phone,
                kind=Kind(rec.kind),
                number=rec.number,
                notify=rec.notify,
                price=price,
                float_after=format_yuan(float_after),
                target_balance=target_balance,
                route=route,
                error=None if posted else (error or "failed"),
            ),
        )
        ctx.fault("resolving")
        await conn.commit()
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
