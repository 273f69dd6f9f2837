"""Reversal (返销) and invoices (SPEC §7).

A reversal is the exact inverse of a recharge, done by operator staff: the agent gets back
amount − commission, the commission is clawed back, the target is debited the amount. The
facts the rules look at are gathered with the agent locked (one reversal per agent per month
is a count), ``rules.reversal_rule`` decides, and the writes are guarded again (the target's
balance, the recharge still ``succeeded``) so that two concurrent reversals cannot both pass.
A printed invoice blocks reversal.
"""

from __future__ import annotations

from sqlalchemy import func, select, update

from smsmenu.ledger import notices, outbox, queries, rules
from smsmenu.ledger import statements as sql
from smsmenu.ledger.api import AgentStatus, Billing, RechargeView, Refusal, ReversalView, Rule
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.entries import REVERSED, SUCCEEDED
from smsmenu.ledger.models import COMMISSION_EXPENSE, accounts, recharges, subscribers, txns
from smsmenu.ledger.unit_of_work import KeyTaken, claim_key, first_result, unit_of_work


async def mark_invoice_printed(ctx: LedgerContext, tx_id: int) -> RechargeView:
    """An invoice was printed for recharge ``tx_id``: it can no longer be reversed."""
    async with unit_of_work(ctx.engine) as conn:
        result = await conn.execute(
            update(recharges).where(recharges.c.tx_id == tx_id).values(invoice_printed=True)
        )
        if result.rowcount == 0:
            raise Refusal(Rule.RECHARGE_UNKNOWN, tx_id=tx_id)
        await conn.commit()
    return await queries.recharge(ctx.engine, tx_id)


async def reverse(ctx: LedgerContext, tx_id: int, key: str) -> ReversalView:
    """返销: the exact inverse of recharge ``tx_id`` if every rule of SPEC §7 allows it."""
    fingerprint = str(tx_id)
    now = ctx.clock.now()
    try:
        async with unit_of_work(ctx.engine) as conn:
            rec = (await conn.execute(sql.RECHARGE_BY_ID, {"tx_id": tx_id})).first()
            if rec is None:
                raise Refusal(Rule.RECHARGE_UNKNOWN, tx_id=tx_id)
            txn = await claim_key(
                conn,
                key,
                "reversal",
                fingerprint,
                now,
                agent_id=rec.agent_id,
                number=rec.number,
                amount_fen=rec.amount_fen,
                ref=tx_id,
            )
            agent = await queries.locked_agent_context(conn, ctx.postgres, rec.agent_id)
            if agent.status == AgentStatus.CLOSED:
                raise Refusal(Rule.AGENT_CLOSED)
            target = (
                await conn.execute(
                    select(subscribers.c.billing, subscribers.c.account_id, accounts.c.balance)
                    .join(accounts, accounts.c.id == subscribers.c.account_id)
                    .where(subscribers.c.number == rec.number)
                )
            ).one()
            count = (
                await conn.execute(
                    select(func.count())
                    .select_from(txns)
                    .where(
                        txns.c.agent_id == rec.agent_id,
                        txns.c.op == "reversal",
                        txns.c.id != txn,
                        txns.c.created_at >= rules.month_start(now, ctx.zone),
                    )
                )
            ).scalar_one()
            facts = rules.ReversalFacts(
                recharge_at=rec.created_at,
                now=now,
                succeeded=rec.status == SUCCEEDED,
                reversals_this_month=count,
                invoice_printed=rec.invoice_printed,
                target_billing=Billing(target.billing),
                target_balance_fen=target.balance,
                amount_fen=rec.amount_fen,
            )
            rule = rules.reversal_rule(facts, ctx.zone)
            if rule:
                raise Refusal(rule, tx_id=tx_id)
            await conn.execute(
                sql.INSERT_LINES,
                [
                    {"txn_id": txn, "account_id": target.account_id, "amount_fen": -rec.amount_fen},
                    {
                        "txn_id": txn,
                        "account_id": COMMISSION_EXPENSE,
                        "amount_fen": rec.commission_fen,
                    },
                    {"txn_id": txn, "account_id": agent.account_id, "amount_fen": rec.debit_fen},
                ],
            )
            taken = await conn.execute(
                update(accounts)
                .where(accounts.c.id == target.account_id, accounts.c.balance >= rec.amount_fen)
                .values(balance=accounts.c.balance - rec.amount_fen)
            )
            if taken.rowcount != 1:
                raise Refusal(Rule.REVERSAL_TARGET_BALANCE, tx_id=tx_id)
            marked = await conn.execute(
                update(recharges)
                .where(recharges.c.tx_id == tx_id, recharges.c.status == SUCCEEDED)
                .values(status=REVERSED)
            )
            if marked.rowcount != 1:
                raise Refusal(Rule.REVERSAL_NOT_SUCCEEDED, tx_id=tx_id)
            after = (
                (await conn.execute(sql.CREDIT, {"acc": agent.account_id, "amount": rec.debit_fen}))
                .one()
                .available
            )
            await conn.execute(sql.SET_TXN_RESULT, {"txn": txn, "balance_after": after})
            await outbox.add(
                conn,
                notices.reversal_notice(
                    ctx,
                    now=now,
                    key=key,
                    txn=txn,
                    phone=agent.phone,
                    recharge_tx_id=tx_id,
                    number=rec.number,
                    amount_fen=rec.amount_fen,
                    debit_fen=rec.debit_fen,
                    float_after=after,
                ),
            )
            await conn.commit()
    except KeyTaken:
        txn = await first_result(ctx.engine, key, "reversal", fingerprint)
    async with ctx.engine.connect() as conn:
        row = (
            await conn.execute(
                select(txns.c.id, txns.c.balance_after, txns.c.created_at, recharges)
                .join(recharges, recharges.c.tx_id == txns.c.ref)
                .where(txns.c.id == txn)
            )
        ).one()
    return ReversalView(
        tx_id=row.id,
        recharge_tx_id=row.tx_id,
        agent_id=row.agent_id,
        number=row.number,
        amount_fen=row.amount_fen,
        commission_fen=row.commission_fen,
        debit_fen=row.debit_fen,
        float_after_fen=row.balance_after,
        created_at=row.created_at,
    )
