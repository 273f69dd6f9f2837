"""Passwords under attack (SPEC §10) on SQLite and PostgreSQL: every path that checks a trade or
management password counts the attempt with a guarded write before the slow hash, so that
concurrent guesses get no more than three answers per lock period, on a cold or a warm cache."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import select, update

from smsmenu.clock import FakeClock
from smsmenu.ledger.agent_cache import AgentCache
from smsmenu.ledger.api import (
    AgentView,
    Billing,
    Kind,
    RechargeRequest,
    RechargeStatus,
    Refusal,
    Rule,
)
from smsmenu.ledger.billing import InternalBilling, ScriptedBilling
from smsmenu.ledger.db import create_engine
from smsmenu.ledger.models import agents
from smsmenu.ledger.outbox import Outbox
from smsmenu.ledger.service import LedgerService
from smsmenu.settings import Settings
from tests.ledger_fixtures import MGMT_PIN, TRADE_PIN, new_agent

MOBILE = "13900000002"
WRONG = [f"{n:06d}" for n in range(100001, 100031)]  # 30 wrong passwords, all well formed
LOCK = timedelta(minutes=30)


@dataclass(frozen=True)
class Outcome:
    kind: str  # "ok" | "wrong" | "locked"
    rule: Rule | None = None
    remaining: int | None = None
    until: datetime | None = None


async def outcome(call: Awaitable[object]) -> Outcome:
    try:
        result = await call
    except Refusal as refusal:
        if refusal.rule in (Rule.WRONG_PIN, Rule.WRONG_MGMT_PIN):
            return Outcome("wrong", refusal.rule, remaining=refusal.params["remaining"])
        if refusal.rule in (Rule.PIN_LOCKED, Rule.MGMT_PIN_LOCKED):
            return Outcome("locked", refusal.rule, until=refusal.params["until"])
        raise
    if result is False:  # the web login says no more than no
        return Outcome("wrong")
    return Outcome("ok")


@dataclass(frozen=True)
class Operation:
    """One path that checks a password: how to try it, and which password it checks."""

    attempt: Callable[[LedgerService, AgentView, str, int], Awaitable[object]]
    trade: bool = True
    billing: Callable[[], Any] = InternalBilling


def _recharge(ledger: LedgerService, agent: AgentView, pin: str, n: int) -> Awaitable[object]:
    request = RechargeRequest(agent.agent_id, Kind.MOBILE, MOBILE, 1000, pin, f"k{n}")
    return ledger.recharge(request)


OPERATIONS = {
    "recharge": Operation(_recharge),
    "recharge-two-phase": Operation(_recharge, billing=ScriptedBilling),
    "balance": Operation(lambda ledger, agent, pin, n: ledger.balance(agent.agent_id, pin)),
    "records": Operation(lambda ledger, agent, pin, n: ledger.recent(agent.agent_id, pin)),
    "transfer": Operation(
        lambda ledger, agent, pin, n: ledger.transfer_to_phone(agent.agent_id, 1000, pin, f"t{n}")
    ),
    "change-trade-pin": Operation(
        lambda ledger, agent, pin, n: ledger.change_trade_pin(agent.agent_id, pin, "975310")
    ),
    "change-mgmt-pin": Operation(
        lambda ledger, agent, pin, n: ledger.change_mgmt_pin(agent.agent_id, pin, "975310"),
        trade=False,
    ),
    "web-login": Operation(
        lambda ledger, agent, pin, n: ledger.verify_mgmt_pin(agent.agent_id, pin), trade=False
    ),
}


def worker(ledger: LedgerService, operation: Operation) -> LedgerService:
    """Another process on the same database (its own, cold verify cache)."""
    return LedgerService(
        ledger.engine,
        ledger.clock,
        ledger.catalogue,
        ledger.settings,
        operation.billing(),
    )


async def setup(ledger: LedgerService) -> AgentView:
    agent = await new_agent(ledger)
    await ledger.add_subscriber(MOBILE, Kind.MOBILE, Billing.PREPAID, 500)
    return agent


async def books(ledger: LedgerService, agent: AgentView) -> tuple[object, ...]:
    """Everything an operation could have changed: money, recharges, notices, passwords."""
    async with ledger.engine.connect() as conn:
        hashes = (
            await conn.execute(
                select(agents.c.trade_hash, agents.c.mgmt_hash).where(agents.c.id == agent.agent_id)
            )
        ).one()
    return (
        await ledger.agent(agent.agent_id),
        await ledger.subscriber(agent.phone),
        await ledger.subscriber(MOBILE),
        await ledger.recharges(),
        len(await Outbox(ledger.engine, ledger.clock).rows()),
        tuple(hashes),
    )


async def counters(ledger: LedgerService, agent: AgentView) -> tuple[Any, ...]:
    """(trade failures, trade lock, management failures, management lock) as stored."""
    async with ledger.engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    agents.c.pin_failures,
                    agents.c.pin_locked_until,
                    agents.c.mgmt_failures,
                    agents.c.mgmt_locked_until,
                ).where(agents.c.id == agent.agent_id)
            )
        ).one()
    return tuple(row)


async def warm(ledger: LedgerService, agent: AgentView, trade: bool) -> None:
    """Verify the right password once: the cache knows it from now on."""
    if trade:
        assert await ledger.balance(agent.agent_id, TRADE_PIN) == agent.balance_fen
    else:
        assert await ledger.verify_mgmt_pin(agent.agent_id, MGMT_PIN)


@pytest.mark.parametrize("cache", ["cold", "warm"])
@pytest.mark.parametrize("name", list(OPERATIONS))
async def test_thirty_concurrent_wrong_passwords_get_three_answers(
    ledger: LedgerService, clock: FakeClock, name: str, cache: str
) -> None:
    operation = OPERATIONS[name]
    agent = await setup(ledger)
    attacked = worker(ledger, operation)
    if cache == "warm":
        await warm(attacked, agent, operation.trade)
    before = await books(ledger, agent)
    slow = attacked.pins.slow_verifies
    outcomes = await asyncio.gather(
        *(outcome(operation.attempt(attacked, agent, pin, n)) for n, pin in enumerate(WRONG))
    )
    hashed = attacked.pins.slow_verifies - slow
    assert hashed <= (3 if cache == "cold" else 0)
    wrong = [o for o in outcomes if o.kind == "wrong"]
    locked = [o for o in outcomes if o.kind == "locked"]
    assert (len(wrong), len(locked)) == (2, 28), outcomes
    if name != "web-login":
        assert sorted(o.remaining or 0 for o in wrong) == [1, 2]
    until = clock.now() + LOCK
    assert {o.until for o in locked} == {until}
    lock_rule = Rule.PIN_LOCKED if operation.trade else Rule.MGMT_PIN_LOCKED
    assert {o.rule for o in locked} == {lock_rule}
    # three counted: the third set the lock and confirmed it (its count back to zero), for
    # this password only
    expected = (0, until, 0, None) if operation.trade else (0, None, 0, until)
    assert await counters(ledger, agent) == expected
    assert await books(ledger, agent) == before  # nothing moved, nothing changed
    # the right password is refused too while locked, even with the cache knowing it
    right = TRADE_PIN if operation.trade else MGMT_PIN
    for service in (attacked, worker(ledger, operation)):
        late = await outcome(operation.attempt(service, agent, right, 99))
        assert (late.kind, late.rule, late.until) == ("locked", lock_rule, until)
    assert await books(ledger, agent) == before


@pytest.mark.parametrize("cache", ["cold", "warm"])
@pytest.mark.parametrize("name", ["recharge", "recharge-two-phase", "balance", "web-login"])
async def test_a_right_password_among_thirty_wrong_ones(
    ledger: LedgerService, name: str, cache: str
) -> None:
    """It either went through (it was answered before the third wrong one) or was refused as
    locked; a success resets the count once, so at most two rows of three were answered."""
    operation = OPERATIONS[name]
    agent = await setup(ledger)
    attacked = worker(ledger, operation)
    if cache == "warm":
        await warm(attacked, agent, operation.trade)
    right = TRADE_PIN if operation.trade else MGMT_PIN
    pins = [*WRONG[:15], right, *WRONG[15:]]
    slow = attacked.pins.slow_verifies
    outcomes = await asyncio.gather(
        *(outcome(operation.attempt(attacked, agent, pin, n)) for n, pin in enumerate(pins))
    )
    assert attacked.pins.slow_verifies - slow <= (6 if cache == "cold" else 0)
    mine = outcomes.pop(15)
    assert mine.kind in ("ok", "locked")
    assert {o.kind for o in outcomes} <= {"wrong", "locked"}
    assert len([o for o in outcomes if o.kind == "wrong"]) <= (4 if mine.kind == "ok" else 2)
    recharges = await ledger.recharges()
    if name.startswith("recharge") and mine.kind == "ok":
        assert [r.status for r in recharges] == [RechargeStatus.SUCCEEDED]
    else:
        assert recharges == []


async def test_three_wrong_management_passwords_lock_management_for_thirty_minutes(
    ledger: LedgerService, clock: FakeClock
) -> None:
    agent = await setup(ledger)
    with pytest.raises(Refusal) as caught:
        await ledger.change_mgmt_pin(agent.agent_id, "000001", "975310")
    assert caught.value.rule is Rule.WRONG_MGMT_PIN and caught.value.params == {"remaining": 2}
    assert "管理密码错误" in ledger.explain(caught.value)
    assert not await ledger.verify_mgmt_pin(agent.agent_id, "000002")  # the web login counts
    with pytest.raises(Refusal) as caught:
        await ledger.change_mgmt_pin(agent.agent_id, "000003", "975310")
    assert caught.value.rule is Rule.MGMT_PIN_LOCKED
    assert caught.value.params == {"until": clock.now() + LOCK}
    assert "2026-11-10 10:30" in ledger.explain(caught.value)  # 10:00 Shanghai + 30 min
    # it survives a restart and refuses the right password; trade operations go on
    restarted = LedgerService(ledger.engine, clock, ledger.catalogue, ledger.settings)
    for call in (
        restarted.verify_mgmt_pin(agent.agent_id, MGMT_PIN),
        restarted.change_mgmt_pin(agent.agent_id, MGMT_PIN, "975310"),
    ):
        with pytest.raises(Refusal) as caught:
            await call
        assert caught.value.rule is Rule.MGMT_PIN_LOCKED
    assert await restarted.balance(agent.agent_id, TRADE_PIN) == agent.balance_fen
    clock.advance(30 * 60 - 1)
    with pytest.raises(Refusal):
        await restarted.verify_mgmt_pin(agent.agent_id, MGMT_PIN)
    clock.advance(1)
    assert await restarted.verify_mgmt_pin(agent.agent_id, MGMT_PIN)
    # a right one resets the count: two wrong ones, a right one, two wrong ones: no lock
    for pin in ("000001", "000002", MGMT_PIN, "000003", "000004"):
        await restarted.verify_mgmt_pin(agent.agent_id, pin)
    assert await counters(ledger, agent) == (0, None, 2, None)


async def test_a_right_password_refused_for_another_reason_counts_nothing(
    ledger: LedgerService,
) -> None:
    """Each worker checks the password on a cold cache and counts the attempt first; a right
    one gives the count back even when the operation is then refused (here: funds)."""
    agent = await setup(ledger)
    await ledger.transfer_to_phone(agent.agent_id, 100_000, TRADE_PIN, "empty the float")
    for n in range(4):
        request = RechargeRequest(agent.agent_id, Kind.MOBILE, MOBILE, 1000, TRADE_PIN, f"b{n}")
        with pytest.raises(Refusal) as caught:
            await worker(ledger, OPERATIONS["recharge"]).recharge(request)
        assert caught.value.rule is Rule.INSUFFICIENT_FUNDS
    assert await counters(ledger, agent) == (0, None, 0, None)


@pytest.mark.parametrize("name", ["recharge", "recharge-two-phase", "balance", "web-login"])
async def test_a_hash_of_an_older_release_is_redone_with_the_pepper(
    ledger: LedgerService, name: str
) -> None:
    """A plain argon2 hash of the PIN (as stored before the pepper) still verifies, and is
    replaced by a peppered one in the same transaction as the operation."""
    operation = OPERATIONS[name]
    agent = await setup(ledger)
    right = TRADE_PIN if operation.trade else MGMT_PIN
    column = agents.c.trade_hash if operation.trade else agents.c.mgmt_hash
    legacy = PasswordHasher(time_cost=2, memory_cost=4096, parallelism=1).hash(right)
    async with ledger.engine.begin() as conn:
        await conn.execute(
            update(agents).where(agents.c.id == agent.agent_id).values({column: legacy})
        )
    first = worker(ledger, operation)
    assert (await outcome(operation.attempt(first, agent, right, 1))).kind == "ok"
    async with ledger.engine.connect() as conn:
        stored = (await conn.execute(select(column).where(agents.c.id == agent.agent_id))).scalar()
    assert stored != legacy and not first.pins.needs_rehash(stored)
    with pytest.raises(VerificationError):
        PasswordHasher().verify(stored[stored.index("$argon2") :], right)
    again = worker(ledger, operation)  # a cold cache: the new hash itself verifies
    assert (await outcome(operation.attempt(again, agent, right, 2))).kind == "ok"
    assert again.pins.slow_verifies == 1


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_recharge_planned_on_a_stale_copy_of_its_agent_is_refused(
    ledger: LedgerService, ledger_settings: Settings, clock: FakeClock
) -> None:
    """A worker plans a recharge on its cached copy of the agent's row; a lock set since (by
    another worker) makes the database answer ``stale``: the row is read again and the rules
    refuse it, and nothing moves. (The copy is kept from the notices here, to see the
    database's own check.)"""
    agent = await setup(ledger)
    cache = AgentCache()  # not listening: its copy goes stale
    worker_ledger = LedgerService(
        ledger.engine, clock, ledger.catalogue, ledger_settings, agent_cache=cache
    )
    try:
        request = RechargeRequest(agent.agent_id, Kind.MOBILE, MOBILE, 1000, TRADE_PIN, "warm")
        await worker_ledger.recharge(request)  # the copy, and the password in its cache
        copy = cache.row(agent.agent_id)
        assert copy is not None
        for n in range(3):
            with pytest.raises(Refusal):
                await ledger.balance(agent.agent_id, WRONG[n])
        before = await books(ledger, agent)
        assert cache.row(agent.agent_id) == copy  # still the stale copy
        with pytest.raises(Refusal) as caught:
            await worker_ledger.recharge(replace(request, key="late"))
        assert caught.value.rule is Rule.PIN_LOCKED
        assert caught.value.params == {"until": clock.now() + LOCK}
        assert await books(ledger, agent) == before
        fresh = cache.row(agent.agent_id)
        assert fresh is not None and fresh.version > copy.version
    finally:
        await worker_ledger.aclose()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_pg_recharge_round_trips(
    ledger: LedgerService, ledger_settings: Settings, clock: FakeClock
) -> None:
    """A worker's recharge whose agent it has cached and whose password the cache knows is one
    function call; with nothing cached, a read comes first; a password the cache does not know
    adds its count (statements seen by the only connection)."""
    engine = create_engine(ledger_settings.database_url, pool_size=1)
    cache = AgentCache()
    service = LedgerService(engine, clock, ledger.catalogue, ledger_settings, agent_cache=cache)
    try:
        agent = await setup(service)
        async with engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
        statements: list[str] = []
        raw.add_query_logger(lambda record: statements.append(record.query))
        # cold: read, count, read again (the count changed the row), call; then warm: call
        for key, expected in (("cold", 4), ("warm", 1)):
            statements.clear()
            request = RechargeRequest(agent.agent_id, Kind.MOBILE, MOBILE, 1000, TRADE_PIN, key)
            assert (await service.recharge(request)).status is RechargeStatus.SUCCEEDED
            assert len(statements) == expected, "\n".join(q[:70] for q in statements)
            assert "ledger_recharge" in statements[-1]
    finally:
        await service.aclose()
        await engine.dispose()
