"""Operator functions (SPEC §7) on SQLite and PostgreSQL: open, deposit, close, reversal,
invoices, suspend/resume, change of bound phone, reports and the trial balance."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from smsmenu.clock import FakeClock
from smsmenu.ledger.api import (
    AgentStatus,
    AgentView,
    Billing,
    Kind,
    RechargeRequest,
    RechargeStatus,
    Refusal,
    Rule,
    SubscriberStatus,
)
from smsmenu.ledger.outbox import Outbox
from smsmenu.ledger.service import LedgerService
from tests.ledger_fixtures import MGMT_PIN, TRADE_PIN, new_agent

SHANGHAI = ZoneInfo("Asia/Shanghai")
PHONE = "13800000001"
FIXED = "02787654321"
MOBILE = "13900000002"


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).astimezone(UTC)


async def refusal_of(awaitable: object, rule: Rule) -> Refusal:
    with pytest.raises(Refusal) as caught:
        await awaitable  # type: ignore[misc]
    assert caught.value.rule is rule, caught.value
    return caught.value


# ---- opening --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deposit_fen", "rule"), [(49_900, Rule.OPENING_DEPOSIT_TOO_SMALL), (50_000, None)]
)
async def test_opening_deposit_boundary(
    ledger: LedgerService, deposit_fen: int, rule: Rule | None
) -> None:
    await ledger.add_subscriber(PHONE, Kind.MOBILE, Billing.PREPAID)
    opening = ledger.open_agent(PHONE, TRADE_PIN, MGMT_PIN, deposit_fen)
    if rule:
        await refusal_of(opening, rule)
        assert await ledger.agent_for_phone(PHONE) is None
        assert (await ledger.trial_balance()).system_fen["cash"] == 0
    else:
        view = await opening
        assert (view.balance_fen, view.status, view.commission_bp) == (
            50_000,
            AgentStatus.ACTIVE,
            200,
        )
        assert await ledger.agent_for_phone(PHONE) == view
        assert (await ledger.trial_balance()).system_fen["cash"] == -50_000


async def test_opening_sends_the_agent_id_to_the_bound_phone(ledger: LedgerService) -> None:
    agent = await new_agent(ledger, commission_bp=None)
    assert agent.commission_bp == ledger.settings.default_commission_bp
    rows = await Outbox(ledger.engine, ledger.clock).rows()
    assert [(m.kind, m.destination) for m in rows] == [("agent_opened", PHONE)]
    assert str(agent.agent_id) in rows[0].text
    assert TRADE_PIN not in rows[0].text and MGMT_PIN not in rows[0].text


async def test_opening_refusals(ledger: LedgerService) -> None:
    await ledger.add_subscriber(PHONE, Kind.MOBILE, Billing.PREPAID)
    await ledger.add_subscriber(FIXED, Kind.FIXED, Billing.PREPAID)
    await ledger.add_subscriber(
        "13800000002", Kind.MOBILE, Billing.PREPAID, status=SubscriberStatus.SUSPENDED
    )
    cases = [
        ("13800000009", TRADE_PIN, MGMT_PIN, Rule.PHONE_UNKNOWN),
        (FIXED, TRADE_PIN, MGMT_PIN, Rule.BAD_NUMBER),
        ("13800000002", TRADE_PIN, MGMT_PIN, Rule.PHONE_NOT_ACTIVE),
        (PHONE, "12345", MGMT_PIN, Rule.BAD_PIN_FORMAT),
        (PHONE, TRADE_PIN, "1234567", Rule.BAD_PIN_FORMAT),
        (PHONE, "123456", MGMT_PIN, Rule.WEAK_PIN),
        (PHONE, TRADE_PIN, "000000", Rule.WEAK_PIN),
    ]
    for phone, trade, mgmt, rule in cases:
        await refusal_of(ledger.open_agent(phone, trade, mgmt, 50_000), rule)
    await refusal_of(
        ledger.open_agent(PHONE, TRADE_PIN, MGMT_PIN, 50_000, 10_001), Rule.BAD_COMMISSION
    )
    await ledger.open_agent(PHONE, TRADE_PIN, MGMT_PIN, 50_000)
    await refusal_of(
        ledger.open_agent(PHONE, TRADE_PIN, MGMT_PIN, 50_000), Rule.PHONE_ALREADY_BOUND
    )


async def test_phone_not_mobile(ledger: LedgerService) -> None:
    # a PHS number is area-coded, so it fails the mobile format first; a "mobile-looking"
    # number registered as another kind is refused as not mobile
    await ledger.add_subscriber("02787654321", Kind.PHS, Billing.PREPAID)
    await refusal_of(ledger.open_agent("02787654321", TRADE_PIN, MGMT_PIN, 50_000), Rule.BAD_NUMBER)


async def test_open_is_idempotent(ledger: LedgerService) -> None:
    await ledger.add_subscriber(PHONE, Kind.MOBILE, Billing.PREPAID)
    first = await ledger.open_agent(PHONE, TRADE_PIN, MGMT_PIN, 50_000, key="open-1")
    assert await ledger.open_agent(PHONE, TRADE_PIN, MGMT_PIN, 50_000, key="open-1") == first
    assert (await ledger.trial_balance()).system_fen["cash"] == -50_000


# ---- deposit ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fen", "ok"), [(0, False), (500, False), (1000, True), (1500, False), (10_000_000_00, True)]
)
async def test_deposit_rules(ledger: LedgerService, fen: int, ok: bool) -> None:
    agent = await new_agent(ledger, deposit_yuan=500)
    if ok:
        view = await ledger.deposit(agent.agent_id, fen, "d")
        assert view.float_after_fen == 50_000 + fen
        assert await ledger.deposit(agent.agent_id, fen, "d") == view  # same key: once
        assert (await ledger.agent(agent.agent_id)).balance_fen == 50_000 + fen
    else:
        await refusal_of(ledger.deposit(agent.agent_id, fen, "d"), Rule.BAD_DEPOSIT)
        assert (await ledger.agent(agent.agent_id)).balance_fen == 50_000


# ---- close ------------------------------------------------------------------------------------


async def drain_to(ledger: LedgerService, agent: AgentView, target_fen: int) -> None:
    """Bring the float to ``target_fen`` (a multiple of 1000 + at most 999 fen) by transfers
    to the bound phone and 10-yuan recharges debiting 1 fen each (commission 99.99%)."""
    float_fen = (await ledger.agent(agent.agent_id)).balance_fen
    n = 0
    while float_fen - target_fen >= 1000:
        step = min(100_000, (float_fen - target_fen) // 1000 * 1000)
        await ledger.transfer_to_phone(agent.agent_id, step, TRADE_PIN, f"drain-{n}")
        float_fen -= step
        n += 1
    while float_fen > target_fen:
        await ledger.recharge(
            RechargeRequest(agent.agent_id, Kind.MOBILE, MOBILE, 1000, TRADE_PIN, f"one-fen-{n}")
        )
        float_fen -= 1
        n += 1
    assert (await ledger.agent(agent.agent_id)).balance_fen == target_fen


async def test_close_only_below_ten_yuan(ledger: LedgerService) -> None:
    agent = await new_agent(ledger, deposit_yuan=500, commission_bp=9999)
    await ledger.add_subscriber(MOBILE, Kind.MOBILE, Billing.PREPAID)
    await drain_to(ledger, agent, 1000)  # 10.00 yuan
    refusal = await refusal_of(ledger.close_agent(agent.agent_id, "c1"), Rule.CLOSE_FLOAT_TOO_HIGH)
    assert "10.00元" in ledger.explain(refusal)
    await drain_to(ledger, agent, 999)  # 9.99 yuan
    closed = await ledger.close_agent(agent.agent_id, "c1")
    assert closed.paid_out_fen == 999
    assert await ledger.close_agent(agent.agent_id, "c1") == closed
    view = await ledger.agent(agent.agent_id)
    assert (view.status, view.balance_fen) == (AgentStatus.CLOSED, 0)
    assert await ledger.agent_for_phone(PHONE) is None
    phone = await ledger.subscriber(PHONE)
    assert phone is not None and phone.status is SubscriberStatus.ACTIVE  # an ordinary subscriber
    balance = await ledger.trial_balance()
    assert balance.system_fen["cash"] == -50_000 + 999
    await refusal_of(ledger.close_agent(agent.agent_id, "c2"), Rule.AGENT_CLOSED)
    await refusal_of(ledger.deposit(agent.agent_id, 1000, "d"), Rule.AGENT_CLOSED)
    await refusal_of(ledger.balance(agent.agent_id, TRADE_PIN), Rule.AGENT_CLOSED)
    # the phone is free to be bound again
    again = await ledger.open_agent(PHONE, TRADE_PIN, MGMT_PIN, 50_000)
    assert again.agent_id != agent.agent_id


async def test_close_with_empty_float(ledger: LedgerService) -> None:
    agent = await new_agent(ledger, deposit_yuan=500)
    await ledger.transfer_to_phone(agent.agent_id, 50_000, TRADE_PIN, "all")
    assert (await ledger.close_agent(agent.agent_id, "c")).paid_out_fen == 0


# ---- suspend, resume, change phone ---------------------------------------------------------------


async def test_suspend_resume_change_phone(ledger: LedgerService) -> None:
    agent = await new_agent(ledger)
    other = await new_agent(ledger, phone="13800000005")
    assert (await ledger.suspend_agent(agent.agent_id)).status is AgentStatus.SUSPENDED
    assert (await ledger.resume_agent(agent.agent_id)).status is AgentStatus.ACTIVE
    await ledger.add_subscriber("13800000006", Kind.MOBILE, Billing.PREPAID)
    await ledger.add_subscriber(
        "13800000007", Kind.MOBILE, Billing.PREPAID, status=SubscriberStatus.SUSPENDED
    )
    await ledger.add_subscriber(FIXED, Kind.FIXED, Billing.PREPAID)
    await refusal_of(ledger.change_phone(agent.agent_id, other.phone), Rule.PHONE_ALREADY_BOUND)
    await refusal_of(ledger.change_phone(agent.agent_id, "13800000009"), Rule.PHONE_UNKNOWN)
    await refusal_of(ledger.change_phone(agent.agent_id, "13800000007"), Rule.PHONE_NOT_ACTIVE)
    await refusal_of(ledger.change_phone(agent.agent_id, FIXED), Rule.BAD_NUMBER)
    moved = await ledger.change_phone(agent.agent_id, "13800000006")
    assert moved.phone == "13800000006"
    assert await ledger.agent_for_phone(PHONE) is None
    assert await ledger.agent_for_phone("13800000006") == moved
    await refusal_of(ledger.suspend_agent(999), Rule.AGENT_UNKNOWN)


# ---- reversal -----------------------------------------------------------------------------------


async def reversal_setup(
    ledger: LedgerService, billing: Billing = Billing.POSTPAID, balance: int = 0
) -> AgentView:
    agent = await new_agent(ledger, commission_bp=200)
    await ledger.add_subscriber(FIXED, Kind.FIXED, billing, balance)
    return agent


async def recharge(ledger: LedgerService, agent: AgentView, key: str, yuan: int = 100) -> int:
    view = await ledger.recharge(
        RechargeRequest(agent.agent_id, Kind.FIXED, FIXED, yuan * 100, TRADE_PIN, key)
    )
    assert view.status is RechargeStatus.SUCCEEDED
    return view.tx_id


async def test_reversal_is_the_exact_inverse(ledger: LedgerService, clock: FakeClock) -> None:
    agent = await reversal_setup(ledger)
    tx = await recharge(ledger, agent, "r")
    clock.advance(30 * 60)  # exactly 30 minutes: still allowed
    view = await ledger.reverse(tx, "rev")
    assert (view.recharge_tx_id, view.amount_fen, view.commission_fen, view.debit_fen) == (
        tx,
        10000,
        200,
        9800,
    )
    assert view.float_after_fen == 100_000
    assert (await ledger.agent(agent.agent_id)).balance_fen == 100_000
    fixed = await ledger.subscriber(FIXED)
    assert fixed is not None and fixed.balance_fen == 0
    assert (await ledger.trial_balance()).system_fen["commission_expense"] == 0
    assert (await ledger.recharge_view(tx)).status is RechargeStatus.REVERSED
    assert await ledger.reverse(tx, "rev") == view  # idempotent
    await refusal_of(ledger.reverse(tx, "rev-2"), Rule.REVERSAL_NOT_SUCCEEDED)
    notices = [m for m in await Outbox(ledger.engine, clock).rows() if m.kind == "reversal_notice"]
    assert len(notices) == 1 and str(tx) in notices[0].text


async def test_reversal_after_thirty_minutes_and_one_second(
    ledger: LedgerService, clock: FakeClock
) -> None:
    agent = await reversal_setup(ledger)
    tx = await recharge(ledger, agent, "r")
    clock.advance(30 * 60 + 1)
    await refusal_of(ledger.reverse(tx, "rev"), Rule.REVERSAL_TOO_OLD)


async def test_one_reversal_per_agent_per_month(ledger: LedgerService, clock: FakeClock) -> None:
    agent = await reversal_setup(ledger)
    first = await recharge(ledger, agent, "r1")
    second = await recharge(ledger, agent, "r2")
    await ledger.reverse(first, "rev1")
    refusal = await refusal_of(ledger.reverse(second, "rev2"), Rule.REVERSAL_MONTHLY_LIMIT)
    assert "每月限返销一次" in ledger.explain(refusal)
    # another agent is not limited by this one
    other = await new_agent(ledger, phone="13800000005")
    tx = (
        await ledger.recharge(
            RechargeRequest(other.agent_id, Kind.FIXED, FIXED, 5000, TRADE_PIN, "o")
        )
    ).tx_id
    await ledger.reverse(tx, "rev-other")
    # next month (Shanghai) the agent may reverse again
    clock.set(local("2026-12-01 00:00:00"))
    third = await recharge(ledger, agent, "r3")
    await ledger.reverse(third, "rev3")


async def test_monthly_limit_counts_in_business_months(
    ledger: LedgerService, clock: FakeClock
) -> None:
    agent = await reversal_setup(ledger)
    # 2026-11-30 23:10 UTC is already December 1st, 07:10 in Shanghai
    clock.set(local("2026-11-29 12:00:00"))
    await ledger.reverse(await recharge(ledger, agent, "r1"), "rev1")
    clock.set(datetime(2026, 11, 30, 23, 10, tzinfo=UTC))
    await ledger.reverse(await recharge(ledger, agent, "r2"), "rev2")


async def test_no_reversal_on_the_last_day_of_the_month(
    ledger: LedgerService, clock: FakeClock
) -> None:
    agent = await reversal_setup(ledger)
    clock.set(local("2026-11-30 00:00:00"))
    tx = await recharge(ledger, agent, "r")
    await refusal_of(ledger.reverse(tx, "rev"), Rule.REVERSAL_LAST_DAY)
    clock.set(local("2026-11-29 23:59:00"))
    tx2 = await recharge(ledger, agent, "r2")
    await ledger.reverse(tx2, "rev2")


async def test_no_cross_month_reversal(ledger: LedgerService, clock: FakeClock) -> None:
    agent = await reversal_setup(ledger)
    clock.set(local("2026-10-31 23:50:00"))
    tx = await recharge(ledger, agent, "r")
    clock.set(local("2026-11-01 00:05:00"))  # 15 minutes later, another month
    await refusal_of(ledger.reverse(tx, "rev"), Rule.REVERSAL_CROSS_MONTH)


async def test_no_reversal_after_invoice(ledger: LedgerService) -> None:
    agent = await reversal_setup(ledger)
    tx = await recharge(ledger, agent, "r")
    assert (await ledger.mark_invoice_printed(tx)).tx_id == tx
    await refusal_of(ledger.reverse(tx, "rev"), Rule.REVERSAL_INVOICE_PRINTED)
    await refusal_of(ledger.mark_invoice_printed(999), Rule.RECHARGE_UNKNOWN)


async def test_only_postpaid_targets(ledger: LedgerService) -> None:
    agent = await reversal_setup(ledger, billing=Billing.PREPAID)
    tx = await recharge(ledger, agent, "r")
    await refusal_of(ledger.reverse(tx, "rev"), Rule.REVERSAL_NOT_POSTPAID)


async def test_target_balance_must_cover_the_amount(ledger: LedgerService) -> None:
    agent = await reversal_setup(ledger, balance=-1)  # owes 0.01 before the recharge
    tx = await recharge(ledger, agent, "r")  # balance now 99.99 < 100.00
    refusal = await refusal_of(ledger.reverse(tx, "rev"), Rule.REVERSAL_TARGET_BALANCE)
    assert ledger.explain(refusal)
    await ledger.recharge(
        RechargeRequest(agent.agent_id, Kind.FIXED, FIXED, 1000, TRADE_PIN, "top")
    )
    await ledger.reverse(tx, "rev")  # 109.99 >= 100.00
    fixed = await ledger.subscriber(FIXED)
    assert fixed is not None and fixed.balance_fen == 999


async def test_reversal_refusals_move_nothing(ledger: LedgerService, clock: FakeClock) -> None:
    agent = await reversal_setup(ledger)
    tx = await recharge(ledger, agent, "r")
    clock.advance(3600)
    before = await ledger.trial_balance()
    await refusal_of(ledger.reverse(tx, "rev"), Rule.REVERSAL_TOO_OLD)
    assert await ledger.trial_balance() == before
    await refusal_of(ledger.reverse(12345, "rev"), Rule.RECHARGE_UNKNOWN)
    # the key was not used up by the refusals
    clock.advance(-3600)
    await ledger.reverse(tx, "rev")


# ---- reports ------------------------------------------------------------------------------------


async def test_daily_report_and_records(ledger: LedgerService, clock: FakeClock) -> None:
    """Commission is net: the day's recharges' commission less what the day's reversals
    clawed back (a reversal after midnight claws back on its own day)."""
    agent = await reversal_setup(ledger)
    other = await new_agent(ledger, phone="13800000005", commission_bp=100)
    clock.set(local("2026-11-10 23:50:00"))
    first = await recharge(ledger, agent, "a1", 100)
    await recharge(ledger, agent, "a2", 50)
    await ledger.reverse(first, "rev")
    late = await ledger.recharge(
        RechargeRequest(other.agent_id, Kind.FIXED, FIXED, 2000, TRADE_PIN, "b1")
    )
    clock.set(local("2026-11-11 00:10:00"))  # the next business day
    await recharge(ledger, agent, "a3", 10)
    await ledger.reverse(late.tx_id, "rev-b")

    def summary(day: date) -> Any:
        return [
            (
                r.agent_id,
                r.recharges,
                r.recharged_fen,
                r.commission_fen,
                r.reversals,
                r.reversed_fen,
                r.reversed_commission_fen,
            )
            for r in rows_of[day]
        ]

    rows_of = {
        day: await ledger.daily_report(day) for day in (date(2026, 11, 10), date(2026, 11, 11))
    }
    assert summary(date(2026, 11, 10)) == [
        (agent.agent_id, 2, 15000, 300 - 200, 1, 10000, 200),
        (other.agent_id, 1, 2000, 20, 0, 0, 0),
    ]
    assert summary(date(2026, 11, 11)) == [
        (agent.agent_id, 1, 1000, 20, 0, 0, 0),
        (other.agent_id, 0, 0, -20, 1, 2000, 20),
    ]
    start, end = ledger.day_bounds(date(2026, 11, 10))
    records = await ledger.records(agent.agent_id, start, end)
    # the agent opened at 10:00 that day
    assert [r.kind for r in records] == ["reversal", "recharge", "recharge", "deposit"]
    assert len(await ledger.recharges(agent.agent_id, start, end)) == 2


async def test_trial_balance_catches_a_tampered_balance(ledger: LedgerService) -> None:
    from sqlalchemy import update

    from smsmenu.ledger.models import accounts

    agent = await new_agent(ledger)
    assert (await ledger.trial_balance()).ok
    async with ledger.engine.begin() as conn:
        await conn.execute(
            update(accounts)
            .where(accounts.c.kind == "float")
            .values(balance=accounts.c.balance + 1)
        )
    broken = await ledger.trial_balance()
    assert not broken.ok and broken.total_fen == 1 and broken.mismatched_accounts
    async with ledger.engine.begin() as conn:  # put it back for the teardown check
        await conn.execute(
            update(accounts)
            .where(accounts.c.kind == "float")
            .values(balance=accounts.c.balance - 1)
        )
    assert (await ledger.agent(agent.agent_id)).balance_fen == 100_000


async def test_subscriber_registry(ledger: LedgerService) -> None:
    view = await ledger.add_subscriber(FIXED, Kind.FIXED, Billing.POSTPAID, -2500)
    assert await ledger.subscriber(FIXED) == view
    assert (await ledger.trial_balance()).system_fen["billing"] == 2500
    await refusal_of(
        ledger.add_subscriber(FIXED, Kind.FIXED, Billing.POSTPAID), Rule.SUBSCRIBER_EXISTS
    )
    await refusal_of(
        ledger.add_subscriber("2787654321", Kind.FIXED, Billing.POSTPAID), Rule.BAD_NUMBER
    )
    await refusal_of(
        ledger.set_subscriber_status("13900000000", SubscriberStatus.CLOSED), Rule.TARGET_UNKNOWN
    )
    assert await ledger.subscriber("13900000000") is None


async def test_closing_a_number_is_final(ledger: LedgerService) -> None:
    await ledger.add_subscriber(FIXED, Kind.FIXED, Billing.POSTPAID)
    suspended = await ledger.set_subscriber_status(FIXED, SubscriberStatus.SUSPENDED)
    assert suspended.status is SubscriberStatus.SUSPENDED
    assert (await ledger.set_subscriber_status(FIXED, SubscriberStatus.ACTIVE)).status is (
        SubscriberStatus.ACTIVE
    )
    closed = await ledger.set_subscriber_status(FIXED, SubscriberStatus.CLOSED)
    assert closed.status is SubscriberStatus.CLOSED
    for status in (SubscriberStatus.ACTIVE, SubscriberStatus.SUSPENDED):
        refused = await refusal_of(
            ledger.set_subscriber_status(FIXED, status), Rule.SUBSCRIBER_CLOSED
        )
        assert FIXED in ledger.explain(refused)
    assert await ledger.set_subscriber_status(FIXED, SubscriberStatus.CLOSED) == closed  # no change
    assert await ledger.subscriber(FIXED) == closed
