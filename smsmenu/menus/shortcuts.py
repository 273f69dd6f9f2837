"""The one-message shortcuts of SPEC §5, parsed from text into commands. Pure.

``CZ <kind 1-4> <number> <amount> <pin> [notify]`` recharge, ``CZ 5 <mobile> <item code>
<pin>`` sell a data pack or plan from the float, ``YE <pin>`` balance,
``CS <number>`` retry the latest failed recharge to a number, ``Y <pin>`` confirm what the
last reply asked to confirm; from any phone, ``CK <card number> <card PIN> [item code]``
redeems a recharge card for the sending number. Case-insensitive; spaces or ``#`` separate
the fields.

``parse`` returns None when the text is no shortcut at all (it goes to the menu then), a
command when it is a well-formed one, and raises ``ShortcutError`` when it starts with a
shortcut keyword but does not fit: the error names the reason and the usage line to show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from smsmenu.ledger.api import Kind
from smsmenu.menus import validate
from smsmenu.menus.validate import Invalid

_SEPARATORS = re.compile(r"[\s#]+")
KEYWORDS = frozenset({"CZ", "YE", "CS", "Y", "CK"})
_ITEM_CODE = re.compile(r"[A-Za-z0-9]{1,16}")


@dataclass(frozen=True)
class RechargeCommand:
    kind: Kind
    number: str
    amount_fen: int
    pin: str = field(repr=False)
    notify: str | None = None


@dataclass(frozen=True)
class BalanceCommand:
    pin: str = field(repr=False)


@dataclass(frozen=True)
class RetryCommand:
    number: str


@dataclass(frozen=True)
class ConfirmCommand:
    pin: str = field(repr=False)


@dataclass(frozen=True)
class SaleCommand:
    number: str
    item_code: str
    pin: str = field(repr=False)


@dataclass(frozen=True)
class CardCommand:
    card_number: str
    pin: str = field(repr=False)
    item_code: str | None = None


Command = (
    RechargeCommand | SaleCommand | BalanceCommand | RetryCommand | ConfirmCommand | CardCommand
)
SALE_KIND = "5"  # CZ 5: a data pack or plan sold from the float


class ShortcutError(ValueError):
    """A shortcut keyword with fields that do not fit. ``reason`` and ``usage`` are catalogue
    keys: what is wrong, and how the command is written."""

    def __init__(self, reason: str, usage: str) -> None:
        super().__init__(f"{reason} ({usage})")
        self.reason = reason
        self.usage = usage


def keyword(text: str) -> str | None:
    """The shortcut keyword the text starts with, upper-case, or None."""
    head = text.lstrip(" \t\r\n#")[:1]
    if head not in ("C", "c", "Y", "y"):  # every keyword starts with C or Y: menu input is fast
        return None
    fields = _fields(text)
    if fields and fields[0].upper() in KEYWORDS:
        return fields[0].upper()
    return None


def parse(text: str) -> Command | None:
    fields = _fields(text)
    if not fields or fields[0].upper() not in KEYWORDS:
        return None
    word, args = fields[0].upper(), fields[1:]
    usage = f"usage_{word.lower()}"
    try:
        if word == "CZ":
            if args and args[0] == SALE_KIND:
                return _sale(args, usage)
            return _recharge(args, usage)
        if word == "YE":
            _count(args, 1, 1, usage)
            return BalanceCommand(validate.pin(args[0]))
        if word == "CS":
            _count(args, 1, 1, usage)
            return RetryCommand(_any_number(args[0]))
        if word == "CK":
            return _card(args, usage)
        _count(args, 1, 1, usage)
        return ConfirmCommand(validate.pin(args[0]))
    except Invalid as exc:
        raise ShortcutError(exc.reason, usage) from None


def _fields(text: str) -> list[str]:
    return [part for part in _SEPARATORS.split(text.strip()) if part]


def _count(args: list[str], least: int, most: int, usage: str) -> None:
    if not least <= len(args) <= most:
        raise ShortcutError("reason_shortcut_fields", usage)


def _recharge(args: list[str], usage: str) -> RechargeCommand:
    _count(args, 4, 5, usage)
    kind = validate.kind(args[0])
    number = validate.number(kind, args[1])
    amount = validate.amount(args[2])
    pin = validate.pin(args[3])
    notify = None
    if len(args) == 5:
        if kind not in validate.NOTIFY_KINDS:
            raise ShortcutError("reason_notify_not_allowed", usage)
        notify = validate.notify(args[4])
    return RechargeCommand(kind, number, amount, pin, notify)


def _any_number(text: str) -> str:
    if text.startswith("1"):
        return validate.number(Kind.MOBILE, text)
    return validate.number(Kind.FIXED, text)


def _item_code(text: str, usage: str) -> str:
    if not _ITEM_CODE.fullmatch(text):
        raise ShortcutError("reason_bad_choice", usage)
    return text.upper()


def _sale(args: list[str], usage: str) -> SaleCommand:
    _count(args, 4, 4, usage)
    number = validate.number(Kind.MOBILE, args[1])
    return SaleCommand(number, _item_code(args[2], usage), validate.pin(args[3]))


def _card(args: list[str], usage: str) -> CardCommand:
    _count(args, 2, 3, usage)
    item = _item_code(args[2], usage) if len(args) == 3 else None
    return CardCommand(validate.card_number(args[0]), validate.card_pin(args[1]), item)
