"""The subscriber menu's 2 充值卡充值 and 4 销户, the CK shortcut and a closed number, over the
real ledger (in-process sessions on SQLite, Redis on PostgreSQL)."""

from __future__ import annotations

import re

import pytest

from smsmenu.ledger.api import Billing, Kind, Refusal, Rule, SubscriberStatus
from tests.integration.conftest import SUBSCRIBER_PHONE, World

PHONE = SUBSCRIBER_PHONE  # prepaid, 12.34 yuan
CARDS = (
    "number,pin,value,expires\n"
    "9100000001,246810,50,2099-12-31\n"
    "9100000002,135799,30,2099-12-31\n"
    "9100000003,112233,100,2099-12-31\n"
)


async def with_cards(world: World) -> None:
    await world.ledger.import_cards("menu", world.ledger.parse_cards(CARDS))


async def test_card_for_call_credit_then_a_data_pack(world: World) -> None:
    await with_cards(world)
    assert await world.send("2", PHONE) == [world.t("sub_main")]  # opens the menu first
    assert await world.send("2", PHONE) == [world.t("sub_card_number")]
    assert await world.send("12", PHONE) == [
        world.t("reason_bad_card_number") + "\n" + world.t("sub_card_number")
    ]
    assert await world.send("9100000001", PHONE) == [world.t("sub_card_pin")]
    assert await world.send("246810", PHONE) == [world.t("sub_card_use")]
    (confirm,) = await world.send("1", PHONE)
    assert confirm.startswith("卡9100000001") and "全部充话费" in confirm
    assert await world.send("1", PHONE) == []  # the ledger sends the result
    (result,) = await world.notices(PHONE)
    assert result.kind == "card_result" and "62.34元" in result.text and "有效期至" in result.text
    assert "246810" not in result.text
    # a data pack from the numbered list
    for text in ("x", "2", "9100000002", "135799"):
        await world.send(text, PHONE)
    (listed,) = await world.send("2", PHONE)
    assert "100M流量包" in listed and "10.00元" in listed
    (confirm,) = await world.send("1", PHONE)
    assert "100M流量包" in confirm
    assert await world.send("1", PHONE) == []
    sub = await world.ledger.subscriber(PHONE)
    assert sub is not None and sub.balance_fen == 1234 + 5000 + 2000
    assert [a.code for a in sub.allowances] == ["D100"]
    (balance,) = await world.send("1", PHONE)  # a new dialogue: the main menu
    (balance,) = await world.send("1", PHONE)
    assert "82.34元" in balance and "有效期至" in balance and "D100流量100M" in balance


async def test_a_wrong_card_pin_goes_back_to_the_card_number(world: World) -> None:
    await with_cards(world)
    for text in ("x", "2", "9100000001", "999999", "1"):
        await world.send(text, PHONE)
    reply = await world.send("1", PHONE)
    assert reply == [world.t("refusal_card_invalid") + "\n" + world.t("sub_card_number")]
    for text in ("9100000001", "246810", "1"):
        await world.send(text, PHONE)
    assert await world.send("1", PHONE) == []
    assert (await world.ledger.card("9100000001")).status == "redeemed"


async def test_ck_shortcut_from_any_phone(world: World) -> None:
    await with_cards(world)
    assert await world.send("ck 9100000003 112233 p30", PHONE) == []
    sub = await world.ledger.subscriber(PHONE)
    assert sub is not None and sub.balance_fen == 1234 + 7000
    assert [a.code for a in sub.allowances] == ["P30"]
    assert await world.send("CK 9100000003 112233", PHONE) == [world.t("refusal_card_used")]
    assert await world.send("CK 9100000001", PHONE) == [
        world.t("reason_shortcut_fields") + "\n" + world.t("usage_ck")
    ]
    # from an agent's bound phone too: the card is for that number
    assert await world.send("CK 9100000001 246810") == []
    assert (await world.ledger.card("9100000001")).status == "redeemed"


async def test_close_from_the_phone_with_the_code(world: World) -> None:
    assert await world.send("4", PHONE) == [world.t("sub_main")]
    (ask,) = await world.send("4", PHONE)
    assert ask == world.t("sub_close_ask", balance="12.34元")
    assert await world.send("1", PHONE) == [world.t("sub_close_code", number=PHONE)]
    (sms,) = await world.notices(PHONE)
    (code,) = re.findall(r"[0-9]{6}", sms.text)
    wrong = "000000" if code != "000000" else "111111"
    (again,) = await world.send(wrong, PHONE)
    assert again.startswith(world.t("refusal_close_code_wrong", remaining=2))
    assert await world.send(code, PHONE) == []
    sub = await world.ledger.subscriber(PHONE)
    assert sub is not None and sub.status is SubscriberStatus.CLOSED
    confirmation = [n for n in await world.notices(PHONE) if n.kind == "subscriber_closed"]
    assert len(confirmation) == 1 and "12.34元" in confirmation[0].text
    assert code not in "".join(await world.send("1", PHONE))
    assert await world.send("hello", PHONE) == [world.t("sub_closed_notice")]
    assert await world.send("CK 9100000001 246810", PHONE) == [
        world.t("refusal_subscriber_closed", number=PHONE)
    ]


async def test_close_refused_for_a_bound_phone_and_an_owed_amount(world: World) -> None:
    with pytest.raises(Refusal) as caught:  # a bound phone gets the agent menu, not this one
        await world.ledger.closing_check(world.agent.phone)
    assert caught.value.rule is Rule.CLOSE_BOUND_PHONE
    await world.ledger.add_subscriber("13300000077", Kind.MOBILE, Billing.POSTPAID, -3000)
    await world.send("x", "13300000077")
    assert await world.send("4", "13300000077") == [world.t("refusal_close_owed", owed="30.00元")]
