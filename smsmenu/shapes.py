"""The JSON objects of SPEC §12 that the command line and the HTTP API both print: an agent,
a subscriber, a recharge. Money in fen; times ISO 8601 with the offset of ``zone`` (the
TIMEZONE setting). Pure."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from smsmenu.ledger.api import AgentView, RechargeView, SubscriberView


def agent_json(view: AgentView) -> dict[str, Any]:
    return {
        "agent_id": view.agent_id,
        "phone": view.phone,
        "status": view.status.value,
        "balance_fen": view.balance_fen,
        "commission_bp": view.commission_bp,
    }


def subscriber_json(view: SubscriberView) -> dict[str, Any]:
    return {
        "number": view.number,
        "kind": view.kind.value,
        "billing": view.billing.value,
        "status": view.status.value,
        "balance_fen": view.balance_fen,
    }


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
