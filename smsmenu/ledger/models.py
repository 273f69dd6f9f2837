"""The ledger's tables (SQLAlchemy 2 declarative models; the service uses their Core tables).

Theory of operation
-------------------
* ``accounts`` hold integer fen. Agent floats and subscriber accounts keep their balance in
  the row, updated in the same transaction as the journal lines (``balance``), and a float's
  reserved funds in ``pending`` (two-phase recharges: available = balance - pending). The
  operator's system accounts (cash/bank, commission expense, refunds, billing) keep no balance
  in their row: every recharge would otherwise serialise on one hot row; their balance is the
  sum of their journal lines, and the trial balance adds everything up.
* ``txns`` is the header of every money operation and its idempotency record at once: the
  caller's ``key`` is unique and written first, with a ``fingerprint`` of the operation's fields.
* ``lines`` are the immutable journal: each posted ``txns`` row has lines summing to zero.
* ``recharges`` add the recharge's details to its ``txns`` row. A two-phase recharge is
  ``pending`` until a ``resolutions`` row (primary key = the recharge: at most once) posts or
  voids it; ``status`` mirrors the outcome for fast queries, the history is the new rows.
* ``outbox`` rows are written in the same transaction as the money and sent by the SMPP sender.
* ``card_batches`` / ``cards`` are recharge cards (充值卡, migration 0006): imported without any
  journal line (the cards were sold outside the ledger); redeeming one moves its face value from
  ``CARD_LIABILITY`` to the subscriber (``ledger.cards``). A card's PIN is kept only as an
  HMAC-SHA256 under a key derived from ``SECRET_KEY`` with a salt of the card's own
  (``ledger.cards.pin_hash``). Wrong card PINs count per card and per phone (``subscribers``).
* ``allowances`` are data packs and plans a subscriber holds (``products``);
  ``closing_codes`` the verification codes of a subscriber closing its account (销户).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out: ``timestamptz`` on PostgreSQL, naive UTC text on SQLite
    (so that text comparison is time comparison)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the ledger stores aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Money = BigInteger
MAX_ID = 2**31 - 1  # the largest id an Integer primary key holds (a larger one is no row's)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# System accounts: fixed ids, created by the first migration.
CASH = 1  # the operator's cash/bank: deposits in, close pay-outs out
COMMISSION_EXPENSE = 2  # commissions paid to agents
REFUNDS = 3  # remaining prepaid balances of closed subscribers, owed back
BILLING = 4  # counterpart of subscriber balances that arise outside the ledger (opening balances)
CARD_LIABILITY = 5  # face value of sold recharge cards not yet redeemed (goes down as redeemed)
ADDON_SALES = 6  # data packs and plans paid for (with a card, or by an agent from the float)
SYSTEM_ACCOUNTS = {
    CASH: "cash",
    COMMISSION_EXPENSE: "commission_expense",
    REFUNDS: "refunds",
    BILLING: "billing",
    CARD_LIABILITY: "card_liability",
    ADDON_SALES: "addon_sales",
}


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "float" | "subscriber" | one of SYSTEM_ACCOUNTS' names
    kind: Mapped[str] = mapped_column(String(24))
    balance: Mapped[int] = mapped_column(Money, default=0)
    pending: Mapped[int] = mapped_column(Money, default=0)  # reserved by pending recharges


class Subscriber(Base):
    __tablename__ = "subscribers"

    number: Mapped[str] = mapped_column(String(16), primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))
    billing: Mapped[str] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(12))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Prepaid validity (有效期): the last day (in TIMEZONE) the number may be used; NULL: never
    # topped up since validity was kept (or postpaid).
    valid_until: Mapped[date | None] = mapped_column(Date)
    # Wrong card PINs sent from this number (``ledger.cards``; 3 in a row lock 30 minutes).
    card_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    card_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str] = mapped_column(String(16), index=True)
    # Unique among agents that are not closed: the phone while bound, NULL once closed.
    bound_phone: Mapped[str | None] = mapped_column(String(16), unique=True)
    status: Mapped[str] = mapped_column(String(12))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), unique=True)
    commission_bp: Mapped[int] = mapped_column(Integer)
    trade_hash: Mapped[str] = mapped_column(String(200))
    mgmt_hash: Mapped[str] = mapped_column(String(200))
    # Wrong attempts in a row and the lock they set, per password (``ledger.passwords``).
    pin_failures: Mapped[int] = mapped_column(Integer, default=0)
    pin_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    mgmt_failures: Mapped[int] = mapped_column(Integer, default=0)
    mgmt_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Counts the changes of this row (PostgreSQL triggers; see migration 0005): a worker's
    # cached copy of the row is current while its version is.
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Txn(Base):
    """Header of a money operation and its idempotency record."""

    __tablename__ = "txns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    # open | deposit | recharge | transfer | reversal | close | subscriber_opening |
    # card | subscriber_close
    op: Mapped[str] = mapped_column(String(24))
    fingerprint: Mapped[str] = mapped_column(String(400))
    agent_id: Mapped[int | None] = mapped_column(Integer)
    number: Mapped[str | None] = mapped_column(String(16))
    amount_fen: Mapped[int] = mapped_column(Money)
    ref: Mapped[int | None] = mapped_column(Integer)  # e.g. the recharge a reversal undoes
    # The agent's available float right after the operation (deposits, transfers, closes).
    balance_after: Mapped[int | None] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_txns_agent_created", "agent_id", "created_at"),)


class Line(Base):
    """One immutable journal line; the lines of one txn sum to zero."""

    __tablename__ = "lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    txn_id: Mapped[int] = mapped_column(ForeignKey("txns.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(Money)


class Recharge(Base):
    __tablename__ = "recharges"

    tx_id: Mapped[int] = mapped_column(ForeignKey("txns.id"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    number: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(12))
    amount_fen: Mapped[int] = mapped_column(Money)
    commission_fen: Mapped[int] = mapped_column(Money)
    debit_fen: Mapped[int] = mapped_column(Money)
    notify: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(12))  # pending|succeeded|failed|reversed
    float_after_fen: Mapped[int | None] = mapped_column(Money)
    invoice_printed: Mapped[bool] = mapped_column(Boolean, default=False)
    retry_of: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_recharges_agent_created", "agent_id", "created_at"),
        Index("ix_recharges_status", "status"),
        Index("ix_recharges_number", "number"),
    )


class Resolution(Base):
    """How a pending reservation resolved: at most once (the primary key), never edited."""

    __tablename__ = "resolutions"

    tx_id: Mapped[int] = mapped_column(ForeignKey("recharges.tx_id"), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(8))  # posted | voided
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxRow(Base):
    """A text waiting to be sent, written in the same transaction as the money it reports.

    Columns for the SMPP sender:
    ``source`` the service number; ``destination`` the phone; ``text`` the whole text (the sender
    splits it); ``transport`` 'sms' | 'ussd'; ``ussd_session`` / ``ussd_umr`` the dialogue to
    answer in (USSD only); ``final`` whether this message ends the USSD dialogue; ``kind``
    agent_result | target_receipt | agent_opened | transfer_result | reversal_notice …;
    ``ref`` the txn id it reports; ``dedup_key`` unique, so that a repeated operation never
    writes a second notice; ``status`` queued → sending (claimed) → sent (SMSC accepted, has
    ``smsc_message_id``) → delivered | undeliverable, or failed (permanently);
    ``attempts`` / ``next_attempt_at`` retry scheduling; ``claimed_by`` / ``claimed_until`` the
    sending worker's lease; ``submitted_at`` / ``delivered_at`` / ``error`` what happened.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(21))
    destination: Mapped[str] = mapped_column(String(21), index=True)
    text: Mapped[str] = mapped_column(Text)
    transport: Mapped[str] = mapped_column(String(4), default="sms")
    ussd_session: Mapped[int | None] = mapped_column(Integer)
    ussd_umr: Mapped[int | None] = mapped_column(Integer)
    final: Mapped[bool] = mapped_column(Boolean, default=True)
    kind: Mapped[str] = mapped_column(String(24))
    ref: Mapped[int | None] = mapped_column(Integer)
    dedup_key: Mapped[str] = mapped_column(String(240), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    smsc_message_id: Mapped[str | None] = mapped_column(String(65), index=True)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(String(400))

    __table_args__ = (Index("ix_outbox_status_next", "status", "next_attempt_at"),)


class DeadLetterRow(Base):
    """A message that could not be handled (SPEC §11): answered with a "try later" notice and
    kept here for operators, its text with every digit masked (it may hold a password)."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(32), index=True)
    source: Mapped[str] = mapped_column(String(21))
    destination: Mapped[str] = mapped_column(String(21))
    transport: Mapped[str] = mapped_column(String(4))
    text: Mapped[str] = mapped_column(String(320))
    error: Mapped[str] = mapped_column(String(400))
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ShortcutAck(Base):
    """The response to the message behind a one-message operation (``txns.key`` ``sms:…``)
    was written. Kept only by a worker whose intake memory dies with it (the in-process
    store): after a restart, the shortcuts not acknowledged are remembered again, so a copy the
    SMSC resends is recognised (``menus.intake``)."""

    __tablename__ = "shortcut_acks"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    acked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CardBatch(Base):
    """A batch of recharge cards imported from one file (``cards import --batch NAME``)."""

    __tablename__ = "card_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Card(Base):
    """One recharge card. ``status`` is issued | redeemed | void; expired (past ``expires``)
    and locked (``locked_until`` ahead) are read from the other columns."""

    __tablename__ = "cards"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("card_batches.id"), index=True)
    value_fen: Mapped[int] = mapped_column(Money)
    expires: Mapped[date] = mapped_column(Date)  # valid through this day in TIMEZONE
    pin_salt: Mapped[str] = mapped_column(String(32))
    pin_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    redeemed_by: Mapped[str | None] = mapped_column(String(16))
    txn_id: Mapped[int | None] = mapped_column(Integer)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Allowance(Base):
    """A data pack or plan a subscriber holds (``products``): data in MB, a plan by code,
    either until ``valid_until`` (inclusive, TIMEZONE) or without end (NULL)."""

    __tablename__ = "allowances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(16), index=True)
    code: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(8))  # data | plan
    data_mb: Mapped[int] = mapped_column(Integer, default=0)
    valid_until: Mapped[date | None] = mapped_column(Date)
    txn_id: Mapped[int] = mapped_column(ForeignKey("txns.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ClosingCode(Base):
    """The verification code of a subscriber closing its account from the phone (销户): one
    per number, as an HMAC (never the code), valid until ``expires_at``, ``tries`` left."""

    __tablename__ = "closing_codes"

    number: Mapped[str] = mapped_column(String(16), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    tries: Mapped[int] = mapped_column(Integer)


# ---- web access (SPEC §9): operators, API keys, web sessions, one-time codes, payments ----


class Operator(Base):
    """An operator's staff account for the web pages (``smsmenu operator create``); its
    password is argon2 of an HMAC under ``SECRET_KEY`` (``pins``), locked like an agent's."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # "staff" | "supervisor"
    password_hash: Mapped[str] = mapped_column(String(200))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKey(Base):
    """A client of the HTTP API: its key stored only as an HMAC under ``SECRET_KEY``."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(32))  # "operator" | "agent:<id>"
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """Who did what on the web pages and the API: one row per operation, its outcome."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(80))  # operator:<name> | agent:<id> | apikey:<name>
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(80))
    outcome: Mapped[str] = mapped_column(String(60))  # "ok" or "refused:<rule>"


