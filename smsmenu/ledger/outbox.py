"""The transactional outbox: texts written in the same transaction as the money they report.

Units of work call ``add`` on their own connection, so a notice exists exactly when its money
moved. The SMPP sender (another component) drives the rest through ``Outbox``:

``claim`` leases up to ``limit`` due rows to one worker (``status`` queued → sending, with
``claimed_by``/``claimed_until``; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so that concurrent
workers never claim the same row; on SQLite the write transaction serialises claimers). A row
whose lease expired (the worker died or stalled) is claimable again: the only resend SMPP
allows, since a worker that died after submit_sm and before ``record`` cannot know if the SMSC
took it.

Fencing. Every claim adds one to ``attempts``, so ``(id, claimed_by, attempts)`` names one
claim: its ``Lease``. Every write to a claimed row — ``renew``, ``mark_failed``, recording the
submit in ``record`` — names its lease and changes nothing unless the row is still ``sending``
under that very claim. A worker whose lease lapsed and whose row another claim took (and maybe
sent) can thus neither extend, requeue nor overwrite it: no third send, no lost record. A lapsed
lease that nobody took yet is still that claim's (renewing it is safe: nobody else sent).
Delivery outcomes (``record``'s second list, ``apply_receipts``) apply to rows already sent,
and by row only to the copy whose SMSC message id they name.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Row,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from smsmenu.clock import Clock
from smsmenu.digits import masked
from smsmenu.ledger.models import UTCDateTime, outbox
from smsmenu.ledger.statements import SqliteStatement
from smsmenu.messages import SMS, Route, Transport

if TYPE_CHECKING:
    from smsmenu.ledger.writer_sqlite import SqliteWriter

QUEUED, SENDING, SENT, FAILED = "queued", "sending", "sent", "failed"
DELIVERED, UNDELIVERABLE = "delivered", "undeliverable"


@dataclass(frozen=True)
class Lease:
    """One claim of one row: the fencing token every write under that claim names."""

    id: int
    worker: str
    attempt: int  # the ``attempts`` value the claim set


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    created_at: datetime
    source: str
    destination: str
    text: str
    transport: str
    ussd_session: int | None
    ussd_umr: int | None
    final: bool
    kind: str
    ref: int | None
    dedup_key: str
    status: str
    attempts: int
    next_attempt_at: datetime
    claimed_by: str | None
    claimed_until: datetime | None
    smsc_message_id: str | None
    submitted_at: datetime | None
    delivered_at: datetime | None
    error: str | None

    @property
    def lease(self) -> Lease:
        """The claim this row was read under (rows returned by ``claim``)."""
        assert self.claimed_by is not None, "not a claimed row"
        return Lease(self.id, self.claimed_by, self.attempts)

    @property
    def route(self) -> Route:
        """The ``messages.Route`` this row travels by."""
        from smsmenu.messages import UssdDialogue

        if self.transport == Transport.USSD.value and self.ussd_session is not None:
            return Route(Transport.USSD, UssdDialogue(self.ussd_session, self.ussd_umr), self.final)
        return SMS


def _message(row: Row[Any]) -> OutboxMessage:
    return OutboxMessage(**row._asdict())


def stored(
    values: dict[str, Any],
    id: int,
    text: str,
    ref: int,
    claimed_by: str | None,
    claimed_until: datetime | None,
) -> OutboxMessage:
    """A row as a writer stored it: ``values`` (from ``row``) with its id, final text and ref,
    claimed for ``claimed_by`` (status sending, first attempt) or queued."""
    claimed = claimed_by is not None
    return OutboxMessage(
        **{
            **values,
            "id": id,
            "text": text,
            "ref": ref,
            "status": SENDING if claimed else QUEUED,
            "attempts": 1 if claimed else 0,
            "claimed_by": claimed_by,
            "claimed_until": claimed_until,
            "smsc_message_id": None,
            "submitted_at": None,
            "delivered_at": None,
            "error": None,
        }
    )


def for_people(message: OutboxMessage) -> OutboxMessage:
    """``message`` as listed to people (``smsmenu outbox list``): a notice that carries a
    one-time code (its kind ends in ``_code``: a 销户 code, a web login code) has its digits
    masked, so that reading the outbox does not hand anyone a code that still works."""
    if message.kind.endswith("_code"):
        return replace(message, text=masked(message.text))
    return message


def _held(leases: Sequence[Lease]) -> ColumnElement[bool]:
    """The rows still being sent under one of ``leases`` (the fence of every lease write)."""
    claims = [(lease.id, lease.worker, lease.attempt) for lease in leases]
    return and_(
        outbox.c.status == SENDING,
        tuple_(outbox.c.id, outbox.c.claimed_by, outbox.c.attempts).in_(claims),
    )


def row(
    *,
    now: datetime,
    source: str,
    destination: str,
    text: str,
    kind: str,
    dedup_key: str,
    ref: int | None = None,
    route: Route = SMS,
) -> dict[str, Any]:
    """The values of one outbox row (pass one or more to ``add``)."""
    ussd = route.ussd
    return {
        "created_at": now,
        "source": source,
        "destination": destination,
        "text": text,
        "transport": route.transport.value,
        "ussd_session": ussd.session if ussd else None,
        "ussd_umr": ussd.user_message_reference if ussd else None,
        "final": route.final,
        "kind": kind,
        "ref": ref,
        "dedup_key": dedup_key,
        "status": QUEUED,
        "attempts": 0,
        "next_attempt_at": now,
    }


_INSERT = insert(outbox)


async def add(conn: AsyncConnection, *rows: dict[str, Any]) -> None:
    """Queue ``rows`` (built by ``row``) inside the caller's unit of work."""
    if rows:
        await conn.execute(_INSERT, list(rows))


