"""Rows read back as the ``api`` value types (one mapping per view, used by every path)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smsmenu.ledger.api import (
    AgentStatus,
    AgentView,
    Billing,
    Kind,
    RechargeStatus,
    RechargeView,
    SubscriberStatus,
    SubscriberView,
)


def recharge(row: Mapping[Any, Any]) -> RechargeView:
    """A ``recharges`` row (``row._mapping``, or the values just inserted) as a view."""
    return RechargeView(
        tx_id=row["tx_id"],
        agent_id=row["agent_id"],
        number=row["number"],
        kind=Kind(row["kind"]),
        amount_fen=row["amount_fen"],
        commission_fen=row["commission_fen"],
        debit_fen=row["debit_fen"],
        status=RechargeStatus(row["status"]),
        created_at=row["created_at"],
        notify=row["notify"],
        float_after_fen=row["float_after_fen"],
    )


def agent(row: Any) -> AgentView:
    """An agent row joined with its float's ``balance`` and ``pending``."""
    return AgentView(
        agent_id=row.id,
        phone=row.phone,
        status=AgentStatus(row.status),
        balance_fen=row.balance - row.pending,
        commission_bp=row.commission_bp,
    )


def subscriber(row: Any) -> SubscriberView:
    """A subscriber row joined with its account's ``balance``."""
    return SubscriberView(
        number=row.number,
        kind=Kind(row.kind),
        billing=Billing(row.billing),
        status=SubscriberStatus(row.status),
        balance_fen=row.balance,
        valid_until=row.valid_until if row.billing == Billing.PREPAID else None,
    )
