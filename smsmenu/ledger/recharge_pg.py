"""PostgreSQL: recharges (internal billing) in two round trips, straight through asyncpg.

(1) ``READ`` fetches everything the rules need, whether the key is stored already and the next
txn id, in one statement (no transaction: a plain snapshot read); the rules are then checked in
Python (``admission.admit``, the one source of the rules) and the texts rendered with
``notices.MARK`` where the balances go; (2) the database function ``ledger_post_recharge``
(migration 0003) does only the guarded writes — the trade password's lock checked again, the
key (unique), the float's guarded debit, the target's credit, the count of wrong passwords
cleared (and an older release's password hash replaced), the journal lines, the recharge row
and the outbox rows with the balances it computed — outside an explicit transaction, so that
one round trip is also the commit. A trade password
the verify cache does not know is counted before (``passwords.check``, one more round trip on
the same connection). ``recharge_many`` does the same for a group-commit batch with
``READ_MANY`` and ``ledger_post_recharges``: two round trips and one commit for the whole batch
(a recharge whose password is to be counted leaves the batch and runs on its own).

What the snapshot read may have missed is caught by the guards: a key stored meanwhile fails the
unique index (``KeyTaken``: the first result; in a batch the whole batch fails and its recharges
run one by one), funds spent meanwhile fail the debit's guard (INSUFFICIENT_FUNDS, nothing
written), a trade password locked meanwhile refuses the recharge (PIN_LOCKED, nothing written).
With a fault hook set (tests) the function runs inside a transaction with the hook called
before the commit, so a simulated crash there leaves nothing. Statements go through the pooled
connection's asyncpg driver, compiled once from the Core statements: SQLAlchemy's per-execute
work was most of the client's CPU, and each round trip costs a context switch to the server on
a loaded machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Integer, String, bindparam, func, literal_column, select, true

from smsmenu.ledger import admission, notices, passwords, rules, views
from smsmenu.ledger.api import RechargeRequest, RechargeView, Refusal, Rule
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.entries import SUCCEEDED, recharge_row
from smsmenu.ledger.models import agents, txns
from smsmenu.ledger.statements import (
    AGENT_CONTEXT,
    AGENT_CONTEXT_COLUMNS,
    AsyncpgRow,
    AsyncpgStatement,
    with_agent_context,
)
from smsmenu.ledger.unit_of_work import KeyTaken, check_key

_KNOWN = txns.alias("known")
_EXTRA = (
    _KNOWN.c.id.label("known"),
    func.nextval(literal_column("'txns_id_seq'")).label("next_txn"),
)


READ = AsyncpgStatement(
    AGENT_CONTEXT.add_columns(*_EXTRA).outerjoin(_KNOWN, _KNOWN.c.key == bindparam("key"))
)
_requests = (
    func.unnest(
        bindparam("agent_ids", type_=ARRAY(Integer)),
        bindparam("numbers", type_=ARRAY(String)),
        bindparam("keys", type_=ARRAY(String)),
        bindparam("notifies", type_=ARRAY(String)),
    )
    .table_valued("agent_id", "number", "key", "notify", with_ordinality="i")
    .render_derived()
)
# One agent context per request, each looked up by index (LATERAL: the plan of ``READ``, not
# hash joins over whole tables).
_context = (
    select(*AGENT_CONTEXT_COLUMNS, *_EXTRA)
    .select_from(
        with_agent_context(agents, _requests.c.number, _requests.c.notify).outerjoin(
            _KNOWN, _KNOWN.c.key == _requests.c.key
        )
    )
    .where(agents.c.id == _requests.c.agent_id)
    .lateral("c")
)
READ_MANY = AsyncpgStatement(
    select(_requests.c.i, _context)
    .select_from(_requests.outerjoin(_context, true()))
    .order_by(_requests.c.i)
)
_ARGS = 28
_PLACEHOLDERS = ", ".join(f"${n}" for n in range(1, _ARGS + 1))
POST = (
    "SELECT txn, float_after, target_balance, locked_until"
    f" FROM ledger_post_recharge({_PLACEHOLDERS})"
)
POST_MANY = (
    "SELECT i, outcome, txn, float_after, target_balance, locked_until"
    f" FROM ledger_post_recharges({_PLACEHOLDERS}) ORDER BY i"
)
_SCALAR_ARGS = (11, 15)  # p_now and p_source: one for the whole batch


def _prepare(
    ctx: LedgerContext,
    agent: Any,
    request: RechargeRequest,
    fingerprint: str,
    retry_of: int | None,
    now: datetime,
    proof: passwords.Proof | None,
) -> tuple[rules.Price, tuple[Any, ...]]:
    """Admit the recharge (``KeyTaken``, ``passwords.Unchecked``, ``Refusal``) and build the
    arguments of ``ledger_post_recharge``."""
    if agent.known is not None:
        raise KeyTaken
    price, proof = admission.admit(ctx, agent, request, now, proof)
    txn = agent.next_txn
    agent_notice, *receipts = notices.recharge_result(
        ctx,
        now=now,
        key=request.key,
        txn=txn,
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
    receipt = receipts[0] if receipts else None
    assert receipt is None or receipt["transport"] == "sms"  # what the function writes
    return price, (
        txn,
        request.key,
        fingerprint,
        request.agent_id,
        request.number,
        request.kind.value,
        price.amount_fen,
        price.commission_fen,
        price.debit_fen,
        request.notify,
        retry_of,
        now,
        agent.account_id,
        agent.t_account,
        proof.own_lock,
        ctx.service_number,
        agent_notice["destination"],
        agent_notice["text"],
        agent_notice["transport"],
        agent_notice["ussd_session"],
        agent_notice["ussd_umr"],
        agent_notice["final"],
        agent_notice["dedup_key"],
        receipt and receipt["destination"],
        receipt and receipt["text"],
        receipt and receipt["dedup_key"],
        *(proof.rehash or (None, None)),
    )


async def _call(ctx: LedgerContext, raw: Any, fault: str, sql: str, *args: Any) -> Any:
    """Run the posting function: on its own (its round trip is its commit), or, with a fault
    hook set, in a transaction with the hook called before the commit."""
    if ctx.faults is None:
        return await raw.fetch(sql, *args)
    async with raw.transaction():
        rows = await raw.fetch(sql, *args)
        ctx.fault(fault)
        if fault == "credited":
            ctx.fault("posting")
        return rows


def _view(
    request: RechargeRequest,
    price: rules.Price,
    now: datetime,
    posted: Any,
    retry_of: int | None,
) -> RechargeView:
    after = posted["float_after"]
    return views.recharge(
        recharge_row(posted["txn"], request, price, SUCCEEDED, now, after, retry_of)
    )


async def recharge(
    ctx: LedgerContext, request: RechargeRequest, fingerprint: str, retry_of: int | None
) -> RechargeView:
    """One recharge; raises ``KeyTaken`` / ``Refusal`` as the generic path (``recharge.run``
    with ``at_once``) does."""
    check_key(request.key)
    async with ctx.engine.connect() as conn:
        raw: Any = (await conn.get_raw_connection()).driver_connection
        agent = await read(raw, request)
        return await post(ctx, raw, agent, request, fingerprint, retry_of)


async def read(raw: Any, request: RechargeRequest) -> Any:
    """The agent context row of ``request`` (round trip 1), with its key's txn id if stored."""
    values = {
        "number": request.number,
        "agent_id": request.agent_id,
        "key": request.key,
        "notify": request.notify,
    }
    record = await raw.fetchrow(READ.sql, *READ.args(values))
    if record is None:
        if await raw.fetchval("SELECT id FROM txns WHERE key = $1", request.key) is not None:
            raise KeyTaken
        raise Refusal(Rule.AGENT_UNKNOWN, agent_id=request.agent_id)
    return AsyncpgRow(record)