class Outbox:
    """The sender's side of the outbox; each method is its own short transaction."""

    def __init__(
        self, engine: AsyncEngine, clock: Clock, local: SqliteWriter | None = None
    ) -> None:
        """``local``: the embedded database's writer, whose connection then records what the
        sender sent (``SqliteWriter.run``)."""
        self._engine = engine
        self._clock = clock
        self._postgres = engine.dialect.name == "postgresql"
        self._local = local

    async def claim(self, worker_id: str, limit: int, lease_s: float) -> list[OutboxMessage]:
        """Lease up to ``limit`` due rows (oldest first) to ``worker_id`` for ``lease_s``."""
        now = self._clock.now()
        due = or_(
            and_(outbox.c.status == QUEUED, outbox.c.next_attempt_at <= now),
            and_(outbox.c.status == SENDING, outbox.c.claimed_until < now),
        )
        ids = select(outbox.c.id).where(due).order_by(outbox.c.id).limit(limit)
        if self._postgres:
            ids = ids.with_for_update(skip_locked=True)
        stmt = (
            update(outbox)
            .where(outbox.c.id.in_(ids.scalar_subquery()))
            .values(
                status=SENDING,
                claimed_by=worker_id,
                claimed_until=now + timedelta(seconds=lease_s),
                attempts=outbox.c.attempts + 1,
            )
            .returning(*outbox.c)
        )
        async with self._engine.begin() as conn:
            rows = (await conn.execute(stmt)).all()
        return sorted((_message(r) for r in rows), key=lambda m: m.id)

    async def mark_failed(self, lease: Lease, error: str, retry_at: datetime | None) -> bool:
        """The row of ``lease`` was not accepted: queue it again at ``retry_at``, or give up
        (None). False (nothing changed) if that claim no longer holds the row."""
        values: dict[str, Any] = {
            "error": error[:400],
            "claimed_by": None,
            "claimed_until": None,
        }
        if retry_at is None:
            values["status"] = FAILED
        else:
            values.update(status=QUEUED, next_attempt_at=retry_at)
        async with self._engine.begin() as conn:
            result = await conn.execute(update(outbox).where(_held([lease])).values(**values))
        return bool(result.rowcount)

    async def renew(self, leases: Sequence[Lease], lease_s: float) -> dict[int, datetime]:
        """Extend ``leases`` whose claim still holds its row; returns those rows' ids and new
        expiry (a send that waits through a rebind or a throttle must not lose its lease; a
        row missing from the answer is another claim's now)."""
        if not leases:
            return {}
        until = self._clock.now() + timedelta(seconds=lease_s)
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(outbox)
                .where(_held(leases))
                .values(claimed_until=until)
                .returning(outbox.c.id)
            )
            return {row_id: until for row_id in result.scalars()}

    _DELIVERED = (
        update(outbox)
        .where(
            outbox.c.id == bindparam("rid"),
            outbox.c.smsc_message_id == bindparam("mid"),
            or_(
                outbox.c.status == SENT,
                outbox.c.status == DELIVERED,
                outbox.c.status == UNDELIVERABLE,
            ),
        )
        .values(status=bindparam("st"), delivered_at=bindparam("at"))
    )

    async def record(
        self, submitted: Sequence[tuple[Lease, str]], delivered: Sequence[tuple[int, str, bool]]
    ) -> set[int]:
        """In one transaction: rows the SMSC accepted ``(lease, smsc_message_id)``, then
        delivery outcomes ``(row id, smsc_message_id, delivered)`` of rows recorded before (the
        sender batches both). Returns the ids of the submits recorded: a lease that no longer
        holds its row records nothing."""
        if not submitted and not delivered:
            return set()
        now = self._clock.now()
        outcomes = [
            {"rid": i, "mid": m, "st": DELIVERED if ok else UNDELIVERABLE, "at": now}
            for i, m, ok in delivered
        ]
        if self._local is not None:
            return await self._local.run(lambda conn: _record_local(conn, submitted, outcomes, now))
        recorded: set[int] = set()
        async with self._engine.begin() as conn:
            if submitted:
                recorded = await self._record_submits(conn, submitted, now)
            if outcomes:
                await conn.execute(self._DELIVERED, outcomes)
        return recorded

    # One statement for any batch (prepared once per connection, nothing built per batch): the
    # batch goes in as arrays on PostgreSQL, as one JSON array on SQLite.
    _SUBMITTED_PG = text(
        "UPDATE outbox AS o SET status = :sent, smsc_message_id = s.mid, submitted_at = :now,"
        " claimed_by = NULL, claimed_until = NULL, error = NULL"
        " FROM unnest(CAST(:ids AS integer[]), CAST(:workers AS text[]),"
        " CAST(:attempts AS integer[]), CAST(:mids AS text[])) AS s(id, worker, attempt, mid)"
        " WHERE o.id = s.id AND o.status = :sending AND o.claimed_by = s.worker"
        " AND o.attempts = s.attempt RETURNING o.id"
    ).bindparams(bindparam("now", type_=UTCDateTime))

    async def _record_submits(
        self, conn: AsyncConnection, submitted: Sequence[tuple[Lease, str]], now: datetime
    ) -> set[int]:
        """Rows the SMSC accepted, each under the lease it was sent with: the ids recorded."""
        values: dict[str, Any] = {"sent": SENT, "sending": SENDING, "now": now}
        if self._postgres:
            values["ids"] = [lease.id for lease, _ in submitted]
            values["workers"] = [lease.worker for lease, _ in submitted]
            values["attempts"] = [lease.attempt for lease, _ in submitted]
            values["mids"] = [message_id for _, message_id in submitted]
            result = await conn.execute(self._SUBMITTED_PG, values)
        else:
            values["batch"] = _submit_batch(submitted)
            result = await conn.execute(SUBMITTED_SQLITE, values)
        return set(result.scalars())

    async def apply_receipts(self, receipts: list[tuple[list[str], bool]]) -> set[str]:
        """Apply receipts (every stored form their id may have, delivered or not) to the rows
        already recorded as submitted, in one transaction; the stored ids they matched."""
        now, found = self._clock.now(), set()
        async with self._engine.begin() as conn:
            for delivered in (True, False):
                forms = sorted({f for ids, ok in receipts if ok is delivered for f in ids})
                if not forms:
                    continue
                result = await conn.execute(
                    update(outbox)
                    .where(
                        outbox.c.smsc_message_id.in_(forms),
                        outbox.c.status.in_((SENT, DELIVERED, UNDELIVERABLE)),
                    )
                    .values(status=DELIVERED if delivered else UNDELIVERABLE, delivered_at=now)
                    .returning(outbox.c.smsc_message_id)
                )
                found |= {row.smsc_message_id for row in result}
        return found

    async def due_count(self) -> int:
        """How many rows are due to be sent now (queued and due, or with an expired lease)."""
        now = self._clock.now()
        due = or_(
            and_(outbox.c.status == QUEUED, outbox.c.next_attempt_at <= now),
            and_(outbox.c.status == SENDING, outbox.c.claimed_until < now),
        )
        async with self._engine.connect() as conn:
            return int(
                (
                    await conn.execute(select(func.count()).select_from(outbox).where(due))
                ).scalar_one()
            )

    async def rows(
        self,
        destination: str | None = None,
        statuses: tuple[str, ...] | None = None,
        after_id: int = 0,
        limit: int = 1000,
    ) -> list[OutboxMessage]:
        """Rows in id order, optionally for one destination / in some statuses / after an id."""
        stmt = select(outbox).where(outbox.c.id > after_id).order_by(outbox.c.id).limit(limit)
        if destination is not None:
            stmt = stmt.where(outbox.c.destination == destination)
        if statuses is not None:
            stmt = stmt.where(outbox.c.status.in_(statuses))
        async with self._engine.connect() as conn:
            return [_message(r) for r in (await conn.execute(stmt)).all()]


