"""Trade and management passwords in use: counting attempts, lock-out, the proof of a right one.

Theory of operation
-------------------
SPEC §10: three wrong passwords in a row lock that password's operations for 30 minutes, per
agent, whatever the channel, across restarts and under concurrent attempts (a fourth never
reaches the password check). Trade operations are recharges (and retries), transfers, balance,
records and the trade password's change; management ones are its change and the web login. Each
password has its count of attempts and its lock in ``agents`` (``Password``).

*The attempt is the guarded write.* An attempt that the verify cache (``pins.PinVault``) does
not know to be right is counted before the slow hash runs: ``check`` adds one to the count with
a guarded ``UPDATE`` (only while no lock holds), committed on its own. The write that makes the
count three also sets the lock, *provisionally*: with the count left at three it means "three
attempts are being checked". A fourth attempt never reaches the hash: it waits a moment for the
three to be answered (``WAITS``) and is then either counted (they were right) or refused as
locked. The third attempt settles its provisional lock: wrong, it confirms it (count back to
zero, the lock kept: the 30 minutes run from that third attempt); right, it lifts it. The first
two, wrong, keep their count and write nothing more. So concurrent guesses get at most three
answers per lock period, and an attempt lost in a crash leaves at worst a lock that ends by
itself.

*The operation settles.* An operation reads its row and ``admit``s: refused while a confirmed
lock holds (not the proof's own, not a provisional one); without a proof, it goes on only on the
cache's word that the password is right, else raises ``Unchecked`` (roll back, ``check``, run
again: ``checked``). Then, in its own transaction after its money writes, ``settle`` clears the
count and the proof's own lock with a guarded write that fails if a lock was set since: the
operation is refused and rolls back, so a right password arriving after a lock never moves
anything. A recharge's writer settles in its own writes (``recharge_plan.RechargePlan.
clear_pin``; on PostgreSQL the function refuses a plan made on a row changed since: migration
0005). A right password whose operation is then refused for another reason gives its
count back (``release``).

The hot path — a password the cache knows, nothing counted — costs no extra statement (and no
write unless a count is to be cleared); a cache miss costs one round trip, the count. A right
password whose stored hash is an older release's (not peppered, ``pins``) has it replaced in
the operation's transaction too.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Column, and_, bindparam, case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from smsmenu.ledger import rules
from smsmenu.ledger.api import Refusal, Rule
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.models import UTCDateTime, agents
from smsmenu.ledger.statements import AsyncpgRow, AsyncpgStatement
from smsmenu.ledger.unit_of_work import KeyTaken

T = TypeVar("T")

#: How long a fourth attempt waits, pause by pause, for three being checked to be answered
#: (a check takes a few milliseconds; about 1.3 s in all before it is refused as locked).
WAITS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64)


class _Sql:
    """A statement built once, for SQLAlchemy (``core``) and compiled for asyncpg (``pg``)."""

    def __init__(self, statement: Any) -> None:
        self.core = statement

    @functools.cached_property
    def pg(self) -> AsyncpgStatement:
        """Compiled on first use: a process on SQLite never loads the PostgreSQL dialect."""
        return AsyncpgStatement(self.core)


class Password:
    """One of an agent's two passwords: its columns, its refusals and its guarded writes."""

    def __init__(
        self, hash_: Column[Any], failures: Column[Any], locked: Column[Any], rule: Rule, lock: Rule
    ) -> None:
        self.hash_key, self.failures_key, self.locked_key = hash_.key, failures.key, locked.key
        self.wrong_rule, self.locked_rule = rule, lock
        self.trade = rule is Rule.WRONG_PIN
        agent = agents.c.id == bindparam("agent_id")
        now = bindparam("now", type_=UTCDateTime())
        own_lock = bindparam("own_lock", type_=UTCDateTime())
        unlocked = or_(locked.is_(None), locked <= now)
        #: Count one attempt unless a lock holds (a lock that ended starts a new row); the one
        #: that makes the count three sets the (provisional) lock.
        self.count = _Sql(
            update(agents)
            .where(agent, unlocked)
            .values(
                {
                    failures: case((locked.is_(None), failures + 1), else_=1),
                    locked: case(
                        (
                            and_(locked.is_(None), failures + 1 >= rules.PIN_MAX_FAILURES),
                            bindparam("until", type_=UTCDateTime()),
                        ),
                        else_=None,
                    ),
                }
            )
            .returning(
                failures.label("failures"), locked.label("locked_until"), hash_.label("hash")
            )
        )
        #: The third attempt was wrong: its provisional lock is confirmed.
        self.confirm = _Sql(
            update(agents)
            .where(agent, locked == own_lock)
            .values({failures: 0})
            .returning(agents.c.id)
        )
        #: A right password clears the count and its own lock, unless another lock holds.
        self.clear = _Sql(
            update(agents)
            .where(agent, or_(unlocked, locked == own_lock))
            .values({failures: 0, locked: None})
            .returning(agents.c.id)
        )
        self.lock = _Sql(select(failures, locked).where(agent))
        #: A hash of an older release that verified, replaced (unless changed meanwhile).
        self.rehash = (
            update(agents)
            .where(agent, hash_ == bindparam("old_hash"))
            .values({hash_: bindparam("new_hash")})
        )

    def owner(self, agent_id: int) -> int:
        """The verify cache's owner of this password of ``agent_id``."""
        return agent_id if self.trade else -agent_id

    def lock_of(self, agent: Any, now: datetime, own: datetime | None = None) -> datetime | None:
        """The lock that refuses an operation on ``agent``'s row: one that has not ended, is not
        ``own`` (a proof's own) and is confirmed (not three attempts still being checked)."""
        locked: datetime | None = getattr(agent, self.locked_key)
        if locked is None or locked <= now or locked == own:
            return None
        return None if getattr(agent, self.failures_key) >= rules.PIN_MAX_FAILURES else locked


