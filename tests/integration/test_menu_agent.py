"""The agent menu walked path by path through the engine, over the real ledger: every screen,
re-prompt, back, home and end; amounts and balances to the fen."""

from __future__ import annotations

from smsmenu.ledger.api import Kind, RechargeStatus, SubscriberStatus, SubscriberView
from smsmenu.ledger.billing import ScriptedBilling
from smsmenu.money import format_yuan
from tests.integration.conftest import AGENT_PHONE, BROADBAND, FIXED, MOBILE, PHS, World
from tests.ledger_fixtures import MGMT_PIN, TRADE_PIN

FOOTER_CHECK = "0返回"


async def walk_to_recharge(world: World) -> None:
    assert await world.say("hello") == world.t("agent_main")
    assert await world.say("1") == world.t("agent_tianyi")
    assert await world.say("1") == world.t("agent_air")
    assert await world.say("1") == world.t("agent_rc_kind")


def reprompt(world: World, reason: str, screen: str) -> str:
    return world.t(reason) + "\n" + screen


async def subscriber(world: World, number: str) -> SubscriberView:
    found = await world.ledger.subscriber(number)
    assert found is not None
    return found


async def test_recharge_mobile_with_every_reprompt(world: World) -> None:
    await walk_to_recharge(world)
    kind_screen = world.t("agent_rc_kind")
    assert await world.say("5") == reprompt(world, "reason_bad_kind", kind_screen)
    number_screen = world.t("agent_rc_number", kind="C网手机", area="")
    assert await world.say("2") == number_screen
    assert await world.say("1390000000") == reprompt(world, "reason_bad_mobile", number_screen)
    amount_screen = world.t("agent_rc_amount")
    assert await world.say(MOBILE) == amount_screen
    for bad in ("5", "15", "1010", "abc"):
        assert await world.say(bad) == reprompt(world, "reason_bad_amount", amount_screen)
    confirm = world.t(
        "agent_rc_confirm",
        kind="C网手机",
        number=MOBILE,
        amount="100.00元",
        commission="2.00元",
        debit="98.00元",
    )
    assert await world.say("100") == confirm
    quote = await world.ledger.quote(world.agent.agent_id, Kind.MOBILE, MOBILE, 10000, None)
    assert (quote.commission_fen, quote.debit_fen) == (200, 9800)
    assert await world.say("12345") == reprompt(world, "reason_bad_pin", confirm)
    before = (await subscriber(world, MOBILE)).balance_fen
    # the result comes from the ledger's outbox, not from the menu: one result SMS
    assert await world.send(TRADE_PIN) == []
    (recharge,) = await world.ledger.recharges(world.agent.agent_id)
    assert recharge.status is RechargeStatus.SUCCEEDED
    assert (recharge.amount_fen, recharge.commission_fen, recharge.debit_fen) == (10000, 200, 9800)
    assert (await subscriber(world, MOBILE)).balance_fen == before + 10000
    agent = await world.ledger.agent(world.agent.agent_id)
    assert agent.balance_fen == world.agent.balance_fen - 9800
    notices = await world.notices()
    assert len(notices) == 1 and "98.00元" in notices[0].text and notices[0].final
    assert len(await world.notices(MOBILE)) == 1  # the target's receipt
    # the dialogue ended: the next message opens the main menu
    assert await world.say("1") == world.t("agent_main")


def confirm_screen(world: World, kind: str, number: str, amount: int, commission: int) -> str:
    return world.t(
        "agent_rc_confirm",
        kind=kind,
        number=number,
        amount=format_yuan(amount),
        commission=format_yuan(commission),
        debit=format_yuan(amount - commission),
    )


async def test_recharge_fixed_line_with_notify_number(world: World) -> None:
    await walk_to_recharge(world)
    assert await world.say("1") == world.t("agent_rc_number", kind="固定电话", area="（含区号）")
    assert await world.say("13912345678") == reprompt(
        world,
        "reason_bad_area_number",
        world.t("agent_rc_number", kind="固定电话", area="（含区号）"),
    )
    assert await world.say(FIXED) == world.t("agent_rc_amount")
    notify_screen = world.t("agent_rc_notify")
    assert await world.say("50") == notify_screen
    assert await world.say("2") == reprompt(world, "reason_bad_notify", notify_screen)
    confirm = confirm_screen(world, "固定电话", FIXED, 5000, 100)
    assert await world.say(MOBILE) == confirm
    # back from the confirmation goes to the notify step, and forward again
    assert await world.say("0") == notify_screen
    assert await world.say(MOBILE) == confirm
    assert await world.send(TRADE_PIN) == []
    (recharge,) = await world.ledger.recharges(world.agent.agent_id)
    assert recharge.notify == MOBILE and recharge.status is RechargeStatus.SUCCEEDED
    assert (await subscriber(world, FIXED)).balance_fen == -3000 + 5000
    assert len(await world.notices(MOBILE)) == 1  # the receipt went to the notify number