__all__ = ["Lease", "Outbox", "OutboxMessage", "add", "row"]


#: The submits of a batch on SQLite, the batch as one JSON array (see ``Outbox.record``).
SUBMITTED_SQLITE = text(
    "UPDATE outbox SET status = :sent, smsc_message_id = json_extract(s.value, '$[3]'),"
    " submitted_at = :now, claimed_by = NULL, claimed_until = NULL, error = NULL"
    " FROM json_each(:batch) AS s"
    " WHERE outbox.id = json_extract(s.value, '$[0]') AND outbox.status = :sending"
    " AND outbox.claimed_by = json_extract(s.value, '$[1]')"
    " AND outbox.attempts = json_extract(s.value, '$[2]') RETURNING outbox.id"
).bindparams(bindparam("now", type_=UTCDateTime))


def _submit_batch(submitted: Sequence[tuple[Lease, str]]) -> str:
    return json.dumps([[lease.id, lease.worker, lease.attempt, mid] for lease, mid in submitted])


@functools.cache
def _local_statements() -> tuple[SqliteStatement, SqliteStatement]:
    return SqliteStatement(SUBMITTED_SQLITE), SqliteStatement(Outbox._DELIVERED)


def _record_local(
    conn: sqlite3.Connection,
    submitted: Sequence[tuple[Lease, str]],
    outcomes: list[dict[str, Any]],
    now: datetime,
) -> set[int]:
    """``Outbox.record`` in the embedded writer's transaction (its thread)."""
    submits, deliveries = _local_statements()
    recorded: set[int] = set()
    if submitted:
        values = {"sent": SENT, "sending": SENDING, "now": now, "batch": _submit_batch(submitted)}
        rows = conn.execute(submits.sql, submits.params(values)).fetchall()
        recorded = {row[0] for row in rows}
    if outcomes:
        conn.executemany(deliveries.sql, [deliveries.params(o) for o in outcomes])
    return recorded
