"""PostgreSQL: a recharge (internal billing) in two statements instead of nine.

(1) ``BEGIN_RECHARGE`` stores the key and reads everything the rules need, in one statement;
the rules are then checked in Python (``admission.admit``, the one source of the rules);
(2) ``POST_RECHARGE`` does only the guarded writes, as one statement of data-modifying CTEs:
the float's guarded debit, the target's credit (only if the debit happened), the journal
lines, the recharge row and the outbox rows. The texts are rendered in Python with
``notices.MARK`` where the balances go, and the database writes the balances it just computed
into them (``_sql_yuan`` formats like ``money.format_yuan``). BEGIN + 2 + COMMIT round trips:
the hot float's row lock is held for one statement and the commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Integer,
    String,
    Text,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError

from smsmenu.ledger import admission, notices, outbox, views
from smsmenu.ledger.api import RechargeRequest, RechargeView, Refusal, Rule
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.entries import SUCCEEDED, recharge_row
from smsmenu.ledger.models import COMMISSION_EXPENSE, accounts, agents, lines, recharges, txns
from smsmenu.ledger.models import outbox as outbox_table
from smsmenu.ledger.passwords import reset_failures
from smsmenu.ledger.statements import (
    AGENT_CONTEXT_COLUMNS,
    FLOAT,
    PHONE,
    TARGET,
    TARGET_ACCOUNT,
)
from smsmenu.ledger.unit_of_work import KeyTaken, check_key, unit_of_work


def _sql_yuan(fen: Any) -> Any:
    whole = func.abs(fen).op("/")(100)
    part = func.mod(func.abs(fen), 100)
    return func.concat(
        case((fen < 0, "-"), else_=""),
        cast(whole, Text),
        ".",
        func.lpad(cast(part, Text), 2, "0"),
        "元",
    )


_key = (
    insert(txns)
    .values(
        key=bindparam("key"),
        op="recharge",
        fingerprint=bindparam("fingerprint"),
        agent_id=bindparam("agent_id"),
        number=bindparam("number"),
        amount_fen=bindparam("amount_fen"),
        created_at=bindparam("created_at", type_=txns.c.created_at.type),
    )
    .returning(txns.c.id)
    .cte("k")
)
#: The key stored (a duplicate raises IntegrityError) and the agent context, in one row;
#: ``id`` is None when there is no such agent.
BEGIN_RECHARGE = select(_key.c.id.label("txn"), *AGENT_CONTEXT_COLUMNS).select_from(
    _key.outerjoin(agents, agents.c.id == bindparam("agent_id"))
    .outerjoin(FLOAT, FLOAT.c.id == agents.c.account_id)
    .outerjoin(PHONE, PHONE.c.number == agents.c.phone)
    .outerjoin(TARGET, TARGET.c.number == bindparam("number"))
    .outerjoin(TARGET_ACCOUNT, TARGET_ACCOUNT.c.id == TARGET.c.account_id)
)

_NOTICE_FIELDS = (
    ("dest", "destination", None),
    ("text", "text", ""),
    ("transport", "transport", "sms"),
    ("ussd_session", "ussd_session", None),
    ("ussd_umr", "ussd_umr", None),
    ("final", "final", True),
    ("dedup", "dedup_key", ""),
)


def _post_statement() -> Any:
    debit, amount = bindparam("debit", type_=BigInteger), bindparam("amount", type_=BigInteger)
    commission = bindparam("commission", type_=BigInteger)
    txn = bindparam("txn", type_=Integer)
    float_acc = bindparam("float_acc", type_=Integer)
    target_acc = bindparam("target_acc", type_=Integer)
    now = bindparam("now", type_=recharges.c.created_at.type)
    d = (
        update(accounts)
        .where(accounts.c.id == float_acc, accounts.c.balance - accounts.c.pending >= debit)
        .values(balance=accounts.c.balance - debit)
        .returning((accounts.c.balance - accounts.c.pending).label("after"))
        .cte("d")
    )
    t = (
        update(accounts)
        .where(accounts.c.id == target_acc, exists(select(d.c.after)))
        .values(balance=accounts.c.balance + amount)
        .returning(accounts.c.balance.label("tbal"))
        .cte("t")
    )
    line_rows = union_all(
        select(txn, target_acc, amount).select_from(t),
        select(txn, literal(COMMISSION_EXPENSE), -commission).select_from(t),
        select(txn, float_acc, -debit).select_from(t),
    )
    add_lines = (
        insert(lines).from_select(["txn_id", "account_id", "amount_fen"], line_rows).cte("l")
    )
    recharge_values: dict[str, Any] = {
        "tx_id": txn,
        "agent_id": bindparam("r_agent", type_=Integer),
        "number": bindparam("r_number", type_=String),
        "kind": bindparam("r_kind", type_=String),
        "amount_fen": amount,
        "commission_fen": commission,
        "debit_fen": debit,
        "notify": bindparam("r_notify", type_=String),
        "status": literal(SUCCEEDED),
        "float_after_fen": d.c.after,
        "invoice_printed": literal(False, Boolean),
        "retry_of": bindparam("retry_of", type_=Integer),
        "created_at": now,
        "resolved_at": now,
    }
    add_recharge = (
        insert(recharges)
        .from_select(
            list(recharge_values), select(*recharge_values.values()).select_from(d.join(t, true()))
        )
        .cte("r")
    )

    def notice(prefix: str, balance: Any, kind: str, source: Any) -> Any:
        p = {name: f"{prefix}_{name}" for name, _, _ in _NOTICE_FIELDS}
        row: dict[str, Any] = {
            "created_at": now,
            "source": bindparam("source", type_=String),
            "destination": bindparam(p["dest"], type_=String),
            "text": func.replace(
                bindparam(p["text"], type_=Text), notices.MARK, _sql_yuan(balance)
            ),
            "transport": bindparam(p["transport"], type_=String),
            "ussd_session": bindparam(p["ussd_session"], type_=Integer),
            "ussd_umr": bindparam(p["ussd_umr"], type_=Integer),
            "final": bindparam(p["final"], type_=Boolean),
            "kind": literal(kind),
            "ref": txn,
            "dedup_key": bindparam(p["dedup"], type_=String),
            "status": literal(outbox.QUEUED),
            "attempts": literal(0),
            "next_attempt_at": now,
        }
        return list(row), select(*row.values()).select_from(source)

    columns, agent_notice = notice("agent", d.c.after, "agent_result", d.join(t, true()))
    _, receipt = notice("receipt", t.c.tbal, "target_receipt", t)
    receipt = receipt.where(bindparam("receipt_dest", type_=String).is_not(None))
    add_outbox = (
        insert(outbox_table).from_select(columns, union_all(agent_notice, receipt)).cte("o")
    )
    return (
        select(d.c.after, t.c.tbal)
        .select_from(d.join(t, true()))
        .add_cte(add_lines, add_recharge, add_outbox)
    )


#: The guarded writes of a recharge; no row: the float's guard said no.
POST_RECHARGE = _post_statement()


async def recharge(
    ctx: LedgerContext, request: RechargeRequest, fingerprint: str, retry_of: int | None
) -> RechargeView:
    """Internal billing on PostgreSQL: key, rules, writes, commit; ``KeyTaken`` /
    ``WrongPin`` / ``Refusal`` as the generic path raises them."""
    check_key(request.key)
    now = ctx.clock.now()
    async with unit_of_work(ctx.engine) as conn:
        try:
            agent = (
                await conn.execute(
                    BEGIN_RECHARGE,
                    {
                        "key": request.key,
                        "fingerprint": fingerprint,
                        "agent_id": request.agent_id,
                        "number": request.number,
                        "amount_fen": request.amount_fen,
                        "created_at": now,
                    },
                )
            ).one()
        except IntegrityError:
            raise KeyTaken from None
        if agent.id is None:
            raise Refusal(Rule.AGENT_UNKNOWN, agent_id=request.agent_id)
        price = admission.admit(ctx, agent, request, now)
        await reset_failures(conn, agent)
        ctx.fault("credited")
        agent_row, *receipt_rows = notices.recharge_result(
            ctx,
            now=now,
            key=request.key,
            txn=agent.txn,
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
        params: dict[str, Any] = {
            "txn": agent.txn,
            "float_acc": agent.account_id,
            "target_acc": agent.t_account,
            "debit": price.debit_fen,
            "amount": price.amount_fen,
            "commission": price.commission_fen,
            "r_agent": request.agent_id,
            "r_number": request.number,
            "r_kind": request.kind.value,
            "r_notify": request.notify,
            "retry_of": retry_of,
            "now": now,
            "source": ctx.service_number,
        }
        for prefix, row in (("agent", agent_row), ("receipt", next(iter(receipt_rows), None))):
            for name, column, absent in _NOTICE_FIELDS:
                params[f"{prefix}_{name}"] = row[column] if row else absent
        posted = (await conn.execute(POST_RECHARGE, params)).first()
        if posted is None:  # a concurrent recharge took the money first
            raise Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=agent.balance - agent.pending)
        ctx.fault("posting")
        await conn.commit()
    return views.recharge(
        recharge_row(agent.txn, request, price, SUCCEEDED, now, posted.after, retry_of)
    )