async def test_a_fixed_line_is_no_notify_number(world: World) -> None:
    """A fixed line (or broadband account) looks like a PHS number: the ledger tells them
    apart; the menu asks for the notify number again, CZ answers the refusal."""
    await walk_to_recharge(world)
    await world.say("1")
    await world.say(FIXED)
    notify_screen = world.t("agent_rc_notify")
    assert await world.say("50") == notify_screen
    again = world.t("refusal_bad_notify_number") + "\n" + notify_screen
    assert await world.say(BROADBAND) == again
    assert await world.say(FIXED) == again
    assert await world.say(PHS) == confirm_screen(world, "固定电话", FIXED, 5000, 100)
    assert await world.send(TRADE_PIN) == []
    assert len(await world.notices(PHS)) == 1
    refused = await world.send(f"CZ 1 {FIXED} 60 {TRADE_PIN} {BROADBAND}")
    assert refused == [world.t("refusal_bad_notify_number")]
    assert len(await world.ledger.recharges(world.agent.agent_id)) == 1
    assert await world.notices(BROADBAND) == []


async def test_recharge_broadband_without_notice_and_phs(world: World) -> None:
    await walk_to_recharge(world)
    await world.say("4")
    await world.say(BROADBAND)
    await world.say("1000")
    assert await world.say("1") == confirm_screen(world, "宽带", BROADBAND, 100000, 2000)
    assert await world.send(TRADE_PIN) == []
    await walk_to_recharge(world)
    await world.say("3")
    await world.say(PHS)
    assert await world.say("10") == confirm_screen(world, "小灵通", PHS, 1000, 20)
    assert await world.send(TRADE_PIN) == []
    views = await world.ledger.recharges(world.agent.agent_id)
    assert sorted(v.number for v in views) == sorted([BROADBAND, PHS])
    assert await world.notices(BROADBAND) == []  # no notify number: no receipt
    assert len(await world.notices(PHS)) == 1
    agent = await world.ledger.agent(world.agent.agent_id)
    assert agent.balance_fen == world.agent.balance_fen - 98000 - 980


async def test_a_recharge_billing_cannot_confirm_is_pending_and_said_so(world: World) -> None:
    """Billing answers neither the credit nor its status: the menu, CZ and its Y confirmation
    say the recharge is being processed; the result notice follows once it resolves."""
    world.ledger.billing = ScriptedBilling(timeout_numbers={MOBILE}, status_hangs=True)
    world.ledger.ctx.billing_timeout_s = 0.05
    await walk_to_recharge(world)
    await world.say("2")
    await world.say(MOBILE)
    await world.say("100")
    replies = await world.send(TRADE_PIN)
    (first,) = await world.ledger.recharges(world.agent.agent_id)
    assert first.status is RechargeStatus.PENDING
    pending = world.t("agent_recharge_pending", number=MOBILE, amount="100.00元", tx_id=first.tx_id)
    assert replies == [pending] and world.last[0].route.final
    assert await world.notices() == []  # no result yet
    await world.send(f"CZ 2 {MOBILE} 50 {TRADE_PIN}")
    second = (await world.ledger.recharges(world.agent.agent_id))[0]
    assert second.status is RechargeStatus.PENDING
    assert world.last[0].text == world.t(
        "agent_recharge_pending", number=MOBILE, amount="50.00元", tx_id=second.tx_id
    )
    assert await world.say(f"CZ 2 {MOBILE} 50 {TRADE_PIN}") == world.t(
        "shortcut_duplicate", number=MOBILE, amount="50.00元"
    )
    assert await world.say(f"Y {TRADE_PIN}") == world.t(
        "agent_recharge_pending",
        number=MOBILE,
        amount="50.00元",
        tx_id=(await world.ledger.recharges(world.agent.agent_id))[0].tx_id,
    )
    agent = await world.ledger.agent(world.agent.agent_id)
    assert agent.balance_fen == world.agent.balance_fen - 9800 - 4900 - 4900  # all reserved
    world.ledger.billing = ScriptedBilling()  # billing answers again: nothing was credited
    resolved = await world.ledger.recover_pending(0)
    assert [v.status for v in resolved] == [RechargeStatus.FAILED] * 3
    assert len(await world.notices()) == 3  # one result SMS per recharge
    assert (await world.ledger.agent(world.agent.agent_id)).balance_fen == world.agent.balance_fen


