"""销户 from the phone (a code by SMS, 5 minutes, 3 tries) and prepaid validity on top-ups, on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from datetime import date

import asyncpg
import pytest
from sqlalchemy import select

from smsmenu.clock import FakeClock
from smsmenu.ledger.api import (
    Billing,
    Kind,
    RechargeRequest,
    Refusal,
    Rule,
    SubscriberStatus,
)
from smsmenu.ledger.billing import ScriptedBilling
from smsmenu.ledger.models import REFUNDS, lines, outbox
from smsmenu.ledger.service import LedgerService
from tests.ledger_fixtures import TRADE_PIN, new_agent

PHONE = "13900000002"


async def texts(ledger: LedgerService, kind: str) -> list[str]:
    async with ledger.engine.connect() as conn:
        rows = await conn.execute(
            select(outbox.c.text).where(outbox.c.kind == kind).order_by(outbox.c.id)
        )
        return [r.text for r in rows]


async def code_sent(ledger: LedgerService) -> str:
    found = re.findall(r"[0-9]{6}", (await texts(ledger, "closing_code"))[-1])
    assert len(found) == 1
    return str(found[0])


async def refused(rule: Rule, work: object) -> Refusal:
    with pytest.raises(Refusal) as caught:
        await work  # type: ignore[misc]
    assert caught.value.rule is rule, caught.value
    return caught.value


async def test_close_with_the_code_books_the_refund(ledger: LedgerService) -> None:
    await ledger.add_subscriber(PHONE, Kind.MOBILE, Billing.PREPAID, 1234)
    shown = await ledger.send_closing_code(PHONE)
    assert shown.balance_fen == 1234
    code = await code_sent(ledger)
    wrong = "000000" if code != "000000" else "111111"
    error = await refused(Rule.CLOSE_CODE_WRONG, ledger.close_subscriber(PHONE, "c1", wrong))
    assert error.params["remaining"] == 2
    closed = await ledger.close_subscriber(PHONE, "c2", code)
    assert (closed.refund_fen, closed.number) == (1234, PHONE)
    assert await ledger.close_subscriber(PHONE, "c2", code) == closed  # the first result
    sub = await ledger.subscriber(PHONE)
    assert sub is not None and (sub.status, sub.balance_fen) == (SubscriberStatus.CLOSED, 0)
    async with ledger.engine.connect() as conn:
        refunds = (await conn.execute(select(lines).where(lines.c.account_id == REFUNDS))).all()
    assert [r.amount_fen for r in refunds] == [1234]
    confirmation = await texts(ledger, "subscriber_closed")
    assert len(confirmation) == 1 and "12.34元" in confirmation[0]
    await refused(Rule.SUBSCRIBER_CLOSED, ledger.send_closing_code(PHONE))


async def test_three_tries_then_a_new_code_and_five_minutes(
    ledger: LedgerService, clock: FakeClock
) -> None:
    await ledger.add_subscriber(PHONE, Kind.MOBILE, Billing.PREPAID)
    await ledger.send_closing_code(PHONE)
    code = await code_sent(ledger)
    wrong = "000000" if code != "000000" else "111111"
    for n in range(2):
        await refused(Rule.CLOSE_CODE_WRONG, ledger.close_subscriber(PHONE, f"w{n}", wrong))
    await refused(Rule.CLOSE_CODE_EXPIRED, ledger.close_subscriber(PHONE, "w2", wrong))
    await refused(Rule.CLOSE_CODE_EXPIRED, ledger.close_subscriber(PHONE, "w3", code))
    await ledger.send_closing_code(PHONE)
    code = await code_sent(ledger)
    clock.advance(5 * 60 + 1)
    await refused(Rule.CLOSE_CODE_EXPIRED, ledger.close_subscriber(PHONE, "w4", code))
    await ledger.send_closing_code(PHONE)
    code = await code_sent(ledger)
    await ledger.close_subscriber(PHONE, "ok", code)


async def test_owed_and_bound_phone_refuse(ledger: LedgerService) -> None:
    await ledger.add_subscriber("02787654321", Kind.FIXED, Billing.POSTPAID, -3050)
    error = await refused(Rule.CLOSE_OWED, ledger.send_closing_code("02787654321"))
    assert "30.50元" in ledger.explain(error)
    agent = await new_agent(ledger)
    await refused(Rule.CLOSE_BOUND_PHONE, ledger.closing_check(agent.phone))
    await refused(Rule.CLOSE_BOUND_PHONE, ledger.close_subscriber(agent.phone, "k"))
    assert await texts(ledger, "closing_code") == []


async def test_a_closed_number_takes_no_recharge(ledger: LedgerService) -> None:
    agent = await new_agent(ledger)
    await ledger.add_subscriber(PHONE, Kind.MOBILE, Billing.PREPAID, 500)
    await ledger.close_subscriber(PHONE, "close")
    request = RechargeRequest(agent.agent_id, Kind.MOBILE, PHONE, 5000, TRADE_PIN, "r1")
    await refused(Rule.TARGET_CLOSED, ledger.recharge(request))


async def test_concurrent_codes_get_three_comparisons(ledger: LedgerService) -> None:
    await ledger.add_subscriber(PHONE, Kind.MOBILE, Billing.PREPAID)
    await ledger.send_closing_code(PHONE)
    code = await code_sent(ledger)
    wrong = "000000" if code != "000000" else "111111"
    results = await asyncio.gather(
        *(ledger.close_subscriber(PHONE, f"g{n}", wrong) for n in range(10)),
        return_exceptions=True,
    )
    rules = sorted(r.rule.value for r in results if isinstance(r, Refusal))
    assert rules.count(Rule.CLOSE_CODE_WRONG.value) == 2 and len(rules) == 10
    await refused(Rule.CLOSE_CODE_EXPIRED, ledger.close_subscriber(PHONE, "late", code))


async def test_validity_extends_per_band_never_shortens(
    ledger: LedgerService, clock: FakeClock
) -> None:
    agent = await new_agent(ledger)  # 13800000001, prepaid: its own top-ups by transfer
    await ledger.transfer_to_phone(agent.agent_id, 1000, TRADE_PIN, "t1")  # 10 yuan: 30 days
    sub = await ledger.subscriber(agent.phone)
    assert sub is not None and sub.valid_until == date(2026, 12, 10)
    await ledger.transfer_to_phone(agent.agent_id, 10000, TRADE_PIN, "t2")  # 100: +180
    sub = await ledger.subscriber(agent.phone)
    assert sub is not None and sub.valid_until == date(2027, 6, 8)
    notice = [t for t in await texts(ledger, "agent_result") if "2027-06-08" in t]
    assert len(notice) == 1
    clock.advance(400 * 86400)  # past its validity: a top-up extends from today
    await ledger.transfer_to_phone(agent.agent_id, 1000, TRADE_PIN, "t3")
    sub = await ledger.subscriber(agent.phone)
    assert sub is not None and sub.valid_until == date(2028, 1, 14)


@pytest.mark.parametrize("billing", ["internal", "external"])
@pytest.mark.parametrize("ledger_agent_cache", [False, True])  # PostgreSQL: a worker's cache
async def test_an_agent_recharge_extends_validity_and_the_receipt_shows_it(
    ledger: LedgerService, billing: str, clock: FakeClock
) -> None:
    if billing == "external":  # reserve, credit through billing, resolve: the same booking
        ledger.billing = ScriptedBilling()
    agent = await new_agent(ledger)
    await ledger.add_subscriber(PHONE, Kind.MOBILE, Billing.PREPAID)
    await ledger.add_subscriber("02787654321", Kind.FIXED, Billing.POSTPAID)
    await ledger.recharge(RechargeRequest(agent.agent_id, Kind.MOBILE, PHONE, 5000, TRADE_PIN, "a"))
    sub = await ledger.subscriber(PHONE)
    assert sub is not None and sub.valid_until == date(2027, 2, 8)  # 50 yuan: 90 days
    clock.advance(86400)
    await ledger.recharge(RechargeRequest(agent.agent_id, Kind.MOBILE, PHONE, 1000, TRADE_PIN, "b"))
    sub = await ledger.subscriber(PHONE)
    assert sub is not None and sub.valid_until == date(2027, 3, 10)  # never shortened: +30
    receipts = await texts(ledger, "target_receipt")
    assert "有效期至2027-02-08。" in receipts[0] and "有效期至2027-03-10。" in receipts[1]
    await ledger.recharge(
        RechargeRequest(
            agent.agent_id, Kind.FIXED, "02787654321", 5000, TRADE_PIN, "c", notify=PHONE
        )
    )
    postpaid = (await texts(ledger, "target_receipt"))[-1]
    assert "有效期" not in postpaid and "\u2063" not in postpaid
    fixed = await ledger.subscriber("02787654321")
    assert fixed is not None and fixed.valid_until is None


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("ledger_agent_cache", [False, True])
async def test_a_recharge_racing_a_close_never_credits_the_closed_number(
    ledger: LedgerService, database_url: str
) -> None:
    """销户 holds the number's row until it commits: a recharge admitted meanwhile waits and
    is refused (before migration 0006 it credited the closed number)."""
    agent = await new_agent(ledger)
    await ledger.add_subscriber(PHONE, Kind.MOBILE, Billing.PREPAID, 700)
    await ledger.recharge(RechargeRequest(agent.agent_id, Kind.MOBILE, PHONE, 1000, TRADE_PIN, "a"))
    closing = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        async with closing.transaction():  # a 销户 in progress: the number's row locked
            await closing.execute("SELECT 1 FROM subscribers WHERE number = $1 FOR UPDATE", PHONE)
            racing = asyncio.create_task(
                ledger.recharge(
                    RechargeRequest(agent.agent_id, Kind.MOBILE, PHONE, 2000, TRADE_PIN, "b")
                )
            )
            await asyncio.sleep(0.3)
            assert not racing.done()  # it waits for the 销户
            await closing.execute(
                "UPDATE subscribers SET status = 'closed' WHERE number = $1", PHONE
            )
        with pytest.raises(Refusal) as caught:
            await racing
    finally:
        await closing.close()
    assert caught.value.rule is Rule.TARGET_CLOSED
    sub = await ledger.subscriber(PHONE)
    assert sub is not None and sub.balance_fen == 1700
