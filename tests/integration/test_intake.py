"""app.Intake: one engine key per message, the same for a redelivery, never reused (not even
after a restart), shared through Redis by every worker."""

from __future__ import annotations

from smsmenu.app import Intake
from smsmenu.menus.store import InProcessStore, RedisStore


async def check_keys(first: Intake, second: Intake) -> None:
    gk = "mo-abc"
    one = await first.key(gk)
    assert await first.key(gk) == one  # a redelivery before the ack: the same key
    await first.acked(gk)
    two = await second.key(gk)  # the same text again, after the ack: a new key
    assert two != one
    assert await second.key("mo-other") not in (one, two)


async def test_in_process_keys_and_a_restart_never_reuses_one() -> None:
    clock = iter(range(1_000_000, 2_000_000, 10))  # microseconds, always moving on
    intake = Intake(InProcessStore(), now_us=lambda: next(clock))
    await check_keys(intake, intake)
    seen = {await intake.key("mo-pin")}
    for _ in range(3):
        await intake.acked("mo-pin")
        seen.add(await intake.key("mo-pin"))
    # the process started again: counters are gone, the clock went on
    restarted = Intake(InProcessStore(), now_us=lambda: next(clock))
    assert await restarted.key("mo-pin") not in seen
    assert len(seen) == 4


async def test_redis_keys_are_shared_by_workers_and_survive_a_restart(
    redis_url: str, redis_prefix: str
) -> None:
    a = RedisStore.from_url(redis_url, prefix=redis_prefix)
    b = RedisStore.from_url(redis_url, prefix=redis_prefix)
    try:
        await check_keys(Intake(a), Intake(b))
        key = await Intake(a).key("mo-pin")
        assert await Intake(b).key("mo-pin") == key  # a redelivery to the other worker
        await Intake(b).acked("mo-pin")
        assert await Intake(a).key("mo-pin") != key
        await a.client.delete(f"{redis_prefix}acked:mo-pin")  # the counter expired
        assert await Intake(a).key("mo-pin") != key
    finally:
        await a.aclose()
        await b.aclose()
