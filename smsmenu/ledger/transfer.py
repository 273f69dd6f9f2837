"""转入个人手机: the agent moves float to its bound phone's own prepaid account (SPEC §4): the
recharge amount rules, no commission, the trade password, one way; debit last and guarded.
A prepaid phone's validity is extended as by any top-up (``holdings``)."""

from __future__ import annotations

from sqlalchemy import update

from smsmenu.ledger import admission, holdings, notices, outbox, passwords, queries, rules
from smsmenu.ledger import statements as sql
from smsmenu.ledger.api import Refusal, Rule, TransferView
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.models import txns
from smsmenu.ledger.unit_of_work import KeyTaken, claim_key, first_result, unit_of_work
from smsmenu.messages import Route


async def transfer_to_phone(
    ctx: LedgerContext,
    agent_id: int,
    amount_fen: int,
    pin: str,
    key: str,
    reply_route: Route | None = None,
) -> TransferView:
    """Move float to the bound phone's own account (no commission, recharge amounts)."""
    rule = rules.recharge_amount_rule(amount_fen)
    if rule:
        raise Refusal(rule)
    passwords.pin_format(pin)
    fingerprint = f"{agent_id}|{amount_fen}"

    async def move(proof: passwords.Proof | None) -> int:
        now = ctx.clock.now()
        async with unit_of_work(ctx.engine) as conn:
            txn = await claim_key(
                conn, key, "transfer", fingerprint, now, agent_id=agent_id, amount_fen=amount_fen
            )
            agent = await queries.agent_context(conn, agent_id)
            admission.agent_can_trade(agent)
            proof = passwords.admit(ctx, passwords.TRADE, agent, pin, now, proof)
            admission.funds(agent.balance - agent.pending, amount_fen)
            await conn.execute(
                sql.INSERT_LINES,
                [
                    {"txn_id": txn, "account_id": agent.phone_account, "amount_fen": amount_fen},
                    {"txn_id": txn, "account_id": agent.account_id, "amount_fen": -amount_fen},
                ],
            )
            await conn.execute(sql.CREDIT, {"acc": agent.phone_account, "amount": amount_fen})
            valid_until = await holdings.extend_validity(conn, ctx, agent.phone, amount_fen)
            after = (
                await conn.execute(
                    sql.DEBIT_GUARDED, {"acc": agent.account_id, "amount": amount_fen}
                )
            ).scalar()
            if after is None:  # a concurrent recharge took the money first
                raise Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=agent.balance - agent.pending)
            await passwords.settle(conn, passwords.TRADE, agent, proof, now)
            await conn.execute(
                update(txns).where(txns.c.id == txn).values(number=agent.phone, balance_after=after)
            )
            await outbox.add(
                conn,
                notices.transfer_result(
                    ctx,
                    now=now,
                    key=key,
                    txn=txn,
                    phone=agent.phone,
                    amount_fen=amount_fen,
                    float_after=after,
                    valid_until=valid_until,
                    route=reply_route,
                ),
            )
            await conn.commit()
        return txn

    try:
        txn = await passwords.checked(ctx, passwords.TRADE, agent_id, pin, move)
    except KeyTaken:
        txn = await first_result(ctx.engine, key, "transfer", fingerprint)
    row = await queries.txn(ctx.engine, txn)
    return TransferView(
        row.id, row.agent_id, row.number, row.amount_fen, row.balance_after, row.created_at
    )
