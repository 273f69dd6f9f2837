"""No input ever raises (SPEC §4): any text, at every screen of both menus and as every
shortcut, gets a reply (or, after a money operation, the ledger's result notice), never an
exception. Each screen is reached by walking the menus with valid inputs; then hypothesis
types anything there: digits of other scripts (``٣``, full-width ``３``), superscripts and
circled digits (``²``, ``①``, for which ``str.isdigit`` is true), any Unicode, very long text,
nothing at all. Over the real ledger, in-process sessions on SQLite."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from smsmenu.ledger.billing import ScriptedBilling
from smsmenu.menus.agent import AgentMenu
from smsmenu.menus.session import IDLE, Session
from smsmenu.menus.subscriber import SubscriberMenu
from tests.integration.conftest import FIXED, MOBILE, SUBSCRIBER_PHONE, World
from tests.ledger_fixtures import TRADE_PIN

NEW_PIN = "246813"  # a valid new password; the walks give a wrong old one, so the change
WRONG_OLD = "975312"  # is refused when the arbitrary text happens to repeat the new one

AIR = ["00", "1", "1"]
ACCOUNT = [*AIR, "3"]
AGENT_WALKS: dict[str, list[str]] = {
    "idle": ["00", "#"],
    "main": ["00"],
    "tianyi": ["00", "1"],
    "air": AIR,
    "rc_kind": [*AIR, "1"],
    "rc_number": [*AIR, "1", "2"],
    "rc_amount": [*AIR, "1", "2", MOBILE],
    "rc_notify": [*AIR, "1", "1", FIXED, "50"],
    "rc_confirm": [*AIR, "1", "2", MOBILE, "50"],
    "exc_menu": [*AIR, "2"],
    "retry_pick": [*AIR, "2", "1"],
    "retry_pin": [*AIR, "2", "1", "1"],
    "account": ACCOUNT,
    "bal_pin": [*ACCOUNT, "1"],
    "tp_old": [*ACCOUNT, "2"],
    "tp_new": [*ACCOUNT, "2", WRONG_OLD],
    "tp_again": [*ACCOUNT, "2", WRONG_OLD, NEW_PIN],
    "rec_pin": [*ACCOUNT, "3"],
    "tr_amount": [*ACCOUNT, "4"],
    "tr_pin": [*ACCOUNT, "4", "50"],
    "business": [*AIR, "4"],
    "mp_old": [*AIR, "4", "1"],
    "mp_new": [*AIR, "4", "1", WRONG_OLD],
    "mp_again": [*AIR, "4", "1", WRONG_OLD, NEW_PIN],
}
CARD, CARD_PIN = "9000000001", "246810"
CARD_WALK = ["00", "2", CARD, CARD_PIN]
SUBSCRIBER_WALKS: dict[str, list[str]] = {
    "idle": ["00", "#"],
    "main": ["00"],
    "card_number": ["00", "2"],
    "card_pin": ["00", "2", CARD],
    "card_use": CARD_WALK,
    "card_item": [*CARD_WALK, "2"],
    "card_confirm": [*CARD_WALK, "1"],
    "close_ask": ["00", "4"],
    "close_code": ["00", "4", "1"],
}

# Digits that are not ASCII: decimal digits of every script (full-width, Arabic-Indic, ...) and
# other numbers (superscripts, circled, fractions); mixed with what menu input is made of.
OTHER_DIGITS = st.characters(categories=["Nd", "No"])
MENU_BITS = st.sampled_from([*"0123456789#", " ", "\t", "\n", "\u3000"])
ANY_TEXT = st.one_of(
    st.text(),  # any Unicode (hypothesis leaves out lone surrogates)
    st.text(st.one_of(OTHER_DIGITS, MENU_BITS), max_size=12),
    st.builds(
        lambda piece, times: piece * times, st.text(min_size=1, max_size=8), st.integers(50, 600)
    ),
    # longer than int() reads (4300 digits)
    st.builds(lambda digit, times: digit * times, st.sampled_from("1²٣"), st.integers(4000, 5000)),
    st.sampled_from(["", " ", "\t\r\n", "\u3000", "²", "①", "１", "٣", "1²", "0²", "00", "#"]),
)
FIELD = st.one_of(
    st.text(st.one_of(OTHER_DIGITS, MENU_BITS), min_size=1, max_size=12),
    st.text(min_size=1, max_size=12),
    st.sampled_from(["1", "2", "4", MOBILE, FIXED, "50", TRADE_PIN, "1²", "１３５７９０"]),
)
PROPERTY = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def state_ids(menu: type[AgentMenu] | type[SubscriberMenu]) -> set[str]:
    return {str(state) for state in menu.states_map} - {"session"}


def test_every_screen_is_walked_to() -> None:
    assert set(AGENT_WALKS) == state_ids(AgentMenu)
    assert set(SUBSCRIBER_WALKS) == state_ids(SubscriberMenu)


EMBEDDED = pytest.mark.parametrize("backend", ["inprocess+sqlite"], indirect=True)


async def current_state(world: World, phone: str) -> str:
    raw = await world.raw_session(phone)
    return (Session.from_json(raw).states if raw else IDLE)[-1]


async def at(world: World, state: str, walk: list[str], phone: str) -> None:
    """Walk ``phone`` to ``state`` with valid inputs (unless it is there already)."""
    if await current_state(world, phone) != state:
        for text in walk:
            await world.send(text, phone)
    assert await current_state(world, phone) == state, (state, walk)


async def answered(world: World, text: str, phone: str) -> None:
    """``text`` gets a reply, or (a money operation) the ledger's result notice."""
    before = await world.outbox.rows(destination=phone)
    replies = await world.send(text, phone)
    if not replies:
        after = await world.outbox.rows(destination=phone)
        assert len(after) > len(before), f"no reply and no notice to {text!r}"


