"""The agent's own account behind a password: balance and records behind the trade password,
changing the trade or management password, the web login's management password check. Each
counts its password's attempts as ``passwords`` describes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update

from smsmenu.ledger import admission, passwords, queries, rules
from smsmenu.ledger import statements as sql
from smsmenu.ledger.api import AgentStatus, Refusal, Rule
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.models import agents
from smsmenu.ledger.unit_of_work import unit_of_work


async def trade_login(ctx: LedgerContext, agent_id: int, pin: str) -> Any:
    """Check the trade password of an agent that may operate (open, not suspended, bound phone
    active: checked first, SPEC §3); its context row."""
    passwords.pin_format(pin)

    async def login(proof: passwords.Proof | None) -> Any:
        now = ctx.clock.now()
        async with unit_of_work(ctx.engine) as conn:
            agent = await queries.agent_context(conn, agent_id)
            admission.agent_can_trade(agent)
            proof = passwords.admit(ctx, passwords.TRADE, agent, pin, now, proof)
            await passwords.settle(conn, passwords.TRADE, agent, proof, now)
            await conn.commit()
        return agent

    return await passwords.checked(ctx, passwords.TRADE, agent_id, pin, login)


async def change_pin(ctx: LedgerContext, agent_id: int, old: str, new: str, trade: bool) -> None:
    """A new trade (``trade``) or management password: 6 digits, not the old one, not six
    equal digits, not a run; only while the agent may operate. The old one is checked (and
    counted) like any use of that password."""
    password = passwords.TRADE if trade else passwords.MGMT
    passwords.pin_format(old)
    bad_new = rules.new_pin_rule(old, new)
    if bad_new in (Rule.BAD_PIN_FORMAT, Rule.WEAK_PIN):
        raise Refusal(bad_new)

    async def change(proof: passwords.Proof | None) -> None:
        now = ctx.clock.now()
        async with unit_of_work(ctx.engine) as conn:
            agent = await queries.agent_passwords(conn, agent_id)
            admission.agent_can_trade(agent)
            proof = passwords.admit(ctx, password, agent, old, now, proof)
            if bad_new:
                raise Refusal(bad_new)
            await passwords.settle(conn, password, agent, proof, now)
            column = agents.c[password.hash_key]
            await conn.execute(
                update(agents).where(agents.c.id == agent_id).values({column: ctx.pins.hash(new)})
            )
            await conn.commit()

    await passwords.checked(ctx, password, agent_id, old, change)


async def verify_mgmt_pin(ctx: LedgerContext, agent_id: int, pin: str) -> bool:
    """Whether ``pin`` is the management password of ``agent_id`` (not closed): the web login.
    A wrong one is counted (False; the third raises MGMT_PIN_LOCKED); refused MGMT_PIN_LOCKED
    while locked, the right password included. A malformed one is False and counts nothing."""
    if rules.pin_format_rule(pin):
        return False

    async def login(proof: passwords.Proof | None) -> bool:
        now = ctx.clock.now()
        async with unit_of_work(ctx.engine) as conn:
            agent = (await conn.execute(sql.AGENT_PASSWORDS, {"agent_id": agent_id})).first()
            if agent is None or agent.status == AgentStatus.CLOSED:
                return False
            proof = passwords.admit(ctx, passwords.MGMT, agent, pin, now, proof)
            await passwords.settle(conn, passwords.MGMT, agent, proof, now)
            await conn.commit()
        return True

    try:
        return await passwords.checked(ctx, passwords.MGMT, agent_id, pin, login)
    except Refusal as refusal:
        if refusal.rule is Rule.WRONG_MGMT_PIN:
            return False
        raise


async def mgmt_lock(ctx: LedgerContext, agent_id: int) -> datetime | None:
    """Until when the management lock of ``agent_id`` holds (None: it does not): a web login
    by a one-time code is a management operation too, refused while it holds."""
    async with ctx.engine.connect() as conn:
        agent = (await conn.execute(sql.AGENT_PASSWORDS, {"agent_id": agent_id})).first()
    return None if agent is None else passwords.MGMT.lock_of(agent, ctx.clock.now())
