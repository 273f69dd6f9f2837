"""Session stores for the integration tests: each test runs on the in-process store and on the
real Redis server (``redis_url``), under a key prefix of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from smsmenu.menus.store import InProcessStore, RedisStore, SessionStore


@pytest.fixture(params=["inprocess", "redis"])
async def store(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[SessionStore]:
    if request.param == "inprocess":
        yield InProcessStore(lock_ttl_s=0.5)
        return
    redis_url: str = request.getfixturevalue("redis_url")
    redis_store = RedisStore.from_url(redis_url, prefix=redis_prefix, lock_ttl_s=0.5)
    try:
        yield redis_store
    finally:
        await redis_store.aclose()
