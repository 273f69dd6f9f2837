"""Both session stores keep the same contract (in-process and a real Redis): the lock, the
compare-and-set, the rate limit, and ``menus.intake``'s rule of which copy is which message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.exceptions

from smsmenu.menus.intake import Windows
from smsmenu.menus.store import Claim, ClaimStatus, InProcessStore, RedisStore, SessionStore
from tests.servers import free_port

PHONE = "18900000001"
T0 = 1_800_000_000_000  # epoch ms
WINDOWS = Windows(resend_after_ms=10_000, ack_grace_ms=2_000, entry_ttl_ms=3_600_000)


@pytest.fixture(params=["inprocess", "redis"])
async def store(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[SessionStore]:
    if request.param == "inprocess":
        yield InProcessStore(lock_ttl_s=0.5, windows=WINDOWS)
        return
    redis_url: str = request.getfixturevalue("redis_url")
    redis_store = RedisStore.from_url(
        redis_url, prefix=redis_prefix, lock_ttl_s=0.5, windows=WINDOWS
    )
    try:
        yield redis_store
    finally:
        await redis_store.aclose()


async def claim(
    store: SessionStore,
    fp: str = "fp",
    at: int = T0,
    *,
    now: int | None = None,
    phone: str = PHONE,
    minute: int = 1,
    limit: int = 30,
) -> Claim:
    return await store.claim(
        phone, fp, arrived_ms=at, now_ms=at if now is None else now, minute=minute, limit=limit
    )


async def answer(
    store: SessionStore,
    held: Claim,
    fp: str = "fp",
    session: str | None = '{"s":1}',
    reply: str = "r",
    *,
    acked: bool = True,
    at: int = T0,
    phone: str = PHONE,
) -> bool:
    """Commit the session and the reply, then finish (response written or not)."""
    saved = await store.commit(
        phone,
        held,
        fingerprint=fp,
        session=session,
        version=held.version + 1,
        session_ttl_s=60,
        reply=reply,
        now_ms=at,
    )
    await store.finish(phone, held, fingerprint=fp, acked=acked, now_ms=at)
    return saved


async def finish(store: SessionStore, held: Claim, fp: str = "fp", *, acked: bool = False) -> None:
    await store.finish(PHONE, held, fingerprint=fp, acked=acked, now_ms=T0)


async def test_claim_load_commit(store: SessionStore) -> None:
    first = await claim(store)
    assert first.status is ClaimStatus.OK and first.session is None and first.version == 0
    assert first.message_id and first.attempts == 1
    assert await answer(store, first, session='{"s":1}', reply="hello")
    second = await claim(store, "other", T0 + 1)
    assert second.status is ClaimStatus.OK and second.message_id != first.message_id
    assert second.session == '{"s":1}' and second.version == 1
    assert await answer(store, second, "other", session=None, at=T0 + 1)  # a tombstone
    third = await claim(store, "third", T0 + 2)
    assert third.session is None and third.version == 2
    await finish(store, third, "third")


async def test_the_same_text_answered_and_acknowledged_is_a_new_message(
    store: SessionStore,
) -> None:
    first = await claim(store)
    assert await answer(store, first, reply="one")
    again = await claim(store, at=T0 + 50)  # "1" typed again: a new input
    assert again.status is ClaimStatus.OK and again.message_id != first.message_id
    await finish(store, again)


async def test_a_copy_of_an_answered_unacknowledged_message_gets_its_reply(
    store: SessionStore,
) -> None:
    first = await claim(store)
    assert await answer(store, first, reply="hello", acked=False)  # the link was lost
    copy = await claim(store, at=T0 + 5)  # the SMSC resends it on the new bind
    assert copy.status is ClaimStatus.DUPLICATE and copy.reply == "hello"
    assert copy.message_id == first.message_id
    await finish(store, copy, acked=True)
    later = await claim(store, at=T0 + 5000)  # answered and acknowledged: new again
    assert later.status is ClaimStatus.OK and later.message_id != first.message_id
    await finish(store, later)


async def test_a_copy_of_an_unanswered_message_is_handled_under_its_id(
    store: SessionStore,
) -> None:
    first = await claim(store)
    await finish(store, first)  # its handling failed: no reply, no response
    copy = await claim(store, at=T0 + 30_000)
    assert copy.status is ClaimStatus.OK
    assert copy.message_id == first.message_id and copy.attempts == 2
    await finish(store, copy)


async def test_a_copy_resent_by_the_smsc_timer_meets_our_late_response(
    store: SessionStore,
) -> None:
    first = await claim(store)
    assert await answer(store, first, reply="hello", at=T0 + 10_500)  # slow: 10.5 s
    # the SMSC gave up at 10 s and resent; the copy arrived before our late response
    copy = await claim(store, at=T0 + 10_000, now=T0 + 10_600)
    assert copy.status is ClaimStatus.DUPLICATE and copy.message_id == first.message_id
    await finish(store, copy, acked=True)


async def test_a_burst_arriving_within_the_resend_window_is_separate_inputs(
    store: SessionStore,
) -> None:
    first = await claim(store)
    busy = await claim(store, at=T0 + 3)  # the second "1" arrives while the first is handled
    assert busy.status is ClaimStatus.BUSY
    assert await answer(store, first, at=T0 + 9000)
    second = await claim(store, at=T0 + 3, now=T0 + 9001)
    assert second.status is ClaimStatus.OK and second.message_id != first.message_id
    assert await answer(store, second, at=T0 + 9002)


async def test_entries_are_kept_only_while_needed(store: SessionStore) -> None:
    first = await claim(store)
    assert await answer(store, first, at=T0)
    # past the grace, nothing is a copy any more (and Redis holds no entry)
    late = await claim(store, at=T0 + 60_000)
    assert late.status is ClaimStatus.OK and late.message_id != first.message_id
    await finish(store, late)
    unanswered = await claim(store, "lost")
    await finish(store, unanswered, "lost")
    past_ttl = await claim(store, "lost", T0 + WINDOWS.entry_ttl_ms)
    assert past_ttl.message_id != unanswered.message_id
    await finish(store, past_ttl, "lost")


async def test_lock_is_exclusive_and_released_only_by_its_holder(store: SessionStore) -> None:
    held = await claim(store, "a")
    assert held.status is ClaimStatus.OK
    assert (await claim(store, "b")).status is ClaimStatus.BUSY
    other_phone = await claim(store, "c", phone="18900000002")
    assert other_phone.status is ClaimStatus.OK  # other phones are not held up
    await store.finish("18900000002", other_phone, fingerprint="c", acked=True, now_ms=T0)
    # a token that is not the holder's releases nothing
    await store.finish(PHONE, other_phone, fingerprint="c", acked=True, now_ms=T0)
    assert (await claim(store, "b")).status is ClaimStatus.BUSY
    await finish(store, held, "a")
    again = await claim(store, "b")
    assert again.status is ClaimStatus.OK
    await finish(store, again, "b")


async def test_lock_expires_and_a_late_commit_is_refused(store: SessionStore) -> None:
    dead = await claim(store, "a")
    await asyncio.sleep(0.6)  # the worker holding it died: its lock expires (0.5 s here)
    alive = await claim(store, "b")
    assert alive.status is ClaimStatus.OK
    assert await answer(store, alive, "b", session='{"by":"alive"}')
    assert not await answer(store, dead, "a", session='{"by":"dead"}')  # lost its lock
    now = await claim(store, "c")
    assert now.session == '{"by":"alive"}'
    await finish(store, now, "c")


async def test_compare_and_set_refuses_a_stale_version(store: SessionStore) -> None:
    stale = await claim(store, "a")
    await asyncio.sleep(0.6)
    fresh = await claim(store, "b")
    assert await answer(store, fresh, "b", session='{"n":1}')
    # the stale worker takes the lock again but still holds the old version
    relock = await claim(store, "c")
    forged = Claim(relock.status, relock.message_id, 1, relock.token, stale.session, stale.version)
    assert not await answer(store, forged, "c", session='{"n":"stale"}')
    last = await claim(store, "d")
    assert last.session == '{"n":1}'
    await finish(store, last, "d")


async def test_rate_limit_counts_new_messages_notifies_once_then_drops(
    store: SessionStore,
) -> None:
    statuses = []
    for i in range(5):
        held = await claim(store, f"m{i}", minute=7, limit=3)
        statuses.append((held.status, held.notify))
        if held.status is ClaimStatus.OK:
            await answer(store, held, f"m{i}", acked=i != 0)
    assert statuses == [
        (ClaimStatus.OK, False),
        (ClaimStatus.OK, False),
        (ClaimStatus.OK, False),
        (ClaimStatus.LIMITED, True),
        (ClaimStatus.LIMITED, False),
    ]
    # a copy of a message taken in is not counted again
    copy = await claim(store, "m0", T0 + 1, minute=7, limit=3)
    assert copy.status is ClaimStatus.DUPLICATE
    await finish(store, copy, "m0", acked=True)
    next_minute = await claim(store, "m9", minute=8, limit=3)
    assert next_minute.status is ClaimStatus.OK
    await finish(store, next_minute, "m9")


async def test_a_flood_over_the_limit_leaves_nothing_behind_in_redis(
    redis_url: str, redis_prefix: str
) -> None:
    """Limit first, then record: messages over the rate limit add no key (issue §5)."""
    store = RedisStore.from_url(redis_url, prefix=redis_prefix, windows=WINDOWS)
    try:
        for i in range(3):
            await answer(store, await claim(store, f"ok{i}", minute=3, limit=3), f"ok{i}")
        before = set(await store.client.keys(f"{redis_prefix}*"))
        for i in range(200):
            assert (await claim(store, f"flood{i}", minute=3, limit=3)).status is (
                ClaimStatus.LIMITED
            )
        assert set(await store.client.keys(f"{redis_prefix}*")) == before
    finally:
        await store.aclose()


async def test_redis_store_reloads_its_scripts_after_a_flush(
    redis_url: str, redis_prefix: str
) -> None:
    store = RedisStore.from_url(redis_url, prefix=redis_prefix)
    try:
        first = await claim(store, "a")
        await finish(store, first, "a")
        await store.client.script_flush()
        again = await claim(store, "b")
        assert again.status is ClaimStatus.OK
        await finish(store, again, "b")
    finally:
        await store.aclose()


async def test_redis_store_down_is_an_error_not_a_hang() -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await asyncio.wait_for(claim(store, "a"), 10)
    finally:
        await store.aclose()


async def test_concurrent_claims_share_pipelines(redis_url: str, redis_prefix: str) -> None:
    store = RedisStore.from_url(redis_url, prefix=redis_prefix)
    try:
        phones = [f"1890000{i:04d}" for i in range(150)]
        claims = await asyncio.gather(*(claim(store, "k", phone=phone) for phone in phones))
        assert all(held.status is ClaimStatus.OK for held in claims)
        assert store.pipeline.batches < 50  # sent together, not one round trip each
        await asyncio.gather(
            *(
                store.finish(phone, held, fingerprint="k", acked=True, now_ms=T0)
                for phone, held in zip(phones, claims, strict=True)
            )
        )
    finally:
        await store.aclose()


async def test_in_process_store_bounds_its_memory() -> None:
    store = InProcessStore(max_entries=10, windows=WINDOWS)
    for i in range(30):
        held = await claim(store, f"k{i}", phone=f"1890000{i:04d}")
        await store.commit(
            f"1890000{i:04d}",
            held,
            fingerprint=f"k{i}",
            session="{}",
            version=1,
            session_ttl_s=0.01,
            reply="r",
            now_ms=T0,
        )
        await store.finish(f"1890000{i:04d}", held, fingerprint=f"k{i}", acked=False, now_ms=T0)
    assert len(store._entries) <= 10
    # the oldest entries were forgotten, the newest are still answered
    newest = await claim(store, "k29", T0 + 1, phone="18900000029")
    assert newest.status is ClaimStatus.DUPLICATE and newest.reply == "r"
    oldest = await claim(store, "k0", T0 + 1, phone="18900000000")
    assert oldest.status is ClaimStatus.OK
