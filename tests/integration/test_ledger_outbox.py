"""The outbox's sender side on SQLite and PostgreSQL: claims, leases, retries, receipts."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from smsmenu.clock import FakeClock
from smsmenu.ledger import outbox
from smsmenu.ledger.outbox import QUEUED, SENDING, Outbox, for_people
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


@pytest.mark.parametrize("local", [False, True], ids=["engine", "local-writer"])
async def test_claim_submit_deliver(ledger: LedgerService, clock: FakeClock, local: bool) -> None:
    """Through SQLAlchemy, and through the embedded writer's own connection where there is one
    (``serve`` on SQLite records that way; on PostgreSQL there is none and both are the same)."""
    assert (ledger.local_writer is None) == ledger.ctx.postgres
    box = Outbox(ledger.engine, clock, ledger.local_writer if local else None)
    await queue(ledger, 3)
    claimed = await box.claim("w1", limit=2, lease_s=30)
    assert [m.text for m in claimed] == ["text 0", "text 1"]
    assert all(m.status == "sending" and m.claimed_by == "w1" and m.attempts == 1 for m in claimed)
    assert claimed[0].claimed_until == clock.now() + timedelta(seconds=30)
    assert [m.text for m in await box.claim("w2", limit=10, lease_s=30)] == ["text 2"]
    assert await box.claim("w3", limit=10, lease_s=30) == []
    assert await box.record([(claimed[0].lease, "smsc-1")], []) == {claimed[0].id}
    assert await box.apply_receipts([(["smsc-1"], True), (["nope"], True)]) == {"smsc-1"}
    rows = {m.id: m for m in await box.rows()}
    first = rows[claimed[0].id]
    assert (first.status, first.smsc_message_id, first.delivered_at) == (
        "delivered",
        "smsc-1",
        clock.now(),
    )
    assert first.submitted_at == clock.now() and first.claimed_by is None
    await box.record([(claimed[1].lease, "smsc-2")], [])
    assert await box.apply_receipts([(["SMSC-2", "smsc-2"], False)]) == {"smsc-2"}
    assert (await box.rows())[1].status == "undeliverable"


async def test_failed_rows_retry_later_or_give_up(ledger: LedgerService, clock: FakeClock) -> None:
    box = Outbox(ledger.engine, clock)
    await queue(ledger, 2)
    a, b = await box.claim("w1", limit=2, lease_s=30)
    assert await box.mark_failed(a.lease, "throttled", clock.now() + timedelta(seconds=10))
    assert await box.mark_failed(b.lease, "invalid destination", None)
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


async def test_rows_for_a_destination_and_routes(ledger: LedgerService, clock: FakeClock) -> None:
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
    pending = await box.rows(destination="13800000002", statuses=(QUEUED, SENDING))
    assert [m.text for m in pending] == ["text 0", "menu"]
    assert pending[1].route == route and pending[0].route == Route()
    [claimed] = await box.claim("w", limit=1, lease_s=30)
    await box.record([(claimed.lease, "x")], [])
    left = await box.rows(destination="13800000001", statuses=(QUEUED, SENDING))
    assert [m.text for m in left] == ["text 1"]


async def test_a_lapsed_claim_cannot_undo_a_send_by_the_next_claim(
    ledger: LedgerService, clock: FakeClock
) -> None:
    """The "third send": A's lease lapses, B claims and sends; A's late writes change nothing,
    so the row is not queued again for a third worker."""
    box = Outbox(ledger.engine, clock, ledger.local_writer)  # as serve builds it
    await queue(ledger, 1)
    [a] = await box.claim("worker-a", limit=1, lease_s=30)
    clock.advance(31)  # A stalls past its lease
    [b] = await box.claim("worker-b", limit=1, lease_s=30)
    assert await box.record([(b.lease, "smsc-b")], []) == {b.id}
    assert await box.renew([a.lease], 30) == {}
    assert await box.record([(a.lease, "smsc-a")], []) == set()
    assert not await box.mark_failed(a.lease, "no submit_sm_resp", clock.now())
    [row] = await box.rows()
    assert (row.status, row.smsc_message_id, row.claimed_by) == ("sent", "smsc-b", None)
    assert await box.claim("worker-c", limit=1, lease_s=30) == []


async def test_a_lapsed_claim_cannot_touch_the_claim_that_holds_the_row(
    ledger: LedgerService, clock: FakeClock
) -> None:
    """Even by the same worker: a write names the claim it was made under, not only its owner."""
    box = Outbox(ledger.engine, clock, ledger.local_writer)  # as serve builds it
    await queue(ledger, 1)
    [first] = await box.claim("worker-a", limit=1, lease_s=30)
    clock.advance(31)
    [second] = await box.claim("worker-a", limit=1, lease_s=30)  # a restarted worker a
    assert await box.renew([first.lease], 60) == {}
    assert not await box.mark_failed(first.lease, "late failure of the first claim", None)
    assert await box.record([(first.lease, "smsc-first")], []) == set()
    [row] = await box.rows()
    assert (row.status, row.claimed_by, row.attempts, row.smsc_message_id) == (
        "sending",
        "worker-a",
        second.attempts,
        None,
    )
    assert row.claimed_until == clock.now() + timedelta(seconds=30)


async def test_renew_keeps_held_rows_even_lapsed_ones_nobody_took(
    ledger: LedgerService, clock: FakeClock
) -> None:
    box = Outbox(ledger.engine, clock, ledger.local_writer)  # as serve builds it
    await queue(ledger, 2)
    a, b = await box.claim("w", limit=2, lease_s=30)
    assert await box.record([(b.lease, "smsc-b")], []) == {b.id}
    clock.advance(45)  # lapsed, but no other claim took it: still this claim's
    assert await box.renew([a.lease, b.lease], 30) == {a.id: clock.now() + timedelta(seconds=30)}
    assert await box.claim("other", limit=2, lease_s=30) == []


async def test_a_delivery_outcome_applies_to_the_copy_it_names(
    ledger: LedgerService, clock: FakeClock
) -> None:
    box = Outbox(ledger.engine, clock, ledger.local_writer)  # as serve builds it
    await queue(ledger, 1)
    [a] = await box.claim("w", limit=1, lease_s=30)
    await box.record([(a.lease, "smsc-1")], [(a.id, "smsc-0", False)])
    assert (await box.rows())[0].status == "sent"  # a receipt of another copy: ignored
    await box.record([], [(a.id, "smsc-1", True)])
    assert (await box.rows())[0].status == "delivered"


async def test_a_one_time_code_is_listed_masked(ledger: LedgerService, clock: FakeClock) -> None:
    """``outbox list`` shows people every notice but never a code that still works."""
    now = clock.now()
    async with ledger.engine.begin() as conn:
        await outbox.add(
            conn,
            *(
                outbox.row(
                    now=now,
                    source="10001",
                    destination="13900000002",
                    text=f"code 123456 for {kind}",
                    kind=kind,
                    dedup_key=kind,
                    ref=1,
                )
                for kind in ("closing_code", "web_code", "target_receipt")
            ),
        )
    shown = {m.kind: m.text for m in map(for_people, await Outbox(ledger.engine, clock).rows())}
    assert shown == {
        "closing_code": "code ****** for closing_code",
        "web_code": "code ****** for web_code",
        "target_receipt": "code 123456 for target_receipt",
    }
