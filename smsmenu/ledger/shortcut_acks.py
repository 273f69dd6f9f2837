"""Which one-message operations were acknowledged, for a worker whose intake memory dies
with it (the in-process session store, SPEC §13's single embedded worker).

A ``CZ`` moves money under the key ``sms:<phone>:<fingerprint>:<message id>`` (``menus.base``).
If the worker dies after the ledger committed and before the SMSC got our response, the SMSC
resends the message; a worker on Redis still knows it (``menus.intake``), the embedded one
does not. So the embedded worker notes each such key once its response was written, and at
start asks which recent ones were never noted: their messages are remembered again as taken in
and unanswered, and a resent copy is recognised. Notes are written in batches (a crash may lose
the last few: a later identical ``CZ`` is then answered as a copy, which moves nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsmenu.clock import Clock
from smsmenu.ledger.models import shortcut_acks, txns
from smsmenu.ledger.statements import SqliteStatement

if TYPE_CHECKING:
    from smsmenu.ledger.writer_sqlite import SqliteWriter

PREFIX = "sms:"

log = logging.getLogger("smsmenu.ledger")


@dataclass(frozen=True)
class Unacked:
    """A one-message operation whose message's response was never noted as written."""

    phone: str
    fingerprint: str
    message_id: str
    created_at: datetime


def shortcut_key(phone: str, fingerprint: str, message_id: str) -> str:
    return f"{PREFIX}{phone}:{fingerprint}:{message_id}"


def parse_key(key: str) -> tuple[str, str, str] | None:
    """(phone, fingerprint, message id) of a shortcut key, or None."""
    parts = key.removeprefix(PREFIX).split(":")
    if not key.startswith(PREFIX) or len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


class ShortcutAcks:
    """Notes acknowledged shortcut keys (batched in the background) and lists the others."""

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        flush_s: float = 0.05,
        local: SqliteWriter | None = None,
    ) -> None:
        """``local``: the embedded database's writer, whose connection then writes the notes
        (``SqliteWriter.run``)."""
        self._engine = engine
        self._clock = clock
        self._local = local
        self.flush_s = flush_s
        self._queue: list[dict[str, object]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # a key noted twice (a copy of its message was acknowledged too) is noted once
        self._insert: Any
        if engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            self._insert = pg_insert(shortcut_acks).on_conflict_do_nothing()
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            self._insert = sqlite_insert(shortcut_acks).on_conflict_do_nothing()
        self._local_insert = SqliteStatement(self._insert) if local is not None else None

    def acked(self, key: str) -> None:
        self._queue.append({"key": key, "acked_at": self._clock.now()})
        self._wake.set()

    async def flush(self) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            return
        try:
            if self._local is not None and self._local_insert is not None:
                insert = self._local_insert
                rows = [insert.params(note) for note in batch]
                await self._local.run(lambda conn: conn.executemany(insert.sql, rows))
            else:
                async with self._engine.begin() as conn:
                    await conn.execute(self._insert, batch)
        except BaseException:
            self._queue[:0] = batch
            raise

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.flush_s)
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:  # the database is away: keep the notes, try again
                log.error("noting acknowledged shortcuts failed: %s", exc)
                self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="shortcut-acks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.flush()

    async def unacked(self, since: datetime) -> list[Unacked]:
        """Shortcut operations made since ``since`` whose message was never noted."""
        stmt = (
            select(txns.c.key, txns.c.created_at)
            .outerjoin(shortcut_acks, shortcut_acks.c.key == txns.c.key)
            .where(
                and_(txns.c.key >= PREFIX, txns.c.key < PREFIX[:-1] + ";"),
                txns.c.created_at >= since,
                shortcut_acks.c.key.is_(None),
            )
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        found = []
        for row in rows:
            parsed = parse_key(row.key)
            if parsed is not None:
                found.append(Unacked(*parsed, row.created_at))
        return found
