"""API keys of the operator's own systems (SPEC §9): one per client, scoped, revocable.

A key is shown once, when it is made; the database keeps its HMAC under ``SECRET_KEY``
(``api-key``), by which a call's key is looked up. A scope is ``operator`` (every agent) or
``agent:<id>`` (that agent only).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from smsmenu.digits import to_int
from smsmenu.ledger.models import api_keys
from smsmenu.web.context import WebContext
from smsmenu.web.refusals import WebRefusal, WebRule
from smsmenu.web.statements import one_statement

OPERATOR = "operator"
PREFIX = "smk_"


@dataclass(frozen=True)
class ApiClient:
    name: str
    scope: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def agent_id(self) -> int | None:
        """The one agent an ``agent:<id>`` key may see; None for an operator's key."""
        return scope_agent(self.scope)

    def may_see(self, agent_id: int) -> bool:
        return self.agent_id is None or self.agent_id == agent_id


def scope_agent(scope: str) -> int | None:
    """The agent id of an ``agent:<id>`` scope; BAD_SCOPE for anything but that or operator."""
    if scope == OPERATOR:
        return None
    kind, _, ident = scope.partition(":")
    agent_id = to_int(ident, 12)
    if kind != "agent" or agent_id is None:
        raise WebRefusal(WebRule.BAD_SCOPE)
    return agent_id


async def create(web: WebContext, name: str, scope: str) -> str:
    """A new key for client ``name``: the key itself (shown once)."""
    agent_id = scope_agent(scope)
    if not name or len(name) > 64:
        raise WebRefusal(WebRule.BAD_REQUEST)
    if agent_id is not None:
        await web.ledger.agent(agent_id)  # AGENT_UNKNOWN
    key = PREFIX + secrets.token_urlsafe(32)
    try:
        async with web.ledger.engine.begin() as conn:
            await conn.execute(
                insert(api_keys).values(
                    name=name,
                    scope=scope,
                    key_hash=web.keys.mac("api-key", key),
                    created_at=web.clock.now(),
                )
            )
    except IntegrityError:
        raise WebRefusal(WebRule.NAME_TAKEN) from None
    return key


async def listed(web: WebContext) -> list[ApiClient]:
    async with web.ledger.engine.connect() as conn:
        rows = await conn.execute(
            select(
                api_keys.c.name, api_keys.c.scope, api_keys.c.created_at, api_keys.c.revoked_at
            ).order_by(api_keys.c.id)
        )
        return [ApiClient(*row) for row in rows]


async def revoke(web: WebContext, name: str) -> bool:
    """Revoke the key of ``name``: False if there is no such live key."""
    async with web.ledger.engine.begin() as conn:
        done = await conn.execute(
            update(api_keys)
            .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=web.clock.now())
            .returning(api_keys.c.id)
        )
        return done.first() is not None


#: Every API call looks its key up: the statement is built once.
_LIVE_KEY = select(api_keys.c.name, api_keys.c.scope, api_keys.c.created_at).where(
    api_keys.c.key_hash == bindparam("key_hash"), api_keys.c.revoked_at.is_(None)
)


async def client(web: WebContext, key: str) -> ApiClient | None:
    """The live client of ``key``, or None."""
    if not key.startswith(PREFIX):
        return None
    async with one_statement(web.ledger.engine) as conn:
        found = await conn.execute(_LIVE_KEY, {"key_hash": web.keys.mac("api-key", key)})
        row = found.first()
    return None if row is None else ApiClient(*row)
