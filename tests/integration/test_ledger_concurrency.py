"""Races on real databases: many workers on one float never overdraw it nor lose a fen."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from smsmenu.clock import FakeClock
from smsmenu.ledger.agent_cache import AgentCache
from smsmenu.ledger.api import Billing, Kind, RechargeRequest, RechargeStatus, Refusal, Rule
from smsmenu.ledger.billing import ScriptedBilling
from smsmenu.ledger.db import create_engine
from smsmenu.ledger.service import LedgerService
from smsmenu.settings import Settings
from smsmenu.texts import Catalogue
from tests.ledger_fixtures import TRADE_PIN, new_agent, truncate

TARGETS = [f"1390000{i:04d}" for i in range(8)]


@pytest.fixture
async def pg_ledgers(
    ledger_pg_url: str, clock: FakeClock, catalogue: Catalogue
) -> AsyncIterator[list[LedgerService]]:
    """Eight services (as eight workers would have) on one PostgreSQL database."""
    await truncate(ledger_pg_url)
    settings = Settings(database_url=ledger_pg_url)
    engines = [create_engine(ledger_pg_url, pool_size=2) for _ in range(8)]
    caches = [AgentCache() for _ in engines]
    services = [
        LedgerService(e, clock, catalogue, settings, agent_cache=cache if n % 2 else None)
        for n, (e, cache) in enumerate(zip(engines, caches, strict=True))
    ]  # half of them workers with a cached copy of the agent, listening for its changes
    try:
        for engine, cache in zip(engines[1::2], caches[1::2], strict=True):
            await cache.listen(engine)
        yield services
        balance = await services[0].trial_balance()
        assert balance.ok, balance
    finally:
        for service, engine in zip(services, engines, strict=True):
            await service.aclose()
            await engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["internal", "external"])
async def test_eight_workers_on_one_float(pg_ledgers: list[LedgerService], mode: str) -> None:
    first = pg_ledgers[0]
    if mode == "external":  # the two-phase path: reservations race instead of debits
        billing = ScriptedBilling()
        for service in pg_ledgers:
            service.billing = billing
    workers = pg_ledgers
    agent = await new_agent(first, deposit_yuan=5000, commission_bp=150)
    for number in TARGETS:
        await first.add_subscriber(number, Kind.MOBILE, Billing.PREPAID)
    rng = random.Random(7)
    # far more than the float can pay, with repeated keys (redeliveries) mixed in
    jobs = []
    for _ in range(400):
        key = f"k{rng.randrange(300)}"
        amount = (int(key[1:]) % 100 + 1) * 1000  # the same key always means the same fields
        number = TARGETS[int(key[1:]) % len(TARGETS)]
        jobs.append(RechargeRequest(agent.agent_id, Kind.MOBILE, number, amount, TRADE_PIN, key))
    queue: asyncio.Queue[RechargeRequest] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    refused: list[Rule] = []

    async def worker(service: LedgerService) -> None:
        while not queue.empty():
            job = queue.get_nowait()
            try:
                await service.recharge(job)
            except Refusal as refusal:
                refused.append(refusal.rule)

    await asyncio.gather(*(worker(s) for s in workers))
    views = await first.recharges()
    succeeded = [v for v in views if v.status is RechargeStatus.SUCCEEDED]
    assert succeeded and set(refused) <= {Rule.INSUFFICIENT_FUNDS}
    assert Rule.INSUFFICIENT_FUNDS in refused  # the float did run dry
    assert len({v.tx_id for v in views}) == len(views)
    final = (await first.agent(agent.agent_id)).balance_fen
    assert final >= 0
    assert final == 500_000 - sum(v.debit_fen for v in succeeded)
    for number in TARGETS:
        view = await first.subscriber(number)
        assert view is not None
        assert view.balance_fen == sum(v.amount_fen for v in succeeded if v.number == number)
    # every key moved money at most once
    keys = {job.key for job in jobs}
    assert len(succeeded) <= len(keys)


@pytest.mark.slow
async def test_same_key_from_eight_workers_at_once(pg_ledgers: list[LedgerService]) -> None:
    first = pg_ledgers[0]
    agent = await new_agent(first)
    await first.add_subscriber(TARGETS[0], Kind.MOBILE, Billing.PREPAID)
    request = RechargeRequest(agent.agent_id, Kind.MOBILE, TARGETS[0], 5000, TRADE_PIN, "dup")
    views = await asyncio.gather(*(s.recharge(request) for s in pg_ledgers))
    assert len({v.tx_id for v in views}) == 1
    assert (await first.agent(agent.agent_id)).balance_fen == 100_000 - 4900


@pytest.mark.slow
async def test_concurrent_reversals_respect_the_monthly_limit(
    pg_ledgers: list[LedgerService],
) -> None:
    first = pg_ledgers[0]
    agent = await new_agent(first)
    await first.add_subscriber("02787654321", Kind.FIXED, Billing.POSTPAID)
    txs = [
        (
            await first.recharge(
                RechargeRequest(agent.agent_id, Kind.FIXED, "02787654321", 1000, TRADE_PIN, f"r{i}")
            )
        ).tx_id
        for i in range(8)
    ]

    async def reverse(service: LedgerService, tx: int) -> bool:
        try:
            await service.reverse(tx, f"rev{tx}")
            return True
        except Refusal as refusal:
            assert refusal.rule is Rule.REVERSAL_MONTHLY_LIMIT
            return False

    done = await asyncio.gather(*(reverse(s, tx) for s, tx in zip(pg_ledgers, txs, strict=True)))
    assert sum(done) == 1


async def test_sqlite_writers_serialise(ledger: LedgerService) -> None:
    """On SQLite too, concurrent recharges from one process never overdraw (busy timeout +
    BEGIN IMMEDIATE)."""
    agent = await new_agent(ledger, deposit_yuan=500, commission_bp=0)
    await ledger.add_subscriber(TARGETS[0], Kind.MOBILE, Billing.PREPAID)

    async def one(n: int) -> bool:
        try:
            await ledger.recharge(
                RechargeRequest(agent.agent_id, Kind.MOBILE, TARGETS[0], 10000, TRADE_PIN, f"s{n}")
            )
            return True
        except Refusal as refusal:
            assert refusal.rule is Rule.INSUFFICIENT_FUNDS
            return False

    done = await asyncio.gather(*(one(n) for n in range(12)))
    assert sum(done) == 5
    assert (await ledger.agent(agent.agent_id)).balance_fen == 0


async def test_a_workers_phone_cache_never_outlives_a_change_of_bound_phone(
    pg_ledgers: list[LedgerService],
) -> None:
    """A worker answers "whose phone is this?" from its cache; an operator elsewhere moves the
    agent to another phone, opens an agent on a phone the worker knew as nobody's, closes
    one: the worker's next answers follow at once (the database's notice clears its cache)."""
    operator, worker = pg_ledgers[0], pg_ledgers[1]
    assert worker.ctx.writer.cache is not None  # type: ignore[attr-defined]
    agent = await new_agent(operator, phone="13800000001")
    await operator.add_subscriber("13800000002", Kind.MOBILE, Billing.PREPAID)
    await operator.add_subscriber("13800000003", Kind.MOBILE, Billing.PREPAID)
    assert await worker.agent_id_for_phone("13800000001") == agent.agent_id  # now cached
    assert await worker.agent_id_for_phone("13800000003") is None  # cached as nobody's

    async def answers(phone: str, expected: int | None) -> bool:
        for _ in range(100):  # the notice arrives within milliseconds; allow a second
            if await worker.agent_id_for_phone(phone) == expected:
                return True
            await asyncio.sleep(0.01)
        return False

    await operator.change_phone(agent.agent_id, "13800000002")
    assert await answers("13800000001", None)
    assert await answers("13800000002", agent.agent_id)
    other = await new_agent(operator, phone="13800000003", deposit_yuan=500)
    assert await answers("13800000003", other.agent_id)
    await operator.transfer_to_phone(other.agent_id, 50_000, TRADE_PIN, "empty")
    await operator.close_agent(other.agent_id, "close")
    assert await answers("13800000003", None)


@pytest.mark.parametrize("mode", ["internal", "external"])
async def test_many_agents_recharging_one_prepaid_number_never_deadlock(
    pg_ledgers: list[LedgerService], mode: str
) -> None:
    """Every recharge of a prepaid number updates its row (validity) after locking it at
    admission: the lock must be taken exclusive, and before the float by every path (the
    reservation's resolution too), or two recharges of one number deadlock (seen with a
    shared lock: 'deadlock detected')."""
    if mode == "external":
        billing = ScriptedBilling()
        for service in pg_ledgers:
            service.billing = billing
    target = "13900000099"
    await pg_ledgers[0].add_subscriber(target, Kind.MOBILE, Billing.PREPAID)
    agents = [
        await new_agent(pg_ledgers[0], phone=f"1380000{n:04d}", deposit_yuan=5000) for n in range(8)
    ]

    async def agent_recharges(service: LedgerService, agent_id: int) -> None:
        for n in range(12):
            request = RechargeRequest(
                agent_id, Kind.MOBILE, target, 1000, TRADE_PIN, f"a{agent_id}-{n}"
            )
            view = await service.recharge(request)
            assert view.status is RechargeStatus.SUCCEEDED

    await asyncio.gather(
        *(agent_recharges(s, a.agent_id) for s, a in zip(pg_ledgers, agents, strict=True))
    )
    assert (await pg_ledgers[0].subscriber(target)).balance_fen == 8 * 12 * 1000  # type: ignore[union-attr]
