"""A recharge (SPEC §3): the one path every recharge takes, its quote and its retry.

``run`` takes a recharge from anywhere — the menus, a shortcut, the command line, a retry —
checks its fields, has it written by its database's writer (``writer``: planned once, written
in one transaction) with the trade password counted first where the verify cache does not know
it (``passwords.checked``), turns a taken key into the first result, and hands the notices its
writer claimed for this worker to its sender (``LedgerContext.committed``). Through an external
billing system the recharge is reserved, credited, then posted or voided (``two_phase``).
"""

from __future__ import annotations

from typing import NoReturn

from sqlalchemy import bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsmenu.ledger import admission, passwords, queries, rules, two_phase, views
from smsmenu.ledger.api import Kind, Quote, RechargeRequest, RechargeView, Refusal, Rule
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.entries import FAILED, PENDING, REVERSED, SUCCEEDED
from smsmenu.ledger.models import recharges
from smsmenu.ledger.unit_of_work import KeyTaken, first_result, stored_key
from smsmenu.ledger.writer import RechargeOp
from smsmenu.messages import Route


async def run(ctx: LedgerContext, request: RechargeRequest, fingerprint: str) -> RechargeView:
    """One recharge on the path its billing backend calls for; a repeat of its key gets the
    first result (or KEY_REUSED)."""
    admission.check_request(request)

    async def key_first() -> None:
        """A repeat of the key gets the first result, whatever would refuse it now (a wrong
        password, a suspended agent): looked up before a password is counted or a refusal
        given, which a cached plan may reach without the database."""
        if await stored_key(ctx.engine, request.key) is not None:
            raise KeyTaken

    try:
        try:
            if not ctx.billing.internal:
                return await two_phase.recharge(ctx, request, fingerprint, key_first)
            written = await passwords.checked(
                ctx,
                passwords.TRADE,
                request.agent_id,
                request.pin,
                lambda proof: ctx.writer.recharge(
                    RechargeOp(request, fingerprint, proof, ctx.claim())
                ),
                before_check=key_first,
            )
        except Refusal:
            await key_first()
            raise
    except KeyTaken:
        txn = await first_result(ctx.engine, request.key, "recharge", fingerprint)
        return await queries.recharge(ctx.engine, txn)
    ctx.committed(written.notices)
    assert written.view is not None
    return written.view


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
        retry_of=tx_id,
    )
    return await run(ctx, request, fingerprint)


async def _not_retryable(engine: AsyncEngine, agent_id: int, tx_id: int) -> NoReturn:
    try:
        found = await queries.recharge(engine, tx_id)
    except Refusal:
        found = None
    if found is None or found.agent_id != agent_id:
        raise Refusal(Rule.RECHARGE_UNKNOWN, tx_id=tx_id)
    raise Refusal(Rule.NOT_RETRYABLE, tx_id=tx_id)
