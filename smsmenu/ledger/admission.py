"""Admitting a recharge: everything checked before any money moves.

``rules`` holds the pure rules over plain values; this module applies them to the request and
to what was read (the agent's row, the facts around it) and raises ``Refusal`` (or
``KeyTaken``). ``recharge_plan.plan`` admits every recharge through here, whatever its writer,
so the rules have one source and the writes that follow only need their database guards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smsmenu.ledger import passwords, rules
from smsmenu.ledger.api import Kind, RechargeRequest, Refusal, Rule, SubscriberStatus
from smsmenu.ledger.unit_of_work import KeyTaken

if TYPE_CHECKING:
    from smsmenu.ledger.recharge_plan import Facts


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


def facts_allow(facts: Facts, request: RechargeRequest) -> None:
    """What the writer read in its transaction allows the recharge: its key is not stored
    (``KeyTaken``: the first result), it is no duplicate within its window, its target and
    notify number qualify."""
    if facts.key_taken:
        raise KeyTaken
    if facts.duplicate:
        raise Refusal(Rule.DUPLICATE_RECHARGE, number=request.number)
    target(facts.t_kind, facts.t_status, request.kind, request.number)
    notify(facts.n_kind, facts.n_status, request.notify)
