"""Fixtures of the end-to-end tests: a fresh ledger database and the running stack on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.e2e.stack import Stack, running_stack


@pytest.fixture
def sqlite_url(sqlite_template, tmp_path) -> str:  # type: ignore[no-untyped-def]
    import shutil

    shutil.copyfile(sqlite_template, tmp_path / "ledger.db")
    return f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", "postgres+redis"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(database URL, Redis URL or ""): the embedded flavour and the scaled one."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url"), ""
    import asyncio

    from tests.ledger_fixtures import truncate

    url: str = request.getfixturevalue("ledger_pg_url")
    asyncio.run(truncate(url))
    return url, request.getfixturevalue("redis_url")


@pytest.fixture
async def stack(sqlite_url: str) -> AsyncIterator[Stack]:
    async with running_stack(sqlite_url) as running:
        yield running
