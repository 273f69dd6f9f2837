"""Input checks of the menus (pure)."""

import pytest

from smsmenu.ledger.api import Kind
from smsmenu.menus import validate
from smsmenu.menus.validate import Invalid


@pytest.mark.parametrize(
    ("kind", "text", "ok"),
    [
        (Kind.MOBILE, "13812345678", True),
        (Kind.MOBILE, " 13812345678 ", True),
        (Kind.MOBILE, "1381234567", False),
        (Kind.MOBILE, "23812345678", False),
        (Kind.MOBILE, "138123456789", False),
        (Kind.FIXED, "02787654321", True),
        (Kind.FIXED, "0278765432", True),
        (Kind.FIXED, "027876543210", True),
        (Kind.FIXED, "027876543", False),
        (Kind.FIXED, "0278765432101", False),
        (Kind.PHS, "12787654321", False),
        (Kind.BROADBAND, "02787654321", True),
        (Kind.BROADBAND, "0278765432a", False),
    ],
)
def test_number(kind: Kind, text: str, ok: bool) -> None:
    if ok:
        assert validate.number(kind, text) == text.strip()
    else:
        with pytest.raises(Invalid):
            validate.number(kind, text)


@pytest.mark.parametrize(
    ("text", "fen"),
    [("10", 1000), ("50", 5000), ("1000", 100000), ("990", 99000)],
)
def test_amount_ok(text: str, fen: int) -> None:
    assert validate.amount(text) == fen


@pytest.mark.parametrize("text", ["0", "5", "15", "1010", "2000", "50.0", "-10", "", "abc", "1e3"])
def test_amount_refused(text: str) -> None:
    with pytest.raises(Invalid) as caught:
        validate.amount(text)
    assert caught.value.reason == "reason_bad_amount"


def test_kind_choices() -> None:
    assert [validate.kind(c) for c in "1234"] == [Kind.FIXED, Kind.MOBILE, Kind.PHS, Kind.BROADBAND]
    for bad in ("0", "5", "a", "12"):
        with pytest.raises(Invalid):
            validate.kind(bad)


def test_notify() -> None:
    assert validate.notify("1") is None
    assert validate.notify("13812345678") == "13812345678"
    assert validate.notify("02787654321") == "02787654321"
    with pytest.raises(Invalid):
        validate.notify("2")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("12345", "reason_bad_pin"),
        ("1234567", "reason_bad_pin"),
        ("12a456", "reason_bad_pin"),
        ("111111", "reason_weak_pin"),
        ("123456", "reason_weak_pin"),
        ("654321", "reason_weak_pin"),
        ("135790", "reason_same_pin"),
    ],
)
def test_new_pin_refused(text: str, reason: str) -> None:
    with pytest.raises(Invalid) as caught:
        validate.new_pin(text, old="135790")
    assert caught.value.reason == reason


def test_new_pin_ok_and_choice() -> None:
    assert validate.new_pin("246810", old="135790") == "246810"
    assert validate.choice("2", 3) == 2
    for bad in ("0", "4", "x", ""):
        with pytest.raises(Invalid):
            validate.choice(bad, 3)


@pytest.mark.parametrize(
    "check",
    [
        lambda: validate.number(Kind.MOBILE, "１３８１２３４５６７８"),
        lambda: validate.amount("５０"),
        lambda: validate.pin("１３５７９０"),
        lambda: validate.notify("１３８１２３４５６７８"),
    ],
)
def test_full_width_digits_are_refused_as_the_ledger_refuses_them(check: object) -> None:
    """The menus ask the ledger's own rules, which take ASCII digits only."""
    with pytest.raises(Invalid):
        check()  # type: ignore[operator]
