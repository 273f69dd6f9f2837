"""The whole product in-process, bound over TCP (127.0.0.1) to the simulator: ledger, session
store, menu engine, SMPP link and outbox sender built by ``app.run_server``, short timers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from smsmenu.app import run_server
from smsmenu.ledger.api import AgentView, Billing, Kind
from smsmenu.ledger.billing import BillingBackend
from smsmenu.server import Server
from smsmenu.settings import Settings
from smsmenu.smpp.simulator import Received, Simulator
from tests.ledger_fixtures import new_agent

AGENT = "13800000001"
MOBILE = "13900000002"
NOTIFY = "13900000003"
FIXED = "02787654321"
PHS = "02787650000"
BROADBAND = "02787659999"

FAST_LINK: dict[str, Any] = {
    "response_timeout_s": 2.0,
    "enquire_link_s": 5.0,
    "reconnect_min_s": 0.05,
    "reconnect_max_s": 0.5,
    "throttle_min_s": 0.05,
    "throttle_max_s": 0.4,
    "connect_timeout_s": 2.0,
}
FAST_SETTINGS: dict[str, Any] = {
    "outbox_poll_s": 0.05,
    "outbox_retry_min_s": 0.05,
    "outbox_retry_max_s": 0.5,
    "outbox_lease_s": 5.0,
    "status_interval_s": 3600,
    "smpp_part_timeout_s": 5.0,
    # at most the simulator's response timer (its redeliver_after_s, 0.5 s by default here)
    "inbound_resend_after_s": 0.4,
}


@dataclass
class Stack:
    """A phone's view of the running product."""

    sim: Simulator
    server: Server
    agent: AgentView
    cursor: dict[str, int] = field(default_factory=dict)

    def send(self, text: str, phone: str = AGENT) -> None:
        self.sim.send(phone, text)

    async def next(self, phone: str = AGENT, within_s: float = 10.0) -> Received:
        """The next message ``phone`` receives."""
        index = self.cursor.get(phone, 0)
        got = await self.sim.next_message(phone, index, within_s)
        self.cursor[phone] = index + 1
        return got

    async def say(self, text: str, phone: str = AGENT) -> str:
        """Send ``text`` from ``phone``; the text of the next message it receives."""
        self.send(text, phone)
        return (await self.next(phone)).text

    def t(self, key: str, **params: Any) -> str:
        return self.server.engine.texts.render(key, **params)

    def unread(self, phone: str) -> list[Received]:
        return self.sim.received[phone][self.cursor.get(phone, 0) :]


async def seed(server: Server) -> AgentView:
    ledger = server.ledger
    agent = await new_agent(ledger, AGENT)
    await ledger.add_subscriber(MOBILE, Kind.MOBILE, Billing.PREPAID, 500)
    await ledger.add_subscriber(NOTIFY, Kind.MOBILE, Billing.PREPAID)
    await ledger.add_subscriber(FIXED, Kind.FIXED, Billing.POSTPAID, -3000)
    await ledger.add_subscriber(PHS, Kind.PHS, Billing.PREPAID)
    await ledger.add_subscriber(BROADBAND, Kind.BROADBAND, Billing.POSTPAID)
    return agent


def test_settings(database_url: str, redis_url: str, port: int, **overrides: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        database_url=database_url,
        redis_url=redis_url,
        smsc_port=port,
        **{**FAST_SETTINGS, **overrides},
    )


test_settings.__test__ = False  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def running_stack(
    database_url: str,
    redis_url: str = "",
    *,
    billing: BillingBackend | None = None,
    store_prefix: str = "smsmenu:",
    simulator: dict[str, Any] | None = None,
    link: dict[str, Any] | None = None,
    seeded: bool = False,
    sim: Simulator | None = None,
    **settings: Any,
) -> AsyncIterator[Stack]:
    """The product on ``database_url`` bound to a fresh simulator (or to ``sim``, which it
    then leaves running); the agent and subscribers are seeded unless ``seeded`` (already
    there: a restart on the same database)."""
    own = sim is None
    if sim is None:
        sim = Simulator(**{"redeliver_after_s": 0.5, **(simulator or {})})
        await sim.start()
    port = sim.port
    try:
        async with run_server(
            test_settings(database_url, redis_url, port, **settings),
            billing=billing,
            store_prefix=store_prefix,
            link_overrides={**FAST_LINK, **(link or {})},
        ) as server:
            await server.link.wait_bound(5)
            await sim.wait_bound(5)
            if seeded:
                existing = await server.ledger.agent_for_phone(AGENT)
                assert existing is not None
                stack = Stack(sim, server, existing)
            else:
                stack = Stack(sim, server, await seed(server))
                opened = await stack.next(AGENT)  # the opening confirmation, from the outbox
                assert str(stack.agent.agent_id) in opened.text
            yield stack
            balance = await server.ledger.trial_balance()
            assert balance.ok, balance
    finally:
        if own:
            await sim.stop()
