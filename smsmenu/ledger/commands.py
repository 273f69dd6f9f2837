"""The ledger's money operations as values: one command each, one handler each.

A command says what is asked; its ``key`` is the operation's idempotency key, chosen by whoever
asks (the menus make theirs from the dialogue, the command line and the API from their own:
``new_key``). ``LedgerService.execute`` runs every command through its one handler and writes the
one log line every money operation gets, whatever asked for it (SMS, USSD, command line, web):
the operation, its fields, and its outcome — the figures and txn id, or the rule that refused
it. Never a password: commands hide theirs from ``repr``, and ``fields`` leaves them out.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from typing import Any

from smsmenu.ledger.api import RechargeRequest, RechargeView
from smsmenu.messages import Route

# A recharge is ``api.RechargeRequest``: the menus build it, so it lives with what they import.
Recharge = RechargeRequest


@dataclass(frozen=True)
class Retry:
    """Run a failed recharge of the agent's retry list again (重复充值)."""

    agent_id: int
    tx_id: int
    pin: str = field(repr=False)
    key: str
    reply_route: Route | None = None


@dataclass(frozen=True)
class Transfer:
    """Move float to the agent's bound phone's own account (转入个人手机)."""

    agent_id: int
    amount_fen: int
    pin: str = field(repr=False)
    key: str
    reply_route: Route | None = None


@dataclass(frozen=True)
class Deposit:
    """续存: cash in, float up."""

    agent_id: int
    amount_fen: int
    key: str


@dataclass(frozen=True)
class OpenAgent:
    """Open an agent on an active mobile phone with a first deposit."""

    phone: str
    trade_pin: str = field(repr=False)
    mgmt_pin: str = field(repr=False)
    deposit_fen: int
    commission_bp: int | None
    key: str


@dataclass(frozen=True)
class CloseAgent:
    """销户: the float's remainder paid out in cash."""

    agent_id: int
    key: str


@dataclass(frozen=True)
class Reverse:
    """返销 of a recharge, under SPEC §7's rules."""

    tx_id: int
    key: str


@dataclass(frozen=True)
class RedeemCard:
    """充值卡充值: redeem a recharge card for ``phone``, as call credit or for the catalogue
    item ``item_code`` (the rest stays as call credit)."""

    phone: str
    card_number: str
    pin: str = field(repr=False)
    item_code: str | None
    key: str
    reply_route: Route | None = None


@dataclass(frozen=True)
class SellItem:
    """An agent sells a data pack or plan to ``number`` from its float (``CZ 5``)."""

    agent_id: int
    number: str
    item_code: str
    pin: str = field(repr=False)
    key: str
    reply_route: Route | None = None


@dataclass(frozen=True)
class CloseSubscriber:
    """销户 of a subscriber account: its prepaid remainder booked for refund. ``code``: the
    verification code the phone got (None at the counter, where staff check identity)."""

    number: str
    key: str
    code: str | None = field(default=None, repr=False)
    reply_route: Route | None = None


Command = (
    Recharge
    | Retry
    | Transfer
    | Deposit
    | OpenAgent
    | CloseAgent
    | Reverse
    | RedeemCard
    | SellItem
    | CloseSubscriber
)

OPERATION = {
    Recharge: "recharge",
    Retry: "retry",
    Transfer: "transfer",
    Deposit: "deposit",
    OpenAgent: "open",
    CloseAgent: "close",
    Reverse: "reversal",
    RedeemCard: "card",
    SellItem: "sale",
    CloseSubscriber: "subscriber_close",
}
_SECRET = frozenset({"pin", "trade_pin", "mgmt_pin", "code"})
_NOT_LOGGED = _SECRET | {"reply_route", "duplicate_window_s"}
_LOG_NAMES = {"agent_id": "agent", "tx_id": "of_tx"}


def describe(command: Command) -> str:
    """``op=<operation> name=value ...``: the command's fields for its log line, never a
    password."""
    values = [f"op={OPERATION[type(command)]}"]
    for item in fields(command):
        if item.name not in _NOT_LOGGED:
            value = getattr(command, item.name)
            if value is not None:
                name = _LOG_NAMES.get(item.name, item.name)
                values.append(f"{name}={getattr(value, 'value', value)}")
    return " ".join(values)


def outcome(result: Any) -> str:
    """The outcome part of a money operation's log line: a recharge's figures, else the id
    of the transaction (or of the agent opened)."""
    if isinstance(result, RechargeView):
        return (
            f"tx={result.tx_id} status={result.status.value} amount_fen={result.amount_fen}"
            f" commission_fen={result.commission_fen} debit_fen={result.debit_fen}"
            f" float_after_fen={result.float_after_fen}"
        )
    if hasattr(result, "tx_id"):
        return f"tx={result.tx_id}"
    return f"agent={getattr(result, 'agent_id', '-')}"


def new_key(operation: str) -> str:
    """A fresh idempotency key for an operation that has none of its own (a command line run
    without ``--key``)."""
    return f"{operation}-{uuid.uuid4().hex}"
