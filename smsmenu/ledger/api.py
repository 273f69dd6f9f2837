"""What the ledger offers the menus: value types, refusals and the ``AgentLedger`` interface.

The menus and the CLI depend on this module only; ``ledger.service`` implements it. Money is
integer fen throughout. Every money operation takes an idempotency ``key``: the same key never
moves money twice and returns the first result (a repeat with different fields is refused with
``Rule.KEY_REUSED``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Protocol

from smsmenu.ledger.products import Products
from smsmenu.messages import Route


class Kind(StrEnum):
    FIXED = "fixed"  # 固定电话
    MOBILE = "mobile"  # C网手机
    PHS = "phs"  # 小灵通
    BROADBAND = "broadband"  # 非包年ADSL宽带


class Billing(StrEnum):
    PREPAID = "prepaid"
    POSTPAID = "postpaid"


class SubscriberStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class AgentStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class RechargeStatus(StrEnum):
    PENDING = "pending"  # funds reserved, billing credit not yet confirmed
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # reservation voided, nothing moved
    REVERSED = "reversed"


class Rule(StrEnum):
    """Why an operation was refused. Each has a text ``refusal_<value>`` in the catalogue."""

    BAD_NUMBER = "bad_number"
    BAD_AMOUNT = "bad_amount"
    BAD_DEPOSIT = "bad_deposit"
    BAD_COMMISSION = "bad_commission"
    BAD_PIN_FORMAT = "bad_pin_format"
    WEAK_PIN = "weak_pin"
    SAME_PIN = "same_pin"
    WRONG_PIN = "wrong_pin"
    PIN_LOCKED = "pin_locked"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    AGENT_UNKNOWN = "agent_unknown"
    AGENT_SUSPENDED = "agent_suspended"
    AGENT_CLOSED = "agent_closed"
    PHONE_SUSPENDED = "phone_suspended"
    PHONE_NOT_MOBILE = "phone_not_mobile"
    PHONE_NOT_ACTIVE = "phone_not_active"
    PHONE_ALREADY_BOUND = "phone_already_bound"
    OPENING_DEPOSIT_TOO_SMALL = "opening_deposit_too_small"
    CLOSE_FLOAT_TOO_HIGH = "close_float_too_high"
    SUBSCRIBER_EXISTS = "subscriber_exists"
    TARGET_UNKNOWN = "target_unknown"
    TARGET_CLOSED = "target_closed"
    TARGET_KIND_MISMATCH = "target_kind_mismatch"
    BAD_NOTIFY_NUMBER = "bad_notify_number"
    RECHARGE_UNKNOWN = "recharge_unknown"
    NOT_RETRYABLE = "not_retryable"
    KEY_REUSED = "key_reused"
    REVERSAL_TOO_OLD = "reversal_too_old"  # more than 30 minutes
    REVERSAL_MONTHLY_LIMIT = "reversal_monthly_limit"  # one per agent per calendar month
    REVERSAL_LAST_DAY = "reversal_last_day"  # not on the last day of the month
    REVERSAL_CROSS_MONTH = "reversal_cross_month"
    REVERSAL_INVOICE_PRINTED = "reversal_invoice_printed"
    REVERSAL_NOT_POSTPAID = "reversal_not_postpaid"
    REVERSAL_TARGET_BALANCE = "reversal_target_balance"
    REVERSAL_NOT_SUCCEEDED = "reversal_not_succeeded"
    # Added by the ledger (issue 2):
    PHONE_UNKNOWN = "phone_unknown"  # the bound phone to be is no subscriber at all
    RESERVATION_PENDING = "reservation_pending"  # close refused while a recharge is in flight
    SUBSCRIBER_CLOSED = "subscriber_closed"  # closing a number is final: no status change after
    # Added by "the message path, hardened":
    # Added by "one recharge write path": an identical shortcut recharge within its window
    # asks for a confirmation instead of running (SPEC §3; the menus ask, not refuse).
    DUPLICATE_RECHARGE = "duplicate_recharge"
    WRONG_MGMT_PIN = "wrong_mgmt_pin"  # a wrong management password (counted)
    MGMT_PIN_LOCKED = "mgmt_pin_locked"  # management operations locked after 3 wrong ones
    # Added by "subscriber self-service" (issue 9):
    CARD_INVALID = "card_invalid"  # unknown card or wrong card PIN: one answer for both
    CARD_LOCKED = "card_locked"  # 3 wrong card PINs on this card or from this phone
    CARD_USED = "card_used"
    CARD_EXPIRED = "card_expired"
    CARD_VOID = "card_void"
    CARD_VALUE_TOO_LOW = "card_value_too_low"  # the card does not cover the item's price
    ITEM_UNKNOWN = "item_unknown"
    BAD_CARD_FILE = "bad_card_file"  # a card batch file refused as a whole (names the line)
    BATCH_EXISTS = "batch_exists"
    BATCH_UNKNOWN = "batch_unknown"
    CARD_UNKNOWN = "card_unknown"  # cards show (operators): no such card
    CLOSE_OWED = "close_owed"  # 销户 refused while anything is owed
    CLOSE_BOUND_PHONE = "close_bound_phone"  # 销户 refused: an agent's bound phone
    CLOSE_CODE_WRONG = "close_code_wrong"
    CLOSE_CODE_EXPIRED = "close_code_expired"  # none sent, timed out or tries used up


class Refusal(Exception):
    """A business rule said no and nothing moved. ``params`` fill the refusal text."""

    def __init__(self, rule: Rule, **params: Any) -> None:
        super().__init__(f"{rule.value}: {params}" if params else rule.value)
        self.rule = rule
        self.params = params


@dataclass(frozen=True)
class AgentView:
    agent_id: int
    phone: str
    status: AgentStatus
    balance_fen: int
    commission_bp: int


@dataclass(frozen=True)
class AllowanceView:
    """A data pack or plan held (``products``): until ``valid_until`` (None: no end)."""

    code: str
    kind: str  # data | plan
    data_mb: int
    valid_until: date | None


@dataclass(frozen=True)
class SubscriberView:
    number: str
    kind: Kind
    billing: Billing
    status: SubscriberStatus
    balance_fen: int
    valid_until: date | None = None  # prepaid validity (有效期), None: not kept or postpaid
    allowances: tuple[AllowanceView, ...] = ()


@dataclass(frozen=True)
class RedeemView:
    """A recharge card redeemed: its face value, the item it paid for (if any) and what was
    left as call credit."""

    tx_id: int
    number: str
    card_number: str
    value_fen: int
    item_code: str | None
    price_fen: int
    credit_fen: int
    balance_fen: int
    valid_until: date | None
    created_at: datetime


@dataclass(frozen=True)
class SaleView:
    """A data pack or plan an agent sold from its float (``CZ 5``)."""

    tx_id: int
    agent_id: int
    number: str
    item_code: str
    price_fen: int
    commission_fen: int
    debit_fen: int
    float_after_fen: int
    created_at: datetime


@dataclass(frozen=True)
class CardView:
    number: str
    batch: str
    value_fen: int
    expires: date
    status: str  # issued | redeemed | expired | void | locked


@dataclass(frozen=True)
class CardStats:
    batch: str | None  # None: every batch
    issued: int
    redeemed: int
    expired: int
    void: int
    locked: int
    value_fen: int
    redeemed_fen: int


@dataclass(frozen=True)
class ClosedView:
    """A subscriber account closed (销户): its prepaid remainder booked for refund."""

    tx_id: int
    number: str
    refund_fen: int
    created_at: datetime


@dataclass(frozen=True)
class Quote:
    """What a recharge would do, shown on the confirmation screen before the trade password."""

    number: str
    kind: Kind
    amount_fen: int
    commission_fen: int
    debit_fen: int
    notify: str | None


@dataclass(frozen=True)
class RechargeView:
    tx_id: int
    agent_id: int
    number: str
    kind: Kind
    amount_fen: int
    commission_fen: int
    debit_fen: int
    status: RechargeStatus
    created_at: datetime
    notify: str | None
    float_after_fen: int | None  # the agent's float right after this recharge resolved


@dataclass(frozen=True)
class TransferView:
    tx_id: int
    agent_id: int
    phone: str
    amount_fen: int
    float_after_fen: int
    created_at: datetime


@dataclass(frozen=True)
class RecordView:
    """One line of 交易记录: a recharge, transfer or deposit, newest first."""

    tx_id: int
    kind: str  # "recharge" | "deposit" | "transfer" | "reversal"
    number: str | None
    amount_fen: int
    created_at: datetime


@dataclass(frozen=True)
class DepositView:
    tx_id: int
    agent_id: int
    amount_fen: int
    float_after_fen: int
    created_at: datetime


@dataclass(frozen=True)
class CloseView:
    tx_id: int
    agent_id: int
    paid_out_fen: int  # the float's remainder, paid out in cash
    created_at: datetime


@dataclass(frozen=True)
class ReversalView:
    tx_id: int  # the reversal's own transaction id
    recharge_tx_id: int
    agent_id: int
    number: str
    amount_fen: int  # debited from the target
    commission_fen: int  # clawed back
    debit_fen: int  # given back to the agent's float
    float_after_fen: int
    created_at: datetime


@dataclass(frozen=True)
class DailyReportRow:
    """One agent's business day (in the configured time zone)."""

    agent_id: int
    day: date
    recharges: int  # recharges that succeeded that day (including ones reversed since)
    recharged_fen: int  # their amounts
    # Net commission: on that day's recharges, less what that day's reversals clawed back
    # (the day's change of what the operator owes the agent; negative if a reversal after
    # midnight claws back more than the day earned).
    commission_fen: int
    reversals: int  # reversals done that day (of recharges of that day or the day before)
    reversed_fen: int  # the amounts they took back from the targets
    reversed_commission_fen: int  # the commission they clawed back


