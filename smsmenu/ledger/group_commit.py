"""Group commit: concurrent recharges of one process share one transaction, so one commit
(one WAL flush, one lock of a hot float) and a few round trips serve many (internal billing).

A recharge joins the queue; a caller that finds fewer than ``parallel`` batches running leads:
it runs batches until the queue is empty (the others just wait for their result). It is
adaptive: a batch of one — nobody else was waiting — runs on the single path
(``recharge.run``), so a lone recharge pays nothing for batching. A batch admits each recharge
with the same rules as the single path (``admission``); one whose trade password the verify
cache does not know leaves the batch and runs on the single path, which counts the attempt
before the slow hash (``passwords``); the others' lock is checked again, per recharge, by the
batch's guarded writes. On PostgreSQL ``recharge_pg.recharge_many`` reads the batch in one
statement and writes it with one function call that locks the accounts in id order. On SQLite
(``_once``) it stores all keys in one statement, reads the accounts it touches (the write lock
is the database's), checks funds in arrival order, then writes balances, journal, recharge rows
and outbox rows with one statement each. If the batch fails for any reason (a deadlock with
another process, a lost connection), every recharge of it runs on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from smsmenu.ledger import (
    admission,
    notices,
    outbox,
    passwords,
    queries,
    recharge,
    recharge_pg,
    rules,
    views,
)
from smsmenu.ledger import statements as sql
from smsmenu.ledger.api import RechargeRequest, RechargeView, Refusal, Rule
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.entries import SUCCEEDED, posting_lines, recharge_row
from smsmenu.ledger.models import txns
from smsmenu.ledger.unit_of_work import first_result, stored_key, unit_of_work
from smsmenu.money import format_yuan


@dataclass
class _Waiting:
    """A recharge waiting for its batch."""

    request: RechargeRequest
    fingerprint: str
    future: asyncio.Future[RechargeView]


class GroupCommit:
    """The queue of one process's recharges and the batches that drain it."""

    def __init__(self, ctx: LedgerContext, max_batch: int = 64, parallel: int = 2) -> None:
        self.ctx = ctx
        self.max_batch = max_batch
        self.parallel = parallel
        self.batches = 0  # how many batch transactions committed (tests, benchmarks look)
        self._queue: list[_Waiting] = []
        self._running = 0  # batches being led right now
        self._leaders: set[asyncio.Task[None]] = set()

    async def recharge(self, request: RechargeRequest, fingerprint: str) -> RechargeView:
        """Queue the recharge and wait for its batch (leading batches if too few run)."""
        admission.check_request(request)
        future: asyncio.Future[RechargeView] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(request, fingerprint, future))
        if self._running < self.parallel:
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
                    await self._run(batch)
        finally:
            self._running -= 1
            if self._queue and not self._running:  # cancelled: hand the queue on
                task = asyncio.ensure_future(self._lead())
                self._leaders.add(task)
                task.add_done_callback(self._leaders.discard)

    async def _run(self, batch: list[_Waiting]) -> None:
        """The batch in one transaction, or (if that fails) each recharge on its own."""
        ctx = self.ctx
        try:
            outcomes = await self._together(batch) if len(batch) > 1 else None
            if outcomes is None:  # nobody to share with, or the batch failed: one by one
                for waiting in batch:
                    await _settle(waiting, recharge.run(ctx, waiting.request, waiting.fingerprint))
                return
            self.batches += 1
            unchecked = []  # their passwords are to be counted first: on their own, after
            for waiting, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, passwords.Unchecked):
                    unchecked.append(waiting)
                elif isinstance(outcome, Refusal):
                    waiting.future.set_exception(outcome)
                elif outcome is None:  # the key was taken: the first result (or KEY_REUSED)
                    await _settle(waiting, self._repeat(waiting))
                else:
                    waiting.future.set_result(outcome)
            for waiting in unchecked:
                await _settle(waiting, recharge.run(ctx, waiting.request, waiting.fingerprint))
        except BaseException as exc:  # cancelled: nobody may wait for ever
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(RuntimeError(f"recharge batch aborted: {exc!r}"))
            raise

    async def _together(self, batch: list[_Waiting]) -> list[Any] | None:
        """The batch's outcomes, or None if its transaction failed (nothing of it was kept)."""
        try:
            if self.ctx.postgres:
                pairs = [(w.request, w.fingerprint) for w in batch]
                return list(await recharge_pg.recharge_many(self.ctx, pairs))
            return await self._once(batch)
        except Exception:
            return None

    async def _repeat(self, waiting: _Waiting) -> RechargeView:
        ctx, request = self.ctx, waiting.request
        if await stored_key(ctx.engine, request.key) is None:
            # an earlier recharge of the same batch held the key and was refused: the key is
            # free again, so this one runs as if it came alone
            return await recharge.run(ctx, request, waiting.fingerprint)
        txn = await first_result(ctx.engine, request.key, "recharge", waiting.fingerprint)
        return await queries.recharge(ctx.engine, txn)

    async def _once(self, batch: list[_Waiting]) -> list[Any]:
        """Run ``batch`` in one SQLite transaction. Outcome per recharge: its view, a Refusal,
        ``passwords.Unchecked``, or None (key taken)."""
        ctx = self.ctx
        now = ctx.clock.now()
        outcomes: list[Any] = [None] * len(batch)
        async with unit_of_work(ctx.engine) as conn:
            agent_ids = sorted({w.request.agent_id for w in batch})
            notifies = {w.request.notify for w in batch if w.request.notify}
            numbers = sorted({w.request.number for w in batch} | notifies)
            agent_rows = {
                r.id: r for r in (await conn.execute(sql.BATCH_AGENTS, {"ids": agent_ids})).all()
            }
            target_rows = {
                r.number: r
                for r in (await conn.execute(sql.BATCH_TARGETS, {"numbers": numbers})).all()
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
                sqlite_insert(txns)
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
                agent = agent_rows.get(req.agent_id)
                target = target_rows.get(req.number)
                try:
                    if agent is None:
                        raise Refusal(Rule.AGENT_UNKNOWN, agent_id=req.agent_id)
                    admission.agent_can_trade(agent)
                    proof = passwords.admit(ctx, passwords.TRADE, agent, req.pin, now, None)
                    admission.target(
                        target and target.kind, target and target.status, req.kind, req.number
                    )
                    told = target_rows.get(req.notify) if req.notify else None
                    admission.notify(told and told.kind, told and told.status, req.notify)
                except (Refusal, passwords.Unchecked) as exc:
                    outcomes[i] = exc
                    refused_txns.append(txn)
                    continue
                assert target is not None  # admission.target said so
                price = rules.price(req.amount_fen, agent.commission_bp)
                owners.append((i, txn, agent, target, price, proof))
            if not owners:
                if refused_txns:
                    await conn.execute(sql.DELETE_TXNS, {"ids": refused_txns})
                    await conn.commit()
                return outcomes
            ids = sorted({o[2].account_id for o in owners} | {o[3].account_id for o in owners})
            locked = {
                r.id: [r.balance, r.pending]
                for r in (await conn.execute(sql.BATCH_ACCOUNTS, {"ids": ids})).all()
            }
            line_rows: list[dict[str, Any]] = []
            recharge_rows: list[dict[str, Any]] = []
            notice_rows: list[dict[str, Any]] = []
            settles = {}
            for i, txn, agent, target, price, proof in owners:
                req = batch[i].request
                float_acc, target_acc = locked[agent.account_id], locked[target.account_id]
                available = float_acc[0] - float_acc[1]
                if available < price.debit_fen:
                    outcomes[i] = Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=available)
                    refused_txns.append(txn)
                    continue
                float_acc[0] -= price.debit_fen
                target_acc[0] += price.amount_fen
                float_after = float_acc[0] - float_acc[1]
                line_rows += posting_lines(txn, agent.account_id, target.account_id, price)
                row = recharge_row(txn, req, price, SUCCEEDED, now, float_after, None)
                recharge_rows.append(row)
                notice_rows += notices.recharge_result(
                    ctx,
                    now=now,
                    key=req.key,
                    txn=txn,
                    agent_id=req.agent_id,
                    agent_phone=agent.phone,
                    kind=req.kind,
                    number=req.number,
                    notify=req.notify,
                    price=price,
                    float_after=format_yuan(float_after),
                    target_balance=format_yuan(target_acc[0]),
                    route=req.reply_route,
                )
                settles[agent.id] = (agent, proof)
                outcomes[i] = views.recharge(row)
            if refused_txns:
                await conn.execute(sql.DELETE_TXNS, {"ids": refused_txns})
            if recharge_rows:
                await conn.execute(
                    sql.SET_BALANCE,
                    [{"acc": acc, "balance": bal} for acc, (bal, _) in sorted(locked.items())],
                )
                await conn.execute(sql.INSERT_LINES, line_rows)
                await conn.execute(sql.INSERT_RECHARGE, recharge_rows)
                await outbox.add(conn, *notice_rows)
                for agent, proof in settles.values():  # writes only if a count is to be cleared
                    await passwords.settle(conn, passwords.TRADE, agent, proof, now)
            ctx.fault("batch")
            await conn.commit()
        return outcomes


async def _settle(waiting: _Waiting, work: Awaitable[RechargeView]) -> None:
    try:
        waiting.future.set_result(await work)
    except Exception as exc:
        waiting.future.set_exception(exc)
