"""The message path as an SMSC sees it (SPEC §11): identical texts in a burst, copies resent
after a lost response, the parts of long messages acknowledged one by one and joined across
workers. Each test drives the running product over TCP with the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from smsmenu.ledger.billing import Credit, ScriptedBilling
from smsmenu.smpp.simulator import Simulator
from tests.e2e.stack import AGENT, MOBILE, Stack, running_stack
from tests.e2e.test_serve_dialogues import expect_recharge_notices
from tests.ledger_fixtures import TRADE_PIN, truncate

pytestmark = pytest.mark.timeout(90)


async def test_a_burst_of_identical_texts_is_answered_as_that_many_inputs(stack: Stack) -> None:
    """The SMSC flushes its queue: "1" three times back to back, the second and third before
    the first is answered. Three inputs, answered in order."""
    deliveries = [d for _ in range(3) for d in stack.sim.send(AGENT, "1")]
    texts = [(await stack.next()).text for _ in range(3)]
    assert texts == [stack.t("agent_main"), stack.t("agent_tianyi"), stack.t("agent_air")]
    await asyncio.wait_for(asyncio.gather(*(d.acked for d in deliveries)), 5)
    assert [d.attempts for d in deliveries] == [1, 1, 1]


class SlowBilling(ScriptedBilling):
    """An external billing system that takes ``delay_s`` to credit."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    async def credit(self, key: str, number: str, kind: str, amount_fen: int) -> Credit:
        await asyncio.sleep(self.delay_s)
        return await super().credit(key, number, kind, amount_fen)


async def test_a_copy_resent_while_the_first_is_still_handled_runs_once(sqlite_url: str) -> None:
    """Billing is slow (1.2 s): the SMSC's response timer (0.5 s) runs out and it resends the
    CZ twice while the first copy is still being handled. Money moves once, one result."""
    billing = SlowBilling(1.2)
    async with running_stack(sqlite_url, billing=billing) as stack:
        (delivery,) = stack.sim.send(AGENT, f"CZ 2 {MOBILE} 50 {TRADE_PIN}")
        await expect_recharge_notices(stack, MOBILE, 50, MOBILE)
        await asyncio.wait_for(delivery.acked, 5)
        assert delivery.attempts >= 2
        await asyncio.sleep(1.0)  # whatever else would come, comes now
        assert not stack.unread(AGENT) and not stack.unread(MOBILE)
        assert len(billing.credits) == 1
        views = await stack.server.ledger.recharges(stack.agent.agent_id)
        assert len(views) == 1


async def test_the_link_dropped_while_in_the_handler_the_copy_runs_once(
    backend: tuple[str, str], redis_prefix: str
) -> None:
    """The link drops while billing works on a CZ: its response cannot be written. After the
    rebind the SMSC resends it; the copy waits for the first and gets its answer: money once,
    one result."""
    url, redis_url = backend
    billing = SlowBilling(0.8)
    async with running_stack(url, redis_url, billing=billing, store_prefix=redis_prefix) as stack:
        (delivery,) = stack.sim.send(AGENT, f"CZ 2 {MOBILE} 50 {TRADE_PIN}")
        await asyncio.sleep(0.3)  # in the handler (billing takes 0.8 s)
        assert stack.sim.drop_link() == 1
        await expect_recharge_notices(stack, MOBILE, 50, MOBILE)
        await asyncio.wait_for(delivery.acked, 10)
        assert delivery.attempts >= 2
        await asyncio.sleep(1.0)
        assert not stack.unread(AGENT) and not stack.unread(MOBILE)
        assert len(billing.credits) == 1


