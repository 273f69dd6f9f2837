"""The embedded default's recharge writer: SQLite, one transaction in one thread call.

The writer has a ``sqlite3`` connection of its own, used only by its one thread. A recharge is
one call into that thread: ``BEGIN IMMEDIATE`` (the database's write lock, so that what it reads
is what it writes on), the recharge's context read (``statements.RECHARGE_CONTEXT``), the plan
made on it (every rule, in Python), the writes, ``COMMIT``: one thread hop per recharge, where
SQLAlchemy's async SQLite driver hops to its thread and back for every statement. Statements are
the Core ones of ``statements``, compiled once (``SqliteStatement``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Date, bindparam, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url

from smsmenu.ledger import notices, outbox, rules, views
from smsmenu.ledger import statements as sql
from smsmenu.ledger.api import Billing, RechargeView, Refusal, Rule
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.db import SQLITE_BUSY_TIMEOUT_MS
from smsmenu.ledger.entries import (
    FAILED,
    PENDING,
    RECHARGE_COLUMNS,
    SUCCEEDED,
    posting_lines,
    recharge_row,
)
from smsmenu.ledger.models import agents, lines, recharges, resolutions, subscribers, txns
from smsmenu.ledger.models import outbox as outbox_table
from smsmenu.ledger.outbox import OutboxMessage
from smsmenu.ledger.products import extend
from smsmenu.ledger.recharge_plan import (
    AgentRow,
    Claim,
    Facts,
    RechargePlan,
    Validity,
    Written,
    duplicate_since,
    plan,
)
from smsmenu.ledger.unit_of_work import check_key
from smsmenu.ledger.writer import RechargeOp, Resolution

T = TypeVar("T")

_TXN_COLUMNS = ("key", "op", "fingerprint", "agent_id", "number", "amount_fen", "created_at")
_OUTBOX_COLUMNS = (
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
    "claimed_by",
    "claimed_until",
)
_CONTEXT = sql.SqliteStatement(sql.RECHARGE_CONTEXT)
_DEBIT = sql.SqliteStatement(sql.DEBIT_GUARDED)
_RESERVE = sql.SqliteStatement(sql.RESERVE)
_CREDIT = sql.SqliteStatement(sql.CREDIT)
_POST_RESERVED = sql.SqliteStatement(sql.POST_RESERVED)
_VOID_RESERVED = sql.SqliteStatement(sql.VOID_RESERVED)
_TXN = sql.SqliteStatement(sql.inserting(txns, _TXN_COLUMNS, txns.c.id))
_TARGET_VALIDITY = sql.SqliteStatement(
    select(subscribers.c.billing, subscribers.c.valid_until).where(
        subscribers.c.account_id == bindparam("acc")
    )
)
_SET_VALIDITY = sql.SqliteStatement(
    update(subscribers)
    .where(subscribers.c.account_id == bindparam("acc"))
    .values(valid_until=bindparam("valid_until", type_=Date()))
)
_LINES = sql.SqliteStatement(sql.inserting(lines, ("txn_id", "account_id", "amount_fen")))
_RECHARGE = sql.SqliteStatement(sql.inserting(recharges, RECHARGE_COLUMNS))
_OUTBOX = sql.SqliteStatement(sql.inserting(outbox_table, _OUTBOX_COLUMNS, outbox_table.c.id))
_CLEAR_PIN = sql.SqliteStatement(
    update(agents)
    .where(agents.c.id == bindparam("agent_id"))
    .values(pin_failures=0, pin_locked_until=None)
)
_REHASH = sql.SqliteStatement(
    update(agents)
    .where(agents.c.id == bindparam("agent_id"), agents.c.trade_hash == bindparam("old"))
    .values(trade_hash=bindparam("new"))
)
_RESOLVED = sql.SqliteStatement(
    sqlite_insert(resolutions)
    .values(tx_id=bindparam("tx_id"), outcome=bindparam("outcome"), created_at=bindparam("now"))
    .on_conflict_do_nothing()
)
_RESERVED = sql.SqliteStatement(
    select(
        recharges.c.amount_fen,
        recharges.c.commission_fen,
        recharges.c.debit_fen,
        agents.c.account_id.label("float_account"),
        subscribers.c.account_id.label("target_account"),
    )
    .join(agents, agents.c.id == recharges.c.agent_id)
    .join(subscribers, subscribers.c.number == recharges.c.number)
    .where(recharges.c.tx_id == bindparam("tx_id"))
)
_SETTLE = sql.SqliteStatement(
    update(recharges)
    .where(recharges.c.tx_id == bindparam("tx_id"))
    .values(
        status=bindparam("status"),
        float_after_fen=bindparam("float_after"),
        resolved_at=bindparam("now"),
        error=bindparam("error"),
    )
)
_BY_PHONE = sql.SqliteStatement(
    select(agents.c.id).where(agents.c.bound_phone == bindparam("phone"))
)
_DATETIMES = frozenset({"pin_locked_until"})


def database_path(url: str) -> str:
    """The file of a SQLite URL (the writer opens it itself)."""
    path = make_url(url).database
    if not path or path == ":memory:":
        raise ValueError("the embedded writer needs a SQLite file, not an in-memory database")
    return path


class _Row:
    """A ``sqlite3.Row`` read by attribute, its datetimes aware again."""

    __slots__ = ("_row",)

    def __init__(self, row: sqlite3.Row) -> None:
        self._row = row

    def __getattr__(self, name: str) -> Any:
        value = self._row[name]
        if name in _DATETIMES and isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        return value


class SqliteWriter:
    """See the module notes. ``aclose`` closes its connection and its thread."""

    def __init__(self, ctx: LedgerContext, path: str) -> None:
        self._ctx = ctx
        self._path = path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ledger-sqlite")
        self._conn: sqlite3.Connection | None = None

    # -- the thread and its connection -----------------------------------------------------

    async def _call(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, work)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` in one transaction of the writer's connection, in its thread. The embedded
        process's other frequent writes (the outbox sender's records, the notes of acknowledged
        shortcuts) go this way too: on a second connection they took SQLite's write lock across
        several thread hops, and a recharge meeting it waited in SQLite's busy handler, which
        sleeps 1 to 100 ms a try (BEGIN IMMEDIATE: p99 19 ms, 443 ms at worst, at 250/s)."""

        def transaction() -> T:
            with self._transaction() as conn:
                return work(conn)

        return await self._call(transaction)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(
                self._path,
                timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,  # used by the writer's one thread only
            )
            conn.row_factory = sqlite3.Row
            for pragma in (
                "PRAGMA journal_mode=WAL",
                f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
                "PRAGMA foreign_keys=ON",
                "PRAGMA synchronous=FULL",
            ):
                conn.execute(pragma)
            self._conn = conn
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @staticmethod
    def _run(conn: sqlite3.Connection, statement: sql.SqliteStatement, **values: Any) -> Any:
        """Execute ``statement``: its first row (RETURNING, a read) or None."""
        return conn.execute(statement.sql, statement.params(values)).fetchone()

    # -- taking a recharge in --------------------------------------------------------------

    def _plan(self, conn: sqlite3.Connection, op: RechargeOp) -> tuple[RechargePlan, _Row]:
        """Read the recharge's context in the transaction and plan it on it (every rule)."""
        request, now = op.request, self._ctx.clock.now()
        check_key(request.key)
        found = self._run(
            conn,
            _CONTEXT,
            agent_id=request.agent_id,
            number=request.number,
            notify=request.notify,
            key=request.key,
            amount=request.amount_fen,
            since=duplicate_since(request, now),
        )
        if found is None:
            raise Refusal(Rule.AGENT_UNKNOWN, agent_id=request.agent_id)
        row = _Row(found)
        facts = Facts.of(row)
        return plan(self._ctx, AgentRow.of(row), request, op.fingerprint, now, op.proof, facts,
                    op.claim), row  # fmt: skip

    def _take_in(
        self, conn: sqlite3.Connection, p: RechargePlan, status: str, float_after: int | None
    ) -> tuple[int, RechargeView]:
        """The txn (its key with it) and the recharge row stored, the password's count
        settled: the txn id and the recharge's view."""
        request = p.request
        values = {
            "key": request.key,
            "op": "recharge",
            "fingerprint": p.fingerprint,
            "agent_id": request.agent_id,
            "number": request.number,
            "amount_fen": request.amount_fen,
            "created_at": p.now,
        }
        txn: int = self._run(conn, _TXN, **values)[0]
        if p.clear_pin:
            self._run(conn, _CLEAR_PIN, agent_id=p.agent.id)
        if p.proof.rehash is not None:
            old, new = p.proof.rehash
            self._run(conn, _REHASH, agent_id=p.agent.id, old=old, new=new)
        row = recharge_row(txn, request, p.price, status, p.now, float_after)
        self._run(conn, _RECHARGE, **row)
        return txn, views.recharge(row)

    def _recharge(self, op: RechargeOp) -> Written:
        with self._transaction() as conn:
            p, row = self._plan(conn, op)
            debited = self._run(conn, _DEBIT, acc=p.agent.account_id, amount=p.price.debit_fen)
            if debited is None:  # cannot happen under the write lock; the guard stays anyway
                raise Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=row.balance - row.pending)
            txn, view = self._take_in(conn, p, SUCCEEDED, debited[0])
            stored = self._book(
                conn, txn, True, p.agent.account_id, row.t_account, p.price, debited[0],
                p.notices, p.claim, p.validity,
            )  # fmt: skip
            self._ctx.fault("credited")
            self._ctx.fault("posting")
        return Written(txn, stored, view)

    def _reserve(self, op: RechargeOp) -> Written:
        with self._transaction() as conn:
            p, row = self._plan(conn, op)
            reserved = self._run(conn, _RESERVE, acc=p.agent.account_id, amount=p.price.debit_fen)
            if reserved is None:
                raise Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=row.balance - row.pending)
            txn, view = self._take_in(conn, p, PENDING, None)
            self._ctx.fault("reserved")
        return Written(txn, (), view)

    # -- booking and resolving -------------------------------------------------------------

    def _book(
        self,
        conn: sqlite3.Connection,
        txn: int,
        posted: bool,
        float_account: int,
        target_account: int,
        price: rules.Price,
        float_after: int,
        notice_rows: tuple[dict[str, Any], ...],
        claim: Claim | None,
        validity: Validity,
    ) -> tuple[OutboxMessage, ...]:
        """A recharge's booking: if posted, the target credited, its prepaid validity
        extended and the journal lines; the notices (a receipt only if posted) with the
        balances, the txn id and the validity put in."""
        balances = [float_after]
        valid_until = None
        if posted:
            balances.append(
                self._run(conn, _CREDIT, acc=target_account, amount=price.amount_fen)[0]
            )
            target = self._run(conn, _TARGET_VALIDITY, acc=target_account)
            if target is not None and target[0] == Billing.PREPAID:
                valid_until = extend(sql.sqlite_date(target[1]), validity.today, validity.days)
                if valid_until != sql.sqlite_date(target[1]):
                    self._run(conn, _SET_VALIDITY, acc=target_account, valid_until=valid_until)
            for line in posting_lines(txn, float_account, target_account, price):
                self._run(conn, _LINES, **line)
        by, until = (claim.worker_id, claim.until) if claim is not None else (None, None)
        stored = []
        for values, balance in zip(notice_rows, balances, strict=False):
            text = notices.fill(values["text"], txn, balance, valid_until)
            row = outbox.stored(values, 0, text, txn, by, until)
            row_id = self._run(conn, _OUTBOX, **{c: getattr(row, c) for c in _OUTBOX_COLUMNS})[0]
            stored.append(outbox.stored(values, row_id, text, txn, by, until))
        return tuple(stored)

    def _resolve(self, resolution: Resolution) -> Written | None:
        txn, posted, now = resolution.txn, resolution.posted, self._ctx.clock.now()
        with self._transaction() as conn:
            outcome = "posted" if posted else "voided"
            values = _RESOLVED.params({"tx_id": txn, "outcome": outcome, "now": now})
            if conn.execute(_RESOLVED.sql, values).rowcount == 0:
                return None  # resolved already (by recovery, or a concurrent call)
            rec = _Row(self._run(conn, _RESERVED, tx_id=txn))
            move = _POST_RESERVED if posted else _VOID_RESERVED
            (float_after,) = self._run(conn, move, acc=rec.float_account, amount=rec.debit_fen)
            self._run(
                conn,
                _SETTLE,
                tx_id=txn,
                status=SUCCEEDED if posted else FAILED,
                float_after=float_after,
                now=now,
                error=resolution.error,
            )
            price = rules.Price(rec.amount_fen, rec.commission_fen)
            stored = self._book(
                conn, txn, posted, rec.float_account, rec.target_account, price, float_after,
                resolution.notices, resolution.claim, resolution.validity,
            )  # fmt: skip
            self._ctx.fault("resolving")
        return Written(txn, stored)

    def _agent_id_for_phone(self, phone: str) -> int | None:
        found = self._run(self._connection(), _BY_PHONE, phone=phone)
        return None if found is None else int(found[0])

    # -- the interface ---------------------------------------------------------------------

    async def recharge(self, op: RechargeOp) -> Written:
        return await self._call(lambda: self._recharge(op))

    async def reserve(self, op: RechargeOp) -> Written:
        return await self._call(lambda: self._reserve(op))

    async def resolve(self, resolution: Resolution) -> Written | None:
        return await self._call(lambda: self._resolve(resolution))

    async def agent_id_for_phone(self, phone: str) -> int | None:
        return await self._call(lambda: self._agent_id_for_phone(phone))

    async def aclose(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._call(close)
        self._thread.shutdown(wait=True)
