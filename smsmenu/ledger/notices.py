"""The texts the ledger queues in the outbox, rendered from the catalogue (SPEC §6).

Each function returns outbox rows (``outbox.row``) for the caller to ``outbox.add`` inside
its unit of work, so a notice exists exactly when its money moved. The ``dedup_key`` is the
operation's idempotency key plus the notice's kind: a repeated operation never queues twice.

Balances and the txn id are passed as text so that a recharge can pass ``MARK`` and
``TXN_MARK`` instead and have the write put the balance it computed and the id it took there
(``fill``; PostgreSQL's recharge functions do the same in SQL).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from smsmenu.ledger import outbox, rules
from smsmenu.ledger.api import Kind
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.products import Item
from smsmenu.messages import SMS, Route
from smsmenu.money import format_yuan
from smsmenu.texts import Catalogue

MARK = "\u2063#\u2063"  # invisible separators around '#': never in a catalogue text
TXN_MARK = "\u2063%\u2063"  # where the txn id goes when only the write knows it
# A receipt's validity clause (prepaid targets: only the write knows): between these two
# marks, its date at DATE_MARK; the write drops the clause for a number without validity.
VALID_OPEN, VALID_CLOSE, DATE_MARK = "\u2063<\u2063", "\u2063>\u2063", "\u2063~\u2063"


def fill(text: str, txn: int, balance: int | None, valid_until: date | None = None) -> str:
    """``text`` with the txn id, a balance and the validity clause put where the markers are
    (what PostgreSQL's recharge functions do to the texts they store)."""
    text = text.replace(TXN_MARK, str(txn))
    start, end = text.find(VALID_OPEN), text.find(VALID_CLOSE)
    if start >= 0 and end > start:
        clause = text[start + len(VALID_OPEN) : end]
        clause = "" if valid_until is None else clause.replace(DATE_MARK, valid_until.isoformat())
        text = text[:start] + clause + text[end + len(VALID_CLOSE) :]
    return text if balance is None else text.replace(MARK, format_yuan(balance))


def recharge_result(
    ctx: LedgerContext,
    *,
    now: datetime,
    key: str,
    txn: int | str,
    agent_id: int,
    agent_phone: str,
    kind: Kind,
    number: str,
    notify: str | None,
    price: rules.Price,
    float_after: str,
    target_balance: str | None,
    route: Route | None,
    error: str | None = None,
) -> list[dict[str, Any]]:
    """The agent's result notice and (on success, if someone is to be told) the target's
    receipt: to the target itself for mobile and PHS, else to the notify number."""
    text = ctx.text(
        "notice_recharge_ok" if error is None else "notice_recharge_failed",
        number=number,
        amount=format_yuan(price.amount_fen),
        commission=format_yuan(price.commission_fen),
        debit=format_yuan(price.debit_fen),
        balance=float_after,
        tx_id=txn,
    )
    rows = [
        outbox.row(
            now=now,
            source=ctx.service_number,
            destination=agent_phone,
            text=text,
            kind="agent_result",
            dedup_key=f"{key}:agent_result",
            ref=txn if isinstance(txn, int) else None,
            route=route or SMS,
        )
    ]
    receiver = number if kind in (Kind.MOBILE, Kind.PHS) else notify
    if error is None and target_balance is not None and receiver:
        rows.append(
            outbox.row(
                now=now,
                source=ctx.service_number,
                destination=receiver,
                text=ctx.text(
                    "receipt_target",
                    number=number,
                    amount=format_yuan(price.amount_fen),
                    balance=target_balance,
                    agent_id=agent_id,
                    tx_id=txn,
                )
                + VALID_OPEN
                + ctx.text("validity_until", date=DATE_MARK)
                + VALID_CLOSE,
                kind="target_receipt",
                dedup_key=f"{key}:target_receipt",
                ref=txn if isinstance(txn, int) else None,
            )
        )
    return rows


def agent_opened(
    ctx: LedgerContext,
    *,
    now: datetime,
    key: str,
    txn: int,
    phone: str,
    agent_id: int,
    deposit_fen: int,
    rate_bp: int,
) -> dict[str, Any]:
    return outbox.row(
        now=now,
        source=ctx.service_number,
        destination=phone,
        text=ctx.text(
            "notice_agent_opened",
            agent_id=agent_id,
            balance=format_yuan(deposit_fen),
            commission=f"{rate_bp / 100:.2f}%",
        ),
        kind="agent_opened",
        dedup_key=f"{key}:agent_opened",
        ref=txn,
    )


def transfer_result(
    ctx: LedgerContext,
    *,
    now: datetime,
    key: str,
    txn: int,
    phone: str,
    amount_fen: int,
    float_after: int,
    route: Route | None,
    valid_until: date | None = None,
) -> dict[str, Any]:
    return outbox.row(
        now=now,
        source=ctx.service_number,
        destination=phone,
        text=ctx.text(
            "notice_transfer_ok",
            amount=format_yuan(amount_fen),
            phone=phone,
            balance=format_yuan(float_after),
            tx_id=txn,
        )
        + validity_clause(ctx.catalogue, valid_until),
        kind="agent_result",
        dedup_key=f"{key}:agent_result",
        ref=txn,
        route=route or SMS,
    )


def reversal_notice(
    ctx: LedgerContext,
    *,
    now: datetime,
    key: str,
    txn: int,
    phone: str,
    recharge_tx_id: int,
    number: str,
    amount_fen: int,
    debit_fen: int,
    float_after: int,
) -> dict[str, Any]:
    return outbox.row(
        now=now,
        source=ctx.service_number,
        destination=phone,
        text=ctx.text(
            "notice_reversal",
            recharge_tx_id=recharge_tx_id,
            number=number,
            amount=format_yuan(amount_fen),
            debit=format_yuan(debit_fen),
            balance=format_yuan(float_after),
            tx_id=txn,
        ),
        kind="reversal_notice",
        dedup_key=f"{key}:reversal_notice",
        ref=txn,
    )


def card_result(
    ctx: LedgerContext,
    *,
    now: datetime,
    key: str,
    txn: int,
    phone: str,
    value_fen: int,
    item: Item | None,
    credit_fen: int,
    balance_fen: int,
    valid_until: date | None,
    route: Route | None,
) -> dict[str, Any]:
    """The result SMS of a card redemption (充值卡充值)."""
    what = (
        ctx.text("card_paid_item", name=item.name, price=format_yuan(item.price_fen))
        if item is not None
        else ctx.text("card_paid_credit")
    )
    text = ctx.text(
        "notice_card_ok",
        value=format_yuan(value_fen),
        what=what,
        credit=format_yuan(credit_fen),
        balance=format_yuan(balance_fen),
        tx_id=txn,
    ) + validity_clause(ctx.catalogue, valid_until)
    return outbox.row(
        now=now,
        source=ctx.service_number,
        destination=phone,
        text=text,
        kind="card_result",
        dedup_key=f"{key}:card_result",
        ref=txn,
        route=route or SMS,
    )


def validity_clause(texts: Catalogue, valid_until: date | None) -> str:
    """``有效期至YYYY-MM-DD。`` for a prepaid number, else nothing."""
    return (
        "" if valid_until is None else texts.render("validity_until", date=valid_until.isoformat())
    )


def sale_result(
    ctx: LedgerContext,
    *,
    now: datetime,
    key: str,
    txn: int,
    agent_id: int,
    agent_phone: str,
    number: str,
    item: Item,
    price: rules.Price,
    float_after: int,
    route: Route | None,
) -> list[dict[str, Any]]:
    """The agent's result of an item sold from the float, and the target's receipt."""
    return [
        outbox.row(
            now=now,
            source=ctx.service_number,
            destination=agent_phone,
            text=ctx.text(
                "notice_sale_ok",
                number=number,
                name=item.name,
                price=format_yuan(price.amount_fen),
                commission=format_yuan(price.commission_fen),
                debit=format_yuan(price.debit_fen),
                balance=format_yuan(float_after),
                tx_id=txn,
            ),
            kind="agent_result",
            dedup_key=f"{key}:agent_result",
            ref=txn,
            route=route or SMS,
        ),
        outbox.row(
            now=now,
            source=ctx.service_number,
            destination=number,
            text=ctx.text(
                "receipt_sale",
                number=number,
                name=item.name,
                price=format_yuan(price.amount_fen),
                agent_id=agent_id,
                tx_id=txn,
            ),
            kind="target_receipt",
            dedup_key=f"{key}:target_receipt",
            ref=txn,
        ),
    ]