async def test_quote_refusals_send_the_agent_to_the_right_step(world: World) -> None:
    await walk_to_recharge(world)
    await world.say("2")
    number_screen = world.t("agent_rc_number", kind="C网手机", area="")
    assert await world.say("13911112222") == world.t("agent_rc_amount")
    # unknown target: the ledger refuses at the quote; back to the number
    assert await world.say("50") == world.t("refusal_target_unknown") + "\n" + number_screen
    await world.say(MOBILE)
    # more than the float (980.00元 of 1000.00元 spent by a shortcut): the amount again
    assert await world.send(f"CZ 1 {FIXED} 1000 {TRADE_PIN}") == []
    short = await world.say("50")
    assert short == world.t("refusal_insufficient_funds", available="20.00元") + "\n" + world.t(
        "agent_rc_amount"
    )
    assert await world.say("20") == confirm_screen(world, "C网手机", MOBILE, 2000, 40)
    # a fixed number chosen as mobile kind: kind mismatch is the ledger's too
    await world.say("00")
    await world.say("1")
    await world.say("1")
    await world.say("1")
    await world.say("3")
    await world.say(FIXED)
    mismatch = await world.say("50")
    assert mismatch.startswith(world.t("refusal_target_kind_mismatch"))
    assert len(await world.ledger.recharges(world.agent.agent_id)) == 1  # the shortcut's


async def test_wrong_pins_reprompt_then_lock_out_with_local_time(world: World) -> None:
    await walk_to_recharge(world)
    await world.say("2")
    await world.say(MOBILE)
    confirm = await world.say("20")
    first = await world.say("000000")
    assert first == world.t("refusal_wrong_pin", remaining=2) + "\n" + confirm
    assert await world.say("000001") == world.t("refusal_wrong_pin", remaining=1) + "\n" + confirm
    locked = await world.send("000002")
    # locked for 30 minutes from 10:00 Beijing time (the fake clock is 02:00 UTC)
    assert locked == [world.t("refusal_pin_locked", until="2026-11-10 10:30")]
    assert world.last[0].route.final
    assert await world.say("1") == world.t("agent_main")  # the dialogue ended
    # the lock-out holds for every trade operation, the right password included
    assert await world.say(f"YE {TRADE_PIN}") == world.t(
        "refusal_pin_locked", until="2026-11-10 10:30"
    )
    assert await world.ledger.recharges(world.agent.agent_id) == []
    world.clock.advance(31 * 60)
    assert await world.say(f"YE {TRADE_PIN}") == world.t(
        "agent_balance_result", balance=format_yuan(world.agent.balance_fen)
    )


async def test_balance_records_and_navigation(world: World) -> None:
    await walk_to_recharge(world)
    assert await world.say("0") == world.t("agent_air")
    assert await world.say("9") == reprompt(world, "reason_bad_choice", world.t("agent_air"))
    assert await world.say("3") == world.t("agent_account")
    assert await world.say("5") == reprompt(world, "reason_bad_choice", world.t("agent_account"))
    assert await world.say("1") == world.t("agent_bal_pin")
    assert await world.say("0") == world.t("agent_account")
    await world.say("1")
    assert await world.say("12") == reprompt(world, "reason_bad_pin", world.t("agent_bal_pin"))
    balance = await world.send(TRADE_PIN)
    assert balance == [world.t("agent_balance_result", balance="1000.00元")]
    assert world.last[0].route.final
    # a recharge, then the records: newest first, to the fen
    assert await world.send(f"CZ 2 {MOBILE} 30 {TRADE_PIN}") == []
    for text in ("x", "1", "1", "3", "3"):
        await world.say(text)
    assert await world.say("0") == world.t("agent_account")
    await world.say("3")
    records = await world.say(TRADE_PIN)
    lines = records.split("\n")
    assert lines[0] == world.t("agent_records_result", lines="").rstrip("\n")
    assert lines[1] == f"11-10 10:00 充值 {MOBILE} 30.00元"
    assert lines[2] == f"11-10 10:00 续存 {AGENT_PHONE} 1000.00元"
    # home and end from deep inside
    for text in ("1", "1", "1", "2"):
        await world.say(text)
    assert await world.say("00") == world.t("agent_main")
    await world.say("1")
    assert await world.say("#") == world.t("goodbye")
    assert world.last[0].route.final
    assert await world.say("1") == world.t("agent_main")


async def test_transfer_to_own_phone(world: World) -> None:
    for text in ("x", "1", "1", "3"):
        await world.say(text)
    amount_screen = world.t("agent_tr_amount", phone=AGENT_PHONE)
    assert await world.say("4") == amount_screen
    assert await world.say("7") == reprompt(world, "reason_bad_amount", amount_screen)
    pin_screen = world.t("agent_tr_pin", phone=AGENT_PHONE, amount="200.00元")
    assert await world.say("200") == pin_screen
    assert await world.say("0") == amount_screen
    assert await world.say("200") == pin_screen
    phone_before = (await subscriber(world, AGENT_PHONE)).balance_fen
    assert await world.send(TRADE_PIN) == []
    assert (await subscriber(world, AGENT_PHONE)).balance_fen == phone_before + 20000
    agent = await world.ledger.agent(world.agent.agent_id)
    assert agent.balance_fen == world.agent.balance_fen - 20000
    (notice,) = await world.notices()
    assert "200.00元" in notice.text


