"""Input checks of the menus (pure)."""

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    for bad in ("0", "4", "x", "", "²", "①", "１", "٢", "1" * 5000):
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


ANY = st.one_of(
    st.text(), st.text(st.characters(categories=["Nd", "No"]) | st.sampled_from("0123456789 "))
)


@settings(max_examples=300, deadline=None)
@given(text=ANY, count=st.integers(0, 12), kind=st.sampled_from(Kind))
def test_any_text_is_a_value_or_invalid(text: str, count: int, kind: Kind) -> None:
    checks = [
        lambda: validate.kind(text),
        lambda: validate.number(kind, text),
        lambda: validate.amount(text),
        lambda: validate.notify(text),
        lambda: validate.pin(text),
        lambda: validate.new_pin(text),
        lambda: validate.new_pin(text, old="135790"),
        lambda: validate.choice(text, count),
    ]
    for check in checks:
        with contextlib.suppress(Invalid):
            check()