TRADE = Password(
    agents.c.trade_hash,
    agents.c.pin_failures,
    agents.c.pin_locked_until,
    Rule.WRONG_PIN,
    Rule.PIN_LOCKED,
)
MGMT = Password(
    agents.c.mgmt_hash,
    agents.c.mgmt_failures,
    agents.c.mgmt_locked_until,
    Rule.WRONG_MGMT_PIN,
    Rule.MGMT_PIN_LOCKED,
)


@dataclass(frozen=True)
class Proof:
    """A password found right: on the cache's word (``counted`` False), or by an attempt that
    ``check`` counted first (a refusal after it gives the count back); ``own_lock`` is the
    provisional lock that count set (it was the third): the one lock the proof may lift;
    ``rehash``: the stored hash is an older release's, to be replaced (``pins``)."""

    agent_id: int
    counted: bool = False
    own_lock: datetime | None = None
    rehash: tuple[str, str] | None = None  # (the hash that verified, its peppered successor)


class Unchecked(Exception):
    """The verify cache does not know the password to be right: roll back, ``check`` it (count,
    then verify), and run again with the proof. ``key_free``: the operation read in its own
    transaction that its idempotency key is not stored (no need to look it up first)."""

    def __init__(self, key_free: bool = False) -> None:
        super().__init__()
        self.key_free = key_free


def pin_format(pin: str) -> None:
    """BAD_PIN_FORMAT unless ``pin`` is 6 ASCII digits: checked before any password is, so a
    malformed one counts nothing."""
    rule = rules.pin_format_rule(pin)
    if rule:
        raise Refusal(rule)


def admit(
    ctx: LedgerContext,
    password: Password,
    agent: Any,
    pin: str,
    now: datetime,
    proof: Proof | None,
) -> Proof:
    """In an operation, on the row it read (``id`` and the password's hash, count and lock):
    the proof to go on with. Refused while a lock holds (``Password.lock_of``); without a
    proof, ``Unchecked`` unless the cache knows ``pin`` to be right."""
    until = password.lock_of(agent, now, proof.own_lock if proof else None)
    if until is not None:
        raise Refusal(password.locked_rule, until=until)
    if proof is not None:
        return proof
    if ctx.pins.known(password.owner(agent.id), getattr(agent, password.hash_key), pin):
        return Proof(agent.id)
    raise Unchecked


