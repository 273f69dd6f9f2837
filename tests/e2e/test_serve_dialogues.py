"""Agent dialogues over real TCP: the simulator's phones, the SMPP link, the real menu engine,
the ledger and the outbox sender (``app.run_server``), as ``smsmenu serve`` runs them."""

from __future__ import annotations

import asyncio

import pytest

from smsmenu.ledger.api import RechargeStatus
from smsmenu.ledger.billing import ScriptedBilling
from smsmenu.ledger.outbox import DELIVERED
from smsmenu.money import format_yuan
from tests.e2e.stack import AGENT, FIXED, MOBILE, NOTIFY, Stack, running_stack
from tests.ledger_fixtures import TRADE_PIN


async def wait_delivered(stack: Stack, count: int, within_s: float = 5.0) -> None:
    """Until ``count`` outbox rows are marked delivered (their receipts were matched)."""
    async with asyncio.timeout(within_s):
        while True:
            rows = await stack.server.outbox.rows()
            if sum(r.status == DELIVERED for r in rows) >= count:
                return
            await asyncio.sleep(0.02)


async def walk_to_kind(stack: Stack) -> None:
    assert await stack.say("hi") == stack.t("agent_main")
    assert await stack.say("1") == stack.t("agent_tianyi")
    assert await stack.say("1") == stack.t("agent_air")
    assert await stack.say("1") == stack.t("agent_rc_kind")


async def expect_recharge_notices(
    stack: Stack, number: str, yuan: int, receiver: str | None
) -> None:
    """The agent's result SMS and the receipt match the ledger to the fen."""
    result = await stack.next(AGENT)
    view = max(
        (
            v
            for v in await stack.server.ledger.recharges(stack.agent.agent_id)
            if v.number == number and v.amount_fen == yuan * 100
        ),
        key=lambda v: v.tx_id,
    )
    assert view.status is RechargeStatus.SUCCEEDED
    agent = await stack.server.ledger.agent(stack.agent.agent_id)
    assert result.text == stack.t(
        "notice_recharge_ok",
        number=number,
        amount=format_yuan(view.amount_fen),
        commission=format_yuan(view.commission_fen),
        debit=format_yuan(view.debit_fen),
        balance=format_yuan(agent.balance_fen),
        tx_id=view.tx_id,
    )
    assert view.commission_fen == yuan * 100 * 200 // 10000
    assert view.debit_fen == yuan * 100 - view.commission_fen
    if receiver is not None:
        target = await stack.server.ledger.subscriber(number)
        assert target is not None
        receipt = await stack.next(receiver)
        validity = (
            stack.t("validity_until", date=target.valid_until.isoformat())
            if target.valid_until
            else ""
        )  # a prepaid target's receipt shows its validity (SPEC §8)
        assert (
            receipt.text
            == stack.t(
                "receipt_target",
                number=number,
                amount=format_yuan(view.amount_fen),
                balance=format_yuan(target.balance_fen),
                agent_id=stack.agent.agent_id,
                tx_id=view.tx_id,
            )
            + validity
        )


@pytest.mark.parametrize("backend", ["sqlite", "postgres+redis"], indirect=True)
async def test_menu_recharge_to_mobile(backend: tuple[str, str], redis_prefix: str) -> None:
    url, redis_url = backend
    async with running_stack(url, redis_url, store_prefix=redis_prefix) as stack:
        await walk_to_kind(stack)
        assert (await stack.say("2")).startswith("请输入C网手机号码")
        assert await stack.say(MOBILE) == stack.t("agent_rc_amount")
        confirm = await stack.say("50")
        assert MOBILE in confirm and "50.00元" in confirm and "佣金1.00元" in confirm
        stack.send(TRADE_PIN)
        await expect_recharge_notices(stack, MOBILE, 50, MOBILE)
        before = (await stack.server.ledger.agent(stack.agent.agent_id)).balance_fen
        assert before == 1000_00 - 49_00
        await wait_delivered(stack, 3)  # opening notice, result, receipt
        assert not stack.unread(AGENT) and not stack.unread(MOBILE)


async def test_fixed_line_receipt_goes_to_the_notify_number(stack: Stack) -> None:
    await walk_to_kind(stack)
    assert (await stack.say("1")).startswith("请输入固定电话号码")
    assert await stack.say(FIXED) == stack.t("agent_rc_amount")
    assert await stack.say("100") == stack.t("agent_rc_notify")
    confirm = await stack.say(NOTIFY)
    assert FIXED in confirm and "100.00元" in confirm
    stack.send(TRADE_PIN)
    await expect_recharge_notices(stack, FIXED, 100, NOTIFY)
    target = await stack.server.ledger.subscriber(FIXED)
    assert target is not None and target.balance_fen == -3000 + 10000
    assert stack.sim.received[FIXED] == []