class WebSession(Base):
    """A logged-in browser: the HMAC of its cookie's token, who it is, until when."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    who: Mapped[str] = mapped_column(String(40))  # "agent:<id>" | "operator:<id>"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class LoginCode(Base):
    """A one-time code sent by SMS (login, a new bound phone): only its HMAC is kept."""

    __tablename__ = "login_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str] = mapped_column(String(16), index=True)
    purpose: Mapped[str] = mapped_column(String(24))
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    used: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Payment(Base):
    """An online float deposit through a payment provider; paid once, deposited once."""

    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(Money)
    provider: Mapped[str] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(12))  # "created" | "paid"
    deposit_tx: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


accounts = cast(Table, Account.__table__)
subscribers = cast(Table, Subscriber.__table__)
agents = cast(Table, Agent.__table__)
txns = cast(Table, Txn.__table__)
lines = cast(Table, Line.__table__)
recharges = cast(Table, Recharge.__table__)
resolutions = cast(Table, Resolution.__table__)
outbox = cast(Table, OutboxRow.__table__)
dead_letters = cast(Table, DeadLetterRow.__table__)
shortcut_acks = cast(Table, ShortcutAck.__table__)
card_batches = cast(Table, CardBatch.__table__)
cards = cast(Table, Card.__table__)
allowances = cast(Table, Allowance.__table__)
closing_codes = cast(Table, ClosingCode.__table__)
operators = cast(Table, Operator.__table__)
api_keys = cast(Table, ApiKey.__table__)
audit_log = cast(Table, AuditEntry.__table__)
web_sessions = cast(Table, WebSession.__table__)
login_codes = cast(Table, LoginCode.__table__)
payments = cast(Table, Payment.__table__)
