"""Input checks of the menus and shortcuts: pure functions of the text typed by a person.

Each check returns the parsed value, or raises ``Invalid`` naming the catalogue key of the
short reason shown when the menu re-prompts. The ledger checks every rule again on its side;
these only catch typos early, before anything is asked of the ledger.
"""

from __future__ import annotations

import itertools
import re

from smsmenu.ledger.api import Kind
from smsmenu.money import FEN_PER_YUAN

KIND_BY_CHOICE: dict[str, Kind] = {
    "1": Kind.FIXED,
    "2": Kind.MOBILE,
    "3": Kind.PHS,
    "4": Kind.BROADBAND,
}
# Fixed lines and broadband accounts may send their receipt to a notify number.
NOTIFY_KINDS = frozenset({Kind.FIXED, Kind.BROADBAND})
NO_NOTIFY = "1"

MIN_AMOUNT_FEN = 10 * FEN_PER_YUAN
MAX_AMOUNT_FEN = 1000 * FEN_PER_YUAN
AMOUNT_STEP_FEN = 10 * FEN_PER_YUAN

_MOBILE = re.compile(r"1\d{10}")
_WITH_AREA_CODE = re.compile(r"0\d{9,11}")
_PIN = re.compile(r"\d{6}")
_AMOUNT = re.compile(r"\d{1,7}")


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
    if kind is Kind.MOBILE:
        if not _MOBILE.fullmatch(text):
            raise Invalid("reason_bad_mobile")
    elif not _WITH_AREA_CODE.fullmatch(text):
        raise Invalid("reason_bad_area_number")
    return text


def amount(text: str) -> int:
    """A recharge or transfer amount in fen: whole yuan, 10 to 1000, a multiple of 10."""
    text = text.strip()
    if not _AMOUNT.fullmatch(text):
        raise Invalid("reason_bad_amount")
    fen = int(text) * FEN_PER_YUAN
    if not MIN_AMOUNT_FEN <= fen <= MAX_AMOUNT_FEN or fen % AMOUNT_STEP_FEN:
        raise Invalid("reason_bad_amount")
    return fen


def notify(text: str) -> str | None:
    """A notify number (mobile, or PHS with area code), or None for ``1`` (no notice)."""
    text = text.strip()
    if text == NO_NOTIFY:
        return None
    if _MOBILE.fullmatch(text) or _WITH_AREA_CODE.fullmatch(text):
        return text
    raise Invalid("reason_bad_notify")


def pin(text: str) -> str:
    """A trade or management password: exactly 6 digits."""
    text = text.strip()
    if not _PIN.fullmatch(text):
        raise Invalid("reason_bad_pin")
    return text


def new_pin(text: str, old: str | None = None) -> str:
    """A new password: 6 digits, not six equal digits, not a straight run, not the old one."""
    value = pin(text)
    steps = {int(b) - int(a) for a, b in itertools.pairwise(value)}
    if steps in ({0}, {1}, {-1}):
        raise Invalid("reason_weak_pin")
    if old is not None and value == old:
        raise Invalid("reason_same_pin")
    return value


def choice(text: str, count: int) -> int:
    """A 1-based pick from a numbered list of ``count`` lines."""
    text = text.strip()
    if text.isdigit() and 1 <= int(text) <= count:
        return int(text)
    raise Invalid("reason_bad_choice")