async def post(
    ctx: LedgerContext,
    raw: Any,
    agent: Any,
    request: RechargeRequest,
    fingerprint: str,
    retry_of: int | None,
) -> RechargeView:
    """Admit the recharge on ``agent`` (what ``read`` found) and post it (round trip 2); a
    trade password the cache does not know is counted first (one more round trip)."""
    return await passwords.checked(
        ctx,
        passwords.TRADE,
        request.agent_id,
        request.pin,
        lambda proof: _post(ctx, raw, agent, request, fingerprint, retry_of, proof),
        raw,
    )


async def _post(
    ctx: LedgerContext,
    raw: Any,
    agent: Any,
    request: RechargeRequest,
    fingerprint: str,
    retry_of: int | None,
    proof: passwords.Proof | None,
) -> RechargeView:
    import asyncpg  # here, not at import: a command on SQLite never loads it

    now = ctx.clock.now()
    price, args = _prepare(ctx, agent, request, fingerprint, retry_of, now, proof)
    try:
        (posted,) = await _call(ctx, raw, "credited", POST, *args)
    except asyncpg.UniqueViolationError:
        raise KeyTaken from None
    except asyncpg.ObjectNotInPrerequisiteStateError:  # locked after the function's check
        lock = passwords.TRADE.lock.pg
        until = await raw.fetchval(lock.sql, *lock.args({"agent_id": request.agent_id}))
        raise Refusal(Rule.PIN_LOCKED, until=until) from None
    if posted["locked_until"] is not None:
        raise Refusal(Rule.PIN_LOCKED, until=posted["locked_until"])
    if posted["txn"] is None:  # a concurrent recharge took the money first
        raise Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=agent.balance - agent.pending)
    return _view(request, price, now, posted, retry_of)