async def test_a_cz_resent_after_a_crash_between_commit_and_response_runs_once(
    backend: tuple[str, str], redis_prefix: str
) -> None:
    """The worker dies after the ledger committed a CZ and before its deliver_sm_resp was
    written: its memory is gone (the in-process store's with it); SQLite, or PostgreSQL and
    Redis, keep what they keep. The SMSC resends the CZ to the restarted worker: it is
    recognised, moves no money and sends nothing more (no second result, no "send Y to
    confirm")."""
    url, redis_url = backend
    sim = Simulator(redeliver_after_s=0.5)
    await sim.start()
    try:
        fast = {"session_lock_s": 2.0}  # a dead worker's lock of the phone expires soon
        async with running_stack(
            url, redis_url, sim=sim, store_prefix=redis_prefix, **fast
        ) as first:
            committed = asyncio.Event()
            handle = first.server.engine.handle

            async def dies_after_the_commit(inbound):  # type: ignore[no-untyped-def]
                await handle(inbound)
                committed.set()
                await asyncio.Event().wait()  # killed: never acknowledged, never finished

            first.server.engine.handle = dies_after_the_commit  # type: ignore[method-assign]
            (delivery,) = sim.send(AGENT, f"CZ 2 {MOBILE} 50 {TRADE_PIN}")
            await asyncio.wait_for(committed.wait(), 5)
            await expect_recharge_notices(first, MOBILE, 50, MOBILE)
            seen = dict(first.cursor)
            first.server.accepting = False
        assert not delivery.acked.done()
        async with running_stack(
            url, redis_url, sim=sim, store_prefix=redis_prefix, seeded=True, **fast
        ) as restarted:
            restarted.cursor.update(seen)
            await asyncio.wait_for(delivery.acked, 10)  # the copy, taken in and answered
            await asyncio.sleep(1.0)
            assert not restarted.unread(AGENT), [m.text for m in restarted.unread(AGENT)]
            assert not restarted.unread(MOBILE)
            views = await restarted.server.ledger.recharges(restarted.agent.agent_id)
            assert len(views) == 1
    finally:
        await sim.stop()


async def test_parts_sent_one_at_a_time_each_waiting_for_its_response(stack: Stack) -> None:
    """An SMSC that sends the next part only once the previous one was answered."""
    text = "CZ 2 " + MOBILE + " 50 " + TRADE_PIN + " " * 160  # two parts of 160/153
    deliveries = []
    for seq in (1, 2):
        (part,) = stack.sim.send(AGENT, text, part_size=100, reference=42, order=[seq])
        await asyncio.wait_for(part.acked, 3)  # never held until the other part arrives
        deliveries.append(part)
    await expect_recharge_notices(stack, MOBILE, 50, MOBILE)
    assert [d.attempts for d in deliveries] == [1, 1]


@pytest.fixture
async def pg_url(ledger_pg_url: str) -> str:
    await truncate(ledger_pg_url)
    return ledger_pg_url


@pytest.fixture
async def two_workers(
    pg_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[Stack, Stack]]:
    """Two workers on one PostgreSQL and Redis, each with its own bind to one simulator that
    spreads each phone's deliver_sm over both binds in turn (parts included)."""
    sim = Simulator(redeliver_after_s=0.5, spread=True)
    await sim.start()
    try:
        async with (
            running_stack(pg_url, redis_url, sim=sim, store_prefix=redis_prefix) as a,
            running_stack(pg_url, redis_url, sim=sim, store_prefix=redis_prefix, seeded=True) as b,
        ):
            async with asyncio.timeout(5):
                while sim.bound_sessions < 2:  # noqa: ASYNC110 - no event for it
                    await asyncio.sleep(0.02)
            b.cursor.update(a.cursor)
            yield a, b
    finally:
        await sim.stop()


async def test_the_parts_of_one_message_arriving_at_two_workers_are_joined(
    two_workers: tuple[Stack, Stack],
) -> None:
    a, _b = two_workers
    long_text = "1" + " " * 200  # "1" padded to two parts
    parts = a.sim.send(AGENT, long_text, part_size=120, reference=7)
    assert len(parts) == 2
    await asyncio.wait_for(asyncio.gather(*(p.acked for p in parts)), 5)
    assert (await a.next(AGENT)).text == a.t("agent_main")
