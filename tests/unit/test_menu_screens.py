"""Menu screens: every state has its text in the catalogue, and every screen, even with the
longest re-prompt reason in front, fits one SMS (70 UCS2 characters). Pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from statemachine.orderedset import OrderedSet

from smsmenu.menus.agent import AgentMenu
from smsmenu.menus.base import MenuMachine, MenuModel, Turn
from smsmenu.menus.sealing import Sealer
from smsmenu.menus.subscriber import SubscriberMenu
from smsmenu.messages import SMS
from smsmenu.settings import config_dir
from smsmenu.texts import Catalogue

SMS_CHARS = 70
TEXTS = Catalogue.load(config_dir() / "texts", "zh")
REASONS = [
    key
    for key in (
        "reason_bad_choice",
        "reason_bad_pin",
        "reason_bad_amount",
        "reason_bad_area_number",
        "reason_bad_mobile",
        "reason_bad_notify",
        "reason_pins_differ",
        "reason_weak_pin",
        "reason_same_pin",
        "reason_bad_kind",
    )
]
PIN_REASONS = ["reason_bad_pin", "reason_weak_pin", "reason_same_pin", "reason_pins_differ"]
# Screens that take a password re-prompt only for a password reason.
PIN_SCREENS = {f"{flow}_{step}" for flow in ("tp", "mp") for step in ("old", "new", "again")}
# Screens that confirm an operation with the password.
CONFIRM_SCREENS = {"rc_confirm", "retry_pin", "bal_pin", "rec_pin", "tr_pin"}
# Screens that list records may need more than one SMS (they are sent concatenated).
LISTS = {"retry_pick", "card_item"}


class NoLedger:
    """Stands where the ledger would be: showing a screen must never ask it anything."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a screen asked the ledger for {name}")


def longest_data(kind: str = "broadband") -> dict[str, Any]:
    return {
        "kind": kind,
        "number": "027876543210",
        "amount": 100000,
        "commission": 2000,
        "debit": 98000,
        "notify": "13812345678",
        "retries": [{"tx": 9, "number": "027876543210", "amount": 100000}],
        "retry_tx": 9,
        "card": "1" * 20,
        "items": [{"code": "P90", "name": "畅聊套餐(季)", "price": 8000}],
        "item": "P90",
        "balance": 100000,
    }


def turn(data: dict[str, Any] | None = None) -> Turn:
    return Turn(
        ledger=NoLedger(),  # type: ignore[arg-type]
        texts=TEXTS,
        sealer=Sealer(b"s" * 32),
        zone=ZoneInfo("Asia/Shanghai"),
        phone="18912345678",
        message_id="k",
        fingerprint="f",
        route=SMS,
        now=datetime(2026, 11, 10, tzinfo=UTC),
        agent_id=1,
        data=data if data is not None else longest_data(),
    )


def screens(machine: type[MenuMachine]) -> list[str]:
    return [s.id for s in machine.states_map.values() if s.is_atomic and s.id != "idle"]


@pytest.mark.parametrize("machine", [AgentMenu, SubscriberMenu])
def test_every_screen_has_a_text(machine: type[MenuMachine]) -> None:
    for state in screens(machine):
        assert f"{machine.PREFIX}{state}" in TEXTS


@pytest.mark.parametrize("machine", [AgentMenu, SubscriberMenu])
@pytest.mark.parametrize("kind", ["fixed", "mobile", "phs", "broadband"])
def test_screens_fit_one_sms_with_a_reason(machine: type[MenuMachine], kind: str) -> None:
    instance = machine(MenuModel(OrderedSet(["idle"])))
    instance.model.turn = turn(longest_data(kind))
    for state in screens(machine):
        if state in LISTS:
            continue
        reasons = ["reason_bad_pin"] if state in CONFIRM_SCREENS else REASONS
        reasons = PIN_REASONS if state in PIN_SCREENS else reasons
        longest_reason = max(len(TEXTS.render(key)) for key in reasons)
        instance.model.turn.parts.clear()
        instance.show(state)
        (text,) = instance.model.turn.parts
        assert len(text) + 1 + longest_reason <= SMS_CHARS, (state, len(text), text)


def test_fixed_texts_fit_one_sms() -> None:
    for key in (
        "goodbye",
        "rate_limited",
        "refused_generic",
        "sub_closed_notice",
        "usage_ck",
        "retry_none",
        "usage_cz",
        "usage_ye",
        "usage_cs",
        "usage_y",
        "shortcut_nothing_pending",
    ):
        assert len(TEXTS.render(key)) <= SMS_CHARS, key
    text = TEXTS.render("shortcut_duplicate", number="027876543210", amount="1000.00元")
    assert len(text) <= SMS_CHARS
    text = TEXTS.render("reason_shortcut_fields") + "\n" + TEXTS.render("usage_cz")
    assert len(text) <= SMS_CHARS
