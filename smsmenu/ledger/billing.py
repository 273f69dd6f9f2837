"""Billing backends: the system that really credits a recharge's target.

``InternalBilling`` (the default) is the subscriber account in the ledger's own database: the
service credits it in the same transaction as the reservation and the posting, so nothing can
be left half-done. Any other backend is *external*: the service reserves the agent's funds and
commits, calls ``credit``, then posts or voids in a second transaction, and the recovery pass
asks ``status`` about reservations a crash left pending. ``credit`` must be idempotent by
``key`` (a repeat of a credited key is ``CREDITED`` again, never a second credit).

``ScriptedBilling`` and ``FileBilling`` are external backends for tests and demos: they fail or
time out on demand; ``FileBilling`` keeps its credits in a SQLite file, so they survive the
death of the process that made them (crash tests).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Protocol


class Credit(StrEnum):
    CREDITED = "credited"  # the target has the money
    FAILED = "failed"  # it does not, and never will for this key
    UNKNOWN = "unknown"  # no record of the key (status only)


class BillingError(Exception):
    """The backend could not be asked (down, timed out); the outcome is unknown."""


class BillingBackend(Protocol):
    #: True for the ledger's own subscriber accounts (one-transaction recharges).
    internal: bool

    async def credit(self, key: str, number: str, kind: str, amount_fen: int) -> Credit:
        """Credit ``amount_fen`` to ``number``, once per ``key``; CREDITED or FAILED."""
        ...

    async def status(self, key: str) -> Credit:
        """What became of ``credit(key, ...)``: CREDITED, FAILED or UNKNOWN (never asked)."""
        ...


class InternalBilling:
    """The subscriber accounts in the ledger itself; the service books the credit directly."""

    internal = True

    async def credit(self, key: str, number: str, kind: str, amount_fen: int) -> Credit:
        raise RuntimeError("the internal backend is credited inside the ledger's transaction")

    async def status(self, key: str) -> Credit:
        raise RuntimeError("the internal backend leaves nothing pending")


class ScriptedBilling:
    """An external backend in memory that does what the test tells it.

    ``fail_numbers`` are refused (FAILED); ``timeout_numbers`` hang until the caller's time-out
    (and, if ``credit_on_timeout``, credit anyway: the case where only ``status`` tells). With
    ``status_hangs`` ``status`` hangs too: nobody can tell what became of a credit.
    """

    internal = False

    def __init__(
        self,
        fail_numbers: Iterable[str] = (),
        timeout_numbers: Iterable[str] = (),
        credit_on_timeout: bool = False,
        status_hangs: bool = False,
    ) -> None:
        self.fail_numbers = set(fail_numbers)
        self.timeout_numbers = set(timeout_numbers)
        self.credit_on_timeout = credit_on_timeout
        self.status_hangs = status_hangs
        self.credits: dict[str, tuple[str, int]] = {}  # key -> (number, amount)
        self.failed: set[str] = set()
        self.calls = 0

    async def credit(self, key: str, number: str, kind: str, amount_fen: int) -> Credit:
        self.calls += 1
        if key in self.credits:
            return Credit.CREDITED
        if number in self.timeout_numbers:
            if self.credit_on_timeout:
                self.credits[key] = (number, amount_fen)
            await asyncio.sleep(3600)
        if number in self.fail_numbers:
            self.failed.add(key)
            return Credit.FAILED
        self.credits[key] = (number, amount_fen)
        return Credit.CREDITED

    async def status(self, key: str) -> Credit:
        if self.status_hangs:
            await asyncio.sleep(3600)
        if key in self.credits:
            return Credit.CREDITED
        return Credit.FAILED if key in self.failed else Credit.UNKNOWN

    def total(self, number: str) -> int:
        return sum(amount for n, amount in self.credits.values() if n == number)


class FileBilling:
    """An external backend whose credits live in a SQLite file (they survive a SIGKILL)."""

    internal = False

    def __init__(self, path: Path, fail_numbers: Iterable[str] = ()) -> None:
        self.path = path
        self.fail_numbers = set(fail_numbers)
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS credits (key TEXT PRIMARY KEY, number TEXT,"
                " amount INTEGER, outcome TEXT)"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    async def credit(self, key: str, number: str, kind: str, amount_fen: int) -> Credit:
        outcome = Credit.FAILED if number in self.fail_numbers else Credit.CREDITED
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO credits VALUES (?, ?, ?, ?)",
                (key, number, amount_fen, outcome.value),
            )
            row = db.execute("SELECT outcome FROM credits WHERE key = ?", (key,)).fetchone()
        return Credit(row[0])

    async def status(self, key: str) -> Credit:
        with self._connect() as db:
            row = db.execute("SELECT outcome FROM credits WHERE key = ?", (key,)).fetchone()
        return Credit.UNKNOWN if row is None else Credit(row[0])

    def total(self, number: str) -> int:
        with self._connect() as db:
            row = db.execute(
                "SELECT coalesce(sum(amount), 0) FROM credits WHERE number = ?"
                " AND outcome = 'credited'",
                (number,),
            ).fetchone()
        return int(row[0])
