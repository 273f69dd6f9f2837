"""PostgreSQL's recharge writer: one round trip per recharge, straight through asyncpg.

A recharge is planned on the agent's row (a worker's cached copy, ``agent_cache``; else read
first with the facts around it, ``statements.RECHARGE_CONTEXT``) and written by one call of a
database function of migration 0005 (``ledger_recharge``; ``ledger_reserve`` and
``ledger_resolve`` for two-phase recharges; the booking extends a prepaid target's validity
since 0006), outside an explicit transaction, so that the round
trip is also the commit. The function checks what the plan could not know or assumed and says
which failed (``recharge_plan.Outcome``): on ``stale``, ``target`` or ``notify`` the writer
reads the facts and plans again (with the agent's row locked), so that the rules word any
refusal. With a fault hook set
(tests) the call runs in a transaction with the hook called before the commit, so that a
simulated crash there leaves nothing. Statements are the Core ones of ``statements``, compiled
once for asyncpg: SQLAlchemy's per-execute work was most of the client's CPU.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import asyncpg

from smsmenu.ledger import notices, outbox
from smsmenu.ledger import statements as sql
from smsmenu.ledger.agent_cache import AgentCache
from smsmenu.ledger.api import Refusal, Rule
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.entries import PENDING, SUCCEEDED, recharge_row
from smsmenu.ledger.outbox import OutboxMessage
from smsmenu.ledger.recharge_plan import (
    AgentRow,
    Claim,
    Facts,
    Outcome,
    RechargePlan,
    Written,
    duplicate_since,
    notice_args,
    plan,
    refusal,
)
from smsmenu.ledger.unit_of_work import KeyTaken, check_key
from smsmenu.ledger.views import recharge as recharge_view
from smsmenu.ledger.writer import RechargeOp, Resolution

T = TypeVar("T")

_CONTEXT = sql.AsyncpgStatement(sql.RECHARGE_CONTEXT)
_BY_PHONE = "SELECT id FROM agents WHERE bound_phone = $1"
_LOCK_AGENT = "SELECT 1 FROM agents WHERE id = $1 FOR UPDATE"


def _call(function: str, count: int, outputs: str) -> str:
    return f"SELECT {outputs} FROM {function}({', '.join(f'${n}' for n in range(1, count + 1))})"


_RECHARGE = _call(
    "ledger_recharge",
    34,
    "outcome, txn, float_after, target_balance, available, agent_outbox, receipt_outbox,"
    " agent_version, target_valid",
)
_RESERVE = _call("ledger_reserve", 18, "outcome, txn, available, agent_version")
_RESOLVE = _call(
    "ledger_resolve",
    20,
    "outcome, float_after, target_balance, agent_outbox, receipt_outbox, target_valid",
)
#: Attempts, with the agent locked, to plan on facts that stay put (its target or notify
#: number can still change meanwhile) before giving up.
_TRIES = 3


class PostgresWriter:
    """See the module notes. ``cache``: a worker's ``AgentCache`` (None: read every time)."""

    def __init__(self, ctx: LedgerContext, cache: AgentCache | None = None) -> None:
        self._ctx = ctx
        self.cache = cache

    async def _raw(self, work: Callable[[Any], Awaitable[T]]) -> T:
        async with self._ctx.engine.connect() as conn:
            raw: Any = (await conn.get_raw_connection()).driver_connection
            return await work(raw)

    async def _fetch(self, raw: Any, query: str, fault: tuple[str, ...], *args: Any) -> Any:
        """One call of a function: on its own (its round trip is its commit), or, with a fault
        hook set, in a transaction with the hook called (``fault``) before the commit."""
        ctx = self._ctx
        try:
            if ctx.faults is None:
                return await raw.fetchrow(query, *args)
            async with raw.transaction():
                row = await raw.fetchrow(query, *args)
                if row["outcome"] == Outcome.OK:
                    for step in fault:
                        ctx.fault(step)
                return row
        except asyncpg.UniqueViolationError:  # a twin with the same key won the race
            raise KeyTaken from None

    # -- taking a recharge in --------------------------------------------------------------

    async def _read(self, raw: Any, op: RechargeOp) -> tuple[AgentRow, Facts]:
        request, now = op.request, self._ctx.clock.now()
        values = {
            "agent_id": request.agent_id,
            "number": request.number,
            "notify": request.notify,
            "key": request.key,
            "amount": request.amount_fen,
            "since": duplicate_since(request, now),
        }
        found = await raw.fetchrow(_CONTEXT.sql, *_CONTEXT.args(values))
        if found is None:
            raise Refusal(Rule.AGENT_UNKNOWN, agent_id=request.agent_id)
        row = sql.AsyncpgRow(found)
        agent = AgentRow.of(row)
        if self.cache is not None:
            self.cache.keep(agent)
        return agent, Facts.of(row)

    def _take_in_args(self, p: RechargePlan) -> tuple[Any, ...]:
        request, price = p.request, p.price
        rehash_from, rehash_to = p.proof.rehash or (None, None)
        return (
            request.key,
            p.fingerprint,
            request.agent_id,
            p.agent.version,
            p.agent.account_id,
            request.number,
            request.kind.value,
            request.notify,
            p.notify_phs,
            price.amount_fen,
            price.commission_fen,
            price.debit_fen,
            request.retry_of,
            p.now,
            p.duplicate_since,
            p.clear_pin,
            rehash_from,
            rehash_to,
        )

    async def _take_in(
        self, raw: Any, op: RechargeOp, query: str, reserve: bool
    ) -> tuple[RechargePlan, Any]:
        """Plan on the cached row (or read), call ``query`` with the plan: the plan and the
        function's row. When the function finds the plan was not made on the facts (another
        operation changed the agent meanwhile: busy agents do), read and plan again with the
        agent's row locked, so that the next plan cannot be stale."""
        check_key(op.request.key)
        agent = self.cache.row(op.request.agent_id) if self.cache is not None else None
        if op.proof is not None and op.proof.counted:
            agent = None  # counting the attempt changed the row since it was cached
        done = await self._attempt(raw, op, agent, query, reserve)
        for _ in range(_TRIES):
            if done is not None:
                return done
            async with raw.transaction():
                await raw.execute(_LOCK_AGENT, op.request.agent_id)
                done = await self._attempt(raw, op, None, query, reserve)
        raise RuntimeError(f"agent {op.request.agent_id}'s facts kept changing during a recharge")

    async def _attempt(
        self, raw: Any, op: RechargeOp, agent: AgentRow | None, query: str, reserve: bool
    ) -> tuple[RechargePlan, Any] | None:
        """Plan (on ``agent``, else on a fresh read) and call the function: None when it says
        the plan was not made on the facts (``stale``, ``target``, ``notify``)."""
        facts: Facts | None = None
        if agent is None:
            agent, facts = await self._read(raw, op)
        now = self._ctx.clock.now()
        p = plan(self._ctx, agent, op.request, op.fingerprint, now, op.proof, facts, op.claim)
        args = self._take_in_args(p)
        if not reserve:
            args += (p.validity.days, p.validity.today, *p.notice_args())
        fault = ("reserved",) if reserve else ("credited", "posting")
        row = await self._fetch(raw, query, fault, *args)
        outcome = Outcome(row["outcome"])
        if outcome is Outcome.OK:
            self._written(p, row["agent_version"])
            return p, row
        if outcome is Outcome.KEY:
            raise KeyTaken
        if outcome in (Outcome.DUPLICATE, Outcome.FUNDS):
            raise refusal(outcome, op.request, row["available"])
        if self.cache is not None:
            self.cache.changed(agent.id)
        return None

    def _written(self, p: RechargePlan, version: int) -> None:
        """The cached copy of the agent as the plan's writes left it (the count cleared, the
        password hash replaced: the row's new version)."""
        if self.cache is None or version == p.agent.version:
            return
        changes: dict[str, Any] = {"version": version}
        if p.clear_pin:
            changes.update(pin_failures=0, pin_locked_until=None)
        if p.proof.rehash is not None:
            changes["trade_hash"] = p.proof.rehash[1]
        self.cache.keep(replace(p.agent, **changes))

    async def recharge(self, op: RechargeOp) -> Written:
        async def work(raw: Any) -> Written:
            p, row = await self._take_in(raw, op, _RECHARGE, reserve=False)
            txn = row["txn"]
            stored = _stored(p.notices, p.claim, txn, row, row["float_after"])
            view = recharge_view(
                recharge_row(txn, p.request, p.price, SUCCEEDED, p.now, row["float_after"])
            )
            return Written(txn, stored, view)

        return await self._raw(work)

    async def reserve(self, op: RechargeOp) -> Written:
        async def work(raw: Any) -> Written:
            p, row = await self._take_in(raw, op, _RESERVE, reserve=True)
            txn = row["txn"]
            view = recharge_view(recharge_row(txn, p.request, p.price, PENDING, p.now, None))
            return Written(txn, (), view)

        return await self._raw(work)

    async def resolve(self, resolution: Resolution) -> Written | None:
        async def work(raw: Any) -> Written | None:
            now = self._ctx.clock.now()
            validity = resolution.validity
            args = (
                resolution.txn,
                resolution.posted,
                resolution.error,
                now,
                validity.days,
                validity.today,
            )
            notice = notice_args(resolution.notices, resolution.claim)
            row = await self._fetch(raw, _RESOLVE, ("resolving",), *args, *notice)
            if row["outcome"] != Outcome.OK:
                return None  # resolved already (by recovery, or a concurrent call)
            stored = _stored(
                resolution.notices, resolution.claim, resolution.txn, row, row["float_after"]
            )
            return Written(resolution.txn, stored)

        return await self._raw(work)

    async def agent_id_for_phone(self, phone: str) -> int | None:
        cache = self.cache
        if cache is not None:
            known, agent_id = cache.phone(phone)
            if known:
                return agent_id
        found = await self._raw(lambda raw: raw.fetchval(_BY_PHONE, phone))
        agent_id = None if found is None else int(found)
        if cache is not None:
            cache.keep_phone(phone, agent_id)
        return agent_id

    async def aclose(self) -> None:
        if self.cache is not None:
            await self.cache.aclose()


def _stored(
    rows: tuple[dict[str, Any], ...],
    claim: Claim | None,
    txn: int,
    written: Any,
    float_after: int,
) -> tuple[OutboxMessage, ...]:
    """The notices as the function stored them (it filled the same markers)."""
    by, until = (claim.worker_id, claim.until) if claim is not None else (None, None)
    found = []
    for values, row_id, balance in zip(
        rows,
        (written["agent_outbox"], written["receipt_outbox"]),
        (float_after, written["target_balance"]),
        strict=False,
    ):
        if row_id is not None:
            text = notices.fill(values["text"], txn, balance, written["target_valid"])
            found.append(outbox.stored(values, row_id, text, txn, by, until))
    return tuple(found)


__all__ = ["PostgresWriter"]
