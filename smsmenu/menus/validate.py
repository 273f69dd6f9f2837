"""Input checks of the menus and shortcuts: pure functions of the text typed by a person.

Each check returns the parsed value, or raises ``Invalid`` naming the catalogue key of the
short reason shown when the menu re-prompts. The rules themselves are the ledger's
(``ledger.rules``, one source for SPEC §2, §3 and §10): these only parse the text, ask the rule
early so a typo is caught before anything is asked of the ledger, and pick the reason to show.
The ledger checks every rule again on its side.
"""

from __future__ import annotations

from smsmenu.digits import to_int
from smsmenu.ledger import rules
from smsmenu.ledger.api import Kind, Rule
from smsmenu.money import parse_whole_yuan

KIND_BY_CHOICE: dict[str, Kind] = {
    "1": Kind.FIXED,
    "2": Kind.MOBILE,
    "3": Kind.PHS,
    "4": Kind.BROADBAND,
}
# Fixed lines and broadband accounts may send their receipt to a notify number.
NOTIFY_KINDS = frozenset({Kind.FIXED, Kind.BROADBAND})
NO_NOTIFY = "1"

_NEW_PIN_REASONS = {
    Rule.BAD_PIN_FORMAT: "reason_bad_pin",
    Rule.WEAK_PIN: "reason_weak_pin",
    Rule.SAME_PIN: "reason_same_pin",
}


class Invalid(ValueError):
    """Input that does not fit; ``reason`` is the catalogue key of the short reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def kind(text: str) -> Kind:
    try:
        return KIND_BY_CHOICE[text.strip()]
    except KeyError:
        raise Invalid("reason_bad_kind") from None


def number(kind: Kind, text: str) -> str:
    """A target number of ``kind``: mobile 11 digits from 1; others 0 + area code, 10-12."""
    text = text.strip()
    if rules.number_rule(kind, text) is not None:
        raise Invalid("reason_bad_mobile" if kind is Kind.MOBILE else "reason_bad_area_number")
    return text


def amount(text: str) -> int:
    """A recharge or transfer amount in fen: whole yuan, 10 to 1000, a multiple of 10."""
    fen = parse_whole_yuan(text)
    if fen is None or rules.recharge_amount_rule(fen) is not None:
        raise Invalid("reason_bad_amount")
    return fen


def notify(text: str) -> str | None:
    """A notify number (mobile, or PHS with area code), or None for ``1`` (no notice)."""
    text = text.strip()
    if text == NO_NOTIFY:
        return None
    if rules.notify_rule(text) is not None:
        raise Invalid("reason_bad_notify")
    return text


def pin(text: str) -> str:
    """A trade or management password: exactly 6 digits."""
    text = text.strip()
    if rules.pin_format_rule(text) is not None:
        raise Invalid("reason_bad_pin")
    return text


def new_pin(text: str, old: str | None = None) -> str:
    """A new password: 6 digits, not six equal digits, not a straight run, not the old one."""
    text = text.strip()
    refused = rules.initial_pin_rule(text) if old is None else rules.new_pin_rule(old, text)
    if refused is not None:
        raise Invalid(_NEW_PIN_REASONS[refused])
    return text


def choice(text: str, count: int) -> int:
    """A 1-based pick from a numbered list of ``count`` lines."""
    picked = to_int(text.strip(), len(str(count)))
    if picked is not None and 1 <= picked <= count:
        return picked
    raise Invalid("reason_bad_choice")


def card_number(text: str) -> str:
    """A recharge card number (6 to 32 digits)."""
    text = text.strip()
    if not rules.card_number_ok(text):
        raise Invalid("reason_bad_card_number")
    return text


def card_pin(text: str) -> str:
    """A recharge card PIN (4 to 20 digits)."""
    text = text.strip()
    if not rules.card_pin_ok(text):
        raise Invalid("reason_bad_card_pin")
    return text


def code(text: str) -> str:
    """A 6-digit verification code."""
    text = text.strip()
    if rules.pin_format_rule(text) is not None:
        raise Invalid("reason_bad_code")
    return text
