"""The ledger's business rules as pure functions: no I/O, no clock, no database.

Each check returns ``None`` when the rule allows the operation, or the ``Rule`` that refuses it
(the service turns that into ``Refusal(rule)``). Money is integer fen; times are aware
datetimes, and calendar questions (which month, the last day of it) are asked in the business
time zone passed in.
"""

from __future__ import annotations

import calendar
import itertools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from smsmenu.ledger.api import AgentStatus, Billing, Kind, Rule, SubscriberStatus

FEN = 100
RECHARGE_MIN_FEN = 10 * FEN
RECHARGE_MAX_FEN = 1000 * FEN
RECHARGE_STEP_FEN = 10 * FEN
DEPOSIT_MIN_FEN = 10 * FEN
DEPOSIT_STEP_FEN = 10 * FEN
OPENING_DEPOSIT_MIN_FEN = 500 * FEN
CLOSE_FLOAT_LIMIT_FEN = 10 * FEN  # close only while the float is below this
REVERSAL_WINDOW = timedelta(minutes=30)
PIN_MAX_FAILURES = 3
PIN_LOCK = timedelta(minutes=30)
RETRY_WINDOW = timedelta(hours=24)
BP_DENOMINATOR = 10_000

_MOBILE = re.compile(r"1[0-9]{10}")
_AREA_CODED = re.compile(r"0[0-9]{9,11}")
_PIN = re.compile(r"[0-9]{6}")
_CARD_NUMBER = re.compile(r"[0-9]{6,32}")
_CARD_PIN = re.compile(r"[0-9]{4,20}")


def agent_rule(status: str, phone_status: str | None) -> Rule | None:
    """SPEC §3: an agent operates only while open, not suspended, and with its bound phone
    active (停机后不可以进行空中充值业务操作)."""
    if status == AgentStatus.CLOSED:
        return Rule.AGENT_CLOSED
    if status == AgentStatus.SUSPENDED:
        return Rule.AGENT_SUSPENDED
    if phone_status != SubscriberStatus.ACTIVE:
        return Rule.PHONE_SUSPENDED
    return None


def number_rule(kind: Kind, number: str) -> Rule | None:
    """SPEC §2: mobile is 11 digits starting with 1; the others carry the area code
    (start with 0, 10 to 12 digits in all)."""
    pattern = _MOBILE if kind is Kind.MOBILE else _AREA_CODED
    return None if pattern.fullmatch(number) else Rule.BAD_NUMBER


def notify_rule(notify: str) -> Rule | None:
    """A notify number is a mobile or a PHS (area-coded) number."""
    if _MOBILE.fullmatch(notify) or _AREA_CODED.fullmatch(notify):
        return None
    return Rule.BAD_NOTIFY_NUMBER


def notify_target_rule(
    notify: str, found_kind: str | None, found_status: str | None
) -> Rule | None:
    """Who a well-formed notify number is (SPEC §4): any mobile number may be told; PHS and
    fixed numbers share the area-coded format, so an area-coded one must be a PHS subscriber
    (``found_kind``/``found_status``: its subscriber row, None if it has none) not closed."""
    if _MOBILE.fullmatch(notify):
        return None
    if found_kind == Kind.PHS and found_status != SubscriberStatus.CLOSED:
        return None
    return Rule.BAD_NOTIFY_NUMBER


def recharge_amount_rule(amount_fen: int) -> Rule | None:
    """Whole yuan, 10 to 1000, a multiple of 10 (also for transfers to the bound phone)."""
    if RECHARGE_MIN_FEN <= amount_fen <= RECHARGE_MAX_FEN and amount_fen % RECHARGE_STEP_FEN == 0:
        return None
    return Rule.BAD_AMOUNT


def deposit_rule(amount_fen: int) -> Rule | None:
    """A multiple of 10 yuan, at least 10, no upper limit."""
    if amount_fen >= DEPOSIT_MIN_FEN and amount_fen % DEPOSIT_STEP_FEN == 0:
        return None
    return Rule.BAD_DEPOSIT


def opening_deposit_rule(amount_fen: int) -> Rule | None:
    """The first deposit: at least 500 yuan, and a valid deposit."""
    if amount_fen < OPENING_DEPOSIT_MIN_FEN:
        return Rule.OPENING_DEPOSIT_TOO_SMALL
    return deposit_rule(amount_fen)


