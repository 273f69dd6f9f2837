"""Trade passwords in use: checking, counting wrong ones, lock-out.

SPEC §10: three wrong trade passwords in a row lock trade operations for 30 minutes, per agent,
surviving restarts (the counter and the lock are columns of ``agents``). A wrong password is
raised inside the operation's unit of work as ``WrongPin``, which rolls the operation back; the
caller then counts it with ``record_wrong_pin`` in a short transaction of its own (the one thing
a refused operation leaves behind) and raises the refusal that returns. Hashing and the verify
cache are ``pins.PinVault``'s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from smsmenu.ledger import rules
from smsmenu.ledger import statements as sql
from smsmenu.ledger.api import Refusal, Rule
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.unit_of_work import unit_of_work


class WrongPin(Exception):
    """A wrong trade password: roll back, then ``record_wrong_pin``."""

    def __init__(self, agent_id: int) -> None:
        self.agent_id = agent_id


def pin_format(pin: str) -> None:
    """BAD_PIN_FORMAT unless ``pin`` is 6 ASCII digits: checked before any password is, so a
    malformed one counts nothing."""
    rule = rules.pin_format_rule(pin)
    if rule:
        raise Refusal(rule)


def check_trade_pin(ctx: LedgerContext, agent: Any, pin: str, now: datetime) -> None:
    """PIN_LOCKED while locked; ``WrongPin`` unless ``pin`` is the agent's trade password.
    ``agent`` is a row with ``id``, ``trade_hash`` and ``pin_locked_until``."""
    locked = agent.pin_locked_until
    if locked is not None and locked > now:
        raise Refusal(Rule.PIN_LOCKED, until=locked)
    if not ctx.pins.verify(agent.id, agent.trade_hash, pin):
        raise WrongPin(agent.id)


async def record_wrong_pin(ctx: LedgerContext, agent_id: int) -> Refusal:
    """Count a wrong trade password in its own transaction; the refusal to raise."""
    now = ctx.clock.now()
    async with unit_of_work(ctx.engine) as conn:
        failures = (await conn.execute(sql.COUNT_PIN_FAILURE, {"agent_id": agent_id})).scalar_one()
        if failures >= rules.PIN_MAX_FAILURES:
            until = now + rules.PIN_LOCK
            await conn.execute(sql.LOCK_PIN, {"agent_id": agent_id, "until": until})
            await conn.commit()
            return Refusal(Rule.PIN_LOCKED, until=until)
        await conn.commit()
    return Refusal(Rule.WRONG_PIN, remaining=rules.PIN_MAX_FAILURES - failures)


async def reset_failures(conn: AsyncConnection, agent: Any) -> None:
    """A right trade password clears the count of wrong ones (written only if there is one)."""
    if agent.pin_failures or agent.pin_locked_until is not None:
        await conn.execute(sql.RESET_PIN_FAILURES, {"agent_id": agent.id})