@dataclass(frozen=True)
class TrialBalance:
    total_fen: int  # the sum of every account's balance: zero when the books balance
    system_fen: dict[str, int]  # the operator's system accounts by name
    floats_fen: int
    subscribers_fen: int
    mismatched_accounts: list[int]  # accounts whose balance differs from their journal lines
    pending_mismatch: bool  # floats' reserved funds differ from the pending recharges

    @property
    def ok(self) -> bool:
        return self.total_fen == 0 and not self.mismatched_accounts and not self.pending_mismatch


@dataclass(frozen=True)
class RechargeRequest:
    agent_id: int
    kind: Kind
    number: str
    amount_fen: int
    pin: str
    key: str
    notify: str | None = None
    # How the agent's result notice reaches the agent (e.g. inside its USSD dialogue).
    reply_route: Route | None = None
    # A one-message shortcut: refused DUPLICATE_RECHARGE if the agent recharged the same
    # amount to the same number, not failed, within this many seconds (SPEC §3).
    duplicate_window_s: float | None = None
    retry_of: int | None = None  # the failed recharge this one runs again (重复充值)

    def __repr__(self) -> str:  # never show the PIN
        return (
            f"RechargeRequest(agent_id={self.agent_id}, kind={self.kind}, number={self.number},"
            f" amount_fen={self.amount_fen}, key={self.key!r}, notify={self.notify})"
        )


