"""What one recharge writes, computed once: the plan each database's writer carries out.

``plan`` applies every rule (``admission``, the trade password through ``passwords.admit``) to
what is known, prices the recharge and renders its notices with markers where only the write
knows the values (``notices.MARK`` for a balance, ``TXN_MARK`` for the txn id). What is known is
the agent's row (``AgentRow``), and, when the writer read them in the same transaction, the
``Facts`` around it (target, notify number, float, key, duplicates): a plan on facts has passed
every rule. A plan on the agent's row alone (a worker's cached copy) leaves those checks to the
writer, which makes them in the round trip of its writes and says which failed (``Outcome``);
the caller then reads the facts and plans again, so that the rules, not the database, word the
refusal. ``Written`` is what the writer reports of a recharge it wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from smsmenu.ledger import admission, notices, passwords, rules
from smsmenu.ledger.api import RechargeRequest, RechargeView, Refusal, Rule
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.models import COMMISSION_EXPENSE
from smsmenu.ledger.outbox import OutboxMessage
from smsmenu.ledger.unit_of_work import KeyTaken


@dataclass(frozen=True)
class AgentRow:
    """What a recharge needs of its agent; ``version`` says which state of the row it is."""

    id: int
    version: int
    status: str
    phone: str
    commission_bp: int
    trade_hash: str
    pin_failures: int
    pin_locked_until: datetime | None
    account_id: int
    phone_status: str | None

    @classmethod
    def of(cls, row: Any) -> AgentRow:
        """From a row with these columns (``statements.AGENT_CONTEXT``)."""
        return cls(*(getattr(row, name) for name in cls.__dataclass_fields__))


@dataclass(frozen=True)
class Facts:
    """What a read in the writer's transaction adds to the agent's row."""

    t_kind: str | None
    t_status: str | None
    n_kind: str | None
    n_status: str | None
    available: int
    key_taken: bool
    duplicate: bool

    @classmethod
    def of(cls, row: Any) -> Facts:
        """From a ``statements.RECHARGE_CONTEXT`` row."""
        return cls(
            row.t_kind,
            row.t_status,
            row.n_kind,
            row.n_status,
            row.balance - row.pending,
            row.known is not None,
            bool(row.duplicate),
        )


class Outcome(StrEnum):
    """What a writer says of a plan (PostgreSQL's ``ledger_admit`` and the guarded debit)."""

    OK = "ok"
    STALE = "stale"  # the agent's row changed since the plan was made: read, plan again
    KEY = "key"  # the key is stored already: the first result
    DUPLICATE = "duplicate"
    TARGET = "target"  # the target or the notify number is not as planned: read, refuse
    NOTIFY = "notify"
    FUNDS = "funds"


@dataclass(frozen=True)
class Claim:
    """The notices are claimed at once for this worker, whose sender sends them."""

    worker_id: str
    until: datetime


@dataclass(frozen=True)
class Validity:
    """A top-up's gain of prepaid validity: ``days`` (by its amount band) from ``today`` (the
    business date) or from the validity if later; the write applies it to a prepaid target."""

    days: int
    today: date

    @classmethod
    def of(cls, ctx: LedgerContext, amount_fen: int) -> Validity:
        return cls(ctx.products.validity_days(amount_fen), ctx.today())


@dataclass(frozen=True)
class RechargePlan:
    request: RechargeRequest
    fingerprint: str
    now: datetime
    agent: AgentRow
    price: rules.Price
    proof: passwords.Proof
    notify_phs: bool  # the notify number is area-coded: it must be a PHS subscriber
    duplicate_since: datetime | None
    notices: tuple[dict[str, Any], ...]  # the agent's result, then the receipt if any
    claim: Claim | None
    validity: Validity  # what the target's prepaid validity gains

    @property
    def clear_pin(self) -> bool:
        """Whether the write clears the count of wrong trade passwords: there is one (or a
        lock that has ended, or this proof's own provisional lock), and no provisional lock
        of three other attempts being checked, which is theirs to settle."""
        agent, own = self.agent, self.proof.own_lock
        if not agent.pin_failures and agent.pin_locked_until is None:
            return False
        locked = agent.pin_locked_until
        return locked is None or locked <= self.now or locked == own

    def notice_args(self) -> tuple[Any, ...]:
        """The notices as the database functions take them (``notice_args``)."""
        return notice_args(self.notices, self.claim)


def notice_args(rows: tuple[dict[str, Any], ...], claim: Claim | None) -> tuple[Any, ...]:
    """Notices (the agent's result, then the receipt if any), their claim and the account the
    commission is booked to, as the database functions take them (``p_source`` ..
    ``p_commission_account``)."""
    agent = rows[0]
    receipt = rows[1] if len(rows) > 1 else None
    return (
        agent["source"],
        agent["destination"],
        agent["text"],
        agent["transport"],
        agent["ussd_session"],
        agent["ussd_umr"],
        agent["final"],
        agent["dedup_key"],
        receipt and receipt["destination"],
        receipt and receipt["text"],
        receipt and receipt["dedup_key"],
        claim and claim.worker_id,
        claim and claim.until,
        COMMISSION_EXPENSE,
    )


@dataclass(frozen=True)
class Written:
    """What a writer wrote: the txn, the notices as stored (the sender sends those claimed
    for its worker at once) and, for a recharge taken in, its view."""

    txn: int
    notices: tuple[OutboxMessage, ...] = ()
    view: RechargeView | None = None


def duplicate_since(request: RechargeRequest, now: datetime) -> datetime | None:
    """Since when an identical recharge makes this one a duplicate (None: no such guard)."""
    window = request.duplicate_window_s
    return None if window is None else now - timedelta(seconds=window)


def plan(
    ctx: LedgerContext,
    agent: AgentRow,
    request: RechargeRequest,
    fingerprint: str,
    now: datetime,
    proof: passwords.Proof | None,
    facts: Facts | None = None,
    claim: Claim | None = None,
) -> RechargePlan:
    """The recharge's plan on ``agent`` (and ``facts`` if read); raises ``KeyTaken`` (facts:
    the key is stored: a repeat gets its first result whatever would refuse it now), the rules'
    ``Refusal`` or ``passwords.Unchecked`` (count the password first)."""
    if facts is not None and facts.key_taken:
        raise KeyTaken
    admission.agent_can_trade(agent)
    try:
        proof = passwords.admit(ctx, passwords.TRADE, agent, request.pin, now, proof)
    except passwords.Unchecked:
        raise passwords.Unchecked(key_free=facts is not None) from None
    if facts is not None:
        admission.facts_allow(facts, request)
    price = rules.price(request.amount_fen, agent.commission_bp)
    if facts is not None:
        admission.funds(facts.available, price.debit_fen)
    return RechargePlan(
        request=request,
        fingerprint=fingerprint,
        now=now,
        agent=agent,
        price=price,
        proof=proof,
        notify_phs=request.notify is not None and not request.notify.startswith("1"),
        duplicate_since=duplicate_since(request, now),
        notices=tuple(
            notices.recharge_result(
                ctx,
                now=now,
                key=request.key,
                txn=notices.TXN_MARK,
                agent_id=request.agent_id,
                agent_phone=agent.phone,
                kind=request.kind,
                number=request.number,
                notify=request.notify,
                price=price,
                float_after=notices.MARK,
                target_balance=notices.MARK,
                route=request.reply_route,
            )
        ),
        claim=claim,
        validity=Validity.of(ctx, request.amount_fen),
    )


def refusal(outcome: Outcome, request: RechargeRequest, available: int | None) -> Refusal:
    """The refusal an outcome means by itself (DUPLICATE, FUNDS)."""
    if outcome is Outcome.DUPLICATE:
        return Refusal(Rule.DUPLICATE_RECHARGE, number=request.number)
    assert outcome is Outcome.FUNDS and available is not None
    return Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=available)


__all__ = [
    "AgentRow",
    "Claim",
    "Facts",
    "Outcome",
    "RechargePlan",
    "Validity",
    "Written",
    "duplicate_since",
    "notice_args",
    "plan",
    "refusal",
]
