"""Both session stores keep the same contract (in-process and a real Redis)."""

from __future__ import annotations

import asyncio

import pytest
import redis.exceptions

from smsmenu.menus.store import Claim, ClaimStatus, InProcessStore, RedisStore, SessionStore
from tests.servers import free_port

PHONE = "18900000001"


async def commit(
    store: SessionStore, claim: Claim, session: str | None, key: str, reply: str = "r"
) -> bool:
    return await store.commit(
        PHONE,
        claim,
        session=session,
        version=claim.version + 1,
        session_ttl_s=60,
        message_key=key,
        reply=reply,
        reply_ttl_s=60,
    )


async def test_claim_load_commit_and_duplicate(store: SessionStore) -> None:
    first = await store.claim(PHONE, "m1", minute=1, limit=30)
    assert first.status is ClaimStatus.OK and first.session is None and first.version == 0
    assert await commit(store, first, '{"s":1}', "m1", reply="hello")
    again = await store.claim(PHONE, "m1", minute=1, limit=30)
    assert again.status is ClaimStatus.DUPLICATE and again.reply == "hello"
    second = await store.claim(PHONE, "m2", minute=1, limit=30)
    assert second.status is ClaimStatus.OK
    assert second.session == '{"s":1}' and second.version == 1
    assert await commit(store, second, None, "m2")  # the session ends: a tombstone
    third = await store.claim(PHONE, "m3", minute=1, limit=30)
    assert third.session is None and third.version == 2
    await store.release(PHONE, third)


async def test_lock_is_exclusive_and_released_only_by_its_holder(store: SessionStore) -> None:
    held = await store.claim(PHONE, "a", minute=1, limit=30)
    assert held.status is ClaimStatus.OK
    assert (await store.claim(PHONE, "b", minute=1, limit=30)).status is ClaimStatus.BUSY
    other_phone = await store.claim("18900000002", "c", minute=1, limit=30)
    assert other_phone.status is ClaimStatus.OK  # other phones are not held up
    await store.release("18900000002", other_phone)
    # a token that is not the holder's releases nothing
    await store.release(PHONE, other_phone)
    assert (await store.claim(PHONE, "b", minute=1, limit=30)).status is ClaimStatus.BUSY
    await store.release(PHONE, held)
    assert (await store.claim(PHONE, "b", minute=1, limit=30)).status is ClaimStatus.OK


async def test_lock_expires_and_a_late_commit_is_refused(store: SessionStore) -> None:
    dead = await store.claim(PHONE, "a", minute=1, limit=30)
    await asyncio.sleep(0.6)  # the worker holding it died: its lock expires (0.5 s here)
    alive = await store.claim(PHONE, "b", minute=1, limit=30)
    assert alive.status is ClaimStatus.OK
    assert await commit(store, alive, '{"by":"alive"}', "b")
    assert not await commit(store, dead, '{"by":"dead"}', "a")  # lost its lock
    now = await store.claim(PHONE, "c", minute=1, limit=30)
    assert now.session == '{"by":"alive"}'
    await store.release(PHONE, now)


async def test_compare_and_set_refuses_a_stale_version(store: SessionStore) -> None:
    stale = await store.claim(PHONE, "a", minute=1, limit=30)
    await asyncio.sleep(0.6)
    fresh = await store.claim(PHONE, "b", minute=1, limit=30)
    assert await commit(store, fresh, '{"n":1}', "b")
    # the stale worker takes the lock again but still holds the old version
    relock = await store.claim(PHONE, "c", minute=1, limit=30)
    forged = type(relock)(relock.status, relock.token, stale.session, stale.version)
    assert not await commit(store, forged, '{"n":"stale"}', "c")
    assert (await store.claim(PHONE, "d", minute=1, limit=30)).session == '{"n":1}'


async def test_rate_limit_notifies_once_then_drops(store: SessionStore) -> None:
    statuses = []
    for i in range(5):
        claim = await store.claim(PHONE, f"m{i}", minute=7, limit=3)
        statuses.append((claim.status, claim.notify))
        if claim.status is ClaimStatus.OK:
            await store.release(PHONE, claim)
    assert statuses == [
        (ClaimStatus.OK, False),
        (ClaimStatus.OK, False),
        (ClaimStatus.OK, False),
        (ClaimStatus.LIMITED, True),
        (ClaimStatus.LIMITED, False),
    ]
    next_minute = await store.claim(PHONE, "m9", minute=8, limit=3)
    assert next_minute.status is ClaimStatus.OK
    await store.release(PHONE, next_minute)


async def test_sealing_key_is_stable(store: SessionStore) -> None:
    key = await store.sealing_key()
    assert len(key) >= 32 and key == await store.sealing_key()


async def test_redis_store_reloads_its_scripts_after_a_flush(
    redis_url: str, redis_prefix: str
) -> None:
    store = RedisStore.from_url(redis_url, prefix=redis_prefix)
    try:
        first = await store.claim(PHONE, "a", minute=1, limit=30)
        await store.release(PHONE, first)
        await store.client.script_flush()
        again = await store.claim(PHONE, "b", minute=1, limit=30)
        assert again.status is ClaimStatus.OK
        await store.release(PHONE, again)
    finally:
        await store.aclose()


async def test_redis_store_down_is_an_error_not_a_hang() -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await asyncio.wait_for(store.claim(PHONE, "a", minute=1, limit=30), 10)
    finally:
        await store.aclose()


async def test_concurrent_claims_share_pipelines(redis_url: str, redis_prefix: str) -> None:
    store = RedisStore.from_url(redis_url, prefix=redis_prefix)
    try:
        claims = await asyncio.gather(
            *(store.claim(f"1890000{i:04d}", "k", minute=1, limit=30) for i in range(150))
        )
        assert all(claim.status is ClaimStatus.OK for claim in claims)
        assert store.pipeline.batches < 50  # sent together, not one round trip each
        await asyncio.gather(
            *(store.release(f"1890000{i:04d}", claim) for i, claim in enumerate(claims))
        )
    finally:
        await store.aclose()


async def test_in_process_store_bounds_its_memory() -> None:
    store = InProcessStore(max_replies=10)
    for i in range(30):
        claim = await store.claim(f"1890000{i:04d}", f"k{i}", minute=1, limit=30)
        await store.commit(
            f"1890000{i:04d}",
            claim,
            session="{}",
            version=1,
            session_ttl_s=0.01,
            message_key=f"k{i}",
            reply="r",
            reply_ttl_s=60,
        )
    await store.claim("18900009999", "last", minute=1, limit=30)
    assert len(store._replies) <= 11
    # the oldest replies were forgotten, the newest are still answered
    assert (await store.claim("18900000029", "k29", minute=1, limit=30)).reply == "r"
    assert (await store.claim("18900000000", "k0", minute=1, limit=30)).status is ClaimStatus.OK