async def test_balance_from_the_menu(stack: Stack) -> None:
    for text in ("x", "1", "1"):
        await stack.say(text)
    assert await stack.say("3") == stack.t("agent_account")
    assert await stack.say("1") == stack.t("agent_bal_pin")
    assert await stack.say(TRADE_PIN) == stack.t("agent_balance_result", balance="1000.00元")


async def test_shortcut_recharge(stack: Stack) -> None:
    stack.send(f"CZ 2 {MOBILE} 30 {TRADE_PIN}")
    await expect_recharge_notices(stack, MOBILE, 30, MOBILE)
    stack.send(f"cz#2#{MOBILE}#20#{TRADE_PIN}")
    await expect_recharge_notices(stack, MOBILE, 20, MOBILE)
    assert await stack.say(f"YE {TRADE_PIN}") == stack.t(
        "agent_balance_result", balance=format_yuan(1000_00 - 29_40 - 19_60)
    )


async def test_retry_list_after_a_billing_failure(sqlite_url: str) -> None:
    billing = ScriptedBilling(fail_numbers=[MOBILE])
    async with running_stack(sqlite_url, billing=billing) as stack:
        stack.send(f"CZ 2 {MOBILE} 50 {TRADE_PIN}")
        failed = (await stack.next(AGENT)).text
        assert failed.startswith("充值失败") and "1000.00元" in failed  # funds back in full
        billing.fail_numbers.clear()
        for text in ("x", "1", "1"):
            await stack.say(text)
        assert await stack.say("2") == stack.t("agent_exc_menu")
        pick = stack.t("agent_retry_pick", lines=f"1 {MOBILE} 50.00元")
        assert await stack.say("1") == pick
        pin = stack.t("agent_retry_pin", number=MOBILE, amount="50.00元")
        assert await stack.say("1") == pin
        stack.send(TRADE_PIN)
        await expect_recharge_notices(stack, MOBILE, 50, MOBILE)
        assert billing.total(MOBILE) == 5000
        # the CS shortcut finds nothing left to retry
        assert await stack.say(f"CS {MOBILE}") == stack.t("shortcut_retry_none", number=MOBILE)
        assert not stack.unread(AGENT)


async def test_long_chinese_reply_is_concatenated_ucs2(stack: Stack) -> None:
    for yuan in (10, 20, 30):
        stack.send(f"CZ 2 {MOBILE} {yuan} {TRADE_PIN}")
        await expect_recharge_notices(stack, MOBILE, yuan, MOBILE)
    for text in ("x", "1", "1", "3"):
        await stack.say(text)
    assert await stack.say("3") == stack.t("agent_rec_pin")
    stack.send(TRADE_PIN)
    records = await stack.next(AGENT)
    assert records.text.startswith("最近交易记录")
    assert records.text.count(MOBILE) == 3
    assert records.data_coding == 8 and records.parts >= 2
    assert len(records.text) > 70


async def test_the_same_password_confirms_recharges_before_and_after_a_restart(
    sqlite_url: str,
) -> None:
    """The confirming message is the same text every time: each one is still its own
    recharge, also after the server restarted (its redelivery keys start afresh)."""

    async def menu_recharge(stack: Stack, yuan: int) -> None:
        await walk_to_kind(stack)
        await stack.say("2")
        await stack.say(MOBILE)
        assert MOBILE in await stack.say(str(yuan))
        stack.send(TRADE_PIN)
        await expect_recharge_notices(stack, MOBILE, yuan, MOBILE)

    async with running_stack(sqlite_url) as stack:
        await menu_recharge(stack, 10)
        await menu_recharge(stack, 20)
    async with running_stack(sqlite_url, seeded=True) as stack:
        await menu_recharge(stack, 30)
        views = await stack.server.ledger.recharges(stack.agent.agent_id)
        assert sorted(v.amount_fen for v in views) == [1000, 2000, 3000]
        agent = await stack.server.ledger.agent(stack.agent.agent_id)
        assert agent.balance_fen == 1000_00 - 9_80 - 19_60 - 29_40


async def test_queued_notices_go_out_at_once_not_at_the_next_poll(sqlite_url: str) -> None:
    """An operation that queues its notice (opening an agent, a transfer) wakes the sender's
    claim loop; a message that queues nothing does not make it query (it once did per
    message). With a poll of a minute, the opening notice still arrives at once."""
    async with running_stack(sqlite_url, outbox_poll_s=60.0) as stack:
        claims = 0
        claim = stack.server.sender.outbox.claim

        async def counted(*args: object, **kwargs: object) -> object:
            nonlocal claims
            claims += 1
            return await claim(*args, **kwargs)  # type: ignore[arg-type]

        stack.server.sender.outbox.claim = counted  # type: ignore[method-assign]
        stack.sim.send(AGENT, f"CZ 2 {MOBILE} 20 {TRADE_PIN}")
        assert "20.00" in (await stack.next(AGENT, within_s=5)).text
        assert claims == 0
