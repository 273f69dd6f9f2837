"""admission: the checks every recharge path applies before money moves (pure over rows)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from smsmenu.ledger import admission
from smsmenu.ledger.api import Kind, RechargeRequest, Refusal, Rule


def refused(call: object, *args: object) -> Rule:
    with pytest.raises(Refusal) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value.rule


@pytest.mark.parametrize(
    ("kind", "number", "amount", "notify", "rule"),
    [
        (Kind.MOBILE, "1390000000", 1000, None, Rule.BAD_NUMBER),
        (Kind.FIXED, "13900000002", 1000, None, Rule.BAD_NUMBER),
        (Kind.MOBILE, "13900000002", 1500, None, Rule.BAD_AMOUNT),
        (Kind.MOBILE, "13900000002", 200_000, None, Rule.BAD_AMOUNT),
        (Kind.FIXED, "02787654321", 1000, "12345", Rule.BAD_NOTIFY_NUMBER),
        ("mobile", "13900000002", 1000, None, Rule.TARGET_KIND_MISMATCH),
    ],
)
def test_request_fields_refusals(
    kind: Kind, number: str, amount: int, notify: str | None, rule: Rule
) -> None:
    assert refused(admission.request_fields, kind, number, amount, notify) is rule


def test_request_fields_accepts_a_good_request() -> None:
    admission.request_fields(Kind.FIXED, "02787654321", 100_000, "13900000002")


@pytest.mark.parametrize(
    ("status", "phone_status", "rule"),
    [
        ("closed", "active", Rule.AGENT_CLOSED),
        ("suspended", "active", Rule.AGENT_SUSPENDED),
        ("active", "suspended", Rule.PHONE_SUSPENDED),
        ("active", None, Rule.PHONE_SUSPENDED),
    ],
)
def test_agent_can_trade(status: str, phone_status: str | None, rule: Rule) -> None:
    agent = SimpleNamespace(status=status, phone_status=phone_status)
    assert refused(admission.agent_can_trade, agent) is rule
    admission.agent_can_trade(SimpleNamespace(status="active", phone_status="active"))


@pytest.mark.parametrize(
    ("found_kind", "found_status", "rule"),
    [
        (None, None, Rule.TARGET_UNKNOWN),
        ("mobile", "closed", Rule.TARGET_CLOSED),
        ("fixed", "active", Rule.TARGET_KIND_MISMATCH),
    ],
)
def test_target(found_kind: str | None, found_status: str | None, rule: Rule) -> None:
    assert refused(admission.target, found_kind, found_status, Kind.MOBILE, "13900000002") is rule
    admission.target("mobile", "suspended", Kind.MOBILE, "13900000002")  # 停机 targets may pay


def test_notify() -> None:
    admission.notify(None, None, None)  # no notice
    admission.notify(None, None, "13900000002")
    admission.notify("phs", "active", "02787650000")
    assert refused(admission.notify, "fixed", "active", "02787654321") is Rule.BAD_NOTIFY_NUMBER


def test_funds() -> None:
    admission.funds(980, 980)
    with pytest.raises(Refusal) as caught:
        admission.funds(979, 980)
    assert caught.value.rule is Rule.INSUFFICIENT_FUNDS
    assert caught.value.params == {"available_fen": 979}


def test_fingerprint_names_every_field_a_repeat_must_match() -> None:
    base = RechargeRequest(1, Kind.MOBILE, "13900000002", 1000, "135790", "k")
    other_pin = RechargeRequest(1, Kind.MOBILE, "13900000002", 1000, "000000", "k")
    assert admission.fingerprint(base) == admission.fingerprint(other_pin)  # the PIN is no field
    for changed in (
        RechargeRequest(2, Kind.MOBILE, "13900000002", 1000, "135790", "k"),
        RechargeRequest(1, Kind.MOBILE, "13900000003", 1000, "135790", "k"),
        RechargeRequest(1, Kind.MOBILE, "13900000002", 2000, "135790", "k"),
        RechargeRequest(1, Kind.MOBILE, "13900000002", 1000, "135790", "k", "13900000009"),
    ):
        assert admission.fingerprint(changed) != admission.fingerprint(base)
