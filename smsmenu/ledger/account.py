"""The agent's own account with a password: balance and records behind the trade password,
changing the trade or management password, the web login's management password check."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from smsmenu.ledger import admission, queries, rules
from smsmenu.ledger.api import AgentStatus, Refusal, Rule
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.models import agents
from smsmenu.ledger.passwords import (
    WrongPin,
    check_trade_pin,
    pin_format,
    record_wrong_pin,
    reset_failures,
)
from smsmenu.ledger.unit_of_work import unit_of_work


async def trade_login(ctx: LedgerContext, agent_id: int, pin: str) -> Any:
    """Check the trade password (counted) of an agent that may operate (open, not suspended,
    bound phone active: checked first, SPEC §3); its context row."""
    pin_format(pin)
    now = ctx.clock.now()
    try:
        async with unit_of_work(ctx.engine) as conn:
            agent = await queries.agent_context(conn, agent_id)
            admission.agent_can_trade(agent)
            check_trade_pin(ctx, agent, pin, now)
            await reset_failures(conn, agent)
            await conn.commit()
            return agent
    except WrongPin as wrong:
        raise await record_wrong_pin(ctx, wrong.agent_id) from None


async def change_pin(ctx: LedgerContext, agent_id: int, old: str, new: str, trade: bool) -> None:
    """A new trade (``trade``) or management password: 6 digits, not the old one, not six
    equal digits, not a run; only while the agent may operate. A wrong old trade password is
    counted; a management one is not."""
    pin_format(old)
    bad_new = rules.new_pin_rule(old, new)
    if bad_new in (Rule.BAD_PIN_FORMAT, Rule.WEAK_PIN):
        raise Refusal(bad_new)
    now = ctx.clock.now()
    try:
        async with unit_of_work(ctx.engine) as conn:
            row = await queries.agent_context(conn, agent_id)
            admission.agent_can_trade(row)
            if trade:
                check_trade_pin(ctx, row, old, now)
            elif not ctx.pins.verify(-agent_id, await _mgmt_hash(conn, agent_id), old):
                raise Refusal(Rule.WRONG_PIN)
            if bad_new:
                raise Refusal(bad_new)
            values: dict[str, Any] = {"trade_hash" if trade else "mgmt_hash": ctx.pins.hash(new)}
            if trade:
                values.update(pin_failures=0, pin_locked_until=None)
            await conn.execute(update(agents).where(agents.c.id == agent_id).values(**values))
            await conn.commit()
    except WrongPin as wrong:
        raise await record_wrong_pin(ctx, wrong.agent_id) from None


async def _mgmt_hash(conn: AsyncConnection, agent_id: int) -> str:
    found = await conn.execute(select(agents.c.mgmt_hash).where(agents.c.id == agent_id))
    return str(found.scalar_one())


async def verify_mgmt_pin(ctx: LedgerContext, agent_id: int, pin: str) -> bool:
    """Whether ``pin`` is the management password of ``agent_id`` (not closed)."""
    if rules.pin_format_rule(pin):
        return False
    async with ctx.engine.connect() as conn:
        row = (
            await conn.execute(
                select(agents.c.mgmt_hash, agents.c.status).where(agents.c.id == agent_id)
            )
        ).first()
    if row is None or row.status == AgentStatus.CLOSED:
        return False
    return ctx.pins.verify(-agent_id, row.mgmt_hash, pin)
