"""The JSON objects of SPEC §12 that the command line and the HTTP API both print: an agent,
a subscriber, a recharge. Money in fen; times ISO 8601 with the offset of ``zone`` (the
TIMEZONE setting). Pure."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from smsmenu.ledger.api import AgentView, Billing, RechargeView, SubscriberView


def agent_json(view: AgentView) -> dict[str, Any]:
    return {
        "agent_id": view.agent_id,
        "phone": view.phone,
        "status": view.status.value,
        "balance_fen": view.balance_fen,
        "commission_bp": view.commission_bp,
    }


def subscriber_json(view: SubscriberView, held: bool = False) -> dict[str, Any]:
    """SPEC §12's object; ``held``: with the validity (prepaid) and allowances of §8, as
    ``subscriber show`` prints it."""
    shown: dict[str, Any] = {
        "number": view.number,
        "kind": view.kind.value,
        "billing": view.billing.value,
        "status": view.status.value,
        "balance_fen": view.balance_fen,
    }
    if not held:
        return shown
    if view.billing is Billing.PREPAID:
        shown["valid_until"] = view.valid_until and view.valid_until.isoformat()
    shown["allowances"] = [
        {
            "code": allowance.code,
            "kind": allowance.kind,
            "data_mb": allowance.data_mb,
            "valid_until": allowance.valid_until and allowance.valid_until.isoformat(),
        }
        for allowance in view.allowances
    ]
    return shown


def recharge_json(view: RechargeView, zone: tzinfo) -> dict[str, Any]:
    return {
        "tx_id": view.tx_id,
        "number": view.number,
        "kind": view.kind.value,
        "amount_fen": view.amount_fen,
        "commission_fen": view.commission_fen,
        "debit_fen": view.debit_fen,
        "status": view.status.value,
        "created_at": view.created_at.astimezone(zone).isoformat(),
    }