class AgentLedger(Protocol):
    """The part of the ledger service that the agent and subscriber menus use.

    Every method raises ``Refusal`` when a rule says no; nothing moves then, except that a
    wrong password is counted (and may lock that password's operations, SPEC §10).
    """

    async def agent_for_phone(self, phone: str) -> AgentView | None:
        """The agent bound to ``phone``, unless closed."""
        ...

    async def quote(
        self, agent_id: int, kind: Kind, number: str, amount_fen: int, notify: str | None
    ) -> Quote:
        """Check everything a recharge checks except the password, and price it."""
        ...

    async def recharge(self, request: RechargeRequest) -> RechargeView:
        """Reserve, credit through billing, post (or void: status ``failed``). Writes the
        agent's result notice and the target's receipt to the outbox in the same transaction.
        With ``request.duplicate_window_s``, refused DUPLICATE_RECHARGE if the agent recharged
        the same amount to the same number within it (the asking message's own recharge, a
        copy of it, gets its first result instead)."""
        ...

    async def agent_id_for_phone(self, phone: str) -> int | None:
        """The id of the agent bound to ``phone`` (not closed), if any."""
        ...

    async def retry_list(self, agent_id: int) -> list[RechargeView]:
        """Failed recharges of the last 24 hours not since succeeded, newest first."""
        ...

    async def retry(
        self, agent_id: int, tx_id: int, pin: str, key: str, reply_route: Route | None = None
    ) -> RechargeView:
        """Run a failed recharge of the retry list again, as a new recharge."""
        ...

    async def balance(self, agent_id: int, pin: str) -> int:
        """The float's available balance in fen."""
        ...

    async def recent(self, agent_id: int, pin: str, limit: int = 5) -> list[RecordView]: ...

    async def transfer_to_phone(
        self, agent_id: int, amount_fen: int, pin: str, key: str, reply_route: Route | None = None
    ) -> TransferView:
        """Move float to the bound phone's own prepaid account (no commission)."""
        ...

    async def sell_item(
        self,
        agent_id: int,
        number: str,
        item_code: str,
        pin: str,
        key: str,
        reply_route: Route | None = None,
    ) -> SaleView:
        """Sell a data pack or plan to ``number`` from the float (``CZ 5``)."""
        ...

    async def change_trade_pin(self, agent_id: int, old: str, new: str) -> None: ...

    async def change_mgmt_pin(self, agent_id: int, old: str, new: str) -> None: ...

    async def subscriber(self, number: str) -> SubscriberView | None: ...

    async def subscriber_topups(self, number: str, limit: int = 5) -> list[RecordView]: ...

    @property
    def products(self) -> Products:
        """The add-ons on sale and the validity bands (config/products.toml)."""
        ...

    async def redeem_card(
        self,
        phone: str,
        card_number: str,
        pin: str,
        item_code: str | None,
        key: str,
        reply_route: Route | None = None,
    ) -> RedeemView:
        """充值卡充值 for ``phone``; the ledger sends the result SMS."""
        ...

    async def closing_check(self, number: str) -> SubscriberView:
        """What 销户 shows first, if the number may be closed (else the refusal)."""
        ...

    async def send_closing_code(self, number: str, route: Route | None = None) -> SubscriberView:
        """Send a new 6-digit 销户 code by SMS."""
        ...

    async def close_subscriber(
        self, number: str, key: str, code: str | None = None, reply_route: Route | None = None
    ) -> ClosedView:
        """销户 with the code (the ledger sends the confirmation SMS)."""
        ...
