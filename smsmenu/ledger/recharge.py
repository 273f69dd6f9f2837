"""A recharge (SPEC §3), one at a time: the path every recharge can take, its quote and its
retry.

With the internal billing backend the subscriber account is in this database, so reserve,
credit and post are one transaction (``at_once``): no state in between can survive a crash.
The float's guarded debit is its last money write, so a hot float's row lock is held for as
short a time as possible; on PostgreSQL ``recharge_pg`` does the same in two statements. With
an external backend ``two_phase`` reserves, credits, then posts or voids. ``run`` picks the
path, has the trade password counted first where the verify cache does not know it
(``passwords.checked``) and turns a taken key into the first result. Group commit
(``group_commit``) batches concurrent recharges and falls back on ``run``.
"""

from __future__ import annotations

from typing import NoReturn

from sqlalchemy import bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsmenu.ledger import (
    admission,
    notices,
    outbox,
    passwords,
    queries,
    recharge_pg,
    rules,
    two_phase,
    views,
)
from smsmenu.ledger import statements as sql
from smsmenu.ledger.api import Kind, Quote, RechargeRequest, RechargeView, Refusal, Rule
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.entries import (
    FAILED,
    PENDING,
    REVERSED,
    SUCCEEDED,
    posting_lines,
    recharge_row,
)
from smsmenu.ledger.models import recharges
from smsmenu.ledger.unit_of_work import KeyTaken, first_result, stored_key, unit_of_work
from smsmenu.messages import Route
from smsmenu.money import format_yuan


async def run(
    ctx: LedgerContext, request: RechargeRequest, fingerprint: str, retry_of: int | None = None
) -> RechargeView:
    """One recharge on the path its billing backend calls for; a repeat of its key gets the
    first result (or KEY_REUSED), a trade password the cache does not know is counted first."""
    admission.check_request(request)
    try:
        if ctx.billing.internal and ctx.postgres:
            return await recharge_pg.recharge(ctx, request, fingerprint, retry_of)
        path = at_once if ctx.billing.internal else two_phase.recharge
        return await passwords.checked(
            ctx,
            passwords.TRADE,
            request.agent_id,
            request.pin,
            lambda proof: path(ctx, request, fingerprint, retry_of, proof),
        )
    except KeyTaken:
        txn = await first_result(ctx.engine, request.key, "recharge", fingerprint)
        return await queries.recharge(ctx.engine, txn)


async def at_once(
    ctx: LedgerContext,
    request: RechargeRequest,
    fingerprint: str,
    retry_of: int | None,
    proof: passwords.Proof | None,
) -> RechargeView:
    """Internal billing: reserve, credit and post in one transaction (debit last)."""
    now = ctx.clock.now()
    async with unit_of_work(ctx.engine) as conn:
        admitted = await admission.begin(ctx, conn, request, fingerprint, now, proof)
        txn, agent, price = admitted.txn, admitted.agent, admitted.price
        await conn.execute(
            sql.INSERT_LINES, posting_lines(txn, agent.account_id, agent.t_account, price)
        )
        target_balance = (
            (await conn.execute(sql.CREDIT, {"acc": agent.t_account, "amount": price.amount_fen}))
            .one()
            .balance
        )
        ctx.fault("credited")
        float_after = (
            await conn.execute(
                sql.DEBIT_GUARDED, {"acc": agent.account_id, "amount": price.debit_fen}
            )
        ).scalar()
        if float_after is None:  # a concurrent recharge took the money first
            raise Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=agent.balance - agent.pending)
        await passwords.settle(conn, passwords.TRADE, agent, admitted.proof, now)
        ctx.fault("posting")
        row = recharge_row(txn, request, price, SUCCEEDED, now, float_after, retry_of)
        await conn.execute(sql.INSERT_RECHARGE, row)
        await outbox.add(
            conn,
            *notices.recharge_result(
                ctx,
                now=now,
                key=request.key,
                txn=txn,
                agent_id=request.agent_id,
                agent_phone=agent.phone,
                kind=request.kind,
                number=request.number,
                notify=request.notify,
                price=price,
                float_after=format_yuan(float_after),
                target_balance=format_yuan(target_balance),
                route=request.reply_route,
            ),
        )
        await conn.commit()
    return views.recharge(row)


