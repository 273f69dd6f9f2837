"""The ledger's service layer: one unit of work (one database transaction) per operation.

Theory of operation
-------------------
Every money operation starts by inserting its ``txns`` row, whose ``key`` (the caller's
idempotency key) is unique: the key is stored before anything moves, in the same transaction
as the money. A second call with the same key hits the unique index, rolls back, and gets the
first result (same fingerprint) or ``Refusal(KEY_REUSED)`` (different fields). On PostgreSQL a
concurrent duplicate waits on the index entry until the first transaction ends.

Balances of floats and subscriber accounts live in their rows and change only by guarded
``UPDATE``s in the same transaction as their journal lines; the float's debit is the last
write before the outbox, so the hot row lock is held for as short a time as possible. A
refusal raised inside a unit of work rolls everything back (the unit of work commits only when
told), except the wrong-PIN counter, which a separate short transaction records.

Recharges are two-phase (TigerBeetle's pending → post | void). With the internal billing
backend the subscriber account is in this database, so reserve, credit and post are one
transaction: no state in between can survive a crash. With an external backend the
reservation (``accounts.pending``) commits first, the backend is credited (idempotently, by the
same key), and a second transaction inserts the ``resolutions`` row — at most once per
recharge — and posts or voids. ``recover_pending`` asks the backend what became of
reservations a crash left behind and resolves them the same way.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
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
    column,
    exists,
    func,
    insert,
    literal,
    select,
    true,
    union_all,
    update,
    values,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from smsmenu.clock import Clock
from smsmenu.ledger import outbox, rules
from smsmenu.ledger.api import (
    AgentStatus,
    AgentView,
    Billing,
    CloseView,
    DailyReportRow,
    DepositView,
    Kind,
    Quote,
    RechargeRequest,
    RechargeStatus,
    RechargeView,
    RecordView,
    Refusal,
    ReversalView,
    Rule,
    SubscriberStatus,
    SubscriberView,
    TransferView,
    TrialBalance,
)
from smsmenu.ledger.billing import BillingBackend, BillingError, Credit, InternalBilling
from smsmenu.ledger.models import (
    BILLING,
    CASH,
    COMMISSION_EXPENSE,
    SYSTEM_ACCOUNTS,
    accounts,
    agents,
    lines,
    recharges,
    resolutions,
    subscribers,
    txns,
)
from smsmenu.ledger.pins import PinVault
from smsmenu.messages import SMS, Route
from smsmenu.money import format_yuan
from smsmenu.settings import Settings
from smsmenu.texts import Catalogue

#: Fault-injection hook, called with the name of the step just done; raising from it simulates
#: a crash there. Two-phase: "reserved" (before the reservation commits), "committed" (after),
#: "credited" (billing said yes or no), "resolving" (before the post/void commits).
#: One transaction (internal billing): "credited" and "posting" (both before the commit).
Faults = Callable[[str], None]

SUCCEEDED = RechargeStatus.SUCCEEDED.value
FAILED = RechargeStatus.FAILED.value
PENDING = RechargeStatus.PENDING.value
REVERSED = RechargeStatus.REVERSED.value


class _WrongPin(Exception):
    def __init__(self, agent_id: int) -> None:
        self.agent_id = agent_id


class _KeyTaken(Exception):
    pass


@dataclass
class _Waiting:
    """A recharge waiting for its group-commit batch."""

    request: RechargeRequest
    fingerprint: str
    future: asyncio.Future[RechargeView]


# ---- statements, built once -------------------------------------------------------------

_fa = accounts.alias("fa")
_ph = subscribers.alias("ph")
_tg = subscribers.alias("tg")
_ta = accounts.alias("ta")

_CONTEXT = (
    select(
        agents.c.id,
        agents.c.status,
        agents.c.phone,
        agents.c.commission_bp,
        agents.c.trade_hash,
        agents.c.pin_failures,
        agents.c.pin_locked_until,
        agents.c.account_id,
        _fa.c.balance,
        _fa.c.pending,
        _ph.c.status.label("phone_status"),
        _ph.c.account_id.label("phone_account"),
        _tg.c.kind.label("t_kind"),
        _tg.c.billing.label("t_billing"),
        _tg.c.status.label("t_status"),
        _tg.c.account_id.label("t_account"),
        _ta.c.balance.label("t_balance"),
    )
    .select_from(
        agents.join(_fa, _fa.c.id == agents.c.account_id)
        .outerjoin(_ph, _ph.c.number == agents.c.phone)
        .outerjoin(_tg, _tg.c.number == bindparam("number"))
        .outerjoin(_ta, _ta.c.id == _tg.c.account_id)
    )
    .where(agents.c.id == bindparam("agent_id"))
)

_INSERT_TXN = insert(txns).returning(txns.c.id)
_INSERT_LINES = insert(lines)
_INSERT_RECHARGE = insert(recharges)
_CREDIT = (
    update(accounts)
    .where(accounts.c.id == bindparam("acc"))
    .values(balance=accounts.c.balance + bindparam("amount"))
)
_DEBIT_GUARDED = (
    update(accounts)
    .where(
        accounts.c.id == bindparam("acc"),
        accounts.c.balance - accounts.c.pending >= bindparam("amount"),
    )
    .values(balance=accounts.c.balance - bindparam("amount"))
    .returning(accounts.c.balance - accounts.c.pending)
)
_RESERVE = (
    update(accounts)
    .where(
        accounts.c.id == bindparam("acc"),
        accounts.c.balance - accounts.c.pending >= bindparam("amount"),
    )
    .values(pending=accounts.c.pending + bindparam("amount"))
    .returning(accounts.c.balance - accounts.c.pending)
)
_POST_RESERVED = (
    update(accounts)
    .where(accounts.c.id == bindparam("acc"))
    .values(
        balance=accounts.c.balance - bindparam("amount"),
        pending=accounts.c.pending - bindparam("amount"),
    )
    .returning(accounts.c.balance - accounts.c.pending)
)
_VOID_RESERVED = (
    update(accounts)
    .where(accounts.c.id == bindparam("acc"))
    .values(pending=accounts.c.pending - bindparam("amount"))
    .returning(accounts.c.balance - accounts.c.pending)
)
_RESET_PIN_FAILURES = (
    update(agents)
    .where(agents.c.id == bindparam("agent_id"))
    .values(pin_failures=0, pin_locked_until=None)
)
_BATCH_AGENTS = (
    select(
        agents.c.id,
        agents.c.status,
        agents.c.phone,
        agents.c.commission_bp,
        agents.c.trade_hash,
        agents.c.pin_failures,
        agents.c.pin_locked_until,
        agents.c.account_id,
        _ph.c.status.label("phone_status"),
    )
    .select_from(agents.outerjoin(_ph, _ph.c.number == agents.c.phone))
    .where(agents.c.id.in_(bindparam("ids", expanding=True)))
)
_BATCH_TARGETS = select(
    subscribers.c.number,
    subscribers.c.kind,
    subscribers.c.status,
    subscribers.c.account_id,
).where(subscribers.c.number.in_(bindparam("numbers", expanding=True)))
_LOCK_PG = (
    select(accounts.c.id, accounts.c.balance, accounts.c.pending)
    .where(accounts.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(accounts.c.id)
    .with_for_update()
)
_LOCK_SQLITE = (  # the write lock is the database's (BEGIN IMMEDIATE)
    select(accounts.c.id, accounts.c.balance, accounts.c.pending)
    .where(accounts.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(accounts.c.id)
)


def _LOCK_ACCOUNTS(postgres: bool) -> Any:
    return _LOCK_PG if postgres else _LOCK_SQLITE


_SET_BALANCE = (
    update(accounts).where(accounts.c.id == bindparam("acc")).values(balance=bindparam("balance"))
)
_DELETE_TXNS = txns.delete().where(txns.c.id.in_(bindparam("ids", expanding=True)))
_KEY_LOOKUP = select(txns.c.id, txns.c.op, txns.c.fingerprint).where(txns.c.key == bindparam("key"))
_RECHARGE_BY_ID = select(recharges).where(recharges.c.tx_id == bindparam("tx_id"))


# ---- PostgreSQL: a recharge in two statements -----------------------------------------------
# (1) the key and everything the rules need; (2) the float's guarded debit, the target's credit,
# the journal lines, the recharge row and the outbox rows, as one statement of data-modifying
# CTEs. The texts are rendered in Python with a marker where the balances go, and the database
# writes the balances it just computed into them (``_sql_yuan`` formats like ``format_yuan``).
# BEGIN + 2 + COMMIT round trips instead of 9: the hot float's row lock is held for one
# statement and the commit.

MARK = "\u2063#\u2063"  # invisible separators around '#': never in a catalogue text


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


_pg_key = (
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
_PG_BEGIN = select(
    _pg_key.c.id.label("txn"),
    *[c for c in _CONTEXT.selected_columns],
).select_from(
    _pg_key.outerjoin(agents, agents.c.id == bindparam("agent_id"))
    .outerjoin(_fa, _fa.c.id == agents.c.account_id)
    .outerjoin(_ph, _ph.c.number == agents.c.phone)
    .outerjoin(_tg, _tg.c.number == bindparam("number"))
    .outerjoin(_ta, _ta.c.id == _tg.c.account_id)
)


def _pg_post_statement() -> Any:
    debit, amount = bindparam("debit", type_=BigInteger), bindparam("amount", type_=BigInteger)
    commission = bindparam("commission", type_=BigInteger)
    txn = bindparam("txn", type_=Integer)
    d = (
        update(accounts)
        .where(
            accounts.c.id == bindparam("float_acc", type_=Integer),
            accounts.c.balance - accounts.c.pending >= debit,
        )
        .values(balance=accounts.c.balance - debit)
        .returning((accounts.c.balance - accounts.c.pending).label("after"))
        .cte("d")
    )
    t = (
        update(accounts)
        .where(accounts.c.id == bindparam("target_acc", type_=Integer), exists(select(d.c.after)))
        .values(balance=accounts.c.balance + amount)
        .returning(accounts.c.balance.label("tbal"))
        .cte("t")
    )
    line_rows = union_all(
        select(txn, bindparam("target_acc", type_=Integer), amount).select_from(t),
        select(txn, literal(COMMISSION_EXPENSE), -commission).select_from(t),
        select(txn, bindparam("float_acc", type_=Integer), -debit).select_from(t),
    )
    add_lines = (
        insert(lines).from_select(["txn_id", "account_id", "amount_fen"], line_rows).cte("l")
    )
    now = bindparam("now", type_=recharges.c.created_at.type)
    add_recharge = (
        insert(recharges)
        .from_select(
            [
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
                "created_at",
                "resolved_at",
            ],
            select(
                txn,
                bindparam("r_agent", type_=Integer),
                bindparam("r_number", type_=String),
                bindparam("r_kind", type_=String),
                amount,
                commission,
                debit,
                bindparam("r_notify", type_=String),
                literal(SUCCEEDED),
                d.c.after,
                literal(False, Boolean),
                bindparam("retry_of", type_=Integer),
                now,
                now,
            ).select_from(d.join(t, true())),
        )
        .cte("r")
    )
    outbox_cols = [
        "created_at",
        "source",
        "destination",
        "text",
        "transport",
        "ussd_session",
        "ussd_umr",
        "final",
        "kind",
        "ref",
        "dedup_key",
        "status",
        "attempts",
        "next_attempt_at",
    ]

    def notice(prefix: str, balance: Any, kind: str, source_cte: Any) -> Any:
        return select(
            now,
            bindparam("source", type_=String),
            bindparam(f"{prefix}_dest", type_=String),
            func.replace(bindparam(f"{prefix}_text", type_=Text), MARK, _sql_yuan(balance)),
            bindparam(f"{prefix}_transport", type_=String),
            bindparam(f"{prefix}_ussd_session", type_=Integer),
            bindparam(f"{prefix}_ussd_umr", type_=Integer),
            bindparam(f"{prefix}_final", type_=Boolean),
            literal(kind),
            txn,
            bindparam(f"{prefix}_dedup", type_=String),
            literal(outbox_module_queued()),
            literal(0),
            now,
        ).select_from(source_cte)

    agent_notice = notice("agent", d.c.after, "agent_result", d.join(t, true()))
    receipt = notice("receipt", t.c.tbal, "target_receipt", t).where(
        bindparam("receipt_dest", type_=String).is_not(None)
    )
    add_outbox = (
        insert(outbox_table()).from_select(outbox_cols, union_all(agent_notice, receipt)).cte("o")
    )
    return (
        select(d.c.after, t.c.tbal)
        .select_from(d.join(t, true()))
        .add_cte(add_lines, add_recharge, add_outbox)
    )


#: Write a batch in one statement of CTEs on PostgreSQL. Measured slower than executemany here
#: (each batch's multi-row statement is compiled and planned anew), so off; kept for trying.
BATCH_WRITES_IN_ONE_STATEMENT = False


def _pg_batch_writes(
    balances: list[tuple[int, int]],
    line_rows: list[dict[str, Any]],
    recharge_rows: list[dict[str, Any]],
    notice_rows: list[dict[str, Any]],
) -> Any:
    """One statement: the locked accounts' new balances, the journal lines, the recharge rows
    and the outbox rows of a group-commit batch (data-modifying CTEs)."""
    new_balances = values(column("acc", Integer), column("bal", BigInteger), name="v").data(
        balances
    )
    set_balances = (
        update(accounts)
        .where(accounts.c.id == new_balances.c.acc)
        .values(balance=new_balances.c.bal)
        .returning(accounts.c.id)
        .cte("b")
    )
    add_lines = insert(lines).values(line_rows).returning(lines.c.id).cte("l")
    add_recharges = insert(recharges).values(recharge_rows).returning(recharges.c.tx_id).cte("r")
    add_outbox = insert(outbox_table()).values(notice_rows).returning(outbox_table().c.id).cte("o")
    return (
        select(func.count()).select_from(set_balances).add_cte(add_lines, add_recharges, add_outbox)
    )


class _Marked:
    """A balance the database fills in (see ``MARK``)."""


_MARKED = _Marked()


def _money(value: int | _Marked) -> str:
    return MARK if isinstance(value, _Marked) else format_yuan(value)


def outbox_module_queued() -> str:
    return outbox.QUEUED


def outbox_table() -> Any:
    from smsmenu.ledger.models import outbox as table

    return table


_PG_POST = _pg_post_statement()


def _recharge_view(row: Any) -> RechargeView:
    return RechargeView(
        tx_id=row.tx_id,
        agent_id=row.agent_id,
        number=row.number,
        kind=Kind(row.kind),
        amount_fen=row.amount_fen,
        commission_fen=row.commission_fen,
        debit_fen=row.debit_fen,
        status=RechargeStatus(row.status),
        created_at=row.created_at,
        notify=row.notify,
        float_after_fen=row.float_after_fen,
    )


def refusal_text(catalogue: Catalogue, refusal: Refusal, zone: Any = UTC) -> str:
    """The catalogue's text for a refusal, its parameters shown for people (yuan, local time)."""
    params: dict[str, Any] = {}
    for name, value in refusal.params.items():
        if name.endswith("_fen") and isinstance(value, int):
            params[name.removesuffix("_fen")] = format_yuan(value)
        elif isinstance(value, datetime):
            params[name] = value.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        else:
            params[name] = value
    try:
        return catalogue.render(f"refusal_{refusal.rule.value}", **params)
    except KeyError:
        return catalogue.render(f"refusal_{refusal.rule.value}")


