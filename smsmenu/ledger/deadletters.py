"""The dead-letter list (SPEC §11): messages that could not be handled.

A message whose handling kept failing (``menus.engine``) is answered with a short "try later"
notice, acknowledged, and kept here with its error for operators (``smsmenu deadletter list``).
Its text is kept with every digit masked: it may hold a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsmenu.ledger.models import dead_letters


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    source: str
    destination: str
    transport: str
    text: str  # digits masked
    error: str
    attempts: int
    created_at: datetime


class DeadLetterSink(Protocol):
    async def add(self, letter: DeadLetter) -> None: ...


_INSERT = insert(dead_letters)


class DeadLetters:
    """The list in the ledger's database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, letter: DeadLetter) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(_INSERT, [vars(letter)])

    async def rows(self, limit: int = 100) -> list[DeadLetter]:
        """The newest ``limit`` letters, newest first."""
        columns = [dead_letters.c[name] for name in DeadLetter.__dataclass_fields__]
        stmt = select(*columns).order_by(dead_letters.c.id.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [DeadLetter(**row._asdict()) for row in (await conn.execute(stmt)).all()]