async def test_change_trade_password(world: World) -> None:
    for text in ("x", "1", "1", "3"):
        await world.say(text)
    old_screen, new_screen, again_screen = (
        world.t("agent_tp_old"),
        world.t("agent_tp_new"),
        world.t("agent_tp_again"),
    )
    assert await world.say("2") == old_screen
    assert await world.say(TRADE_PIN) == new_screen
    assert await world.say("111111") == reprompt(world, "reason_weak_pin", new_screen)
    assert await world.say(TRADE_PIN) == reprompt(world, "reason_same_pin", new_screen)
    assert await world.say("258147") == again_screen
    # no password is ever stored in clear in the session
    raw = await world.raw_session()
    assert raw and TRADE_PIN not in raw and "258147" not in raw
    assert await world.say("258148") == reprompt(world, "reason_pins_differ", new_screen)
    assert await world.say("258147") == again_screen
    assert await world.say("258147") == world.t("agent_trade_pin_changed")
    assert await world.say("YE 258147") == world.t("agent_balance_result", balance="1000.00元")
    # a wrong old password is the ledger's refusal and asks for the old one again
    for text in ("x", "1", "1", "3", "2", "999000", "369258"):
        await world.say(text)
    wrong = await world.say("369258")
    assert wrong == world.t("refusal_wrong_pin", remaining=2) + "\n" + old_screen


async def test_change_management_password(world: World) -> None:
    for text in ("x", "1", "1"):
        await world.say(text)
    assert await world.say("4") == world.t("agent_business")
    assert await world.say("2") == reprompt(world, "reason_bad_choice", world.t("agent_business"))
    assert await world.say("1") == world.t("agent_mp_old")
    assert await world.say("0") == world.t("agent_business")
    await world.say("1")
    assert await world.say(MGMT_PIN) == world.t("agent_mp_new")
    assert await world.say("0") == world.t("agent_mp_old")
    await world.say(MGMT_PIN)
    assert await world.say("975310") == world.t("agent_mp_again")
    assert await world.say("0") == world.t("agent_mp_new")
    await world.say("975310")
    assert TRADE_PIN not in await world.raw_session() and MGMT_PIN not in await world.raw_session()
    assert await world.say("975310") == world.t("agent_mgmt_pin_changed")
    # the trade password is untouched
    assert await world.say(f"YE {TRADE_PIN}") == world.t(
        "agent_balance_result", balance="1000.00元"
    )


async def test_wrong_old_management_passwords_reprompt_then_lock_out(world: World) -> None:
    """修改管理密码 with a wrong old password: the ledger's refusal (how many tries remain), the
    old password asked again; the third locks management operations, not trade ones."""
    old_screen = world.t("agent_mp_old")
    for text in ("x", "1", "1", "4", "1"):
        await world.say(text)
    for remaining in (2, 1):
        for text in ("999000", "369258"):
            await world.say(text)
        wrong = await world.say("369258")
        assert wrong == world.t("refusal_wrong_mgmt_pin", remaining=remaining) + "\n" + old_screen
    for text in ("999000", "369258"):
        await world.say(text)
    locked = [world.t("refusal_mgmt_pin_locked", until="2026-11-10 10:30")]
    assert await world.send("369258") == locked
    assert world.last[0].route.final
    for text in ("x", "1", "1", "4", "1", MGMT_PIN, "975310"):
        await world.say(text)
    assert await world.send("975310") == locked
    assert await world.say(f"YE {TRADE_PIN}") == world.t(
        "agent_balance_result", balance="1000.00元"
    )


async def test_suspended_agent_or_phone_is_refused_before_the_password(world: World) -> None:
    await world.ledger.suspend_agent(world.agent.agent_id)
    await walk_to_recharge(world)
    await world.say("2")
    await world.say(MOBILE)
    refused = await world.send("50")
    assert refused == [world.t("refusal_agent_suspended")]
    assert world.last[0].route.final  # the dialogue ends
    await world.ledger.resume_agent(world.agent.agent_id)
    await world.ledger.set_subscriber_status(AGENT_PHONE, SubscriberStatus.SUSPENDED)
    await walk_to_recharge(world)
    await world.say("2")
    await world.say(MOBILE)
    assert await world.send("50") == [world.t("refusal_phone_suspended")]
    assert await world.say(f"CZ 2 {MOBILE} 50 {TRADE_PIN}") == world.t("refusal_phone_suspended")
    assert await world.ledger.recharges(world.agent.agent_id) == []