class LedgerService:
    """The ledger: implements ``api.AgentLedger`` and the operator's functions (SPEC §7).

    Build it with ``LedgerService(engine, clock, catalogue, settings)`` (internal billing) or
    pass an external ``billing`` backend; ``smsmenu.app.open_ledger`` does it from Settings.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        catalogue: Catalogue,
        settings: Settings,
        billing: BillingBackend | None = None,
        *,
        pins: PinVault | None = None,
        faults: Faults | None = None,
        billing_timeout_s: float = 10.0,
        group_commit: bool = False,
        max_batch: int = 64,
        parallel_batches: int = 2,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.catalogue = catalogue
        self.settings = settings
        self.billing: BillingBackend = billing or InternalBilling()
        self.pins = pins or PinVault()
        self.faults = faults
        self.billing_timeout_s = billing_timeout_s
        self.zone = settings.zone
        self._service_number = settings.service_number
        self._postgres = engine.dialect.name == "postgresql"
        # Group commit (internal billing only): concurrent recharges of this process share one
        # transaction, so one commit (one WAL flush) serves many. See ``_run_batch``.
        self.group_commit = group_commit
        self.max_batch = max_batch
        self._queue: list[_Waiting] = []
        self.parallel_batches = parallel_batches
        self._running = 0  # batches being led right now
        self._leaders: set[asyncio.Task[None]] = set()
        self.batches = 0  # how many batch transactions committed (tests, benchmarks look)

    # ---- plumbing ------------------------------------------------------------------------

    @asynccontextmanager
    async def _uow(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; it rolls back unless the block called ``conn.commit()``."""
        async with self.engine.connect() as conn:
            await conn.begin()
            try:
                yield conn
            finally:
                if conn.in_transaction():
                    await conn.rollback()

    def _fault(self, step: str) -> None:
        if self.faults is not None:
            self.faults(step)

    def explain(self, refusal: Refusal) -> str:
        """The refusal as the text a person reads (SMS, CLI)."""
        return refusal_text(self.catalogue, refusal, self.zone)

    def _text(self, key: str, **params: Any) -> str:
        return self.catalogue.render(key, **params)

    async def _claim_key(
        self,
        conn: AsyncConnection,
        key: str,
        op: str,
        fingerprint: str,
        now: datetime,
        agent_id: int | None = None,
        number: str | None = None,
        amount_fen: int = 0,
        ref: int | None = None,
    ) -> int:
        """Store the idempotency key (the txn header) before acting; ``_KeyTaken`` if taken."""
        if not key or len(key) > 200:
            raise ValueError("an idempotency key is 1 to 200 characters")
        try:
            result = await conn.execute(
                _INSERT_TXN,
                {
                    "key": key,
                    "op": op,
                    "fingerprint": fingerprint,
                    "agent_id": agent_id,
                    "number": number,
                    "amount_fen": amount_fen,
                    "ref": ref,
                    "created_at": now,
                },
            )
        except IntegrityError:
            raise _KeyTaken from None
        return int(result.scalar_one())

    async def _first_result(self, key: str, op: str, fingerprint: str) -> int:
        """The txn id stored under ``key`` for the same operation, or ``KEY_REUSED``."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(_KEY_LOOKUP, {"key": key})).first()
        if row is None:  # the holder rolled back meanwhile: the caller may run again
            raise Refusal(Rule.KEY_REUSED, key=key)
        if row.op != op or row.fingerprint != fingerprint:
            raise Refusal(Rule.KEY_REUSED, key=key)
        return int(row.id)

    async def _existing(self, key: str) -> Any | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(_KEY_LOOKUP, {"key": key})).first()

    # ---- passwords -----------------------------------------------------------------------

    def _check_trade_pin(self, agent: Any, pin: str, now: datetime) -> None:
        locked = agent.pin_locked_until
        if locked is not None and locked > now:
            raise Refusal(Rule.PIN_LOCKED, until=locked)
        if rules.pin_format_rule(pin) or not self.pins.verify(agent.id, agent.trade_hash, pin):
            raise _WrongPin(agent.id)

    async def _record_wrong_pin(self, agent_id: int) -> Refusal:
        """Count a wrong trade password in its own transaction; the refusal to raise."""
        now = self.clock.now()
        async with self._uow() as conn:
            failures = (
                await conn.execute(
                    update(agents)
                    .where(agents.c.id == agent_id)
                    .values(pin_failures=agents.c.pin_failures + 1)
                    .returning(agents.c.pin_failures)
                )
            ).scalar_one()
            if failures >= rules.PIN_MAX_FAILURES:
                until = now + rules.PIN_LOCK
                await conn.execute(
                    update(agents)
                    .where(agents.c.id == agent_id)
                    .values(pin_failures=0, pin_locked_until=until)
                )
                await conn.commit()
                return Refusal(Rule.PIN_LOCKED, until=until)
            await conn.commit()
        return Refusal(Rule.WRONG_PIN, remaining=rules.PIN_MAX_FAILURES - failures)

    async def _reset_failures(self, conn: AsyncConnection, agent: Any) -> None:
        if agent.pin_failures or agent.pin_locked_until is not None:
            await conn.execute(_RESET_PIN_FAILURES, {"agent_id": agent.id})

    # ---- reads ---------------------------------------------------------------------------

    async def _context(self, conn: AsyncConnection, agent_id: int, number: str = "") -> Any:
        row = (await conn.execute(_CONTEXT, {"agent_id": agent_id, "number": number})).first()
        if row is None:
            raise Refusal(Rule.AGENT_UNKNOWN, agent_id=agent_id)
        return row

    @staticmethod
    def _check_agent_can_trade(ctx: Any) -> None:
        if ctx.status == AgentStatus.CLOSED:
            raise Refusal(Rule.AGENT_CLOSED)
        if ctx.status == AgentStatus.SUSPENDED:
            raise Refusal(Rule.AGENT_SUSPENDED)
        if ctx.phone_status != SubscriberStatus.ACTIVE:
            raise Refusal(Rule.PHONE_SUSPENDED)

    async def agent(self, agent_id: int) -> AgentView:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(agents, accounts.c.balance, accounts.c.pending)
                    .join(accounts, accounts.c.id == agents.c.account_id)
                    .where(agents.c.id == agent_id)
                )
            ).first()
        if row is None:
            raise Refusal(Rule.AGENT_UNKNOWN, agent_id=agent_id)
        return self._agent_view(row)

    @staticmethod
    def _agent_view(row: Any) -> AgentView:
        return AgentView(
            agent_id=row.id,
            phone=row.phone,
            status=AgentStatus(row.status),
            balance_fen=row.balance - row.pending,
            commission_bp=row.commission_bp,
        )

    async def agent_for_phone(self, phone: str) -> AgentView | None:
        """The agent bound to ``phone``, unless closed."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(agents, accounts.c.balance, accounts.c.pending)
                    .join(accounts, accounts.c.id == agents.c.account_id)
                    .where(agents.c.bound_phone == phone)
                )
            ).first()
        return None if row is None else self._agent_view(row)

    async def subscriber(self, number: str) -> SubscriberView | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(subscribers, accounts.c.balance)
                    .join(accounts, accounts.c.id == subscribers.c.account_id)
                    .where(subscribers.c.number == number)
                )
            ).first()
        if row is None:
            return None
        return SubscriberView(
            number=row.number,
            kind=Kind(row.kind),
            billing=Billing(row.billing),
            status=SubscriberStatus(row.status),
            balance_fen=row.balance,
        )

    async def recharge_view(self, tx_id: int) -> RechargeView:
        async with self.engine.connect() as conn:
            row = (await conn.execute(_RECHARGE_BY_ID, {"tx_id": tx_id})).first()
        if row is None:
            raise Refusal(Rule.RECHARGE_UNKNOWN, tx_id=tx_id)
        return _recharge_view(row)

    async def recharges(
        self,
        agent_id: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        number: str | None = None,
    ) -> list[RechargeView]:
        """Recharges newest first, optionally of one agent / target, in [start, end)."""
        stmt = select(recharges).order_by(recharges.c.tx_id.desc())
        if agent_id is not None:
            stmt = stmt.where(recharges.c.agent_id == agent_id)
        if number is not None:
            stmt = stmt.where(recharges.c.number == number)
        if start is not None:
            stmt = stmt.where(recharges.c.created_at >= start)
        if end is not None:
            stmt = stmt.where(recharges.c.created_at < end)
        async with self.engine.connect() as conn:
            return [_recharge_view(r) for r in (await conn.execute(stmt)).all()]

    # ---- subscribers (operator) ------------------------------------------------------------

    async def add_subscriber(
        self,
        number: str,
        kind: Kind,
        billing: Billing,
        balance_fen: int = 0,
        status: SubscriberStatus = SubscriberStatus.ACTIVE,
    ) -> SubscriberView:
        """Register a subscriber account; an opening balance is booked against ``billing``."""
        if rules.number_rule(kind, number):
            raise Refusal(Rule.BAD_NUMBER, number=number)
        now = self.clock.now()
        async with self._uow() as conn:
            found = (
                await conn.execute(
                    select(subscribers.c.number).where(subscribers.c.number == number)
                )
            ).first()
            if found is not None:
                raise Refusal(Rule.SUBSCRIBER_EXISTS, number=number)
            account = (
                await conn.execute(
                    insert(accounts)
                    .values(kind="subscriber", balance=balance_fen, pending=0)
                    .returning(accounts.c.id)
                )
            ).scalar_one()
            await conn.execute(
                insert(subscribers).values(
                    number=number,
                    kind=kind.value,
                    billing=billing.value,
                    status=status.value,
                    account_id=account,
                    created_at=now,
                )
            )
            if balance_fen:
                txn = await self._claim_key(
                    conn,
                    f"subscriber-opening:{number}:{uuid.uuid4().hex}",
                    "subscriber_opening",
                    f"{number}|{balance_fen}",
                    now,
                    number=number,
                    amount_fen=balance_fen,
                )
                await conn.execute(
                    _INSERT_LINES,
                    [
                        {"txn_id": txn, "account_id": account, "amount_fen": balance_fen},
                        {"txn_id": txn, "account_id": BILLING, "amount_fen": -balance_fen},
                    ],
                )
            await conn.commit()
        return SubscriberView(number, kind, billing, status, balance_fen)

    async def set_subscriber_status(self, number: str, status: SubscriberStatus) -> SubscriberView:
        """Suspend (停机), reactivate or close a subscriber account (billing's decision)."""
        async with self._uow() as conn:
            result = await conn.execute(
                update(subscribers)
                .where(subscribers.c.number == number)
                .values(status=status.value)
            )
            if result.rowcount == 0:
                raise Refusal(Rule.TARGET_UNKNOWN, number=number)
            await conn.commit()
        view = await self.subscriber(number)
        assert view is not None
        return view

    async def subscriber_topups(self, number: str, limit: int = 5) -> list[RecordView]:
        """The last recharges into ``number`` that took effect, newest first."""
        stmt = (
            select(recharges)
            .where(recharges.c.number == number, recharges.c.status == SUCCEEDED)
            .order_by(recharges.c.tx_id.desc())
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [RecordView(r.tx_id, "recharge", r.number, r.amount_fen, r.created_at) for r in rows]

    # ---- agents (operator) -----------------------------------------------------------------

    async def open_agent(
        self,
        phone: str,
        trade_pin: str,
        mgmt_pin: str,
        deposit_fen: int,
        commission_bp: int | None = None,
        key: str | None = None,
    ) -> AgentView:
        """Open an agent on an active mobile ``phone`` with a first deposit of ≥ 500 yuan."""
        rate = self.settings.default_commission_bp if commission_bp is None else commission_bp
        for rule in (
            rules.number_rule(Kind.MOBILE, phone),
            rules.initial_pin_rule(trade_pin),
            rules.initial_pin_rule(mgmt_pin),
            rules.commission_rule(rate),
            rules.opening_deposit_rule(deposit_fen),
        ):
            if rule:
                raise Refusal(rule)
        key = key or f"open:{uuid.uuid4().hex}"
        fingerprint = f"{phone}|{deposit_fen}|{rate}"
        trade_hash, mgmt_hash = self.pins.hash(trade_pin), self.pins.hash(mgmt_pin)
        now = self.clock.now()
        try:
            async with self._uow() as conn:
                txn = await self._claim_key(
                    conn, key, "open", fingerprint, now, number=phone, amount_fen=deposit_fen
                )
                sub = (
                    await conn.execute(
                        select(subscribers.c.kind, subscribers.c.status).where(
                            subscribers.c.number == phone
                        )
                    )
                ).first()
                if sub is None:
                    raise Refusal(Rule.PHONE_UNKNOWN, number=phone)
                if sub.kind != Kind.MOBILE:
                    raise Refusal(Rule.PHONE_NOT_MOBILE, number=phone)
                if sub.status != SubscriberStatus.ACTIVE:
                    raise Refusal(Rule.PHONE_NOT_ACTIVE, number=phone)
                bound = (
                    await conn.execute(select(agents.c.id).where(agents.c.bound_phone == phone))
                ).first()
                if bound is not None:
                    raise Refusal(Rule.PHONE_ALREADY_BOUND, number=phone)
                account = (
                    await conn.execute(
                        insert(accounts)
                        .values(kind="float", balance=deposit_fen, pending=0)
                        .returning(accounts.c.id)
                    )
                ).scalar_one()
                try:
                    agent_id = (
                        await conn.execute(
                            insert(agents)
                            .values(
                                phone=phone,
                                bound_phone=phone,
                                status=AgentStatus.ACTIVE.value,
                                account_id=account,
                                commission_bp=rate,
                                trade_hash=trade_hash,
                                mgmt_hash=mgmt_hash,
                                pin_failures=0,
                                opened_at=now,
                            )
                            .returning(agents.c.id)
                        )
                    ).scalar_one()
                except IntegrityError:  # bound by a concurrent opening
                    raise Refusal(Rule.PHONE_ALREADY_BOUND, number=phone) from None
                await conn.execute(
                    update(txns)
                    .where(txns.c.id == txn)
                    .values(agent_id=agent_id, balance_after=deposit_fen)
                )
                await conn.execute(
                    _INSERT_LINES,
                    [
                        {"txn_id": txn, "account_id": account, "amount_fen": deposit_fen},
                        {"txn_id": txn, "account_id": CASH, "amount_fen": -deposit_fen},
                    ],
                )
                await outbox.add(
                    conn,
                    outbox.row(
                        now=now,
                        source=self._service_number,
                        destination=phone,
                        text=self._text(
                            "notice_agent_opened",
                            agent_id=agent_id,
                            balance=format_yuan(deposit_fen),
                            commission=f"{rate / 100:.2f}%",
                        ),
                        kind="agent_opened",
                        dedup_key=f"{key}:agent_opened",
                        ref=txn,
                    ),
                )
                await conn.commit()
        except _KeyTaken:
            txn = await self._first_result(key, "open", fingerprint)
            async with self.engine.connect() as conn:
                agent_id = (
                    await conn.execute(select(txns.c.agent_id).where(txns.c.id == txn))
                ).scalar_one()
        return await self.agent(agent_id)

    async def deposit(self, agent_id: int, amount_fen: int, key: str) -> DepositView:
        """续存: a multiple of 10 yuan, at least 10; cash in, float up."""
        rule = rules.deposit_rule(amount_fen)
        if rule:
            raise Refusal(rule)
        fingerprint = f"{agent_id}|{amount_fen}"
        now = self.clock.now()
        try:
            async with self._uow() as conn:
                txn = await self._claim_key(
                    conn, key, "deposit", fingerprint, now, agent_id=agent_id, amount_fen=amount_fen
                )
                ctx = await self._context(conn, agent_id)
                if ctx.status == AgentStatus.CLOSED:
                    raise Refusal(Rule.AGENT_CLOSED)
                await conn.execute(
                    _INSERT_LINES,
                    [
                        {"txn_id": txn, "account_id": ctx.account_id, "amount_fen": amount_fen},
                        {"txn_id": txn, "account_id": CASH, "amount_fen": -amount_fen},
                    ],
                )
                after = (
                    await conn.execute(
                        update(accounts)
                        .where(accounts.c.id == ctx.account_id)
                        .values(balance=accounts.c.balance + amount_fen)
                        .returning(accounts.c.balance - accounts.c.pending)
                    )
                ).scalar_one()
                await conn.execute(update(txns).where(txns.c.id == txn).values(balance_after=after))
                await conn.commit()
        except _KeyTaken:
            txn = await self._first_result(key, "deposit", fingerprint)
        return await self._deposit_view(txn)

    async def _deposit_view(self, txn: int) -> DepositView:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(txns).where(txns.c.id == txn))).one()
        return DepositView(row.id, row.agent_id, row.amount_fen, row.balance_after, row.created_at)

    async def _set_agent_status(self, agent_id: int, status: AgentStatus) -> AgentView:
        async with self._uow() as conn:
            ctx = await self._context(conn, agent_id)
            if ctx.status == AgentStatus.CLOSED:
                raise Refusal(Rule.AGENT_CLOSED)
            await conn.execute(
                update(agents).where(agents.c.id == agent_id).values(status=status.value)
            )
            await conn.commit()
        return await self.agent(agent_id)

    async def suspend_agent(self, agent_id: int) -> AgentView:
        return await self._set_agent_status(agent_id, AgentStatus.SUSPENDED)

    async def resume_agent(self, agent_id: int) -> AgentView:
        return await self._set_agent_status(agent_id, AgentStatus.ACTIVE)

    async def change_phone(self, agent_id: int, phone: str) -> AgentView:
        """Bind the agent to another phone: an active mobile subscriber bound to nobody."""
        if rules.number_rule(Kind.MOBILE, phone):
            raise Refusal(Rule.BAD_NUMBER, number=phone)
        async with self._uow() as conn:
            ctx = await self._context(conn, agent_id, phone)
            if ctx.status == AgentStatus.CLOSED:
                raise Refusal(Rule.AGENT_CLOSED)
            if ctx.t_kind is None:
                raise Refusal(Rule.PHONE_UNKNOWN, number=phone)
            if ctx.t_kind != Kind.MOBILE:
                raise Refusal(Rule.PHONE_NOT_MOBILE, number=phone)
            if ctx.t_status != SubscriberStatus.ACTIVE:
                raise Refusal(Rule.PHONE_NOT_ACTIVE, number=phone)
            try:
                await conn.execute(
                    update(agents)
                    .where(agents.c.id == agent_id)
                    .values(phone=phone, bound_phone=phone)
                )
            except IntegrityError:
                raise Refusal(Rule.PHONE_ALREADY_BOUND, number=phone) from None
            await conn.commit()
        return await self.agent(agent_id)

    async def close_agent(self, agent_id: int, key: str) -> CloseView:
        """销户: only below 10 yuan; the remainder is paid out in cash; the phone is freed."""
        fingerprint = str(agent_id)
        now = self.clock.now()
        try:
            async with self._uow() as conn:
                txn = await self._claim_key(conn, key, "close", fingerprint, now, agent_id=agent_id)
                ctx = await self._lock_agent(conn, agent_id)
                if ctx.status == AgentStatus.CLOSED:
                    raise Refusal(Rule.AGENT_CLOSED)
                if ctx.pending:
                    raise Refusal(Rule.RESERVATION_PENDING)
                rule = rules.close_rule(ctx.balance)
                if rule:
                    raise Refusal(rule, balance_fen=ctx.balance)
                remainder = ctx.balance
                if remainder:
                    await conn.execute(
                        _INSERT_LINES,
                        [
                            {"txn_id": txn, "account_id": ctx.account_id, "amount_fen": -remainder},
                            {"txn_id": txn, "account_id": CASH, "amount_fen": remainder},
                        ],
                    )
                    await conn.execute(
                        update(accounts)
                        .where(accounts.c.id == ctx.account_id, accounts.c.balance == remainder)
                        .values(balance=0)
                    )
                await conn.execute(
                    update(txns)
                    .where(txns.c.id == txn)
                    .values(amount_fen=remainder, balance_after=0)
                )
                await conn.execute(
                    update(agents)
                    .where(agents.c.id == agent_id)
                    .values(status=AgentStatus.CLOSED.value, bound_phone=None, closed_at=now)
                )
                await conn.commit()
        except _KeyTaken:
            txn = await self._first_result(key, "close", fingerprint)
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(txns).where(txns.c.id == txn))).one()
        return CloseView(row.id, row.agent_id, row.amount_fen, row.created_at)

    async def _lock_agent(self, conn: AsyncConnection, agent_id: int) -> Any:
        """The agent's context with its row locked (operator operations that count things)."""
        if self._postgres:
            await conn.execute(select(agents.c.id).where(agents.c.id == agent_id).with_for_update())
            await conn.execute(
                select(accounts.c.id)
                .where(
                    accounts.c.id
                    == select(agents.c.account_id).where(agents.c.id == agent_id).scalar_subquery()
                )
                .with_for_update()
            )
        return await self._context(conn, agent_id)

    # ---- recharge ------------------------------------------------------------------------

    def _validate(self, kind: Kind, number: str, amount_fen: int, notify: str | None) -> None:
        if not isinstance(kind, Kind):
            raise Refusal(Rule.TARGET_KIND_MISMATCH)
        rule = rules.number_rule(kind, number) or rules.recharge_amount_rule(amount_fen)
        if rule:
            raise Refusal(rule, number=number)
        if notify is not None:
            rule = rules.notify_rule(notify)
            if rule:
                raise Refusal(rule, number=notify)

    @staticmethod
    def _check_target(ctx: Any, kind: Kind, number: str) -> None:
        if ctx.t_kind is None:
            raise Refusal(Rule.TARGET_UNKNOWN, number=number)
        if ctx.t_status == SubscriberStatus.CLOSED:
            raise Refusal(Rule.TARGET_CLOSED, number=number)
        if ctx.t_kind != kind:
            raise Refusal(Rule.TARGET_KIND_MISMATCH, number=number)

    async def quote(
        self, agent_id: int, kind: Kind, number: str, amount_fen: int, notify: str | None
    ) -> Quote:
        """Check everything a recharge checks except the password, and price it."""
        self._validate(kind, number, amount_fen, notify)
        async with self.engine.connect() as conn:
            ctx = await self._context(conn, agent_id, number)
        self._check_agent_can_trade(ctx)
        locked = ctx.pin_locked_until
        if locked is not None and locked > self.clock.now():
            raise Refusal(Rule.PIN_LOCKED, until=locked)
        self._check_target(ctx, kind, number)
        price = rules.price(amount_fen, ctx.commission_bp)
        available = ctx.balance - ctx.pending
        if available < price.debit_fen:
            raise Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=available)
        return Quote(number, kind, amount_fen, price.commission_fen, price.debit_fen, notify)

    @staticmethod
    def _fingerprint(request: RechargeRequest) -> str:
        return (
            f"{request.agent_id}|{request.kind.value}|{request.number}|{request.amount_fen}"
            f"|{request.notify or ''}"
        )

    async def recharge(self, request: RechargeRequest) -> RechargeView:
        """Reserve, credit through billing, post (or void: status ``failed``). Writes the
        agent's result notice and the target's receipt to the outbox in the same transaction."""
        fingerprint = self._fingerprint(request)
        if self.group_commit and self.billing.internal:
            self._validate(request.kind, request.number, request.amount_fen, request.notify)
            return await self._join_batch(request, fingerprint)
        return await self._recharge(request, fingerprint, None)

    # ---- group commit ----------------------------------------------------------------------

    async def _join_batch(self, request: RechargeRequest, fingerprint: str) -> RechargeView:
        """Queue the recharge; a caller that finds fewer than ``parallel_batches`` batches
        running leads: it runs batches until the queue is empty (the others just wait for
        their result). Batches lock accounts in id order, so they never deadlock each other."""
        future: asyncio.Future[RechargeView] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(request, fingerprint, future))
        if self._running < self.parallel_batches:
            await self._lead()
        return await future

    async def _lead(self) -> None:
        self._running += 1
        try:
            while self._queue:
                # let every recharge that is ready join (callers just woken by the last batch)
                await asyncio.sleep(0)
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                if batch:
                    await self._run_batch(batch)
        finally:
            self._running -= 1
            if self._queue and not self._running:  # cancelled: hand the queue on
                task = asyncio.ensure_future(self._lead())
                self._leaders.add(task)
                task.add_done_callback(self._leaders.discard)

    async def _run_batch(self, batch: list[_Waiting]) -> None:
        """One transaction for the whole batch; if it fails for any reason (a deadlock with
        another process, a lost connection), every recharge of it runs on its own."""
        try:
            try:
                outcomes = await self._batch_once(batch)
            except Exception:
                outcomes = None
            if outcomes is None:
                for waiting in batch:
                    await self._settle(
                        waiting, self._recharge(waiting.request, waiting.fingerprint, None)
                    )
                return
            self.batches += 1
            for waiting, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, _WrongPin):
                    waiting.future.set_exception(await self._record_wrong_pin(outcome.agent_id))
                elif isinstance(outcome, Refusal):
                    waiting.future.set_exception(outcome)
                elif outcome is None:  # the key was taken: the first result (or KEY_REUSED)
                    await self._settle(waiting, self._repeat(waiting))
                else:
                    waiting.future.set_result(outcome)
        except BaseException as exc:  # cancelled: nobody may wait for ever
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(RuntimeError(f"recharge batch aborted: {exc!r}"))
            raise

    async def _repeat(self, waiting: _Waiting) -> RechargeView:
        if await self._existing(waiting.request.key) is None:
            # an earlier recharge of the same batch held the key and was refused: the key is
            # free again, so this one runs as if it came alone
            return await self._recharge(waiting.request, waiting.fingerprint, None)
        txn = await self._first_result(waiting.request.key, "recharge", waiting.fingerprint)
        return await self.recharge_view(txn)

    @staticmethod
    async def _settle(waiting: _Waiting, work: Any) -> None:
        try:
            waiting.future.set_result(await work)
        except Exception as exc:
            waiting.future.set_exception(exc)

    async def _batch_once(self, batch: list[_Waiting]) -> list[Any]:
        """Run ``batch`` in one transaction: the rules in memory, keys in one statement, the
        accounts locked in id order (no deadlock between batches), funds checked under the
        locks in arrival order, then one statement each for balances, journal, recharges and
        outbox. Outcome per recharge: its view, a Refusal, a _WrongPin, or None (key taken)."""
        now = self.clock.now()
        outcomes: list[Any] = [None] * len(batch)
        async with self._uow() as conn:
            agent_rows = {
                r.id: r
                for r in (
                    await conn.execute(
                        _BATCH_AGENTS, {"ids": sorted({w.request.agent_id for w in batch})}
                    )
                ).all()
            }
            target_rows = {
                r.number: r
                for r in (
                    await conn.execute(
                        _BATCH_TARGETS, {"numbers": sorted({w.request.number for w in batch})}
                    )
                ).all()
            }
            # The keys first, as on the single path: a repeat gets the first result even if
            # it would now be refused (a wrong PIN, a suspended agent).
            key_rows = [
                {
                    "key": w.request.key,
                    "op": "recharge",
                    "fingerprint": w.fingerprint,
                    "agent_id": w.request.agent_id,
                    "number": w.request.number,
                    "amount_fen": w.request.amount_fen,
                    "created_at": now,
                }
                for w in batch
            ]
            insert_keys = (
                self._dialect_insert(txns)
                .values(key_rows)
                .on_conflict_do_nothing(index_elements=["key"])
                .returning(txns.c.id, txns.c.key)
            )
            claimed = {r.key: r.id for r in (await conn.execute(insert_keys)).all()}
            refused_txns: list[int] = []
            owners = []
            for i, waiting in enumerate(batch):
                req = waiting.request
                txn = claimed.pop(req.key, None)
                if txn is None:  # taken before, or by an earlier recharge of this batch
                    continue
                ctx = agent_rows.get(req.agent_id)
                try:
                    if ctx is None:
                        raise Refusal(Rule.AGENT_UNKNOWN, agent_id=req.agent_id)
                    self._check_agent_can_trade(ctx)
                    self._check_trade_pin(ctx, req.pin, now)
                    target = target_rows.get(req.number)
                    if target is None:
                        raise Refusal(Rule.TARGET_UNKNOWN, number=req.number)
                    if target.status == SubscriberStatus.CLOSED:
                        raise Refusal(Rule.TARGET_CLOSED, number=req.number)
                    if target.kind != req.kind:
                        raise Refusal(Rule.TARGET_KIND_MISMATCH, number=req.number)
                except (Refusal, _WrongPin) as exc:
                    outcomes[i] = exc
                    refused_txns.append(txn)
                    continue
                price = rules.price(req.amount_fen, ctx.commission_bp)
                owners.append((i, txn, ctx, target, price))
            if not owners:
                if refused_txns:
                    await conn.execute(_DELETE_TXNS, {"ids": refused_txns})
                    await conn.commit()
                return outcomes
            ids = sorted({o[2].account_id for o in owners} | {o[3].account_id for o in owners})
            locked = {
                r.id: [r.balance, r.pending]
                for r in (await conn.execute(_LOCK_ACCOUNTS(self._postgres), {"ids": ids})).all()
            }
            line_rows: list[dict[str, Any]] = []
            recharge_rows: list[dict[str, Any]] = []
            notice_rows: list[dict[str, Any]] = []
            resets: list[dict[str, Any]] = []
            for i, txn, ctx, target, price in owners:
                req = batch[i].request
                float_acc, target_acc = locked[ctx.account_id], locked[target.account_id]
                available = float_acc[0] - float_acc[1]
                if available < price.debit_fen:
                    outcomes[i] = Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=available)
                    refused_txns.append(txn)
                    continue
                float_acc[0] -= price.debit_fen
                target_acc[0] += price.amount_fen
                float_after = float_acc[0] - float_acc[1]
                line_rows += self._posting_lines(txn, ctx.account_id, target.account_id, price)
                row = self._recharge_row(txn, req, price, SUCCEEDED, now, float_after, None)
                recharge_rows.append(row)
                notice_rows += self._notices(
                    now=now,
                    key=req.key,
                    txn=txn,
                    agent_id=req.agent_id,
                    agent_phone=ctx.phone,
                    kind=req.kind,
                    number=req.number,
                    notify=req.notify,
                    price=price,
                    float_after=float_after,
                    target_balance=target_acc[0],
                    route=req.reply_route,
                )
                if ctx.pin_failures or ctx.pin_locked_until is not None:
                    resets.append({"agent_id": ctx.id})
                outcomes[i] = _recharge_view(_Obj(row))
            if refused_txns:
                await conn.execute(_DELETE_TXNS, {"ids": refused_txns})
            if recharge_rows:
                balances = [(acc, values[0]) for acc, values in sorted(locked.items())]
                if self._postgres and BATCH_WRITES_IN_ONE_STATEMENT:
                    await conn.execute(
                        _pg_batch_writes(balances, line_rows, recharge_rows, notice_rows)
                    )
                else:
                    await conn.execute(
                        _SET_BALANCE, [{"acc": acc, "balance": bal} for acc, bal in balances]
                    )
                    await conn.execute(_INSERT_LINES, line_rows)
                    await conn.execute(_INSERT_RECHARGE, recharge_rows)
                    await outbox.add(conn, *notice_rows)
                if resets:
                    await conn.execute(_RESET_PIN_FAILURES, resets)
            self._fault("batch")
            await conn.commit()
        return outcomes

    def _dialect_insert(self, table: Any) -> Any:
        if self._postgres:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    async def _recharge(
        self, request: RechargeRequest, fingerprint: str, retry_of: int | None
    ) -> RechargeView:
        self._validate(request.kind, request.number, request.amount_fen, request.notify)
        try:
            if self.billing.internal:
                return await self._recharge_at_once(request, fingerprint, retry_of)
            return await self._recharge_two_phase(request, fingerprint, retry_of)
        except _KeyTaken:
            txn = await self._first_result(request.key, "recharge", fingerprint)
            return await self.recharge_view(txn)
        except _WrongPin as wrong:
            raise await self._record_wrong_pin(wrong.agent_id) from None

    async def _begin_recharge(
        self,
        conn: AsyncConnection,
        request: RechargeRequest,
        fingerprint: str,
        now: datetime,
    ) -> tuple[int, Any, rules.Price]:
        """Store the key, check every rule and the password; nothing has moved yet."""
        txn = await self._claim_key(
            conn,
            request.key,
            "recharge",
            fingerprint,
            now,
            agent_id=request.agent_id,
            number=request.number,
            amount_fen=request.amount_fen,
        )
        ctx = await self._context(conn, request.agent_id, request.number)
        self._check_agent_can_trade(ctx)
        self._check_trade_pin(ctx, request.pin, now)
        self._check_target(ctx, request.kind, request.number)
        price = rules.price(request.amount_fen, ctx.commission_bp)
        if ctx.balance - ctx.pending < price.debit_fen:
            raise Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=ctx.balance - ctx.pending)
        await self._reset_failures(conn, ctx)
        return txn, ctx, price

    def _recharge_row(
        self,
        txn: int,
        request: RechargeRequest,
        price: rules.Price,
        status: str,
        now: datetime,
        float_after: int | None,
        retry_of: int | None,
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
            "retry_of": retry_of,
            "error": None,
            "created_at": now,
            "resolved_at": now if status != PENDING else None,
        }

    def _posting_lines(
        self, txn: int, float_account: int, target_account: int, price: rules.Price
    ) -> list[dict[str, Any]]:
        return [
            {"txn_id": txn, "account_id": target_account, "amount_fen": price.amount_fen},
            {"txn_id": txn, "account_id": COMMISSION_EXPENSE, "amount_fen": -price.commission_fen},
            {"txn_id": txn, "account_id": float_account, "amount_fen": -price.debit_fen},
        ]

    def _notices(
        self,
        *,
        now: datetime,
        key: str,
        txn: int,
        agent_id: int,
        agent_phone: str,
        kind: Kind,
        number: str,
        notify: str | None,
        price: rules.Price,
        float_after: int | _Marked,
        target_balance: int | _Marked | None,
        route: Route | None,
        error: str | None = None,
    ) -> list[dict[str, Any]]:
        """The agent's result notice and (on success) the target's receipt."""
        common = {
            "number": number,
            "amount": format_yuan(price.amount_fen),
            "commission": format_yuan(price.commission_fen),
            "debit": format_yuan(price.debit_fen),
            "balance": _money(float_after),
            "tx_id": txn,
        }
        if error is None:
            text = self._text("notice_recharge_ok", **common)
        else:
            text = self._text("notice_recharge_failed", **common)
        rows = [
            outbox.row(
                now=now,
                source=self._service_number,
                destination=agent_phone,
                text=text,
                kind="agent_result",
                dedup_key=f"{key}:agent_result",
                ref=txn,
                route=route or SMS,
            )
        ]
        if error is None and target_balance is not None:
            receiver = number if kind in (Kind.MOBILE, Kind.PHS) else notify
            if receiver:
                rows.append(
                    outbox.row(
                        now=now,
                        source=self._service_number,
                        destination=receiver,
                        text=self._text(
                            "receipt_target",
                            number=number,
                            amount=format_yuan(price.amount_fen),
                            balance=_money(target_balance),
                            agent_id=agent_id,
                            tx_id=txn,
                        ),
                        kind="target_receipt",
                        dedup_key=f"{key}:target_receipt",
                        ref=txn,
                    )
                )
        return rows

    async def _recharge_at_once_pg(
        self, request: RechargeRequest, fingerprint: str, retry_of: int | None
    ) -> RechargeView:
        """``_recharge_at_once`` in two statements on PostgreSQL (see ``_PG_POST``)."""
        now = self.clock.now()
        async with self._uow() as conn:
            try:
                ctx = (
                    await conn.execute(
                        _PG_BEGIN,
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
                raise _KeyTaken from None
            if ctx.id is None:
                raise Refusal(Rule.AGENT_UNKNOWN, agent_id=request.agent_id)
            self._check_agent_can_trade(ctx)
            self._check_trade_pin(ctx, request.pin, now)
            self._check_target(ctx, request.kind, request.number)
            price = rules.price(request.amount_fen, ctx.commission_bp)
            if ctx.balance - ctx.pending < price.debit_fen:
                raise Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=ctx.balance - ctx.pending)
            await self._reset_failures(conn, ctx)
            self._fault("credited")
            agent_row, *receipt_rows = self._notices(
                now=now,
                key=request.key,
                txn=ctx.txn,
                agent_id=request.agent_id,
                agent_phone=ctx.phone,
                kind=request.kind,
                number=request.number,
                notify=request.notify,
                price=price,
                float_after=_MARKED,
                target_balance=_MARKED,
                route=request.reply_route,
            )
            receipt = receipt_rows[0] if receipt_rows else None
            params: dict[str, Any] = {
                "txn": ctx.txn,
                "float_acc": ctx.account_id,
                "target_acc": ctx.t_account,
                "debit": price.debit_fen,
                "amount": price.amount_fen,
                "commission": price.commission_fen,
                "r_agent": request.agent_id,
                "r_number": request.number,
                "r_kind": request.kind.value,
                "r_notify": request.notify,
                "retry_of": retry_of,
                "now": now,
                "source": self._service_number,
            }
            for prefix, row in (("agent", agent_row), ("receipt", receipt)):
                params.update(
                    {
                        f"{prefix}_dest": row["destination"] if row else None,
                        f"{prefix}_text": row["text"] if row else "",
                        f"{prefix}_transport": row["transport"] if row else "sms",
                        f"{prefix}_ussd_session": row["ussd_session"] if row else None,
                        f"{prefix}_ussd_umr": row["ussd_umr"] if row else None,
                        f"{prefix}_final": row["final"] if row else True,
                        f"{prefix}_dedup": row["dedup_key"] if row else "",
                    }
                )
            posted = (await conn.execute(_PG_POST, params)).first()
            if posted is None:  # a concurrent recharge took the money first
                raise Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=ctx.balance - ctx.pending)
            self._fault("posting")
            await conn.commit()
        row = self._recharge_row(ctx.txn, request, price, SUCCEEDED, now, posted.after, retry_of)
        return _recharge_view(_Obj(row))

    async def _recharge_at_once(
        self, request: RechargeRequest, fingerprint: str, retry_of: int | None
    ) -> RechargeView:
        """Internal billing: reserve, credit and post in one transaction (debit last)."""
        if self._postgres:
            return await self._recharge_at_once_pg(request, fingerprint, retry_of)
        now = self.clock.now()
        async with self._uow() as conn:
            txn, ctx, price = await self._begin_recharge(conn, request, fingerprint, now)
            await conn.execute(
                _INSERT_LINES, self._posting_lines(txn, ctx.account_id, ctx.t_account, price)
            )
            target_balance = (
                await conn.execute(
                    update(accounts)
                    .where(accounts.c.id == ctx.t_account)
                    .values(balance=accounts.c.balance + price.amount_fen)
                    .returning(accounts.c.balance)
                )
            ).scalar_one()
            self._fault("credited")
            float_after = (
                await conn.execute(
                    _DEBIT_GUARDED, {"acc": ctx.account_id, "amount": price.debit_fen}
                )
            ).scalar()
            if float_after is None:  # a concurrent recharge took the money first
                raise Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=ctx.balance - ctx.pending)
            self._fault("posting")
            row = self._recharge_row(txn, request, price, SUCCEEDED, now, float_after, retry_of)
            await conn.execute(_INSERT_RECHARGE, row)
            await outbox.add(
                conn,
                *self._notices(
                    now=now,
                    key=request.key,
                    txn=txn,
                    agent_id=request.agent_id,
                    agent_phone=ctx.phone,
                    kind=request.kind,
                    number=request.number,
                    notify=request.notify,
                    price=price,
                    float_after=float_after,
                    target_balance=target_balance,
                    route=request.reply_route,
                ),
            )
            await conn.commit()
        return _recharge_view(_Obj(row))

    async def _recharge_two_phase(
        self, request: RechargeRequest, fingerprint: str, retry_of: int | None
    ) -> RechargeView:
        """External billing: reserve and commit, credit, then post or void."""
        now = self.clock.now()
        async with self._uow() as conn:
            txn, ctx, price = await self._begin_recharge(conn, request, fingerprint, now)
            await conn.execute(
                _INSERT_RECHARGE,
                self._recharge_row(txn, request, price, PENDING, now, None, retry_of),
            )
            reserved = (
                await conn.execute(_RESERVE, {"acc": ctx.account_id, "amount": price.debit_fen})
            ).scalar()
            if reserved is None:
                raise Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=ctx.balance - ctx.pending)
            self._fault("reserved")
            await conn.commit()
        self._fault("committed")
        outcome, error = await self._credit(request.key, request.number, request.kind, price)
        self._fault("credited")
        return await self._resolve(txn, outcome, error, request.reply_route)

    async def _credit(
        self, key: str, number: str, kind: Kind, price: rules.Price
    ) -> tuple[Credit, str | None]:
        """Ask billing to credit; on a time-out or error ask once what became of the key
        (a late credit must be posted, not voided), and void only if it did not happen."""
        try:
            outcome = await asyncio.wait_for(
                self.billing.credit(key, number, kind.value, price.amount_fen),
                self.billing_timeout_s,
            )
        except (TimeoutError, BillingError) as exc:
            error = "billing timed out" if isinstance(exc, TimeoutError) else f"billing: {exc}"
            try:
                outcome = await asyncio.wait_for(self.billing.status(key), self.billing_timeout_s)
            except (TimeoutError, BillingError):
                outcome = Credit.UNKNOWN
            if outcome is Credit.CREDITED:
                return outcome, None
            return Credit.FAILED, error[:200]
        if outcome is Credit.CREDITED:
            return outcome, None
        return Credit.FAILED, "billing refused the credit"

    async def _resolve(
        self, txn: int, outcome: Credit, error: str | None, route: Route | None
    ) -> RechargeView:
        """Post (credited) or void (anything else) the reservation of recharge ``txn``, once."""
        now = self.clock.now()
        posted = outcome is Credit.CREDITED
        async with self._uow() as conn:
            rec = (await conn.execute(_RECHARGE_BY_ID, {"tx_id": txn})).one()
            try:
                await conn.execute(
                    insert(resolutions).values(
                        tx_id=txn, outcome="posted" if posted else "voided", created_at=now
                    )
                )
            except IntegrityError:  # resolved already (by recovery or a concurrent call)
                await conn.rollback()
                return await self.recharge_view(txn)
            key_row = (await conn.execute(select(txns.c.key).where(txns.c.id == txn))).one()
            agent = (
                await conn.execute(
                    select(agents.c.phone, agents.c.account_id).where(agents.c.id == rec.agent_id)
                )
            ).one()
            target = (
                await conn.execute(
                    select(subscribers.c.account_id).where(subscribers.c.number == rec.number)
                )
            ).one()
            price = rules.Price(rec.amount_fen, rec.commission_fen)
            target_balance: int | None = None
            if posted:
                await conn.execute(
                    _INSERT_LINES,
                    self._posting_lines(txn, agent.account_id, target.account_id, price),
                )
                target_balance = (
                    await conn.execute(
                        update(accounts)
                        .where(accounts.c.id == target.account_id)
                        .values(balance=accounts.c.balance + price.amount_fen)
                        .returning(accounts.c.balance)
                    )
                ).scalar_one()
                statement = _POST_RESERVED
            else:
                statement = _VOID_RESERVED
            float_after = (
                await conn.execute(statement, {"acc": agent.account_id, "amount": price.debit_fen})
            ).scalar_one()
            await conn.execute(
                update(recharges)
                .where(recharges.c.tx_id == txn)
                .values(
                    status=SUCCEEDED if posted else FAILED,
                    float_after_fen=float_after,
                    resolved_at=now,
                    error=error,
                )
            )
            await outbox.add(
                conn,
                *self._notices(
                    now=now,
                    key=key_row.key,
                    txn=txn,
                    agent_id=rec.agent_id,
                    agent_phone=agent.phone,
                    kind=Kind(rec.kind),
                    number=rec.number,
                    notify=rec.notify,
                    price=price,
                    float_after=float_after,
                    target_balance=target_balance,
                    route=route,
                    error=None if posted else (error or "failed"),
                ),
            )
            self._fault("resolving")
            await conn.commit()
        return await self.recharge_view(txn)

    async def recover_pending(self, older_than_s: float = 60.0) -> list[RechargeView]:
        """Resolve reservations left pending (by a crash) for at least ``older_than_s``:
        post those the billing backend credited, void the rest. Run it on start-up.

        The grace period keeps it off recharges another worker is still completing.
        """
        cutoff = self.clock.now() - timedelta(seconds=older_than_s)
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(recharges.c.tx_id, txns.c.key)
                    .join(txns, txns.c.id == recharges.c.tx_id)
                    .where(recharges.c.status == PENDING, recharges.c.created_at <= cutoff)
                    .order_by(recharges.c.tx_id)
                )
            ).all()
        resolved = []
        for row in rows:
            if self.billing.internal:
                outcome = Credit.FAILED
            else:
                try:
                    outcome = await asyncio.wait_for(
                        self.billing.status(row.key), self.billing_timeout_s
                    )
                except (TimeoutError, BillingError):
                    continue  # ask again on the next pass; never guess
            error = None if outcome is Credit.CREDITED else "recovered: not credited"
            resolved.append(await self._resolve(row.tx_id, outcome, error, None))
        return resolved

    async def recent_duplicate(
        self, agent_id: int, number: str, amount_fen: int, within_s: float = 60.0
    ) -> RechargeView | None:
        """The newest recharge by ``agent_id`` of ``amount_fen`` to ``number`` in the last
        ``within_s`` seconds that did not fail (SPEC §3: an identical shortcut recharge within
        60 seconds asks for confirmation instead of running again), or None."""
        since = self.clock.now() - timedelta(seconds=within_s)
        stmt = (
            select(recharges)
            .where(
                recharges.c.agent_id == agent_id,
                recharges.c.number == number,
                recharges.c.amount_fen == amount_fen,
                recharges.c.created_at >= since,
                recharges.c.status != FAILED,
            )
            .order_by(recharges.c.tx_id.desc())
            .limit(1)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else _recharge_view(row)

    # ---- retry ---------------------------------------------------------------------------

    def _retry_list_stmt(self, agent_id: int, since: datetime) -> Any:
        later = recharges.alias("later")
        superseded = exists().where(
            later.c.agent_id == recharges.c.agent_id,
            later.c.number == recharges.c.number,
            later.c.amount_fen == recharges.c.amount_fen,
            later.c.tx_id > recharges.c.tx_id,
            later.c.status.in_((SUCCEEDED, REVERSED, PENDING)),
        )
        return (
            select(recharges)
            .where(
                recharges.c.agent_id == agent_id,
                recharges.c.status == FAILED,
                recharges.c.created_at >= since,
                ~superseded,
            )
            .order_by(recharges.c.tx_id.desc())
        )

    async def retry_list(self, agent_id: int) -> list[RechargeView]:
        """Failed recharges of the last 24 hours not since succeeded, newest first (one per
        target and amount)."""
        since = self.clock.now() - rules.RETRY_WINDOW
        async with self.engine.connect() as conn:
            rows = (await conn.execute(self._retry_list_stmt(agent_id, since))).all()
        seen: set[tuple[str, str, int]] = set()
        views = []
        for row in rows:
            ident = (row.number, row.kind, row.amount_fen)
            if ident not in seen:
                seen.add(ident)
                views.append(_recharge_view(row))
        return views

    async def retry(
        self, agent_id: int, tx_id: int, pin: str, key: str, reply_route: Route | None = None
    ) -> RechargeView:
        """Run a failed recharge of the retry list again, as a new recharge."""
        fingerprint = f"retry|{agent_id}|{tx_id}"
        existing = await self._existing(key)
        if existing is not None:
            txn = await self._first_result(key, "recharge", fingerprint)
            return await self.recharge_view(txn)
        if tx_id not in {view.tx_id for view in await self.retry_list(agent_id)}:
            async with self.engine.connect() as conn:
                row = (await conn.execute(_RECHARGE_BY_ID, {"tx_id": tx_id})).first()
            if row is None or row.agent_id != agent_id:
                raise Refusal(Rule.RECHARGE_UNKNOWN, tx_id=tx_id)
            raise Refusal(Rule.NOT_RETRYABLE, tx_id=tx_id)
        failed = await self.recharge_view(tx_id)
        request = RechargeRequest(
            agent_id=agent_id,
            kind=failed.kind,
            number=failed.number,
            amount_fen=failed.amount_fen,
            pin=pin,
            key=key,
            notify=failed.notify,
            reply_route=reply_route,
        )
        return await self._recharge(request, fingerprint, tx_id)

    # ---- balance, records, transfer, passwords --------------------------------------------

    async def balance(self, agent_id: int, pin: str) -> int:
        """The float's available balance in fen."""
        ctx = await self._trade_login(agent_id, pin)
        return int(ctx.balance - ctx.pending)

    async def _trade_login(self, agent_id: int, pin: str) -> Any:
        """Check the trade password (counted) of an agent that is not closed."""
        now = self.clock.now()
        try:
            async with self._uow() as conn:
                ctx = await self._context(conn, agent_id)
                if ctx.status == AgentStatus.CLOSED:
                    raise Refusal(Rule.AGENT_CLOSED)
                self._check_trade_pin(ctx, pin, now)
                await self._reset_failures(conn, ctx)
                await conn.commit()
                return ctx
        except _WrongPin as wrong:
            raise await self._record_wrong_pin(wrong.agent_id) from None

    async def recent(self, agent_id: int, pin: str, limit: int = 5) -> list[RecordView]:
        """交易记录: the last recharges, deposits, transfers and reversals, newest first."""
        await self._trade_login(agent_id, pin)
        return await self.records(agent_id, limit=limit)

    async def records(
        self,
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
                txns.c.op.in_(("open", "deposit", "recharge", "transfer", "reversal")),
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
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [RecordView(r.id, r.record_kind, r.number, r.amount_fen, r.created_at) for r in rows]

    async def transfer_to_phone(
        self, agent_id: int, amount_fen: int, pin: str, key: str, reply_route: Route | None = None
    ) -> TransferView:
        """Move float to the bound phone's own account (no commission, recharge amounts)."""
        rule = rules.recharge_amount_rule(amount_fen)
        if rule:
            raise Refusal(rule)
        fingerprint = f"{agent_id}|{amount_fen}"
        now = self.clock.now()
        try:
            async with self._uow() as conn:
                txn = await self._claim_key(
                    conn,
                    key,
                    "transfer",
                    fingerprint,
                    now,
                    agent_id=agent_id,
                    amount_fen=amount_fen,
                )
                ctx = await self._context(conn, agent_id)
                self._check_agent_can_trade(ctx)
                self._check_trade_pin(ctx, pin, now)
                if ctx.balance - ctx.pending < amount_fen:
                    raise Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=ctx.balance - ctx.pending)
                await self._reset_failures(conn, ctx)
                await conn.execute(
                    _INSERT_LINES,
                    [
                        {"txn_id": txn, "account_id": ctx.phone_account, "amount_fen": amount_fen},
                        {"txn_id": txn, "account_id": ctx.account_id, "amount_fen": -amount_fen},
                    ],
                )
                await conn.execute(_CREDIT, {"acc": ctx.phone_account, "amount": amount_fen})
                after = (
                    await conn.execute(
                        _DEBIT_GUARDED, {"acc": ctx.account_id, "amount": amount_fen}
                    )
                ).scalar()
                if after is None:
                    raise Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=ctx.balance - ctx.pending)
                await conn.execute(
                    update(txns)
                    .where(txns.c.id == txn)
                    .values(number=ctx.phone, balance_after=after)
                )
                await outbox.add(
                    conn,
                    outbox.row(
                        now=now,
                        source=self._service_number,
                        destination=ctx.phone,
                        text=self._text(
                            "notice_transfer_ok",
                            amount=format_yuan(amount_fen),
                            phone=ctx.phone,
                            balance=format_yuan(after),
                            tx_id=txn,
                        ),
                        kind="agent_result",
                        dedup_key=f"{key}:agent_result",
                        ref=txn,
                        route=reply_route or SMS,
                    ),
                )
                await conn.commit()
        except _KeyTaken:
            txn = await self._first_result(key, "transfer", fingerprint)
        except _WrongPin as wrong:
            raise await self._record_wrong_pin(wrong.agent_id) from None
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(txns).where(txns.c.id == txn))).one()
        return TransferView(
            row.id, row.agent_id, row.number, row.amount_fen, row.balance_after, row.created_at
        )

    async def change_trade_pin(self, agent_id: int, old: str, new: str) -> None:
        """New trade password: 6 digits, not the old one, not 6 equal digits, not a run."""
        await self._change_pin(agent_id, old, new, trade=True)

    async def change_mgmt_pin(self, agent_id: int, old: str, new: str) -> None:
        """New management password, same rules (a wrong old one is not counted)."""
        await self._change_pin(agent_id, old, new, trade=False)

    async def _change_pin(self, agent_id: int, old: str, new: str, trade: bool) -> None:
        bad_new = rules.new_pin_rule(old, new)
        if bad_new in (Rule.BAD_PIN_FORMAT, Rule.WEAK_PIN):
            raise Refusal(bad_new)
        now = self.clock.now()
        try:
            async with self._uow() as conn:
                row = (await conn.execute(select(agents).where(agents.c.id == agent_id))).first()
                if row is None:
                    raise Refusal(Rule.AGENT_UNKNOWN, agent_id=agent_id)
                if row.status == AgentStatus.CLOSED:
                    raise Refusal(Rule.AGENT_CLOSED)
                if trade:
                    self._check_trade_pin(row, old, now)
                elif rules.pin_format_rule(old) or not self.pins.verify(
                    -agent_id, row.mgmt_hash, old
                ):
                    raise Refusal(Rule.WRONG_PIN)
                if bad_new:
                    raise Refusal(bad_new)
                column = "trade_hash" if trade else "mgmt_hash"
                values: dict[str, Any] = {column: self.pins.hash(new)}
                if trade:
                    values.update(pin_failures=0, pin_locked_until=None)
                await conn.execute(update(agents).where(agents.c.id == agent_id).values(**values))
                await conn.commit()
        except _WrongPin as wrong:
            raise await self._record_wrong_pin(wrong.agent_id) from None

    async def verify_mgmt_pin(self, agent_id: int, pin: str) -> bool:
        """For the web login: whether ``pin`` is the agent's management password."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(agents.c.mgmt_hash, agents.c.status).where(agents.c.id == agent_id)
                )
            ).first()
        if row is None or row.status == AgentStatus.CLOSED:
            return False
        return self.pins.verify(-agent_id, row.mgmt_hash, pin)

    # ---- reversal, invoices ----------------------------------------------------------------

    async def mark_invoice_printed(self, tx_id: int) -> RechargeView:
        """An invoice was printed for recharge ``tx_id``: it can no longer be reversed."""
        async with self._uow() as conn:
            result = await conn.execute(
                update(recharges).where(recharges.c.tx_id == tx_id).values(invoice_printed=True)
            )
            if result.rowcount == 0:
                raise Refusal(Rule.RECHARGE_UNKNOWN, tx_id=tx_id)
            await conn.commit()
        return await self.recharge_view(tx_id)

    async def reverse(self, tx_id: int, key: str) -> ReversalView:
        """返销: the exact inverse of recharge ``tx_id`` if every rule of SPEC §7 allows it."""
        fingerprint = str(tx_id)
        now = self.clock.now()
        try:
            async with self._uow() as conn:
                rec = (await conn.execute(_RECHARGE_BY_ID, {"tx_id": tx_id})).first()
                if rec is None:
                    raise Refusal(Rule.RECHARGE_UNKNOWN, tx_id=tx_id)
                txn = await self._claim_key(
                    conn,
                    key,
                    "reversal",
                    fingerprint,
                    now,
                    agent_id=rec.agent_id,
                    number=rec.number,
                    amount_fen=rec.amount_fen,
                    ref=tx_id,
                )
                ctx = await self._lock_agent(conn, rec.agent_id)
                if ctx.status == AgentStatus.CLOSED:
                    raise Refusal(Rule.AGENT_CLOSED)
                target = (
                    await conn.execute(
                        select(subscribers.c.billing, subscribers.c.account_id, accounts.c.balance)
                        .join(accounts, accounts.c.id == subscribers.c.account_id)
                        .where(subscribers.c.number == rec.number)
                    )
                ).one()
                count = (
                    await conn.execute(
                        select(func.count())
                        .select_from(txns)
                        .where(
                            txns.c.agent_id == rec.agent_id,
                            txns.c.op == "reversal",
                            txns.c.id != txn,
                            txns.c.created_at >= rules.month_start(now, self.zone),
                        )
                    )
                ).scalar_one()
                facts = rules.ReversalFacts(
                    recharge_at=rec.created_at,
                    now=now,
                    succeeded=rec.status == SUCCEEDED,
                    reversals_this_month=count,
                    invoice_printed=rec.invoice_printed,
                    target_billing=Billing(target.billing),
                    target_balance_fen=target.balance,
                    amount_fen=rec.amount_fen,
                )
                rule = rules.reversal_rule(facts, self.zone)
                if rule:
                    raise Refusal(rule, tx_id=tx_id)
                await conn.execute(
                    _INSERT_LINES,
                    [
                        {
                            "txn_id": txn,
                            "account_id": target.account_id,
                            "amount_fen": -rec.amount_fen,
                        },
                        {
                            "txn_id": txn,
                            "account_id": COMMISSION_EXPENSE,
                            "amount_fen": rec.commission_fen,
                        },
                        {"txn_id": txn, "account_id": ctx.account_id, "amount_fen": rec.debit_fen},
                    ],
                )
                taken = await conn.execute(
                    update(accounts)
                    .where(accounts.c.id == target.account_id, accounts.c.balance >= rec.amount_fen)
                    .values(balance=accounts.c.balance - rec.amount_fen)
                )
                if taken.rowcount != 1:
                    raise Refusal(Rule.REVERSAL_TARGET_BALANCE, tx_id=tx_id)
                marked = await conn.execute(
                    update(recharges)
                    .where(recharges.c.tx_id == tx_id, recharges.c.status == SUCCEEDED)
                    .values(status=REVERSED)
                )
                if marked.rowcount != 1:
                    raise Refusal(Rule.REVERSAL_NOT_SUCCEEDED, tx_id=tx_id)
                after = (
                    await conn.execute(
                        _CREDIT.returning(accounts.c.balance - accounts.c.pending),
                        {"acc": ctx.account_id, "amount": rec.debit_fen},
                    )
                ).scalar_one()
                await conn.execute(update(txns).where(txns.c.id == txn).values(balance_after=after))
                await outbox.add(
                    conn,
                    outbox.row(
                        now=now,
                        source=self._service_number,
                        destination=ctx.phone,
                        text=self._text(
                            "notice_reversal",
                            recharge_tx_id=tx_id,
                            number=rec.number,
                            amount=format_yuan(rec.amount_fen),
                            debit=format_yuan(rec.debit_fen),
                            balance=format_yuan(after),
                            tx_id=txn,
                        ),
                        kind="reversal_notice",
                        dedup_key=f"{key}:reversal_notice",
                        ref=txn,
                    ),
                )
                await conn.commit()
        except _KeyTaken:
            txn = await self._first_result(key, "reversal", fingerprint)
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(txns.c.id, txns.c.balance_after, txns.c.created_at, recharges)
                    .join(recharges, recharges.c.tx_id == txns.c.ref)
                    .where(txns.c.id == txn)
                )
            ).one()
        return ReversalView(
            tx_id=row.id,
            recharge_tx_id=row.tx_id,
            agent_id=row.agent_id,
            number=row.number,
            amount_fen=row.amount_fen,
            commission_fen=row.commission_fen,
            debit_fen=row.debit_fen,
            float_after_fen=row.balance_after,
            created_at=row.created_at,
        )

    # ---- reports -------------------------------------------------------------------------

    def day_bounds(self, day: date) -> tuple[datetime, datetime]:
        """The business day ``day`` (in the configured zone) as a UTC [start, end)."""
        start = datetime.combine(day, time(0), tzinfo=self.zone)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.zone)
        return start.astimezone(UTC), end.astimezone(UTC)

    def today(self) -> date:
        return self.clock.now().astimezone(self.zone).date()

    async def daily_report(self, day: date) -> list[DailyReportRow]:
        """Per agent, for business day ``day``: recharges (count, sum, commission), reversals."""
        start, end = self.day_bounds(day)
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
            )
            .where(txns.c.op == "reversal", txns.c.created_at >= start, txns.c.created_at < end)
            .group_by(txns.c.agent_id)
        )
        async with self.engine.connect() as conn:
            by_agent: dict[int, list[int]] = {}
            for r in (await conn.execute(rech)).all():
                by_agent.setdefault(r.agent_id, [0, 0, 0, 0, 0])[:3] = [
                    r.n,
                    int(r.amount),
                    int(r.commission),
                ]
            for r in (await conn.execute(rev)).all():
                by_agent.setdefault(r.agent_id, [0, 0, 0, 0, 0])[3:] = [r.n, int(r.amount)]
        return [
            DailyReportRow(agent_id, day, *values) for agent_id, values in sorted(by_agent.items())
        ]

    async def trial_balance(self) -> TrialBalance:
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
        async with self.engine.connect() as conn:
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


class _Obj:
    """Attribute access over a dict (to build a view from the row just inserted)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


__all__ = ["Faults", "LedgerService", "refusal_text"]