#: What ``recharge_many`` says of each recharge: its view, a refusal, ``Unchecked`` (its trade
#: password is to be counted and checked first: the caller runs it on its own), or None (the
#: key was stored already: the caller fetches the first result).
Outcome = RechargeView | Refusal | passwords.Unchecked | None


async def recharge_many(
    ctx: LedgerContext, batch: Sequence[tuple[RechargeRequest, str]]
) -> list[Outcome]:
    """A group-commit batch of (request, fingerprint): one read, one call, one commit."""
    now = ctx.clock.now()
    outcomes: list[Outcome] = [None] * len(batch)
    values: dict[str, list[Any]] = {
        "agent_ids": [request.agent_id for request, _ in batch],
        "numbers": [request.number for request, _ in batch],
        "keys": [request.key for request, _ in batch],
        "notifies": [request.notify for request, _ in batch],
    }
    for key in values["keys"]:
        check_key(key)
    async with ctx.engine.connect() as conn:
        raw: Any = (await conn.get_raw_connection()).driver_connection
        records = await raw.fetch(READ_MANY.sql, *READ_MANY.args(values))
        prepared: list[tuple[int, rules.Price]] = []
        keys: set[str] = set()
        columns: list[list[Any]] = [[] for _ in range(_ARGS)]
        for i, ((request, fingerprint), record) in enumerate(zip(batch, records, strict=True)):
            agent = AsyncpgRow(record)
            if agent.id is None or request.key in keys:
                # no such agent, or the key twice in the batch: None, and the single path
                # (via the first result) sorts it out
                continue
            keys.add(request.key)
            try:
                price, args = _prepare(ctx, agent, request, fingerprint, None, now, None)
            except KeyTaken:
                continue
            except (Refusal, passwords.Unchecked) as exc:
                outcomes[i] = exc
                continue
            prepared.append((i, price))
            for column, arg in zip(columns, args, strict=True):
                column.append(arg)
        if not prepared:
            return outcomes
        call_args = [column[0] if n in _SCALAR_ARGS else column for n, column in enumerate(columns)]
        posted_rows = await _call(ctx, raw, "batch", POST_MANY, *call_args)
    for (i, price), posted in zip(prepared, posted_rows, strict=True):
        request = batch[i][0]
        if posted["outcome"] == "ok":
            outcomes[i] = _view(request, price, now, posted, None)
        elif posted["outcome"] == "locked":
            outcomes[i] = Refusal(Rule.PIN_LOCKED, until=posted["locked_until"])
        elif posted["outcome"] == "funds":
            record = records[i]
            available = record["balance"] - record["pending"]
            outcomes[i] = Refusal(Rule.INSUFFICIENT_FUNDS, available_fen=available)
    return outcomes
