"""The operator's functions (SPEC §7): subscriber accounts, and an agent's life — open with a
first deposit, deposit (续存), suspend, resume, change the bound phone, close (销户).

Each is one unit of work; the ones that move money claim their idempotency key first and give
a repeat the first result.
"""

from __future__ import annotations

import uuid

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from smsmenu.ledger import notices, outbox, queries, rules
from smsmenu.ledger import statements as sql
from smsmenu.ledger.api import (
    AgentStatus,
    AgentView,
    Billing,
    CloseView,
    DepositView,
    Kind,
    Refusal,
    Rule,
    SubscriberStatus,
    SubscriberView,
)
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.models import BILLING, CASH, accounts, agents, subscribers, txns
from smsmenu.ledger.unit_of_work import KeyTaken, claim_key, first_result, unit_of_work


def _two_lines(txn: int, credited: int, debited: int, amount_fen: int) -> list[dict[str, int]]:
    return [
        {"txn_id": txn, "account_id": credited, "amount_fen": amount_fen},
        {"txn_id": txn, "account_id": debited, "amount_fen": -amount_fen},
    ]


# ---- subscribers ---------------------------------------------------------------------------


async def add_subscriber(
    ctx: LedgerContext,
    number: str,
    kind: Kind,
    billing: Billing,
    balance_fen: int = 0,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
) -> SubscriberView:
    """Register a subscriber account; an opening balance is booked against ``billing``."""
    if rules.number_rule(kind, number):
        raise Refusal(Rule.BAD_NUMBER, number=number)
    now = ctx.clock.now()
    async with unit_of_work(ctx.engine) as conn:
        found = (
            await conn.execute(select(subscribers.c.number).where(subscribers.c.number == number))
        ).first()
        if found is not None:
            raise Refusal(Rule.SUBSCRIBER_EXISTS, number=number)
        account = (
            await conn.execute(
                insert(accounts)
                .values(kind="subscriber", balance=balance_fen, pending=0)
                .returning(accounts.c.id)
            )
        ).scalar_one()
        await conn.execute(
            insert(subscribers).values(
                number=number,
                kind=kind.value,
                billing=billing.value,
                status=status.value,
                account_id=account,
                created_at=now,
            )
        )
        if balance_fen:
            txn = await claim_key(
                conn,
                f"subscriber-opening:{number}:{uuid.uuid4().hex}",
                "subscriber_opening",
                f"{number}|{balance_fen}",
                now,
                number=number,
                amount_fen=balance_fen,
            )
            await conn.execute(sql.INSERT_LINES, _two_lines(txn, account, BILLING, balance_fen))
        await conn.commit()
    return SubscriberView(number, kind, billing, status, balance_fen)


async def set_subscriber_status(
    ctx: LedgerContext, number: str, status: SubscriberStatus
) -> SubscriberView:
    """Suspend (停机), reactivate or close a subscriber account (billing's decision). Closing is
    final: a closed number's status never changes again (closing it again changes nothing)."""
    async with unit_of_work(ctx.engine) as conn:
        result = await conn.execute(
            update(subscribers)
            .where(subscribers.c.number == number, subscribers.c.status != SubscriberStatus.CLOSED)
            .values(status=status.value)
        )
        if result.rowcount == 0:
            found = (
                await conn.execute(
                    select(subscribers.c.status).where(subscribers.c.number == number)
                )
            ).scalar()
            if found is None:
                raise Refusal(Rule.TARGET_UNKNOWN, number=number)
            if status is not SubscriberStatus.CLOSED:
                raise Refusal(Rule.SUBSCRIBER_CLOSED, number=number)
        await conn.commit()
    view = await queries.subscriber(ctx.engine, number)
    assert view is not None
    return view


# ---- agents --------------------------------------------------------------------------------


