"""Ledger fixtures for every test that needs a real ledger (SQLite and PostgreSQL).

``database_url`` is parametrised over both databases with a fresh, migrated schema per test
(SQLite: a copy of a migrated template file; PostgreSQL: a database of its own for the ledger
tests, migrated once, truncated before each test). ``ledger`` is a ``LedgerService`` on it with
the ``clock`` fixture, the packaged catalogue and internal billing; its teardown asserts that
the trial balance is zero and every account agrees with its journal.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from smsmenu.app import load_catalogue
from smsmenu.clock import FakeClock
from smsmenu.ledger.agent_cache import AgentCache
from smsmenu.ledger.api import AgentView, Billing, Kind
from smsmenu.ledger.db import create_engine, upgrade
from smsmenu.ledger.service import LedgerService
from smsmenu.settings import Settings
from smsmenu.texts import Catalogue
from tests import servers

TRADE_PIN = "135790"
MGMT_PIN = "246801"
LEDGER_TABLES = (
    "payments, login_codes, web_sessions, audit_log, api_keys, operators,"
    " dead_letters, shortcut_acks, outbox, resolutions, recharges, allowances, closing_codes,"
    " cards, card_batches, lines, txns, agents, subscribers"
)


async def migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each test gets a copy."""
    path = tmp_path_factory.mktemp("ledger-template") / "template.db"
    asyncio.run(migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def ledger_pg_url(postgres_base: str) -> Iterator[str]:
    """A PostgreSQL database of its own for the ledger tests, migrated once."""
    url = asyncio.run(servers.create_database(postgres_base))
    sa_url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
    asyncio.run(migrate(sa_url))
    yield sa_url
    asyncio.run(servers.drop_database(url))


async def truncate(sa_url: str) -> None:
    conn = await asyncpg.connect(sa_url.replace("+asyncpg", ""))
    try:
        await conn.execute(
            f"TRUNCATE {LEDGER_TABLES} RESTART IDENTITY CASCADE;"
            " DELETE FROM accounts WHERE id > 6;"
            " UPDATE accounts SET balance = 0, pending = 0;"
        )
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated ledger database: SQLite or PostgreSQL."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "ledger.db"
        shutil.copyfile(template, path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("ledger_pg_url")
    asyncio.run(truncate(url))
    return url


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue(Settings())


@pytest.fixture
def ledger_settings(database_url: str) -> Settings:
    """Settings pointing at the fresh ``database_url``."""
    return Settings(database_url=database_url)


@pytest.fixture
def ledger_agent_cache() -> bool:
    """Whether the ``ledger`` fixture keeps a worker's ``AgentCache`` (PostgreSQL; listening
    for the database's notices). Override to test both."""
    return False


@pytest.fixture
async def ledger(
    ledger_settings: Settings, clock: FakeClock, catalogue: Catalogue, ledger_agent_cache: bool
) -> AsyncIterator[LedgerService]:
    """A ledger (internal billing) on a fresh database; checks the books at teardown."""
    engine = create_engine(ledger_settings.database_url)
    postgres = engine.dialect.name == "postgresql"
    cache = AgentCache() if ledger_agent_cache and postgres else None
    service = LedgerService(engine, clock, catalogue, ledger_settings, agent_cache=cache)
    try:
        if cache is not None:
            await cache.listen(engine)
        yield service
        balance = await service.trial_balance()
        assert balance.ok, balance
    finally:
        await service.aclose()
        await engine.dispose()


async def new_agent(
    ledger: LedgerService,
    phone: str = "13800000001",
    deposit_yuan: int = 1000,
    commission_bp: int | None = 200,
) -> AgentView:
    """Register ``phone`` as an active prepaid mobile and open an agent on it."""
    if await ledger.subscriber(phone) is None:
        await ledger.add_subscriber(phone, Kind.MOBILE, Billing.PREPAID)
    return await ledger.open_agent(phone, TRADE_PIN, MGMT_PIN, deposit_yuan * 100, commission_bp)
