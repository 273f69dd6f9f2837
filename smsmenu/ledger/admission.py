"""Admitting a recharge: everything checked before any money moves.

``rules`` holds the pure rules over plain values; this module applies them to the request and
to the rows a unit of work read (the agent context, the target) and raises ``Refusal`` (or
``passwords.Unchecked``: the trade password is to be counted and checked first). Every recharge
path — one transaction, PostgreSQL's one statement, two-phase, group commit — admits through
here, so the rules have one source and the writes that follow only need their database guards
(the float's ``balance - pending >= debit``, the trade password's lock: ``passwords.settle``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from smsmenu.ledger import passwords, queries, rules
from smsmenu.ledger.api import Kind, RechargeRequest, Refusal, Rule, SubscriberStatus
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.unit_of_work import claim_key


def request_fields(kind: Kind, number: str, amount_fen: int, notify: str | None) -> None:
    """What a recharge request must satisfy before any database is asked."""
    if not isinstance(kind, Kind):
        raise Refusal(Rule.TARGET_KIND_MISMATCH)
    rule = rules.number_rule(kind, number) or rules.recharge_amount_rule(amount_fen)
    if rule:
        raise Refusal(rule, number=number)
    if notify is not None:
        rule = rules.notify_rule(notify)
        if rule:
            raise Refusal(rule, number=notify)


def check_request(request: RechargeRequest) -> None:
    """What a recharge request must satisfy before any database is asked (a malformed password
    is a format error, not a wrong password: it counts nothing)."""
    request_fields(request.kind, request.number, request.amount_fen, request.notify)
    passwords.pin_format(request.pin)


def agent_can_trade(agent: Any) -> None:
    """The agent is open, not suspended, and its bound phone is active."""
    rule = rules.agent_rule(agent.status, agent.phone_status)
    if rule:
        raise Refusal(rule)


def target(found_kind: str | None, found_status: str | None, kind: Kind, number: str) -> None:
    """The target exists (``found_kind`` not None), is not closed and is of the chosen kind."""
    if found_kind is None:
        raise Refusal(Rule.TARGET_UNKNOWN, number=number)
    if found_status == SubscriberStatus.CLOSED:
        raise Refusal(Rule.TARGET_CLOSED, number=number)
    if found_kind != kind:
        raise Refusal(Rule.TARGET_KIND_MISMATCH, number=number)


def notify(found_kind: str | None, found_status: str | None, number: str | None) -> None:
    """The receipt may go to notify ``number`` (None: no notice), whose subscriber row (if
    any) is ``found_kind``/``found_status``: a mobile number or a PHS subscriber."""
    if number is not None and rules.notify_target_rule(number, found_kind, found_status):
        raise Refusal(Rule.BAD_NOTIFY_NUMBER, number=number)


def funds(available_fen: int, debit_fen: int) -> None:
    if available_fen < debit_fen:
        raise Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=available_fen)


def fingerprint(request: RechargeRequest) -> str:
    """The fields a repeat of the same key must have (TigerBeetle: same id, same transfer)."""
    return (
        f"{request.agent_id}|{request.kind.value}|{request.number}|{request.amount_fen}"
        f"|{request.notify or ''}"
    )


@dataclass(frozen=True)
class Admitted:
    """A recharge every rule said yes to: its txn id (key stored), the agent context row it was
    admitted on, its price and the proof of its trade password (``passwords.settle`` it after
    the money writes). Nothing has moved yet."""

    txn: int
    agent: Any
    price: rules.Price
    proof: passwords.Proof


def admit(
    ctx: LedgerContext,
    agent: Any,
    request: RechargeRequest,
    now: datetime,
    proof: passwords.Proof | None,
) -> tuple[rules.Price, passwords.Proof]:
    """Check an agent context row (``statements.AGENT_CONTEXT`` read with the request's
    number and notify number) against every rule and the trade password (``passwords.admit``:
    may raise ``Unchecked``); the price and the password's proof if all say yes."""
    agent_can_trade(agent)
    proof = passwords.admit(ctx, passwords.TRADE, agent, request.pin, now, proof)
    target(agent.t_kind, agent.t_status, request.kind, request.number)
    notify(agent.n_kind, agent.n_status, request.notify)
    price = rules.price(request.amount_fen, agent.commission_bp)
    funds(agent.balance - agent.pending, price.debit_fen)
    return price, proof


async def begin(
    ctx: LedgerContext,
    conn: AsyncConnection,
    request: RechargeRequest,
    fingerprint: str,
    now: datetime,
    proof: passwords.Proof | None,
) -> Admitted:
    """Store the key, read the context, admit."""
    txn = await claim_key(
        conn,
        request.key,
        "recharge",
        fingerprint,
        now,
        agent_id=request.agent_id,
        number=request.number,
        amount_fen=request.amount_fen,
    )
    agent = await queries.agent_context(conn, request.agent_id, request.number, request.notify)
    price, proof = admit(ctx, agent, request, now, proof)
    return Admitted(txn, agent, price, proof)
