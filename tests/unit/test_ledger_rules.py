"""The ledger's pure rules, by tables of cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsmenu.ledger import rules
from smsmenu.ledger.api import Billing, Kind, Rule

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("kind", "number", "ok"),
    [
        (Kind.MOBILE, "13800000001", True),
        (Kind.MOBILE, "19999999999", True),
        (Kind.MOBILE, "1380000000", False),  # 10 digits
        (Kind.MOBILE, "138000000012", False),  # 12 digits
        (Kind.MOBILE, "23800000001", False),  # not starting with 1
        (Kind.MOBILE, "1380000000a", False),
        (Kind.MOBILE, "", False),
        (Kind.FIXED, "02787654321", True),  # 11 digits with area code
        (Kind.FIXED, "0108765432", True),  # 10 digits
        (Kind.FIXED, "075512345678", True),  # 12 digits
        (Kind.FIXED, "010876543", False),  # 9 digits
        (Kind.FIXED, "0755123456789", False),  # 13 digits
        (Kind.FIXED, "12787654321", False),  # no leading 0
        (Kind.PHS, "02787654321", True),
        (Kind.PHS, "13800000001", False),
        (Kind.BROADBAND, "02787654321", True),
        (Kind.BROADBAND, "0278765432x", False),
        (Kind.BROADBAND, " 02787654321", False),
    ],
)
def test_number_rule(kind: Kind, number: str, ok: bool) -> None:
    assert rules.number_rule(kind, number) == (None if ok else Rule.BAD_NUMBER)


@pytest.mark.parametrize(
    ("notify", "found_kind", "found_status", "ok"),
    [
        ("13900000002", None, None, True),  # any mobile number, a subscriber here or not
        ("13900000002", "mobile", "closed", True),
        ("02787650000", "phs", "active", True),
        ("02787650000", "phs", "suspended", True),
        ("02787650000", "phs", "closed", False),
        ("02787654321", "fixed", "active", False),  # a fixed line looks like a PHS number
        ("02787654321", "broadband", "active", False),
        ("02787654321", None, None, False),  # nobody we know
    ],
)
def test_notify_target_rule(
    notify: str, found_kind: str | None, found_status: str | None, ok: bool
) -> None:
    expected = None if ok else Rule.BAD_NOTIFY_NUMBER
    assert rules.notify_target_rule(notify, found_kind, found_status) == expected


@pytest.mark.parametrize(
    ("yuan_fen", "ok"),
    [
        (0, False),
        (500, False),  # 5 yuan
        (999, False),
        (1000, True),  # 10 yuan
        (1050, False),  # 10.50 yuan
        (1500, False),  # 15 yuan: not a multiple of 10
        (2000, True),
        (99000, True),
        (100000, True),  # 1000 yuan
        (101000, False),  # 1010 yuan
        (-1000, False),
    ],
)
def test_recharge_amount_rule(yuan_fen: int, ok: bool) -> None:
    assert rules.recharge_amount_rule(yuan_fen) == (None if ok else Rule.BAD_AMOUNT)


@pytest.mark.parametrize(
    ("fen", "expected"),
    [
        (0, Rule.BAD_DEPOSIT),
        (500, Rule.BAD_DEPOSIT),
        (1000, None),
        (1500, Rule.BAD_DEPOSIT),
        (1001, Rule.BAD_DEPOSIT),
        (10_000_000_000, None),  # no upper limit
    ],
)
def test_deposit_rule(fen: int, expected: Rule | None) -> None:
    assert rules.deposit_rule(fen) == expected


@pytest.mark.parametrize(
    ("fen", "expected"),
    [
        (49_900, Rule.OPENING_DEPOSIT_TOO_SMALL),
        (49_999, Rule.OPENING_DEPOSIT_TOO_SMALL),
        (50_000, None),
        (50_500, Rule.BAD_DEPOSIT),
        (51_000, None),
    ],
)
def test_opening_deposit_rule(fen: int, expected: Rule | None) -> None:
    assert rules.opening_deposit_rule(fen) == expected


@pytest.mark.parametrize(
    ("amount", "bp", "commission"),
    [
        (1000, 200, 20),
        (10000, 200, 200),
        (1000, 333, 33),  # 33.3 floors to 33
        (1000, 199, 19),  # 19.9 floors to 19
        (100000, 1, 10),
        (1000, 1, 0),  # 0.1 floors to 0
        (1000, 0, 0),
        (1000, 10000, 1000),
    ],
)
def test_commission_floors(amount: int, bp: int, commission: int) -> None:
    price = rules.price(amount, bp)
    assert price.commission_fen == commission
    assert price.debit_fen == amount - commission


@given(st.integers(1, 100).map(lambda n: n * 1000), st.integers(0, 10000))
def test_commission_is_floor_and_never_exceeds_amount(amount: int, bp: int) -> None:
    commission = rules.commission(amount, bp)
    assert commission <= amount * bp / 10000 < commission + 1
    assert 0 <= commission <= amount


@pytest.mark.parametrize(
    ("bp", "ok"), [(-1, False), (0, True), (200, True), (10000, True), (10001, False)]
)
def test_commission_rule(bp: int, ok: bool) -> None:
    assert rules.commission_rule(bp) == (None if ok else Rule.BAD_COMMISSION)


@pytest.mark.parametrize(
    ("fen", "ok"), [(0, True), (999, True), (1000, False), (1001, False), (50_000, False)]
)
def test_close_rule(fen: int, ok: bool) -> None:
    assert rules.close_rule(fen) == (None if ok else Rule.CLOSE_FLOAT_TOO_HIGH)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("135790", "246801", None),
        ("135790", "135790", Rule.SAME_PIN),
        ("135790", "111111", Rule.WEAK_PIN),
        ("135790", "000000", Rule.WEAK_PIN),
        ("135790", "123456", Rule.WEAK_PIN),
        ("135790", "654321", Rule.WEAK_PIN),
        ("135790", "345678", Rule.WEAK_PIN),
        ("135790", "987654", Rule.WEAK_PIN),
        ("135790", "234567", Rule.WEAK_PIN),
        ("135790", "123457", None),  # not a run
        ("135790", "112233", None),
        ("135790", "12345", Rule.BAD_PIN_FORMAT),
        ("135790", "1234567", Rule.BAD_PIN_FORMAT),
        ("135790", "12345a", Rule.BAD_PIN_FORMAT),
        ("135790", "", Rule.BAD_PIN_FORMAT),
        ("135790", "１２３４５７", Rule.BAD_PIN_FORMAT),  # full-width digits
    ],
)
def test_new_pin_rule(old: str, new: str, expected: Rule | None) -> None:
    assert rules.new_pin_rule(old, new) == expected


def _at(local: str) -> datetime:
    return datetime.fromisoformat(local).replace(tzinfo=SHANGHAI).astimezone(UTC)


def _facts(**overrides: object) -> rules.ReversalFacts:
    values: dict[str, object] = {
        "recharge_at": _at("2026-11-10 10:00:00"),
        "now": _at("2026-11-10 10:10:00"),
        "succeeded": True,
        "reversals_this_month": 0,
        "invoice_printed": False,
        "target_billing": Billing.POSTPAID,
        "target_balance_fen": 10_000,
        "amount_fen": 10_000,
    }
    values.update(overrides)
    return rules.ReversalFacts(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, None),
        ({"now": _at("2026-11-10 10:30:00")}, None),  # exactly 30 minutes
        ({"now": _at("2026-11-10 10:30:01")}, Rule.REVERSAL_TOO_OLD),  # 30 min + 1 s
        ({"succeeded": False}, Rule.REVERSAL_NOT_SUCCEEDED),
        ({"reversals_this_month": 1}, Rule.REVERSAL_MONTHLY_LIMIT),
        ({"invoice_printed": True}, Rule.REVERSAL_INVOICE_PRINTED),
        ({"target_billing": Billing.PREPAID}, Rule.REVERSAL_NOT_POSTPAID),
        ({"target_balance_fen": 9_999}, Rule.REVERSAL_TARGET_BALANCE),
        ({"target_balance_fen": 10_000}, None),
        # the last day of November in Shanghai (still the 29th in UTC at 01:00 local)
        (
            {"recharge_at": _at("2026-11-30 01:00:00"), "now": _at("2026-11-30 01:10:00")},
            Rule.REVERSAL_LAST_DAY,
        ),
        # the 29th, 23:50 local is already the 29th 15:50 UTC: allowed
        ({"recharge_at": _at("2026-11-29 23:40:00"), "now": _at("2026-11-29 23:50:00")}, None),
        # across midnight into a new month (local): cross-month
        (
            {"recharge_at": _at("2026-10-31 23:50:00"), "now": _at("2026-11-01 00:05:00")},
            Rule.REVERSAL_CROSS_MONTH,
        ),
        # 2028 is a leap year: February 29th is the last day, the 28th is not
        (
            {"recharge_at": _at("2028-02-29 10:00:00"), "now": _at("2028-02-29 10:01:00")},
            Rule.REVERSAL_LAST_DAY,
        ),
        ({"recharge_at": _at("2028-02-28 10:00:00"), "now": _at("2028-02-28 10:01:00")}, None),
    ],
)
def test_reversal_rule(overrides: dict[str, object], expected: Rule | None) -> None:
    assert rules.reversal_rule(_facts(**overrides), SHANGHAI) == expected


def test_last_day_is_a_business_day_in_the_zone() -> None:
    # 2026-11-30 16:30 UTC is already December 1st in Shanghai
    when = datetime(2026, 11, 30, 16, 30, tzinfo=UTC)
    assert not rules.is_last_day_of_month(when, SHANGHAI)
    assert rules.is_last_day_of_month(when, ZoneInfo("UTC"))
    assert rules.month_start(when, SHANGHAI) == datetime(2026, 12, 1, tzinfo=SHANGHAI)


def test_reversal_window_is_thirty_minutes() -> None:
    assert timedelta(minutes=30) == rules.REVERSAL_WINDOW