async def open_agent(
    ctx: LedgerContext,
    phone: str,
    trade_pin: str,
    mgmt_pin: str,
    deposit_fen: int,
    commission_bp: int | None,
    key: str,
) -> AgentView:
    """Open an agent on an active mobile ``phone`` with a first deposit of ≥ 500 yuan."""
    rate = ctx.settings.default_commission_bp if commission_bp is None else commission_bp
    for rule in (
        rules.number_rule(Kind.MOBILE, phone),
        rules.initial_pin_rule(trade_pin),
        rules.initial_pin_rule(mgmt_pin),
        rules.commission_rule(rate),
        rules.opening_deposit_rule(deposit_fen),
    ):
        if rule:
            raise Refusal(rule)
    fingerprint = f"{phone}|{deposit_fen}|{rate}"
    trade_hash, mgmt_hash = ctx.pins.hash(trade_pin), ctx.pins.hash(mgmt_pin)
    now = ctx.clock.now()
    try:
        async with unit_of_work(ctx.engine) as conn:
            txn = await claim_key(
                conn, key, "open", fingerprint, now, number=phone, amount_fen=deposit_fen
            )
            sub = (
                await conn.execute(
                    select(subscribers.c.kind, subscribers.c.status).where(
                        subscribers.c.number == phone
                    )
                )
            ).first()
            if sub is None:
                raise Refusal(Rule.PHONE_UNKNOWN, number=phone)
            if sub.kind != Kind.MOBILE:
                raise Refusal(Rule.PHONE_NOT_MOBILE, number=phone)
            if sub.status != SubscriberStatus.ACTIVE:
                raise Refusal(Rule.PHONE_NOT_ACTIVE, number=phone)
            bound = (
                await conn.execute(select(agents.c.id).where(agents.c.bound_phone == phone))
            ).first()
            if bound is not None:
                raise Refusal(Rule.PHONE_ALREADY_BOUND, number=phone)
            account = (
                await conn.execute(
                    insert(accounts)
                    .values(kind="float", balance=deposit_fen, pending=0)
                    .returning(accounts.c.id)
                )
            ).scalar_one()
            try:
                agent_id = (
                    await conn.execute(
                        insert(agents)
                        .values(
                            phone=phone,
                            bound_phone=phone,
                            status=AgentStatus.ACTIVE.value,
                            account_id=account,
                            commission_bp=rate,
                            trade_hash=trade_hash,
                            mgmt_hash=mgmt_hash,
                            pin_failures=0,
                            mgmt_failures=0,
                            opened_at=now,
                        )
                        .returning(agents.c.id)
                    )
                ).scalar_one()
            except IntegrityError:  # bound by a concurrent opening
                raise Refusal(Rule.PHONE_ALREADY_BOUND, number=phone) from None
            await conn.execute(
                update(txns)
                .where(txns.c.id == txn)
                .values(agent_id=agent_id, balance_after=deposit_fen)
            )
            await conn.execute(sql.INSERT_LINES, _two_lines(txn, account, CASH, deposit_fen))
            await outbox.add(
                conn,
                notices.agent_opened(
                    ctx,
                    now=now,
                    key=key,
                    txn=txn,
                    phone=phone,
                    agent_id=agent_id,
                    deposit_fen=deposit_fen,
                    rate_bp=rate,
                ),
            )
            await conn.commit()
    except KeyTaken:
        txn = await first_result(ctx.engine, key, "open", fingerprint)
        agent_id = (await queries.txn(ctx.engine, txn)).agent_id
    return await queries.agent(ctx.engine, agent_id)


async def deposit(ctx: LedgerContext, agent_id: int, amount_fen: int, key: str) -> DepositView:
    """续存: a multiple of 10 yuan, at least 10; cash in, float up."""
    rule = rules.deposit_rule(amount_fen)
    if rule:
        raise Refusal(rule)
    fingerprint = f"{agent_id}|{amount_fen}"
    now = ctx.clock.now()
    try:
        async with unit_of_work(ctx.engine) as conn:
            txn = await claim_key(
                conn, key, "deposit", fingerprint, now, agent_id=agent_id, amount_fen=amount_fen
            )
            agent = await queries.agent_context(conn, agent_id)
            if agent.status == AgentStatus.CLOSED:
                raise Refusal(Rule.AGENT_CLOSED)
            await conn.execute(
                sql.INSERT_LINES, _two_lines(txn, agent.account_id, CASH, amount_fen)
            )
            after = (
                await conn.execute(sql.CREDIT, {"acc": agent.account_id, "amount": amount_fen})
            ).one()
            await conn.execute(sql.SET_TXN_RESULT, {"txn": txn, "balance_after": after.available})
            await conn.commit()
    except KeyTaken:
        txn = await first_result(ctx.engine, key, "deposit", fingerprint)
    row = await queries.txn(ctx.engine, txn)
    return DepositView(row.id, row.agent_id, row.amount_fen, row.balance_after, row.created_at)


