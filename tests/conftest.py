"""Fixtures shared by every test: real servers, settings, a fake clock."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest

from smsmenu.clock import FakeClock
from tests import servers
from tests.servers import TEST_SECRET_KEY

os.environ.setdefault("SMSMENU_SECRET_KEY", TEST_SECRET_KEY)

# The ledger's fixtures (database_url, ledger, ledger_settings, …): tests/ledger_fixtures.py
pytest_plugins = ["tests.ledger_fixtures", "tests.web_fixtures"]


@pytest.fixture(scope="session")
def postgres_base() -> Iterator[str]:
    with servers.postgres_server() as base:
        yield base


@pytest.fixture(scope="session")
def postgres_url(postgres_base: str) -> Iterator[str]:
    """A SQLAlchemy async URL of a database of its own for this test session."""
    url = asyncio.run(servers.create_database(postgres_base))
    yield url.replace("postgresql://", "postgresql+asyncpg://", 1)
    asyncio.run(servers.drop_database(url))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with servers.redis_server() as url:
        yield url


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of its own per test, so tests sharing one Redis never collide."""
    return f"test:{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