async def check(
    ctx: LedgerContext, password: Password, agent_id: int, pin: str, raw: Any = None
) -> Proof:
    """Count the attempt (committed; waiting while three are being checked), then verify it:
    its proof, or its refusal (how many tries remain; the third: locked, until when). ``raw``:
    an asyncpg connection outside any transaction to count on (PostgreSQL's recharge)."""
    now = ctx.clock.now()
    params = {"agent_id": agent_id, "now": now, "until": now + rules.PIN_LOCK}
    for pause in (*WAITS, None):
        counted, lock = await _guarded(ctx, password, password.count, params, raw)
        if counted is not None:
            break
        if lock is None:
            raise Refusal(Rule.AGENT_UNKNOWN, agent_id=agent_id)
        held = password.lock_of(lock, now)
        if held is not None or pause is None:  # locked, or three still being checked
            until = held or getattr(lock, password.locked_key) or now
            raise Refusal(password.locked_rule, until=until)
        await asyncio.sleep(pause)  # three are being checked: their answer decides
    if await ctx.pins.check(password.owner(agent_id), counted.hash, pin):
        stored: str = counted.hash
        rehash = (stored, ctx.pins.hash(pin)) if ctx.pins.needs_rehash(stored) else None
        return Proof(agent_id, True, counted.locked_until, rehash)
    if counted.locked_until is None:
        raise Refusal(password.wrong_rule, remaining=rules.PIN_MAX_FAILURES - counted.failures)
    params["own_lock"] = counted.locked_until
    await _guarded(ctx, password, password.confirm, params, raw)
    raise Refusal(password.locked_rule, until=counted.locked_until)


async def settle(
    conn: AsyncConnection, password: Password, agent: Any, proof: Proof, now: datetime
) -> None:
    """In the operation's transaction, after its money writes: clear the count (written only if
    there is one) and the proof's own lock; refused (the operation rolls back) if a lock was
    set since ``agent`` was read. A provisional lock of three others is theirs to settle. An
    older release's hash that verified is replaced by a peppered one."""
    if proof.rehash is not None:
        old_hash, new_hash = proof.rehash
        params = {"agent_id": proof.agent_id, "old_hash": old_hash, "new_hash": new_hash}
        await conn.execute(password.rehash, params)
    if not getattr(agent, password.failures_key) and getattr(agent, password.locked_key) is None:
        return
    params = {"agent_id": proof.agent_id, "now": now, "own_lock": proof.own_lock}
    if (await conn.execute(password.clear.core, params)).first() is None:
        lock = (await conn.execute(password.lock.core, params)).one()
        until = password.lock_of(lock, now, proof.own_lock)
        if until is not None:
            raise Refusal(password.locked_rule, until=until)


async def release(ctx: LedgerContext, password: Password, proof: Proof, raw: Any = None) -> None:
    """A right password whose operation was refused for another reason: its count (and its own
    lock) cleared on their own, so that it never counts as a wrong one."""
    if proof.counted:
        params = {"agent_id": proof.agent_id, "now": ctx.clock.now(), "own_lock": proof.own_lock}
        await _guarded(ctx, password, password.clear, params, raw)


async def checked(
    ctx: LedgerContext,
    password: Password,
    agent_id: int,
    pin: str,
    operation: Callable[[Proof | None], Awaitable[T]],
    raw: Any = None,
    before_check: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """Run ``operation`` (it ``admit``s on the row it reads, then ``settle``s): on the cache's
    word first; if it raises ``Unchecked``, ``check`` the password (after ``before_check``,
    which may raise: a repeated operation's key is looked up before anything is counted) and
    run it again with the proof, giving the count back if it is refused for another reason (or
    its key was taken)."""
    try:
        return await operation(None)
    except Unchecked as unchecked:
        key_free = unchecked.key_free
    if before_check is not None and not key_free:
        await before_check()
    proof = await check(ctx, password, agent_id, pin, raw)
    try:
        return await operation(proof)
    except (Refusal, KeyTaken):
        await release(ctx, password, proof, raw)
        raise


async def _guarded(
    ctx: LedgerContext, password: Password, write: _Sql, params: dict[str, Any], raw: Any
) -> tuple[Any, Any]:
    """Run the guarded write ``write`` of ``password`` on its own, committed: its row, or None
    and the count and lock it found (None: no such agent)."""
    if raw is not None:
        return await _guarded_pg(raw, password, write, params)
    async with ctx.engine.connect() as conn:
        if ctx.postgres:
            driver = (await conn.get_raw_connection()).driver_connection
            return await _guarded_pg(driver, password, write, params)
        await conn.begin()
        row = (await conn.execute(write.core, params)).first()
        lock = None if row else (await conn.execute(password.lock.core, params)).first()
        await conn.commit()
        return row, lock


async def _guarded_pg(
    raw: Any, password: Password, write: _Sql, params: dict[str, Any]
) -> tuple[Any, Any]:
    """``_guarded`` straight through asyncpg: one round trip in autocommit (two if refused)."""
    row = await raw.fetchrow(write.pg.sql, *write.pg.args(params))
    if row is not None:
        return AsyncpgRow(row), None
    lock = await raw.fetchrow(password.lock.pg.sql, *password.lock.pg.args(params))
    return None, lock and AsyncpgRow(lock)
