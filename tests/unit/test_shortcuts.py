"""The shortcut parser (pure): commands, non-shortcuts and clear errors."""

import pytest

from smsmenu.ledger.api import Kind
from smsmenu.menus import shortcuts
from smsmenu.menus.shortcuts import (
    BalanceCommand,
    ConfirmCommand,
    RechargeCommand,
    RetryCommand,
    ShortcutError,
)


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("CZ 2 13812345678 50 135790", RechargeCommand(Kind.MOBILE, "13812345678", 5000, "135790")),
        ("cz#2#13812345678#50#135790", RechargeCommand(Kind.MOBILE, "13812345678", 5000, "135790")),
        (
            "  Cz  3 # 02787654321  100 135790 ",
            RechargeCommand(Kind.PHS, "02787654321", 10000, "135790"),
        ),
        (
            "CZ 1 02787654321 20 135790 13812345678",
            RechargeCommand(Kind.FIXED, "02787654321", 2000, "135790", "13812345678"),
        ),
        (
            "CZ 4 02787654321 20 135790 1",
            RechargeCommand(Kind.BROADBAND, "02787654321", 2000, "135790"),
        ),
        ("YE 135790", BalanceCommand("135790")),
        ("ye#135790", BalanceCommand("135790")),
        ("CS 13812345678", RetryCommand("13812345678")),
        ("cs 02787654321", RetryCommand("02787654321")),
        ("Y 135790", ConfirmCommand("135790")),
        ("y#135790", ConfirmCommand("135790")),
        ("#YE#135790", BalanceCommand("135790")),
    ],
)
def test_commands(text: str, command: shortcuts.Command) -> None:
    assert shortcuts.parse(text) == command


@pytest.mark.parametrize(
    "text", ["1", "00", "#", "", "hello", "CZX 1", "YES 135790", "13812345678"]
)
def test_not_a_shortcut(text: str) -> None:
    assert shortcuts.parse(text) is None
    assert shortcuts.keyword(text) is None


@pytest.mark.parametrize(
    ("text", "reason", "usage"),
    [
        ("CZ", "reason_shortcut_fields", "usage_cz"),
        ("CZ 2 13812345678 50", "reason_shortcut_fields", "usage_cz"),
        ("CZ 6 13812345678 50 135790", "reason_bad_kind", "usage_cz"),
        ("CZ 2 1381234567 50 135790", "reason_bad_mobile", "usage_cz"),
        ("CZ 1 13812345678 50 135790", "reason_bad_area_number", "usage_cz"),
        ("CZ 2 13812345678 55 135790", "reason_bad_amount", "usage_cz"),
        ("CZ 2 13812345678 50 1357", "reason_bad_pin", "usage_cz"),
        ("CZ 2 13812345678 50 135790 13812345679", "reason_notify_not_allowed", "usage_cz"),
        ("CZ 1 02787654321 50 135790 999", "reason_bad_notify", "usage_cz"),
        ("CZ 2 13812345678 50 135790 1 2", "reason_shortcut_fields", "usage_cz"),
        ("YE", "reason_shortcut_fields", "usage_ye"),
        ("YE 12", "reason_bad_pin", "usage_ye"),
        ("CS", "reason_shortcut_fields", "usage_cs"),
        ("CS 123", "reason_bad_mobile", "usage_cs"),
        ("Y", "reason_shortcut_fields", "usage_y"),
        ("Y 135790 1", "reason_shortcut_fields", "usage_y"),
    ],
)
def test_errors_name_reason_and_usage(text: str, reason: str, usage: str) -> None:
    with pytest.raises(ShortcutError) as caught:
        shortcuts.parse(text)
    assert (caught.value.reason, caught.value.usage) == (reason, usage)


def test_pin_never_in_repr() -> None:
    command = shortcuts.parse("CZ 2 13812345678 50 135790")
    assert "135790" not in repr(command)
    assert "135790" not in repr(shortcuts.parse("Y 135790"))


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("CK 9100000001 246810", shortcuts.CardCommand("9100000001", "246810")),
        ("ck#9100000001#246810#d100", shortcuts.CardCommand("9100000001", "246810", "D100")),
    ],
)
def test_card_shortcut(text: str, command: shortcuts.CardCommand) -> None:
    assert shortcuts.parse(text) == command
    assert "246810" not in repr(command)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("CK 9100000001", "reason_shortcut_fields"),
        ("CK 12 246810", "reason_bad_card_number"),
        ("CK 9100000001 12", "reason_bad_card_pin"),
        ("CK 9100000001 246810 流量", "reason_bad_choice"),
    ],
)
def test_card_shortcut_errors(text: str, reason: str) -> None:
    with pytest.raises(shortcuts.ShortcutError) as caught:
        shortcuts.parse(text)
    assert (caught.value.reason, caught.value.usage) == (reason, "usage_ck")


def test_cz_5_sells_an_item_from_the_float() -> None:
    command = shortcuts.parse("cz 5 13812345678 p30 135790")
    assert command == shortcuts.SaleCommand("13812345678", "P30", "135790")
    assert "135790" not in repr(command)
    for text, reason in (
        ("CZ 5 13812345678 P30", "reason_shortcut_fields"),
        ("CZ 5 02787654321 P30 135790", "reason_bad_mobile"),
        ("CZ 5 13812345678 P-30 135790", "reason_bad_choice"),
        ("CZ 5 13812345678 P30 1357", "reason_bad_pin"),
    ):
        with pytest.raises(shortcuts.ShortcutError) as caught:
            shortcuts.parse(text)
        assert (caught.value.reason, caught.value.usage) == (reason, "usage_cz"), text
