"""The outbox's sender side on SQLite and PostgreSQL: claims, leases, retries, receipts."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from smsmenu.clock import FakeClock
from smsmenu.ledger import outbox
from smsmenu.ledger.outbox import Outbox
from smsmenu.ledger.service import LedgerService
from smsmenu.messages import Route, Transport, UssdDialogue


async def queue(ledger: LedgerService, n: int, destination: str = "13800000001") -> None:
    now = ledger.clock.now()
    async with ledger.engine.begin() as conn:
        await outbox.add(
            conn,
            *(
                outbox.row(
                    now=now,
                    source="10001",
                    destination=destination,
                    text=f"text {i}",
                    kind="test",
                    dedup_key=f"{destination}:{i}",
                    ref=i,
                )
                for i in range(n)
            ),
        )


async def test_claim_submit_deliver(ledger: LedgerService, clock: FakeClock) -> None:
    box = Outbox(ledger.engine, clock)
    await queue(ledger, 3)
    claimed = await box.claim("w1", limit=2, lease_s=30)
    assert [m.text for m in claimed] == ["text 0", "text 1"]
    assert all(m.status == "sending" and m.claimed_by == "w1" and m.attempts == 1 for m in claimed)
    assert claimed[0].claimed_until == clock.now() + timedelta(seconds=30)
    assert [m.text for m in await box.claim("w2", limit=10, lease_s=30)] == ["text 2"]
    assert await box.claim("w3", limit=10, lease_s=30) == []
    await box.mark_submitted(claimed[0].id, "smsc-1")
    assert await box.mark_delivered("smsc-1", delivered=True) == 1
    assert await box.mark_delivered("nope", delivered=True) == 0
    rows = {m.id: m for m in await box.rows()}
    first = rows[claimed[0].id]
    assert (first.status, first.smsc_message_id, first.delivered_at) == (
        "delivered",
        "smsc-1",
        clock.now(),
    )
    assert first.submitted_at == clock.now() and first.claimed_by is None
    await box.mark_submitted(claimed[1].id, "smsc-2")
    await box.mark_delivered("smsc-2", delivered=False)
    assert (await box.rows())[1].status == "undeliverable"


async def test_failed_rows_retry_later_or_give_up(ledger: LedgerService, clock: FakeClock) -> None:
    box = Outbox(ledger.engine, clock)
    await queue(ledger, 2)
    a, b = await box.claim("w1", limit=2, lease_s=30)
    await box.mark_failed(a.id, "throttled", clock.now() + timedelta(seconds=10))
    await box.mark_failed(b.id, "invalid destination", None)
    assert await box.claim("w1", limit=10, lease_s=30) == []
    clock.advance(10)
    again = await box.claim("w1", limit=10, lease_s=30)
    assert [(m.id, m.attempts, m.error) for m in again] == [(a.id, 2, "throttled")]
    assert [m.status for m in await box.rows() if m.id == b.id] == ["failed"]


async def test_expired_lease_is_claimable_again(ledger: LedgerService, clock: FakeClock) -> None:
    box = Outbox(ledger.engine, clock)
    await queue(ledger, 1)
    [first] = await box.claim("dead-worker", limit=1, lease_s=30)
    clock.advance(30)
    assert await box.claim("w2", limit=1, lease_s=30) == []  # not yet expired
    clock.advance(1)
    [again] = await box.claim("w2", limit=1, lease_s=30)
    assert (again.id, again.claimed_by, again.attempts) == (first.id, "w2", 2)


async def test_concurrent_claimers_never_share_a_row(
    ledger: LedgerService, clock: FakeClock
) -> None:
    box = Outbox(ledger.engine, clock)
    await queue(ledger, 200)
    batches = await asyncio.gather(*(box.claim(f"w{i}", limit=7, lease_s=30) for i in range(8)))
    more = await asyncio.gather(*(box.claim(f"v{i}", limit=30, lease_s=30) for i in range(8)))
    ids = [m.id for batch in batches + more for m in batch]
    assert len(ids) == len(set(ids)) == 200


async def test_pending_for_and_routes(ledger: LedgerService, clock: FakeClock) -> None:
    box = Outbox(ledger.engine, clock)
    await queue(ledger, 2, "13800000001")
    await queue(ledger, 1, "13800000002")
    route = Route(Transport.USSD, UssdDialogue(5, None), final=False)
    async with ledger.engine.begin() as conn:
        await outbox.add(
            conn,
            outbox.row(
                now=clock.now(),
                source="10001",
                destination="13800000002",
                text="menu",
                kind="menu",
                dedup_key="ussd-1",
                route=route,
            ),
        )
    pending = await box.pending_for("13800000002")
    assert [m.text for m in pending] == ["text 0", "menu"]
    assert pending[1].route == route and pending[0].route == Route()
    [claimed] = await box.claim("w", limit=1, lease_s=30)
    await box.mark_submitted(claimed.id, "x")
    assert [m.text for m in await box.pending_for("13800000001")] == ["text 1"]