@pytest.fixture
async def menus(world: World) -> World:
    """The world with a retry list that stays (billing refuses every recharge to MOBILE, so a
    retry fails again) and no rate limit in the way."""
    world.engine.config = dataclasses.replace(world.engine.config, rate_limit_per_min=10**9)
    world.ledger.billing = ScriptedBilling(fail_numbers=[MOBILE])
    assert await world.send(f"CZ 2 {MOBILE} 30 {TRADE_PIN}") == []
    cards = f"number,pin,value,expires\n{CARD},{CARD_PIN},50,2099-12-31\n"
    await world.ledger.import_cards("walks", world.ledger.parse_cards(cards))
    return world


@EMBEDDED
@pytest.mark.parametrize("state", sorted(AGENT_WALKS))
@PROPERTY
@given(text=ANY_TEXT)
@example(text=NEW_PIN)
@example(text=TRADE_PIN)
async def test_any_text_at_every_agent_screen(menus: World, state: str, text: str) -> None:
    await at(menus, state, AGENT_WALKS[state], menus.agent.phone)
    await answered(menus, text, menus.agent.phone)


@EMBEDDED
@pytest.mark.parametrize("state", sorted(SUBSCRIBER_WALKS))
@PROPERTY
@given(text=ANY_TEXT)
async def test_any_text_at_every_subscriber_screen(menus: World, state: str, text: str) -> None:
    await at(menus, state, SUBSCRIBER_WALKS[state], SUBSCRIBER_PHONE)
    await answered(menus, text, SUBSCRIBER_PHONE)


@EMBEDDED
@pytest.mark.parametrize("keyword", ["CZ", "YE", "CS", "Y", "CK"])
@PROPERTY
@given(data=st.data())
async def test_any_shortcut(menus: World, keyword: str, data: st.DataObject) -> None:
    word = data.draw(st.sampled_from([keyword, keyword.lower(), keyword.capitalize()]))
    separator = data.draw(st.sampled_from([" ", "#", " # ", "  ", "\u3000", "\t"]))
    fields = data.draw(st.lists(FIELD, max_size=6))
    if keyword == "Y":  # something to confirm: the latest failed recharge
        await menus.send(f"CS {MOBILE}")
    await answered(menus, separator.join([word, *fields]), menus.agent.phone)
