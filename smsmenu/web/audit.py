"""The audit log: who did what through the web pages and the API, and how it ended."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import insert, select

from smsmenu.ledger.api import Refusal
from smsmenu.ledger.models import audit_log
from smsmenu.web.context import WebContext
from smsmenu.web.refusals import WebRefusal
from smsmenu.web.statements import one_statement

T = TypeVar("T")


@dataclass(frozen=True)
class AuditRow:
    at: datetime
    actor: str
    action: str
    target: str
    outcome: str


_INSERT = insert(audit_log)


async def record(web: WebContext, actor: str, action: str, target: str, outcome: str) -> None:
    """One entry: ``outcome`` is ``ok`` or ``refused:<rule>`` (one statement: an entry is
    written on every API call)."""
    values = {
        "at": web.clock.now(),
        "actor": actor[:80],
        "action": action[:40],
        "target": target[:80],
        "outcome": outcome[:60],
    }
    async with one_statement(web.ledger.engine) as conn:
        await conn.execute(_INSERT, values)


async def audited(
    web: WebContext, actor: str, action: str, target: str, run: Callable[[], Awaitable[T]]
) -> T:
    """Run an operation and write its entry: ``ok``, or the rule that refused it."""
    try:
        result = await run()
    except (Refusal, WebRefusal) as exc:
        await record(web, actor, action, target, f"refused:{exc.rule.value}")
        raise
    await record(web, actor, action, target, "ok")
    return result


async def rows(web: WebContext, limit: int, offset: int = 0) -> list[AuditRow]:
    """Newest first."""
    async with web.ledger.engine.connect() as conn:
        found = await conn.execute(
            select(
                audit_log.c.at,
                audit_log.c.actor,
                audit_log.c.action,
                audit_log.c.target,
                audit_log.c.outcome,
            )
            .order_by(audit_log.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [AuditRow(*row) for row in found]
