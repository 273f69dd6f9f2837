"""The agent menu walked path by path through the engine, over the real ledger: every screen,
re-prompt, back, home and end; amounts and balances to the fen."""

from __future__ import annotations

from smsmenu.ledger.api import Kind, RechargeStatus, SubscriberView
from tests.integration.conftest import MOBILE, World
from tests.ledger_fixtures import TRADE_PIN

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
