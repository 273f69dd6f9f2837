"""Reports (SPEC §7): an agent's transaction records, the per-agent daily report in the
business time zone, and the trial balance that proves the books (every balance summed is zero,
every stored balance equals its journal lines, reserved funds equal the pending recharges)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsmenu.ledger.api import DailyReportRow, RecordView, TrialBalance
from smsmenu.ledger.entries import PENDING, REVERSED, SUCCEEDED
from smsmenu.ledger.models import SYSTEM_ACCOUNTS, accounts, lines, recharges, txns


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The business day ``day`` (in ``zone``) as a UTC [start, end). Any date a person may
    type is one: at the ends of the calendar the bounds stop where datetimes do."""
    return _midnight(day, zone), _midnight(
        day + timedelta(days=1), zone
    ) if day < date.max else _LAST


_FIRST, _LAST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    try:
        return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    except OverflowError:  # 0001-01-01 east of UTC, 9999-12-31 west of it
        return _FIRST if day.year == 1 else _LAST


async def records(
    engine: AsyncEngine,
    agent_id: int,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
) -> list[RecordView]:
    """The agent's transactions in [start, end), newest first (failed recharges left out)."""
    op = case((txns.c.op == "open", literal("deposit")), else_=txns.c.op).label("record_kind")
    stmt = (
        select(txns.c.id, op, txns.c.number, txns.c.amount_fen, txns.c.created_at)
        .outerjoin(recharges, recharges.c.tx_id == txns.c.id)
        .where(
            txns.c.agent_id == agent_id,
            txns.c.op.in_(("open", "deposit", "recharge", "transfer", "reversal", "sale")),
            (recharges.c.status.is_(None)) | recharges.c.status.in_((SUCCEEDED, REVERSED)),
        )
        .order_by(txns.c.id.desc())
    )
    if start is not None:
        stmt = stmt.where(txns.c.created_at >= start)
    if end is not None:
        stmt = stmt.where(txns.c.created_at < end)
    if limit is not None:
        stmt = stmt.limit(limit)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [RecordView(r.id, r.record_kind, r.number, r.amount_fen, r.created_at) for r in rows]


async def daily_report(engine: AsyncEngine, day: date, zone: ZoneInfo) -> list[DailyReportRow]:
    """Per agent, for business day ``day``: recharges (count, sum), net commission, reversals
    (count, sum, commission clawed back); see ``DailyReportRow``."""
    start, end = day_bounds(day, zone)
    done = recharges.c.status.in_((SUCCEEDED, REVERSED))
    rech = (
        select(
            recharges.c.agent_id,
            func.count().label("n"),
            func.coalesce(func.sum(recharges.c.amount_fen), 0).label("amount"),
            func.coalesce(func.sum(recharges.c.commission_fen), 0).label("commission"),
        )
        .where(done, recharges.c.created_at >= start, recharges.c.created_at < end)
        .group_by(recharges.c.agent_id)
    )
    rev = (
        select(
            txns.c.agent_id,
            func.count().label("n"),
            func.coalesce(func.sum(txns.c.amount_fen), 0).label("amount"),
            func.coalesce(func.sum(recharges.c.commission_fen), 0).label("commission"),
        )
        .join(recharges, recharges.c.tx_id == txns.c.ref)
        .where(txns.c.op == "reversal", txns.c.created_at >= start, txns.c.created_at < end)
        .group_by(txns.c.agent_id)
    )
    async with engine.connect() as conn:
        recharged = {r.agent_id: r for r in (await conn.execute(rech)).all()}
        reversed_ = {r.agent_id: r for r in (await conn.execute(rev)).all()}
    rows = []
    for agent_id in sorted(recharged.keys() | reversed_.keys()):
        made, undone = recharged.get(agent_id), reversed_.get(agent_id)
        commission = int(made.commission) if made else 0
        clawed_back = int(undone.commission) if undone else 0
        rows.append(
            DailyReportRow(
                agent_id=agent_id,
                day=day,
                recharges=made.n if made else 0,
                recharged_fen=int(made.amount) if made else 0,
                commission_fen=commission - clawed_back,
                reversals=undone.n if undone else 0,
                reversed_fen=int(undone.amount) if undone else 0,
                reversed_commission_fen=clawed_back,
            )
        )
    return rows


async def trial_balance(engine: AsyncEngine) -> TrialBalance:
    """Every account's balance added up (zero when the books balance), and each account's
    stored balance checked against its journal lines and reservations."""
    sums = (
        select(lines.c.account_id, func.sum(lines.c.amount_fen).label("total"))
        .group_by(lines.c.account_id)
        .subquery()
    )
    stmt = select(
        accounts.c.id,
        accounts.c.kind,
        accounts.c.balance,
        accounts.c.pending,
        func.coalesce(sums.c.total, 0).label("journal"),
    ).outerjoin(sums, sums.c.account_id == accounts.c.id)
    reserved = select(func.coalesce(func.sum(recharges.c.debit_fen), 0)).where(
        recharges.c.status == PENDING
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
        pending_recharges = int((await conn.execute(reserved)).scalar_one())
    system: dict[str, int] = {}
    floats = subs = pending = 0
    mismatched = []
    for r in rows:
        journal = int(r.journal)
        if r.id in SYSTEM_ACCOUNTS:
            system[SYSTEM_ACCOUNTS[r.id]] = journal
            if r.balance != 0:
                mismatched.append(r.id)
            continue
        if r.balance != journal:
            mismatched.append(r.id)
        if r.kind == "float":
            floats += r.balance
            pending += r.pending
        else:
            subs += r.balance
    return TrialBalance(
        total_fen=floats + subs + sum(system.values()),
        system_fen=system,
        floats_fen=floats,
        subscribers_fen=subs,
        mismatched_accounts=mismatched,
        pending_mismatch=pending != pending_recharges,
    )


async def refunds(engine: AsyncEngine, day: date, zone: ZoneInfo) -> list[RecordView]:
    """Subscriber accounts closed on business day ``day`` (销户) with the prepaid remainder
    each left to refund (booked to the refunds account), oldest first."""
    start, end = day_bounds(day, zone)
    stmt = (
        select(txns.c.id, txns.c.number, txns.c.amount_fen, txns.c.created_at)
        .where(
            txns.c.op == "subscriber_close",
            txns.c.created_at >= start,
            txns.c.created_at < end,
        )
        .order_by(txns.c.id)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [RecordView(r.id, "refund", r.number, r.amount_fen, r.created_at) for r in rows]
