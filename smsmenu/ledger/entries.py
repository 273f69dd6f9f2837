"""What a recharge writes: its three journal lines and its ``recharges`` row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from smsmenu.ledger import rules
from smsmenu.ledger.api import RechargeRequest, RechargeStatus
from smsmenu.ledger.models import COMMISSION_EXPENSE

SUCCEEDED = RechargeStatus.SUCCEEDED.value
FAILED = RechargeStatus.FAILED.value
PENDING = RechargeStatus.PENDING.value
REVERSED = RechargeStatus.REVERSED.value

RECHARGE_COLUMNS = (
    "tx_id",
    "agent_id",
    "number",
    "kind",
    "amount_fen",
    "commission_fen",
    "debit_fen",
    "notify",
    "status",
    "float_after_fen",
    "invoice_printed",
    "retry_of",
    "error",
    "created_at",
    "resolved_at",
)


def posting_lines(
    txn: int, float_account: int, target_account: int, price: rules.Price
) -> list[dict[str, Any]]:
    """Target +amount, commission expense −commission, float −(amount − commission)."""
    return [
        {"txn_id": txn, "account_id": target_account, "amount_fen": price.amount_fen},
        {"txn_id": txn, "account_id": COMMISSION_EXPENSE, "amount_fen": -price.commission_fen},
        {"txn_id": txn, "account_id": float_account, "amount_fen": -price.debit_fen},
    ]


def recharge_row(
    txn: int,
    request: RechargeRequest,
    price: rules.Price,
    status: str,
    now: datetime,
    float_after: int | None,
) -> dict[str, Any]:
    return {
        "tx_id": txn,
        "agent_id": request.agent_id,
        "number": request.number,
        "kind": request.kind.value,
        "amount_fen": price.amount_fen,
        "commission_fen": price.commission_fen,
        "debit_fen": price.debit_fen,
        "notify": request.notify,
        "status": status,
        "float_after_fen": float_after,
        "invoice_printed": False,
        "retry_of": request.retry_of,
        "error": None,
        "created_at": now,
        "resolved_at": now if status != PENDING else None,
    }