async def set_agent_status(ctx: LedgerContext, agent_id: int, status: AgentStatus) -> AgentView:
    """Suspend or resume an agent that is not closed."""
    async with unit_of_work(ctx.engine) as conn:
        agent = await queries.agent_context(conn, agent_id)
        if agent.status == AgentStatus.CLOSED:
            raise Refusal(Rule.AGENT_CLOSED)
        await conn.execute(
            update(agents).where(agents.c.id == agent_id).values(status=status.value)
        )
        await conn.commit()
    return await queries.agent(ctx.engine, agent_id)


async def change_phone(ctx: LedgerContext, agent_id: int, phone: str) -> AgentView:
    """Bind the agent to another phone: an active mobile subscriber bound to nobody."""
    if rules.number_rule(Kind.MOBILE, phone):
        raise Refusal(Rule.BAD_NUMBER, number=phone)
    async with unit_of_work(ctx.engine) as conn:
        agent = await queries.agent_context(conn, agent_id, phone)
        if agent.status == AgentStatus.CLOSED:
            raise Refusal(Rule.AGENT_CLOSED)
        if agent.t_kind is None:
            raise Refusal(Rule.PHONE_UNKNOWN, number=phone)
        if agent.t_kind != Kind.MOBILE:
            raise Refusal(Rule.PHONE_NOT_MOBILE, number=phone)
        if agent.t_status != SubscriberStatus.ACTIVE:
            raise Refusal(Rule.PHONE_NOT_ACTIVE, number=phone)
        try:
            await conn.execute(
                update(agents).where(agents.c.id == agent_id).values(phone=phone, bound_phone=phone)
            )
        except IntegrityError:
            raise Refusal(Rule.PHONE_ALREADY_BOUND, number=phone) from None
        await conn.commit()
    return await queries.agent(ctx.engine, agent_id)


async def close_agent(ctx: LedgerContext, agent_id: int, key: str) -> CloseView:
    """销户: only below 10 yuan; the remainder is paid out in cash; the phone is freed."""
    fingerprint = str(agent_id)
    now = ctx.clock.now()
    try:
        async with unit_of_work(ctx.engine) as conn:
            txn = await claim_key(conn, key, "close", fingerprint, now, agent_id=agent_id)
            agent = await queries.locked_agent_context(conn, ctx.postgres, agent_id)
            if agent.status == AgentStatus.CLOSED:
                raise Refusal(Rule.AGENT_CLOSED)
            if agent.pending:
                raise Refusal(Rule.RESERVATION_PENDING)
            rule = rules.close_rule(agent.balance)
            if rule:
                raise Refusal(rule, balance_fen=agent.balance)
            remainder = agent.balance
            if remainder:
                await conn.execute(
                    sql.INSERT_LINES, _two_lines(txn, CASH, agent.account_id, remainder)
                )
                await conn.execute(
                    update(accounts)
                    .where(accounts.c.id == agent.account_id, accounts.c.balance == remainder)
                    .values(balance=0)
                )
            await conn.execute(
                update(txns).where(txns.c.id == txn).values(amount_fen=remainder, balance_after=0)
            )
            await conn.execute(
                update(agents)
                .where(agents.c.id == agent_id)
                .values(status=AgentStatus.CLOSED.value, bound_phone=None, closed_at=now)
            )
            await conn.commit()
    except KeyTaken:
        txn = await first_result(ctx.engine, key, "close", fingerprint)
    row = await queries.txn(ctx.engine, txn)
    return CloseView(row.id, row.agent_id, row.amount_fen, row.created_at)
