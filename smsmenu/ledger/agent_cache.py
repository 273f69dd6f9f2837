"""A worker's copy of agents' rows and of which agent each phone is bound to (PostgreSQL).

Every message from a phone asks which agent it is bound to, and every recharge needs its agent's
row: a worker keeps both in memory. A copy never decides anything alone: the row carries its
``version``, and the database refuses a recharge planned on an old version (``ledger_admit``
answers ``stale``: the writer forgets the copy, reads, plans again). And the database announces
every change of an agent's row, including a change of its bound phone (``NOTIFY
smsmenu_agents``, sent at commit, migration 0005): on each, the worker forgets that agent and
every phone it knows, so a phone unbound from an agent does not reach that agent's menu again. A
phone known to be no agent's is forgotten after ``phone_ttl_s`` too, and everything is forgotten
when the connection that listens is lost (notices may have been missed).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from smsmenu.digits import to_int
from smsmenu.ledger.recharge_plan import AgentRow

CHANNEL = "smsmenu_agents"

log = logging.getLogger("smsmenu.ledger")


class AgentCache:
    def __init__(self, phone_ttl_s: float = 30.0, max_size: int = 200_000) -> None:
        self.phone_ttl_s = phone_ttl_s
        self.max_size = max_size
        self._rows: dict[int, AgentRow] = {}
        self._phones: dict[str, tuple[int | None, float]] = {}
        self._listening: AsyncConnection | None = None

    def row(self, agent_id: int) -> AgentRow | None:
        return self._rows.get(agent_id)

    def keep(self, row: AgentRow) -> None:
        if len(self._rows) >= self.max_size:
            self._rows.clear()
        self._rows[row.id] = row

    def phone(self, phone: str) -> tuple[bool, int | None]:
        """(known, agent id or None): whether the cache knows whom ``phone`` is bound to."""
        found = self._phones.get(phone)
        if found is None:
            return False, None
        agent_id, since = found
        if agent_id is None and time.monotonic() - since > self.phone_ttl_s:
            del self._phones[phone]
            return False, None
        return True, agent_id

    def keep_phone(self, phone: str, agent_id: int | None) -> None:
        if len(self._phones) >= self.max_size:
            self._phones.clear()
        self._phones[phone] = (agent_id, time.monotonic())

    def changed(self, agent_id: int | None = None) -> None:
        """An agent changed (None: maybe any): forget it and every phone."""
        if agent_id is None:
            self._rows.clear()
        else:
            self._rows.pop(agent_id, None)
        self._phones.clear()

    # -- the database's notices ------------------------------------------------------------

    async def listen(self, engine: AsyncEngine) -> None:
        """Hold a connection of ``engine`` listening for changes of agents."""
        conn = await engine.connect()
        raw: Any = (await conn.get_raw_connection()).driver_connection
        await raw.add_listener(CHANNEL, self._notified)
        raw.add_termination_listener(self._lost)
        self._listening = conn
        self.changed()  # whatever was known before the listening began

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.changed(to_int(payload, 12))

    def _lost(self, _conn: Any) -> None:
        log.warning("the connection listening for agents' changes was lost: cache cleared")
        self.changed()
        self._listening = None

    @property
    def listening(self) -> bool:
        return self._listening is not None

    async def aclose(self) -> None:
        if self._listening is not None:
            conn, self._listening = self._listening, None
            await conn.close()
