"""Both part stores keep the same contract (in-process and a real Redis): parts stored and
held, the completing part carrying the whole message (again, for its copy, until ``done``),
caps that keep a flood of never-completed sets within bounds, expiry with a log line."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as redis

from smsmenu.smpp import pdu
from smsmenu.smpp.concat import Segment
from smsmenu.smpp.parts import (
    ALL_FULL,
    SENDER_FULL,
    TOO_MANY_PARTS,
    Complete,
    Held,
    InProcessParts,
    Limits,
    Part,
    PartStore,
    RedisParts,
    SetKey,
)

PHONE = "13800000001"


def part(seq: int, total: int = 3, ref: int = 7, phone: str = PHONE, size: int = 10) -> Part:
    payload = bytes([0x30 + seq]) * size
    return Part(phone, "10001", Segment("udh8", ref, total, seq), 8 if seq == 1 else 0, payload)


@pytest.fixture(params=["inprocess", "redis"])
async def make_store(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[object]:
    made: list[RedisParts] = []

    def make(limits: Limits) -> PartStore:
        if request.param == "inprocess":
            return InProcessParts(limits)
        url: str = request.getfixturevalue("redis_url")
        store = RedisParts(redis.from_url(url), redis_prefix, limits)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()


async def test_parts_are_held_then_joined_in_order(make_store) -> None:  # type: ignore[no-untyped-def]
    store = make_store(Limits())
    assert await store.add(part(3)) == Held()
    assert await store.add(part(1)) == Held()
    assert await store.add(part(1)) == Held()  # a copy of a stored part
    whole = await store.add(part(2))
    assert isinstance(whole, Complete)
    assert whole.payload == b"1" * 10 + b"2" * 10 + b"3" * 10 and whole.data_coding == 8
    # until done, a copy of the completing part carries the whole message again, any other
    # part is acked at once
    assert await store.add(part(2)) == whole
    assert await store.add(part(1)) == Held()
    await store.done(whole.key)
    assert await store.add(part(2)) == Held()  # forgotten: a new set begins


async def test_two_phones_with_the_same_reference_are_not_merged(make_store) -> None:  # type: ignore[no-untyped-def]
    store = make_store(Limits())
    assert await store.add(part(1, 2)) == Held()
    assert await store.add(part(2, 2, phone="13800000002")) == Held()
    whole = await store.add(part(2, 2))
    assert isinstance(whole, Complete) and whole.key[0] == PHONE


async def test_a_set_claiming_too_many_parts_is_refused_for_good(make_store) -> None:  # type: ignore[no-untyped-def]
    store = make_store(Limits(max_parts=8))
    refused = await store.add(part(1, total=65_535))
    assert refused == TOO_MANY_PARTS and refused.status == pdu.ESME_RX_R_APPN


async def test_a_flood_of_never_completed_sets_stays_within_the_caps(make_store) -> None:  # type: ignore[no-untyped-def]
    """One phone sends part 1 of 2 under ever new references; then many phones do."""
    store = make_store(Limits(max_sender_bytes=1000, max_sets=50))
    outcomes = [await store.add(part(1, 2, ref=ref, size=100)) for ref in range(30)]
    assert outcomes[:10] == [Held()] * 10
    assert set(outcomes[10:]) == {SENDER_FULL}  # 1000 bytes waiting: no more from it
    others = [await store.add(part(1, 2, phone=f"1390000{i:04d}", size=100)) for i in range(60)]
    assert others.count(Held()) == 40 and set(others[40:]) == {ALL_FULL}  # 50 sets in all
    # with every set place taken, a part of a set already waiting still completes it
    assert isinstance(await store.add(part(2, 2, phone="13900000000", size=100)), Complete)


async def test_sets_expire_with_a_log_line(make_store, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    store = make_store(Limits(timeout_s=0.2, max_sender_bytes=100))
    assert await store.add(part(1, 2, size=100)) == Held()
    assert await store.add(part(1, 2, ref=8)) == SENDER_FULL
    assert await store.expire() == 0
    await asyncio.sleep(0.3)
    assert await store.expire() == 1
    assert any("1 of 2 arrived, expired after 0.2s" in r.getMessage() for r in caplog.records)
    assert await store.add(part(1, 2, ref=8)) == Held()  # its bytes were given back


async def test_two_workers_join_one_message_through_redis(
    redis_url: str, redis_prefix: str
) -> None:
    a = RedisParts(redis.from_url(redis_url), redis_prefix)
    b = RedisParts(redis.from_url(redis_url), redis_prefix)
    try:
        assert await a.add(part(1, 2)) == Held()
        whole = await b.add(part(2, 2))
        assert isinstance(whole, Complete) and whole.payload == b"1" * 10 + b"2" * 10
        await b.done(whole.key)
        assert await a.client.keys(f"{redis_prefix}parts:{{*") == []
        assert await a.client.zcard(a.index) == 0
    finally:
        await a.aclose()
        await b.aclose()


class CountingSets(OrderedDict[SetKey, Any]):
    """The store's sets, counting how many the expiry looks at."""

    visits = 0

    def items(self) -> Iterator[tuple[SetKey, Any]]:  # type: ignore[override]
        for item in super().items():
            self.visits += 1
            yield item


async def test_in_process_expiry_visits_only_the_sets_due() -> None:
    """No quadratic scan: each sweep looks at the sets due and at one more (the oldest of
    those still waiting), whatever the number of sets."""
    store = InProcessParts(Limits(timeout_s=60, max_sets=30_000, max_sender_bytes=10**9))
    counting = CountingSets()
    store._sets = counting
    for ref in range(5):
        await store.add(part(1, 2, ref=ref, phone="13900000000"))
    for waiting in counting.values():  # the first five are a minute old
        waiting.first_seen -= 61
    for n in range(20_000):
        await store.add(part(1, 2, phone=f"1{n:010d}"))
    assert await store.expire() == 5 and counting.visits == 6
    for _ in range(100):
        assert await store.expire() == 0
    assert counting.visits == 106 and len(store) == 20_000
