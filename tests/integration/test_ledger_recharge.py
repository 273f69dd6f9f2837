"""Recharges (SPEC §3, §6, §10) on SQLite and PostgreSQL: rules, receipts, passwords, keys."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from smsmenu.clock import FakeClock
from smsmenu.ledger.api import (
    AgentView,
    Billing,
    Kind,
    RechargeRequest,
    RechargeStatus,
    Refusal,
    Rule,
    SubscriberStatus,
)
from smsmenu.ledger.outbox import Outbox, OutboxMessage
from smsmenu.ledger.service import LedgerService
from smsmenu.messages import Route, Transport, UssdDialogue
from tests.ledger_fixtures import MGMT_PIN, TRADE_PIN, new_agent

MOBILE = "13900000002"
FIXED = "02787654321"


# Every recharge test runs on SQLite, on PostgreSQL as the command line does (the agent read
# first) and on PostgreSQL as a worker does (its cached copy of the agent, which the database
# checks). SQLite's writer reads the agent in its transaction: it has no cache.
pytestmark = pytest.mark.parametrize(
    ("database_url", "ledger_agent_cache"),
    [("sqlite", False), ("postgres", False), ("postgres", True)],
    indirect=["database_url"],
    ids=["sqlite", "postgres", "postgres-cached"],
)


async def setup(ledger: LedgerService, deposit_yuan: int = 1000, bp: int = 200) -> AgentView:
    agent = await new_agent(ledger, deposit_yuan=deposit_yuan, commission_bp=bp)
    await ledger.add_subscriber(MOBILE, Kind.MOBILE, Billing.PREPAID, 500)
    await ledger.add_subscriber(FIXED, Kind.FIXED, Billing.POSTPAID, -3000)
    return agent


def req(
    agent: AgentView,
    amount_yuan: int = 100,
    key: str = "k1",
    kind: Kind = Kind.MOBILE,
    number: str = MOBILE,
    pin: str = TRADE_PIN,
    notify: str | None = None,
    route: Route | None = None,
) -> RechargeRequest:
    return RechargeRequest(agent.agent_id, kind, number, amount_yuan * 100, pin, key, notify, route)


async def messages(ledger: LedgerService) -> list[OutboxMessage]:
    return await Outbox(ledger.engine, ledger.clock).rows()


async def float_of(ledger: LedgerService, agent: AgentView) -> int:
    return (await ledger.agent(agent.agent_id)).balance_fen


async def balance_of(ledger: LedgerService, number: str) -> int:
    view = await ledger.subscriber(number)
    assert view is not None
    return view.balance_fen


async def refused(ledger: LedgerService, request: RechargeRequest, rule: Rule) -> Refusal:
    """Assert the recharge is refused by ``rule`` and nothing moved or was queued."""
    agent = await ledger.agent(request.agent_id)
    before = (agent.balance_fen, len(await messages(ledger)), len(await ledger.recharges()))
    target = await ledger.subscriber(request.number)
    with pytest.raises(Refusal) as caught:
        await ledger.recharge(request)
    assert caught.value.rule is rule, caught.value
    after_agent = await ledger.agent(request.agent_id)
    assert (
        after_agent.balance_fen,
        len(await messages(ledger)),
        len(await ledger.recharges()),
    ) == before
    assert await ledger.subscriber(request.number) == target
    return caught.value


async def test_recharge_books_amount_commission_and_debit(ledger: LedgerService) -> None:
    agent = await setup(ledger)
    view = await ledger.recharge(req(agent, 100))
    assert view.status is RechargeStatus.SUCCEEDED
    assert (view.amount_fen, view.commission_fen, view.debit_fen) == (10000, 200, 9800)
    assert view.float_after_fen == 100000 - 9800 == await float_of(ledger, agent)
    assert await balance_of(ledger, MOBILE) == 500 + 10000
    balance = await ledger.trial_balance()
    assert balance.system_fen["commission_expense"] == -200
    assert balance.total_fen == 0


@pytest.mark.parametrize(
    ("amount_yuan", "ok"),
    [(0, False), (5, False), (10, True), (15, False), (1000, True), (1010, False)],
)
async def test_amount_boundaries(ledger: LedgerService, amount_yuan: int, ok: bool) -> None:
    agent = await setup(ledger, deposit_yuan=2000)
    if ok:
        view = await ledger.recharge(req(agent, amount_yuan))
        assert view.amount_fen == amount_yuan * 100
    else:
        await refused(ledger, req(agent, amount_yuan), Rule.BAD_AMOUNT)


async def test_commission_is_floored(ledger: LedgerService) -> None:
    agent = await setup(ledger, bp=333)
    view = await ledger.recharge(req(agent, 10))  # 1000 fen × 3.33% = 33.3 fen
    assert (view.commission_fen, view.debit_fen) == (33, 967)
    assert await float_of(ledger, agent) == 100000 - 967


async def test_insufficient_funds_boundary(ledger: LedgerService) -> None:
    agent = await setup(ledger, deposit_yuan=500)
    await ledger.deposit(agent.agent_id, 48000, "dep")  # float 980.00
    view = await ledger.recharge(req(agent, 1000, key="exact"))  # debit exactly 980.00
    assert view.float_after_fen == 0
    refusal = await refused(ledger, req(agent, 10, key="more"), Rule.INSUFFICIENT_FUNDS)
    assert refusal.params["available_fen"] == 0
    text = ledger.explain(refusal)
    assert "余额不足" in text and "0.00元" in text


async def test_insufficient_by_one_step(ledger: LedgerService) -> None:
    agent = await setup(ledger, deposit_yuan=500)
    await ledger.deposit(agent.agent_id, 47000, "dep")  # float 970.00 < 980.00 debit
    await refused(ledger, req(agent, 1000), Rule.INSUFFICIENT_FUNDS)


async def test_agent_and_phone_status_refusals(ledger: LedgerService) -> None:
    agent = await setup(ledger)
    await ledger.set_subscriber_status(agent.phone, SubscriberStatus.SUSPENDED)
    refusal = await refused(ledger, req(agent), Rule.PHONE_SUSPENDED)
    assert "停机后不可以进行空中充值" in ledger.explain(refusal)
    await ledger.set_subscriber_status(agent.phone, SubscriberStatus.ACTIVE)
    await ledger.suspend_agent(agent.agent_id)
    await refused(ledger, req(agent), Rule.AGENT_SUSPENDED)
    await ledger.resume_agent(agent.agent_id)
    assert (await ledger.recharge(req(agent))).status is RechargeStatus.SUCCEEDED
    with pytest.raises(Refusal) as caught:
        await ledger.recharge(req(agent, 10, key="other", number="13900000009"))
    assert caught.value.rule is Rule.TARGET_UNKNOWN


async def test_a_suspended_phone_or_agent_refuses_every_trade_operation(
    ledger: LedgerService,
) -> None:
    """SPEC §3: 停机后不可以进行空中充值业务操作 — balance and records too, before the password
    (a wrong one is not even counted)."""
    agent = await setup(ledger)

    async def all_refused(rule: Rule) -> None:
        for pin in (TRADE_PIN, "000001"):
            for operation in (
                ledger.balance(agent.agent_id, pin),
                ledger.recent(agent.agent_id, pin),
                ledger.transfer_to_phone(agent.agent_id, 1000, pin, f"t{pin}"),
                ledger.change_trade_pin(agent.agent_id, pin, "975310"),
            ):
                with pytest.raises(Refusal) as caught:
                    await operation
                assert caught.value.rule is rule
            await refused(ledger, req(agent, pin=pin, key=f"r{pin}"), rule)

    await ledger.set_subscriber_status(agent.phone, SubscriberStatus.SUSPENDED)
    await all_refused(Rule.PHONE_SUSPENDED)
    await ledger.set_subscriber_status(agent.phone, SubscriberStatus.ACTIVE)
    await ledger.suspend_agent(agent.agent_id)
    await all_refused(Rule.AGENT_SUSPENDED)
    await ledger.resume_agent(agent.agent_id)
    wrong = await refused(ledger, req(agent, pin="000001", key="w"), Rule.WRONG_PIN)
    assert wrong.params["remaining"] == 2  # nothing was counted while refused
    assert await ledger.balance(agent.agent_id, TRADE_PIN) == 100000


async def test_target_refusals(ledger: LedgerService) -> None:
    agent = await setup(ledger)
    await refused(ledger, req(agent, number="13900000009"), Rule.TARGET_UNKNOWN)
    await refused(ledger, req(agent, kind=Kind.PHS, number=FIXED), Rule.TARGET_KIND_MISMATCH)
    await refused(ledger, req(agent, kind=Kind.FIXED, number=MOBILE), Rule.BAD_NUMBER)
    await refused(ledger, req(agent, kind=Kind.MOBILE, number="1390000000"), Rule.BAD_NUMBER)
    # a suspended (停机) target may be recharged: that is how it comes back
    await ledger.set_subscriber_status(MOBILE, SubscriberStatus.SUSPENDED)
    assert (await ledger.recharge(req(agent))).status is RechargeStatus.SUCCEEDED
    await ledger.set_subscriber_status(MOBILE, SubscriberStatus.CLOSED)  # for good
    await refused(ledger, req(agent, key="k2"), Rule.TARGET_CLOSED)
    await refused(
        ledger, req(agent, kind=Kind.FIXED, number=FIXED, notify="12"), Rule.BAD_NOTIFY_NUMBER
    )


async def test_unknown_and_closed_agent(ledger: LedgerService) -> None:
    agent = await setup(ledger)
    with pytest.raises(Refusal) as caught:
        await ledger.recharge(RechargeRequest(999, Kind.MOBILE, MOBILE, 1000, TRADE_PIN, "x"))
    assert caught.value.rule is Rule.AGENT_UNKNOWN
    await ledger.transfer_to_phone(agent.agent_id, 100000, TRADE_PIN, "t")  # empty the float
    await ledger.close_agent(agent.agent_id, "close")
    await refused(ledger, req(agent), Rule.AGENT_CLOSED)


async def test_result_notice_and_receipt_for_mobile(ledger: LedgerService) -> None:
    agent = await setup(ledger)
    view = await ledger.recharge(req(agent, 100))
    rows = await messages(ledger)
    result = [m for m in rows if m.kind == "agent_result"]
    receipt = [m for m in rows if m.kind == "target_receipt"]
    assert len(result) == 1 and len(receipt) == 1
    notice = result[0]
    assert notice.destination == agent.phone and notice.source == ledger.settings.service_number
    for part in (MOBILE, "100.00元", "2.00元", "98.00元", "902.00元", str(view.tx_id)):
        assert part in notice.text
    assert (notice.transport, notice.final, notice.ref, notice.status) == (
        "sms",
        True,
        view.tx_id,
        "queued",
    )
    assert receipt[0].destination == MOBILE
    for part in ("100.00元", "105.00元", str(agent.agent_id), str(view.tx_id)):
        assert part in receipt[0].text
    assert all(TRADE_PIN not in m.text and MGMT_PIN not in m.text for m in rows)


@pytest.mark.parametrize(("notify", "receiver"), [("13700000003", "13700000003"), (None, None)])
async def test_fixed_line_receipt_goes_to_notify_number(
    ledger: LedgerService, notify: str | None, receiver: str | None
) -> None:
    agent = await setup(ledger)
    view = await ledger.recharge(req(agent, 50, kind=Kind.FIXED, number=FIXED, notify=notify))
    assert view.notify == notify
    receipts = [m for m in await messages(ledger) if m.kind == "target_receipt"]
    if receiver is None:
        assert receipts == []
    else:
        assert [m.destination for m in receipts] == [receiver]
        assert "20.00元" in receipts[0].text  # -30.00 + 50.00
    assert await balance_of(ledger, FIXED) == -3000 + 5000


async def test_ussd_route_is_carried_on_the_result(ledger: LedgerService) -> None:
    agent = await setup(ledger)
    route = Route(Transport.USSD, UssdDialogue(session=200, user_message_reference=7), final=True)
    await ledger.recharge(req(agent, route=route))
    notice = next(m for m in await messages(ledger) if m.kind == "agent_result")
    assert (notice.transport, notice.ussd_session, notice.ussd_umr, notice.final) == (
        "ussd",
        200,
        7,
        True,
    )
    assert notice.route == route
    receipt = next(m for m in await messages(ledger) if m.kind == "target_receipt")
    assert receipt.transport == "sms"


async def test_same_key_same_fields_moves_money_once(ledger: LedgerService) -> None:
    agent = await setup(ledger)
    first = await ledger.recharge(req(agent, 100, key="once"))
    again = await ledger.recharge(req(agent, 100, key="once"))
    assert again == first
    assert await float_of(ledger, agent) == 100000 - 9800
    assert await balance_of(ledger, MOBILE) == 10500
    assert len(await messages(ledger)) == 1 + 2  # opening notice + one result + one receipt
    # even a wrong PIN on the repeat gets the first result, never a second debit
    assert await ledger.recharge(req(agent, 100, key="once", pin="000001")) == first


async def test_same_key_other_fields_is_refused(ledger: LedgerService) -> None:
    agent = await setup(ledger)
    await ledger.recharge(req(agent, 100, key="once"))
    await refused(ledger, req(agent, 200, key="once"), Rule.KEY_REUSED)
    with pytest.raises(Refusal) as caught:
        await ledger.deposit(agent.agent_id, 1000, "once")
    assert caught.value.rule is Rule.KEY_REUSED


async def test_refused_recharge_leaves_the_key_free(ledger: LedgerService) -> None:
    agent = await setup(ledger, deposit_yuan=500)
    await refused(ledger, req(agent, 1000, key="later"), Rule.INSUFFICIENT_FUNDS)
    await ledger.deposit(agent.agent_id, 100000, "dep")
    assert (await ledger.recharge(req(agent, 1000, key="later"))).status is RechargeStatus.SUCCEEDED


async def test_quote_checks_without_password(ledger: LedgerService) -> None:
    agent = await setup(ledger, bp=250)
    quote = await ledger.quote(agent.agent_id, Kind.FIXED, FIXED, 20000, "13700000003")
    assert (quote.commission_fen, quote.debit_fen, quote.notify) == (500, 19500, "13700000003")
    with pytest.raises(Refusal) as caught:
        await ledger.quote(agent.agent_id, Kind.MOBILE, FIXED, 20000, None)
    assert caught.value.rule is Rule.BAD_NUMBER
    with pytest.raises(Refusal) as caught:
        await ledger.quote(agent.agent_id, Kind.PHS, FIXED, 20000, None)
    assert caught.value.rule is Rule.TARGET_KIND_MISMATCH
    assert len(await ledger.recharges()) == 0


async def test_wrong_pins_lock_trade_for_thirty_minutes(
    ledger: LedgerService, clock: FakeClock
) -> None:
    agent = await setup(ledger)
    first = await refused(ledger, req(agent, pin="000001", key="a"), Rule.WRONG_PIN)
    assert first.params["remaining"] == 2
    second = await refused(ledger, req(agent, pin="000002", key="b"), Rule.WRONG_PIN)
    assert second.params["remaining"] == 1
    locked = await refused(ledger, req(agent, pin="000003", key="c"), Rule.PIN_LOCKED)
    until = clock.now() + timedelta(minutes=30)
    assert locked.params["until"] == until
    assert "2026-11-10 10:30" in ledger.explain(locked)  # 10:00 Shanghai + 30 min
    # locked: even the right password is refused, balance too; and it survives a restart
    restarted = LedgerService(ledger.engine, clock, ledger.catalogue, ledger.settings)
    await refused(restarted, req(agent, key="d"), Rule.PIN_LOCKED)
    with pytest.raises(Refusal) as caught:
        await restarted.balance(agent.agent_id, TRADE_PIN)
    assert caught.value.rule is Rule.PIN_LOCKED
    clock.advance(30 * 60 - 1)
    await refused(restarted, req(agent, key="e"), Rule.PIN_LOCKED)
    clock.advance(1)
    assert (await restarted.recharge(req(agent, key="f"))).status is RechargeStatus.SUCCEEDED


async def test_a_right_password_resets_the_count(ledger: LedgerService) -> None:
    agent = await setup(ledger)
    await refused(ledger, req(agent, pin="000001", key="a"), Rule.WRONG_PIN)
    await refused(ledger, req(agent, pin="000002", key="b"), Rule.WRONG_PIN)
    assert await ledger.balance(agent.agent_id, TRADE_PIN) == 100000
    again = await refused(ledger, req(agent, pin="000003", key="c"), Rule.WRONG_PIN)
    assert again.params["remaining"] == 2


async def test_balance_and_recent_records(ledger: LedgerService, clock: FakeClock) -> None:
    agent = await setup(ledger)
    await ledger.recharge(req(agent, 100, key="r1"))
    clock.advance(60)
    await ledger.deposit(agent.agent_id, 5000, "d1")
    clock.advance(60)
    await ledger.recharge(req(agent, 20, key="r2", kind=Kind.FIXED, number=FIXED))
    assert await ledger.balance(agent.agent_id, TRADE_PIN) == 100000 - 9800 + 5000 - 1960
    records = await ledger.recent(agent.agent_id, TRADE_PIN)
    assert [(r.kind, r.number, r.amount_fen) for r in records] == [
        ("recharge", FIXED, 2000),
        ("deposit", None, 5000),
        ("recharge", MOBILE, 10000),
        ("deposit", agent.phone, 100000),
    ]
    assert len(await ledger.recent(agent.agent_id, TRADE_PIN, limit=2)) == 2
    with pytest.raises(Refusal) as caught:
        await ledger.recent(agent.agent_id, "000001")
    assert caught.value.rule is Rule.WRONG_PIN
    tops = await ledger.subscriber_topups(FIXED)
    assert [(t.kind, t.amount_fen) for t in tops] == [("recharge", 2000)]


async def test_transfer_to_own_phone(ledger: LedgerService) -> None:
    agent = await setup(ledger)
    view = await ledger.transfer_to_phone(agent.agent_id, 30000, TRADE_PIN, "t1")
    assert (view.phone, view.amount_fen, view.float_after_fen) == (agent.phone, 30000, 70000)
    assert await balance_of(ledger, agent.phone) == 30000
    assert await ledger.transfer_to_phone(agent.agent_id, 30000, TRADE_PIN, "t1") == view
    assert await float_of(ledger, agent) == 70000
    notice = [m for m in await messages(ledger) if m.ref == view.tx_id]
    assert len(notice) == 1 and "300.00元" in notice[0].text and "700.00元" in notice[0].text
    for amount, rule in ((500, Rule.BAD_AMOUNT), (101000, Rule.BAD_AMOUNT)):
        with pytest.raises(Refusal) as caught:
            await ledger.transfer_to_phone(agent.agent_id, amount, TRADE_PIN, f"x{amount}")
        assert caught.value.rule is rule
    await ledger.transfer_to_phone(agent.agent_id, 70000, TRADE_PIN, "t2")
    with pytest.raises(Refusal) as caught:
        await ledger.transfer_to_phone(agent.agent_id, 1000, TRADE_PIN, "t3")
    assert caught.value.rule is Rule.INSUFFICIENT_FUNDS


async def test_change_trade_pin_rules_and_cache(ledger: LedgerService) -> None:
    agent = await setup(ledger)
    assert await ledger.balance(agent.agent_id, TRADE_PIN) == 100000  # now cached
    for new, rule in (
        ("12345", Rule.BAD_PIN_FORMAT),
        ("888888", Rule.WEAK_PIN),
        ("123456", Rule.WEAK_PIN),
        ("654321", Rule.WEAK_PIN),
        (TRADE_PIN, Rule.SAME_PIN),
    ):
        with pytest.raises(Refusal) as caught:
            await ledger.change_trade_pin(agent.agent_id, TRADE_PIN, new)
        assert caught.value.rule is rule
    with pytest.raises(Refusal) as caught:
        await ledger.change_trade_pin(agent.agent_id, "000001", "975310")
    assert caught.value.rule is Rule.WRONG_PIN
    await ledger.change_trade_pin(agent.agent_id, TRADE_PIN, "975310")
    # the cached old password no longer works; the new one does
    with pytest.raises(Refusal) as caught:
        await ledger.balance(agent.agent_id, TRADE_PIN)
    assert caught.value.rule is Rule.WRONG_PIN
    assert await ledger.balance(agent.agent_id, "975310") == 100000
    slow = ledger.pins.slow_verifies
    assert await ledger.balance(agent.agent_id, "975310") == 100000
    assert ledger.pins.slow_verifies == slow  # served from the cache


async def test_change_mgmt_pin(ledger: LedgerService) -> None:
    agent = await setup(ledger)
    with pytest.raises(Refusal) as caught:
        await ledger.change_mgmt_pin(agent.agent_id, MGMT_PIN, "111111")
    assert caught.value.rule is Rule.WEAK_PIN
    with pytest.raises(Refusal) as caught:
        await ledger.change_mgmt_pin(agent.agent_id, TRADE_PIN, "975310")
    assert caught.value.rule is Rule.WRONG_MGMT_PIN and caught.value.params == {"remaining": 2}
    assert await ledger.verify_mgmt_pin(agent.agent_id, MGMT_PIN)
    await ledger.change_mgmt_pin(agent.agent_id, MGMT_PIN, "975310")
    assert not await ledger.verify_mgmt_pin(agent.agent_id, MGMT_PIN)
    assert await ledger.verify_mgmt_pin(agent.agent_id, "975310")
    # the trade password is another one
    assert await ledger.balance(agent.agent_id, TRADE_PIN) == 100000


async def test_the_duplicate_guard_of_a_shortcut(ledger: LedgerService, clock: FakeClock) -> None:
    """SPEC §3: an identical recharge (agent, number, amount) within the request's window is
    refused DUPLICATE_RECHARGE (the menus then ask for a confirmation); the asking message's
    own key gets its first result; a failed recharge is no duplicate."""
    agent = await setup(ledger)

    def guarded(key: str, yuan: int = 100, number: str = MOBILE) -> RechargeRequest:
        return replace(req(agent, yuan, key, number=number), duplicate_window_s=60)

    first = await ledger.recharge(guarded("a"))
    clock.advance(60)
    await refused(ledger, guarded("b"), Rule.DUPLICATE_RECHARGE)
    assert await ledger.recharge(guarded("a")) == first  # a copy of the first message
    assert (await ledger.recharge(guarded("c", 200))).status is RechargeStatus.SUCCEEDED
    assert (await ledger.recharge(req(agent, 100, "d"))).status is RechargeStatus.SUCCEEDED
    clock.advance(1)  # "a" is out of the window now, "d" (1 s ago) is not
    await refused(ledger, guarded("e"), Rule.DUPLICATE_RECHARGE)
    clock.advance(60)
    assert (await ledger.recharge(guarded("f"))).status is RechargeStatus.SUCCEEDED
    assert len(await ledger.recharges(agent.agent_id)) == 4


PHS = "02787650000"
OTHER_FIXED = "02787651111"


async def test_a_notify_number_is_a_mobile_or_a_known_phs(ledger: LedgerService) -> None:
    """SPEC §4: PHS and fixed numbers look alike, so the ledger asks who an area-coded notify
    number is: a PHS subscriber may be told, a fixed line (or nobody known) may not."""
    agent = await setup(ledger)
    await ledger.add_subscriber(PHS, Kind.PHS, Billing.PREPAID)
    await ledger.add_subscriber(OTHER_FIXED, Kind.FIXED, Billing.POSTPAID)
    for bad in (OTHER_FIXED, "02700000000", FIXED):
        with pytest.raises(Refusal) as caught:
            await ledger.quote(agent.agent_id, Kind.FIXED, FIXED, 5000, bad)
        assert caught.value.rule is Rule.BAD_NOTIFY_NUMBER
        await refused(
            ledger,
            req(agent, 50, f"bad-{bad}", Kind.FIXED, FIXED, notify=bad),
            Rule.BAD_NOTIFY_NUMBER,
        )
    for n, good in enumerate((PHS, "13700000003")):  # a mobile number needs no subscriber here
        assert (await ledger.quote(agent.agent_id, Kind.FIXED, FIXED, 5000, good)).notify == good
        view = await ledger.recharge(req(agent, 50, f"good-{n}", Kind.FIXED, FIXED, notify=good))
        assert view.status is RechargeStatus.SUCCEEDED
        assert [m.destination for m in await messages(ledger) if m.kind == "target_receipt"][
            -1
        ] == good
    await ledger.set_subscriber_status(PHS, SubscriberStatus.CLOSED)  # no longer anyone's
    await refused(
        ledger, req(agent, 50, "closed", Kind.FIXED, FIXED, notify=PHS), Rule.BAD_NOTIFY_NUMBER
    )


async def test_a_malformed_password_counts_nothing(ledger: LedgerService) -> None:
    """A PIN that is not 6 ASCII digits is a format error on every path: nothing is counted or
    locked, however often it comes (the menus refuse it earlier; the CLI and the API do not)."""
    agent = await setup(ledger)
    for n, pin in enumerate(["abc", "12345", "1234567", "１２３４５６", "12345a", ""]):
        await refused(ledger, req(agent, pin=pin, key=f"m{n}"), Rule.BAD_PIN_FORMAT)
        operations = (
            ledger.balance(agent.agent_id, pin),
            ledger.recent(agent.agent_id, pin),
            ledger.transfer_to_phone(agent.agent_id, 1000, pin, f"t{n}"),
            ledger.change_trade_pin(agent.agent_id, pin, "975310"),
            ledger.change_mgmt_pin(agent.agent_id, pin, "975310"),
        )
        for operation in operations:
            with pytest.raises(Refusal) as caught:
                await operation
            assert caught.value.rule is Rule.BAD_PIN_FORMAT
        assert not await ledger.verify_mgmt_pin(agent.agent_id, pin)
    first = await refused(ledger, req(agent, pin="000001", key="w"), Rule.WRONG_PIN)
    assert first.params["remaining"] == 2
