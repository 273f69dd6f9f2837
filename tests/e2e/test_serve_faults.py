"""The running product under SMPP faults and over USSD: a link dropped without unbind, a
throttling SMSC, a USSD dialogue with a session number above 127."""

from __future__ import annotations

import asyncio
from collections import Counter

from smsmenu.smpp import pdu
from tests.e2e.stack import AGENT, MOBILE, Stack, running_stack
from tests.e2e.test_serve_dialogues import expect_recharge_notices, wait_delivered, walk_to_kind
from tests.ledger_fixtures import TRADE_PIN


async def test_link_dropped_mid_dialogue_the_link_rebinds_and_it_goes_on(
    stack: Stack,
) -> None:
    await walk_to_kind(stack)
    binds = stack.sim.binds
    assert stack.sim.drop_link() == 1
    assert (await stack.say("2")).startswith("请输入C网手机号码")  # waits for the rebind
    assert stack.sim.binds == binds + 1
    assert await stack.say(MOBILE) == stack.t("agent_rc_amount")
    assert MOBILE in await stack.say("20")
    stack.send(TRADE_PIN)
    await expect_recharge_notices(stack, MOBILE, 20, MOBILE)
    stack.sim.drop_link()
    stack.send(f"CZ 2 {MOBILE} 10 {TRADE_PIN}")
    await expect_recharge_notices(stack, MOBILE, 10, MOBILE)
    assert not stack.unread(AGENT) and not stack.unread(MOBILE)


async def test_throttled_smsc_every_reply_and_receipt_arrives_once(stack: Stack) -> None:
    stack.sim.throttle(pdu.ESME_RTHROTTLED, seconds=1.5)
    await walk_to_kind(stack)  # menu replies wait through the throttle
    for yuan in (10, 20, 30):
        stack.send(f"CZ 2 {MOBILE} {yuan} {TRADE_PIN}")
        await expect_recharge_notices(stack, MOBILE, yuan, MOBILE)
    assert stack.sim.refused and all(s == pdu.ESME_RTHROTTLED for _, s in stack.sim.refused)
    texts = [m.text for phone in (AGENT, MOBILE) for m in stack.sim.received[phone]]
    assert all(n == 1 for n in Counter(texts).values()), Counter(texts).most_common(2)
    assert len(stack.sim.received[AGENT]) == 1 + 4 + 3 and len(stack.sim.received[MOBILE]) == 3
    await wait_delivered(stack, 7)  # every outbox row, its receipt matched


async def test_ussd_dialogue_ends_with_the_recharge_result(sqlite_url: str) -> None:
    async with running_stack(sqlite_url) as stack:
        sim, session = stack.sim, 200  # above 127: the octet is not ASCII
        steps = ["*100#", "1", "1", "1", "2", MOBILE, "50"]
        for sequence, text in enumerate(steps):
            op = 1 if sequence == 0 else 18
            sim.send_ussd(
                AGENT, text, op=op, session=session, sequence=sequence, user_message_reference=7
            )
            got = await stack.next(AGENT)
            info = got.session_info
            assert got.ussd_service_op == 2 and info is not None
            assert info.session == session and not info.end
            assert got.user_message_reference == 7
        assert MOBILE in got.text and "50.00元" in got.text
        sim.send_ussd(
            AGENT, TRADE_PIN, op=18, session=session, sequence=len(steps), user_message_reference=7
        )
        final = await stack.next(AGENT)
        info = final.session_info
        assert final.ussd_service_op == 17 and info is not None
        assert info.session == session and info.end
        assert final.text.startswith("充值成功：号码13900000002，金额50.00元")
        receipt = await stack.next(MOBILE)  # the receipt is an ordinary SMS
        assert receipt.ussd_service_op is None and "已充值50.00元" in receipt.text
        # a new dialogue, ended with '#'
        sim.send_ussd(AGENT, "*100#", op=1, session=201, sequence=0)
        assert (await stack.next(AGENT)).session_info.end is False  # type: ignore[union-attr]
        sim.send_ussd(AGENT, "#", op=18, session=201, sequence=1)
        bye = await stack.next(AGENT)
        assert bye.ussd_service_op == 17 and bye.session_info.end  # type: ignore[union-attr]
        assert not stack.unread(AGENT)


async def test_a_clean_stop_finishes_the_sends_in_flight(sqlite_url: str) -> None:
    from smsmenu.app import close_ledger, open_ledger
    from smsmenu.ledger.outbox import SENDING, Outbox
    from smsmenu.settings import Settings

    async with running_stack(sqlite_url) as stack:
        stack.sim.delay_responses(0.3)  # every submit_sm answered late: in flight at the stop
        (mo,) = stack.sim.send(AGENT, f"CZ 2 {MOBILE} 10 {TRADE_PIN}")
        await asyncio.wait_for(mo.acked, 5)
        async with asyncio.timeout(5):  # both notices submitted, their responses pending
            while stack.sim.max_unanswered < 2:  # noqa: ASYNC110 - no event for it
                await asyncio.sleep(0.01)
        # leaving the block stops the server: it finishes the two sends, then unbinds
    assert [m.text[:4] for m in stack.sim.received[AGENT][1:]] == ["充值成功"]
    assert len(stack.sim.received[MOBILE]) == 1
    ledger = await open_ledger(Settings(database_url=sqlite_url))  # type: ignore[call-arg]
    try:
        rows = await Outbox(ledger.engine, ledger.clock).rows()
        assert len(rows) == 3 and not [r for r in rows if r.status == SENDING]
        assert all(r.smsc_message_id for r in rows)
    finally:
        await close_ledger(ledger)
