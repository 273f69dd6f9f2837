"""Group commit: concurrent recharges of one process share a transaction, and every rule,
key and refusal still holds per recharge."""

from __future__ import annotations

import asyncio

import pytest

from smsmenu.ledger.api import Billing, Kind, RechargeRequest, RechargeStatus, Refusal, Rule
from smsmenu.ledger.outbox import Outbox
from smsmenu.ledger.service import LedgerService
from tests.ledger_fixtures import TRADE_PIN, new_agent

TARGETS = [f"1390000{i:04d}" for i in range(5)]


@pytest.fixture
def ledger_group_commit() -> bool:
    return True


async def warm(ledger: LedgerService, agent_id: int) -> None:
    """The trade password verified once: the cache knows it, so recharges join batches (one the
    cache does not know leaves its batch to be counted and checked on its own)."""
    await ledger.balance(agent_id, TRADE_PIN)


async def outcome(ledger: LedgerService, request: RechargeRequest) -> object:
    try:
        return await ledger.recharge(request)
    except Refusal as refusal:
        return refusal.rule


async def test_many_at_once_share_transactions(ledger: LedgerService) -> None:
    agent = await new_agent(ledger, deposit_yuan=2000, commission_bp=100)
    other = await new_agent(ledger, phone="13800000002", deposit_yuan=500)
    for number in TARGETS:
        await ledger.add_subscriber(number, Kind.MOBILE, Billing.PREPAID)
    await warm(ledger, agent.agent_id)
    requests = [
        RechargeRequest(agent.agent_id, Kind.MOBILE, TARGETS[n % 5], 10000, TRADE_PIN, f"k{n}")
        for n in range(30)  # 30 × 99 yuan > 2000 yuan: some must be refused
    ]
    requests += [
        RechargeRequest(agent.agent_id, Kind.MOBILE, TARGETS[0], 10000, TRADE_PIN, "k0"),  # repeat
        RechargeRequest(agent.agent_id, Kind.MOBILE, "13900009999", 1000, TRADE_PIN, "u"),
        RechargeRequest(agent.agent_id, Kind.FIXED, "02787654321", 1000, TRADE_PIN, "f"),
        RechargeRequest(other.agent_id, Kind.MOBILE, TARGETS[1], 1000, "000001", "w"),
        RechargeRequest(other.agent_id, Kind.MOBILE, TARGETS[1], 1000, TRADE_PIN, "o"),
        RechargeRequest(agent.agent_id, Kind.MOBILE, TARGETS[0], 20000, TRADE_PIN, "k1"),  # reused
    ]
    results = await asyncio.gather(*(outcome(ledger, r) for r in requests))
    assert ledger.batches < len(requests) / 2  # they really were batched
    views = [r for r in results if not isinstance(r, Rule)]
    first = {v.tx_id for v in views}  # type: ignore[attr-defined]
    assert results[0] == results[30]  # the repeated key got the first result
    assert results[31] is Rule.TARGET_UNKNOWN
    assert results[32] is Rule.TARGET_UNKNOWN
    assert results[33] is Rule.WRONG_PIN
    assert isinstance(results[34], type(results[0]))
    assert results[35] is Rule.KEY_REUSED
    refused_funds = [r for r in results[:30] if r is Rule.INSUFFICIENT_FUNDS]
    succeeded = await ledger.recharges(agent.agent_id)
    assert len(succeeded) == 30 - len(refused_funds) == 20  # 2000 / 99 = 20.2
    assert all(v.status is RechargeStatus.SUCCEEDED for v in succeeded)
    assert {v.tx_id for v in succeeded} <= first
    float_after = (await ledger.agent(agent.agent_id)).balance_fen
    assert float_after == 200_000 - 20 * 9900 == 2000
    assert sorted(v.float_after_fen or 0 for v in succeeded) == sorted(
        200_000 - 9900 * n for n in range(1, 21)
    )
    everyone = await ledger.recharges()  # the other agent's included
    for number in TARGETS:
        sub = await ledger.subscriber(number)
        assert sub is not None
        assert sub.balance_fen == sum(v.amount_fen for v in everyone if v.number == number)
    rows = await Outbox(ledger.engine, ledger.clock).rows()
    assert len([m for m in rows if m.kind == "agent_result"]) == 21
    assert len([m for m in rows if m.kind == "target_receipt"]) == 21
    # the wrong PIN was counted, unless the right one ("o", at the same time) was counted after
    # it and so reset the count
    with pytest.raises(Refusal) as caught:
        await ledger.balance(other.agent_id, "000002")
    assert caught.value.params["remaining"] in (1, 2)


async def test_a_failing_batch_falls_back_to_one_by_one(ledger: LedgerService) -> None:
    agent = await new_agent(ledger)
    for number in TARGETS:
        await ledger.add_subscriber(number, Kind.MOBILE, Billing.PREPAID)
    await warm(ledger, agent.agent_id)

    def faults(step: str) -> None:
        if step == "batch":
            raise RuntimeError("the batch transaction dies")

    ledger.faults = faults
    requests = [
        RechargeRequest(agent.agent_id, Kind.MOBILE, TARGETS[n], 1000, TRADE_PIN, f"k{n}")
        for n in range(5)
    ]
    views = await asyncio.gather(*(ledger.recharge(r) for r in requests))
    assert ledger.batches == 0
    assert [v.status for v in views] == [RechargeStatus.SUCCEEDED] * 5
    assert (await ledger.agent(agent.agent_id)).balance_fen == 100_000 - 5 * 980


async def test_a_refused_key_is_free_for_its_twin_in_the_batch(ledger: LedgerService) -> None:
    agent = await new_agent(ledger, deposit_yuan=500)
    await ledger.add_subscriber(TARGETS[0], Kind.MOBILE, Billing.PREPAID)
    twin = RechargeRequest(agent.agent_id, Kind.MOBILE, TARGETS[0], 100000, TRADE_PIN, "twin")
    results = await asyncio.gather(outcome(ledger, twin), outcome(ledger, twin))
    assert results == [Rule.INSUFFICIENT_FUNDS, Rule.INSUFFICIENT_FUNDS]
    await ledger.deposit(agent.agent_id, 50000, "more")
    views = await asyncio.gather(ledger.recharge(twin), ledger.recharge(twin))
    assert views[0] == views[1] and views[0].status is RechargeStatus.SUCCEEDED
    assert (await ledger.agent(agent.agent_id)).balance_fen == 100000 - 98000


async def test_a_lone_recharge_is_not_batched(ledger: LedgerService) -> None:
    """Adaptive: with nobody to share a transaction with, a recharge runs on its own at once."""
    agent = await new_agent(ledger)
    await ledger.add_subscriber(TARGETS[0], Kind.MOBILE, Billing.PREPAID)
    for n in range(3):
        view = await ledger.recharge(
            RechargeRequest(agent.agent_id, Kind.MOBILE, TARGETS[0], 1000, TRADE_PIN, f"k{n}")
        )
        assert view.status is RechargeStatus.SUCCEEDED
    assert ledger.batches == 0
    assert (await ledger.agent(agent.agent_id)).balance_fen == 100_000 - 3 * 980