async def quote(
    ctx: LedgerContext, agent_id: int, kind: Kind, number: str, amount_fen: int, notify: str | None
) -> Quote:
    """Check everything a recharge checks except the password, and price it."""
    admission.request_fields(kind, number, amount_fen, notify)
    async with ctx.engine.connect() as conn:
        agent = await queries.agent_context(conn, agent_id, number, notify)
    admission.agent_can_trade(agent)
    locked = passwords.TRADE.lock_of(agent, ctx.clock.now())
    if locked is not None:
        raise Refusal(Rule.PIN_LOCKED, until=locked)
    admission.target(agent.t_kind, agent.t_status, kind, number)
    admission.notify(agent.n_kind, agent.n_status, notify)
    price = rules.price(amount_fen, agent.commission_bp)
    admission.funds(agent.balance - agent.pending, price.debit_fen)
    return Quote(number, kind, amount_fen, price.commission_fen, price.debit_fen, notify)


# ---- retry (重复充值) -------------------------------------------------------------------------

_later = recharges.alias("later")
_RETRY_CANDIDATES = (
    select(recharges)
    .where(
        recharges.c.agent_id == bindparam("agent_id"),
        recharges.c.status == FAILED,
        recharges.c.created_at >= bindparam("since", type_=recharges.c.created_at.type),
        ~exists().where(  # not superseded by a later recharge of the same target and amount
            _later.c.agent_id == recharges.c.agent_id,
            _later.c.number == recharges.c.number,
            _later.c.amount_fen == recharges.c.amount_fen,
            _later.c.tx_id > recharges.c.tx_id,
            _later.c.status.in_((SUCCEEDED, REVERSED, PENDING)),
        ),
    )
    .order_by(recharges.c.tx_id.desc())
)


async def retry_list(ctx: LedgerContext, agent_id: int) -> list[RechargeView]:
    """Failed recharges of the last 24 hours not since succeeded, newest first (one per
    target and amount)."""
    since = ctx.clock.now() - rules.RETRY_WINDOW
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(_RETRY_CANDIDATES, {"agent_id": agent_id, "since": since})).all()
    seen: set[tuple[str, str, int]] = set()
    found = []
    for row in rows:
        ident = (row.number, row.kind, row.amount_fen)
        if ident not in seen:
            seen.add(ident)
            found.append(views.recharge(row._mapping))
    return found


async def retry(
    ctx: LedgerContext,
    agent_id: int,
    tx_id: int,
    pin: str,
    key: str,
    reply_route: Route | None = None,
) -> RechargeView:
    """Run a failed recharge of the retry list again, as a new recharge."""
    fingerprint = f"retry|{agent_id}|{tx_id}"
    if await stored_key(ctx.engine, key) is not None:
        txn = await first_result(ctx.engine, key, "recharge", fingerprint)
        return await queries.recharge(ctx.engine, txn)
    if tx_id not in {view.tx_id for view in await retry_list(ctx, agent_id)}:
        await _not_retryable(ctx.engine, agent_id, tx_id)
    failed = await queries.recharge(ctx.engine, tx_id)
    request = RechargeRequest(
        agent_id=agent_id,
        kind=failed.kind,
        number=failed.number,
        amount_fen=failed.amount_fen,
        pin=pin,
        key=key,
        notify=failed.notify,
        reply_route=reply_route,
    )
    return await run(ctx, request, fingerprint, tx_id)


async def _not_retryable(engine: AsyncEngine, agent_id: int, tx_id: int) -> NoReturn:
    try:
        found = await queries.recharge(engine, tx_id)
    except Refusal:
        found = None
    if found is None or found.agent_id != agent_id:
        raise Refusal(Rule.RECHARGE_UNKNOWN, tx_id=tx_id)
    raise Refusal(Rule.NOT_RETRYABLE, tx_id=tx_id)
