"""Reads: agents, subscribers and recharges as views, and the agent context that every agent
operation's rules look at (inside a unit of work, optionally with the agent locked)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from smsmenu.ledger import statements as sql
from smsmenu.ledger import views
from smsmenu.ledger.api import (
    AgentView,
    AllowanceView,
    RechargeView,
    RecordView,
    Refusal,
    Rule,
    SubscriberView,
)
from smsmenu.ledger.entries import SUCCEEDED
from smsmenu.ledger.models import accounts, agents, allowances, recharges

_LOCK_AGENT = select(agents.c.id).where(agents.c.id == bindparam("agent_id")).with_for_update()
_LOCK_FLOAT = (
    select(accounts.c.id)
    .where(
        accounts.c.id
        == select(agents.c.account_id).where(agents.c.id == bindparam("agent_id")).scalar_subquery()
    )
    .with_for_update()
)


async def agent_context(
    conn: AsyncConnection, agent_id: int, number: str = "", notify: str | None = None
) -> Any:
    """``statements.AGENT_CONTEXT`` for ``agent_id`` (and target ``number``, ``notify``
    number), or AGENT_UNKNOWN."""
    params = {"agent_id": agent_id, "number": number, "notify": notify}
    row = (await conn.execute(sql.AGENT_CONTEXT, params)).first()
    if row is None:
        raise Refusal(Rule.AGENT_UNKNOWN, agent_id=agent_id)
    return row


async def agent_passwords(conn: AsyncConnection, agent_id: int) -> Any:
    """``statements.AGENT_PASSWORDS`` for ``agent_id``, or AGENT_UNKNOWN."""
    row = (await conn.execute(sql.AGENT_PASSWORDS, {"agent_id": agent_id})).first()
    if row is None:
        raise Refusal(Rule.AGENT_UNKNOWN, agent_id=agent_id)
    return row


async def locked_agent_context(conn: AsyncConnection, postgres: bool, agent_id: int) -> Any:
    """The agent's context with its row and its float locked (operator operations that count
    things: close, reversal). SQLite's write transaction is the lock there."""
    if postgres:
        await conn.execute(_LOCK_AGENT, {"agent_id": agent_id})
        await conn.execute(_LOCK_FLOAT, {"agent_id": agent_id})
    return await agent_context(conn, agent_id)


async def agent(engine: AsyncEngine, agent_id: int) -> AgentView:
    async with engine.connect() as conn:
        row = (await conn.execute(sql.AGENT_BY_ID, {"agent_id": agent_id})).first()
    if row is None:
        raise Refusal(Rule.AGENT_UNKNOWN, agent_id=agent_id)
    return views.agent(row)


async def agent_for_phone(engine: AsyncEngine, phone: str) -> AgentView | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sql.AGENT_BY_PHONE, {"phone": phone})).first()
    return None if row is None else views.agent(row)


async def subscriber(
    engine: AsyncEngine, number: str, today: date | None = None
) -> SubscriberView | None:
    """The subscriber, with the allowances it holds on ``today`` (none if not given)."""
    async with engine.connect() as conn:
        row = (await conn.execute(sql.SUBSCRIBER_BY_NUMBER, {"number": number})).first()
        held: list[Any] = []
        if row is not None and today is not None:
            held = list(
                (
                    await conn.execute(
                        select(allowances)
                        .where(
                            allowances.c.number == number,
                            or_(
                                allowances.c.valid_until.is_(None),
                                allowances.c.valid_until >= today,
                            ),
                        )
                        .order_by(allowances.c.id)
                    )
                ).all()
            )
    if row is None:
        return None
    view = views.subscriber(row)
    return replace(
        view,
        allowances=tuple(AllowanceView(a.code, a.kind, a.data_mb, a.valid_until) for a in held),
    )


async def recharge(engine: AsyncEngine, tx_id: int) -> RechargeView:
    async with engine.connect() as conn:
        row = (await conn.execute(sql.RECHARGE_BY_ID, {"tx_id": tx_id})).first()
    if row is None:
        raise Refusal(Rule.RECHARGE_UNKNOWN, tx_id=tx_id)
    return views.recharge(row._mapping)


async def txn(engine: AsyncEngine, txn_id: int) -> Any:
    """The ``txns`` row ``txn_id`` (it exists: the caller just wrote or found it)."""
    async with engine.connect() as conn:
        return (await conn.execute(sql.TXN_BY_ID, {"txn": txn_id})).one()


async def recharge_list(
    engine: AsyncEngine,
    agent_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    number: str | None = None,
) -> list[RechargeView]:
    """Recharges newest first, optionally of one agent / target, in [start, end)."""
    stmt = select(recharges).order_by(recharges.c.tx_id.desc())
    if agent_id is not None:
        stmt = stmt.where(recharges.c.agent_id == agent_id)
    if number is not None:
        stmt = stmt.where(recharges.c.number == number)
    if start is not None:
        stmt = stmt.where(recharges.c.created_at >= start)
    if end is not None:
        stmt = stmt.where(recharges.c.created_at < end)
    async with engine.connect() as conn:
        return [views.recharge(r._mapping) for r in (await conn.execute(stmt)).all()]


async def subscriber_topups(engine: AsyncEngine, number: str, limit: int = 5) -> list[RecordView]:
    """The last recharges into ``number`` that took effect, newest first."""
    stmt = (
        select(recharges)
        .where(recharges.c.number == number, recharges.c.status == SUCCEEDED)
        .order_by(recharges.c.tx_id.desc())
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [RecordView(r.tx_id, "recharge", r.number, r.amount_fen, r.created_at) for r in rows]
