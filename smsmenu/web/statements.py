"""One statement, one round trip: what the web does on every call (an API key's lookup, an
audit entry, a login's check) runs in autocommit on PostgreSQL, without the BEGIN and
COMMIT/ROLLBACK round trips a transaction costs. SQLite's connections begin their own
transactions (``ledger.db``), so there it gets one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


@asynccontextmanager
async def one_statement(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    if engine.dialect.name != "postgresql":
        async with engine.begin() as conn:
            yield conn
        return
    async with engine.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")