def commission_rule(rate_bp: int) -> Rule | None:
    return None if 0 <= rate_bp <= BP_DENOMINATOR else Rule.BAD_COMMISSION


def commission(amount_fen: int, rate_bp: int) -> int:
    """floor(amount_fen × rate_bp / 10000), in integers."""
    return amount_fen * rate_bp // BP_DENOMINATOR


@dataclass(frozen=True)
class Price:
    amount_fen: int
    commission_fen: int

    @property
    def debit_fen(self) -> int:
        """What the agent's float pays: the amount less the commission."""
        return self.amount_fen - self.commission_fen


def price(amount_fen: int, rate_bp: int) -> Price:
    return Price(amount_fen, commission(amount_fen, rate_bp))


def close_rule(float_fen: int) -> Rule | None:
    """An agent closes only while the float is below 10 yuan."""
    return None if float_fen < CLOSE_FLOAT_LIMIT_FEN else Rule.CLOSE_FLOAT_TOO_HIGH


def pin_format_rule(pin: str) -> Rule | None:
    return None if _PIN.fullmatch(pin) else Rule.BAD_PIN_FORMAT


def is_straight_run(pin: str) -> bool:
    """Every digit one more (or every digit one less) than the one before: 123456, 654321,
    345678, 987654 …"""
    steps = {int(b) - int(a) for a, b in itertools.pairwise(pin)}
    return steps in ({1}, {-1})


def new_pin_rule(old: str, new: str) -> Rule | None:
    """SPEC §10: exactly 6 digits, differs from the old, not six equal digits, not a run."""
    bad_format = pin_format_rule(new)
    if bad_format:
        return bad_format
    if len(set(new)) == 1 or is_straight_run(new):
        return Rule.WEAK_PIN
    if new == old:
        return Rule.SAME_PIN
    return None


def initial_pin_rule(pin: str) -> Rule | None:
    """A password set at opening: 6 digits and not trivially weak."""
    bad_format = pin_format_rule(pin)
    if bad_format:
        return bad_format
    if len(set(pin)) == 1 or is_straight_run(pin):
        return Rule.WEAK_PIN
    return None


def month_of(when: datetime, zone: ZoneInfo) -> tuple[int, int]:
    local = when.astimezone(zone)
    return local.year, local.month


def is_last_day_of_month(when: datetime, zone: ZoneInfo) -> bool:
    local = when.astimezone(zone)
    return local.day == calendar.monthrange(local.year, local.month)[1]


def month_start(when: datetime, zone: ZoneInfo) -> datetime:
    """The first instant of ``when``'s business month, as an aware datetime in ``zone``."""
    local = when.astimezone(zone)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class ReversalFacts:
    """Everything the reversal rules look at, gathered by the service."""

    recharge_at: datetime
    now: datetime
    succeeded: bool
    reversals_this_month: int  # by the same agent, in the business month of ``now``
    invoice_printed: bool
    target_billing: Billing
    target_balance_fen: int
    amount_fen: int


def reversal_rule(facts: ReversalFacts, zone: ZoneInfo) -> Rule | None:
    """SPEC §7, in a fixed order; the first rule that says no is named."""
    if not facts.succeeded:
        return Rule.REVERSAL_NOT_SUCCEEDED
    if facts.now - facts.recharge_at > REVERSAL_WINDOW:
        return Rule.REVERSAL_TOO_OLD
    if month_of(facts.recharge_at, zone) != month_of(facts.now, zone):
        return Rule.REVERSAL_CROSS_MONTH
    if is_last_day_of_month(facts.now, zone):
        return Rule.REVERSAL_LAST_DAY
    if facts.reversals_this_month >= 1:
        return Rule.REVERSAL_MONTHLY_LIMIT
    if facts.invoice_printed:
        return Rule.REVERSAL_INVOICE_PRINTED
    if facts.target_billing is not Billing.POSTPAID:
        return Rule.REVERSAL_NOT_POSTPAID
    if facts.target_balance_fen < facts.amount_fen:
        return Rule.REVERSAL_TARGET_BALANCE
    return None


# ---- recharge cards (SPEC §8) ----


def card_number_ok(number: str) -> bool:
    """A recharge card number: 6 to 32 ASCII digits."""
    return _CARD_NUMBER.fullmatch(number) is not None


def card_pin_ok(pin: str) -> bool:
    """A recharge card PIN: 4 to 20 ASCII digits."""
    return _CARD_PIN.fullmatch(pin) is not None
