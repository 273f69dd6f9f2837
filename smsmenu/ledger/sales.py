"""An agent sells a data pack or plan (``products``) from its float: ``CZ 5 <number> <item
code> <trade password>``. Not a recharge (no credit to the target's balance, nothing for
billing, no validity): the float pays the item's price less the commission (the same rate as a
recharge), the commission expense the commission, and the price goes to the add-on sales; the
target, an active mobile subscriber, holds the item (``allowances``). One unit of work behind
the trade password (``passwords``), debit last and guarded, the agent's result and the target's
receipt in the outbox."""

from __future__ import annotations

from sqlalchemy import select, update

from smsmenu.ledger import admission, holdings, notices, outbox, passwords, queries, rules
from smsmenu.ledger import statements as sql
from smsmenu.ledger.api import Kind, Refusal, Rule, SaleView
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.models import ADDON_SALES, COMMISSION_EXPENSE, lines, txns
from smsmenu.ledger.unit_of_work import KeyTaken, claim_key, first_result, unit_of_work
from smsmenu.messages import Route


async def sell(
    ctx: LedgerContext,
    agent_id: int,
    number: str,
    item_code: str,
    pin: str,
    key: str,
    reply_route: Route | None = None,
) -> SaleView:
    """Sell the item ``item_code`` to ``number`` from the agent's float."""
    item = ctx.products.item(item_code)
    if item is None:
        raise Refusal(Rule.ITEM_UNKNOWN, code=item_code)
    if rules.number_rule(Kind.MOBILE, number):
        raise Refusal(Rule.BAD_NUMBER, number=number)
    passwords.pin_format(pin)
    fingerprint = f"{agent_id}|{number}|{item.code}"

    async def move(proof: passwords.Proof | None) -> int:
        now, today = ctx.clock.now(), ctx.today()
        async with unit_of_work(ctx.engine) as conn:
            txn = await claim_key(
                conn,
                key,
                "sale",
                fingerprint,
                now,
                agent_id=agent_id,
                number=number,
                amount_fen=item.price_fen,
            )
            agent = await queries.agent_context(conn, agent_id, number)
            admission.agent_can_trade(agent)
            proof = passwords.admit(ctx, passwords.TRADE, agent, pin, now, proof)
            admission.target(agent.t_kind, agent.t_status, Kind.MOBILE, number)
            price = rules.price(item.price_fen, agent.commission_bp)
            admission.funds(agent.balance - agent.pending, price.debit_fen)
            await conn.execute(
                sql.INSERT_LINES,
                [
                    {"txn_id": txn, "account_id": ADDON_SALES, "amount_fen": price.amount_fen},
                    {
                        "txn_id": txn,
                        "account_id": COMMISSION_EXPENSE,
                        "amount_fen": -price.commission_fen,
                    },
                    {"txn_id": txn, "account_id": agent.account_id, "amount_fen": -price.debit_fen},
                ],
            )
            await holdings.grant(conn, number, item, txn, today, now)
            after = (
                await conn.execute(
                    sql.DEBIT_GUARDED, {"acc": agent.account_id, "amount": price.debit_fen}
                )
            ).scalar()
            if after is None:  # a concurrent recharge took the money first
                raise Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=agent.balance - agent.pending)
            await passwords.settle(conn, passwords.TRADE, agent, proof, now)
            await conn.execute(update(txns).where(txns.c.id == txn).values(balance_after=after))
            await outbox.add(
                conn,
                *notices.sale_result(
                    ctx,
                    now=now,
                    key=key,
                    txn=txn,
                    agent_id=agent_id,
                    agent_phone=agent.phone,
                    number=number,
                    item=item,
                    price=price,
                    float_after=after,
                    route=reply_route,
                ),
            )
            await conn.commit()
        return txn

    try:
        txn = await passwords.checked(ctx, passwords.TRADE, agent_id, pin, move)
    except KeyTaken:
        txn = await first_result(ctx.engine, key, "sale", fingerprint)
    row = await queries.txn(ctx.engine, txn)
    async with ctx.engine.connect() as conn:
        paid = select(lines.c.amount_fen).where(
            lines.c.txn_id == txn, lines.c.account_id == COMMISSION_EXPENSE
        )
        commission = -int((await conn.execute(paid)).scalar_one())
    return SaleView(
        row.id,
        agent_id,
        row.number,
        item.code,
        row.amount_fen,
        commission,
        row.amount_fen - commission,
        row.balance_after,
        row.created_at,
    )
