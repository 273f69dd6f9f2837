"""Fixtures of the menu tests: session stores (in-process and a real Redis) and a whole menu
world — the real ledger, a store and an engine — in two flavours: the embedded one (in-process
store, ledger on SQLite) and the scaled one (Redis store, ledger on PostgreSQL)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

from smsmenu.app import build_menu_engine
from smsmenu.clock import FakeClock
from smsmenu.ledger.api import AgentView, Billing, Kind
from smsmenu.ledger.db import create_engine
from smsmenu.ledger.outbox import Outbox, OutboxMessage
from smsmenu.ledger.service import LedgerService
from smsmenu.menus.engine import MenuEngine
from smsmenu.menus.store import InProcessStore, RedisStore, SessionStore
from smsmenu.messages import SMS, Inbound, Outbound, Route
from smsmenu.settings import Settings
from smsmenu.texts import Catalogue
from tests.ledger_fixtures import new_agent, truncate

AGENT_PHONE = "13800000001"
SUBSCRIBER_PHONE = "13300000009"
MOBILE = "13900000002"
FIXED = "02787654321"
PHS = "02787650000"
BROADBAND = "02787659999"


@pytest.fixture(params=["inprocess", "redis"])
async def store(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[SessionStore]:
    if request.param == "inprocess":
        yield InProcessStore(lock_ttl_s=0.5)
        return
    redis_url: str = request.getfixturevalue("redis_url")
    redis_store = RedisStore.from_url(redis_url, prefix=redis_prefix, lock_ttl_s=0.5)
    try:
        yield redis_store
    finally:
        await redis_store.aclose()


@dataclass
class World:
    """The menus as a phone sees them, over the real ledger."""

    engine: MenuEngine
    ledger: LedgerService
    store: SessionStore
    clock: FakeClock
    texts: Catalogue
    settings: Settings
    agent: AgentView
    outbox: Outbox
    outbox_mark: int = 0  # notices up to this id were written while setting up
    last: list[Outbound] = field(default_factory=list)

    def inbound(self, text: str, phone: str = AGENT_PHONE, route: Route = SMS) -> Inbound:
        """``text`` from ``phone``, arriving now."""
        return Inbound(
            phone, self.settings.service_number, text, route, received_at=self.clock.now()
        )

    async def send(
        self, text: str, phone: str = AGENT_PHONE, route: Route = SMS, acked: bool = True
    ) -> list[str]:
        """The texts of the direct reply to ``text`` from ``phone``; ``acked=False``: its
        response never reached the SMSC (which will resend it)."""
        handled = await self.engine.handle(self.inbound(text, phone, route))
        await handled.finish(acked)
        self.last = handled.replies
        return [out.text for out in self.last]

    async def say(self, text: str, phone: str = AGENT_PHONE) -> str:
        """The one reply text to ``text``."""
        (reply,) = await self.send(text, phone)
        return reply

    def t(self, key: str, **params: Any) -> str:
        return self.texts.render(key, **params)

    async def notices(self, destination: str = AGENT_PHONE) -> list[OutboxMessage]:
        return await self.outbox.rows(destination=destination, after_id=self.outbox_mark)

    async def raw_session(self, phone: str = AGENT_PHONE) -> str:
        if isinstance(self.store, InProcessStore):
            entry = self.store._sessions.get(phone)
            return entry[1] or "" if entry else ""
        assert isinstance(self.store, RedisStore)
        raw = await self.store.client.hget(f"{self.store.prefix}session:{{{phone}}}", "s")
        return raw.decode() if raw else ""


@pytest.fixture(params=["inprocess+sqlite", "redis+postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(ledger database URL, Redis URL or "" for the in-process store), ready to use."""
    if request.param == "inprocess+sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copyfile(template, tmp_path / "ledger.db")
        return f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}", ""
    url: str = request.getfixturevalue("ledger_pg_url")
    asyncio.run(truncate(url))
    return url, request.getfixturevalue("redis_url")


@pytest.fixture
async def world(
    backend: tuple[str, str], clock: FakeClock, catalogue: Catalogue, redis_prefix: str
) -> AsyncIterator[World]:
    url, redis_url = backend
    store: SessionStore = (
        RedisStore(redis.from_url(redis_url), prefix=redis_prefix, lock_ttl_s=2.0)
        if redis_url
        else InProcessStore(lock_ttl_s=2.0)
    )
    settings = Settings(database_url=url)
    db = create_engine(url)
    ledger = LedgerService(db, clock, catalogue, settings)
    try:
        agent = await new_agent(ledger, AGENT_PHONE)
        await ledger.add_subscriber(MOBILE, Kind.MOBILE, Billing.PREPAID, 500)
        await ledger.add_subscriber(FIXED, Kind.FIXED, Billing.POSTPAID, -3000)
        await ledger.add_subscriber(PHS, Kind.PHS, Billing.PREPAID)
        await ledger.add_subscriber(BROADBAND, Kind.BROADBAND, Billing.POSTPAID)
        await ledger.add_subscriber(SUBSCRIBER_PHONE, Kind.MOBILE, Billing.PREPAID, 1234)
        engine = build_menu_engine(settings, ledger, store, clock, catalogue)
        outbox = Outbox(db, clock)
        mark = max((row.id for row in await outbox.rows()), default=0)
        yield World(
            engine, ledger, store, clock, catalogue, settings, agent, outbox, outbox_mark=mark
        )
        balance = await ledger.trial_balance()
        assert balance.ok, balance
    finally:
        await store.aclose()
        await db.dispose()
