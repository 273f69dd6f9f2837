"""The outbox sender on real databases, with a stand-in for the link: several workers on
one PostgreSQL never send a row twice; retries, permanent failures, leases after a crash,
and receipts (any part, hex or decimal, early, or received by another worker)."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from smsmenu.clock import FakeClock, SystemClock
from smsmenu.delivery.sender import OutboxSender, SenderConfig
from smsmenu.ledger import outbox as ob
from smsmenu.ledger.db import create_engine
from smsmenu.links import LinkStopped, SendFailed
from smsmenu.messages import Outbound
from tests.fake_link import FakeLink
from tests.ledger_fixtures import truncate

FAST = {"poll_s": 0.02, "retry_min_s": 0.02, "retry_max_s": 0.1, "lease_s": 2.0}


class FakeSmsc:
    """Stands in for the operator: records what it was given, answers with hex ids."""

    def __init__(self, parts: int = 1) -> None:
        self.sent: list[tuple[str, str]] = []  # (worker, text)
        self.ids = itertools.count(0x1000)
        self.parts = parts
        self.fail: dict[str, list[Exception]] = {}  # text -> failures to raise, in turn

    def link_of(self, worker: str) -> FakeLink:
        async def send(outbound: Outbound) -> list[str]:
            await asyncio.sleep(0)
            failures = self.fail.get(outbound.text)
            if failures:
                raise failures.pop(0)
            self.sent.append((worker, outbound.text))
            return [format(next(self.ids), "X") for _ in range(self.parts)]

        return FakeLink(send)


@pytest.fixture
async def pg_engine(ledger_pg_url: str) -> AsyncIterator[AsyncEngine]:
    await truncate(ledger_pg_url)
    engine = create_engine(ledger_pg_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def queue(engine: AsyncEngine, count: int, prefix: str = "t") -> None:
    now = SystemClock().now()
    rows = [
        ob.row(
            now=now,
            source="10001",
            destination=f"1390000{n % 7:04d}",
            text=f"{prefix}{n}",
            kind="test",
            dedup_key=f"{prefix}{n}",
        )
        for n in range(count)
    ]
    async with engine.begin() as conn:
        await ob.add(conn, *rows)


async def until(condition, within_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Polls ``condition`` (a database state) until it holds, failing after ``within_s``."""
    async with asyncio.timeout(within_s):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.02)


def sender(engine: AsyncEngine, smsc: FakeSmsc, worker: str, **config: object) -> OutboxSender:
    outbox = ob.Outbox(engine, SystemClock())
    cfg = SenderConfig(worker_id=worker, window=8, **{**FAST, **config})  # type: ignore[arg-type]
    return OutboxSender(outbox, smsc.link_of(worker), cfg)


async def all_status(engine: AsyncEngine, status: str, count: int) -> bool:
    rows = await ob.Outbox(engine, SystemClock()).rows()
    return len(rows) == count and all(r.status == status for r in rows)


async def test_two_senders_on_one_postgres_never_send_a_row_twice(pg_engine: AsyncEngine) -> None:
    smsc = FakeSmsc()
    a, b = sender(pg_engine, smsc, "worker-a"), sender(pg_engine, smsc, "worker-b")
    await a.start()
    await b.start()
    try:
        for _ in range(4):  # rows keep arriving while both claim
            await queue(pg_engine, 100, prefix=f"r{_}-")
            a.nudge()
            b.nudge()
        await until(lambda: all_status(pg_engine, ob.SENT, 400))
    finally:
        await a.stop()
        await b.stop()
    counts = Counter(text for _, text in smsc.sent)
    assert len(counts) == 400 and set(counts.values()) == {1}
    workers = Counter(worker for worker, _ in smsc.sent)
    assert workers["worker-a"] > 0 and workers["worker-b"] > 0, workers
    rows = await ob.Outbox(pg_engine, SystemClock()).rows()
    assert all(r.attempts == 1 and r.smsc_message_id for r in rows)


async def test_transient_failures_are_retried_permanent_ones_recorded(
    pg_engine: AsyncEngine,
) -> None:
    smsc = FakeSmsc()
    smsc.fail = {
        "t0": [
            SendFailed("no response (test)", transient=True),
            SendFailed("refused with status 0x8 (test)", transient=True),
        ],
        "t1": [SendFailed("refused with status 0xb (test)", transient=False)],
    }
    await queue(pg_engine, 3)
    s = sender(pg_engine, smsc, "w")
    await s.start()
    try:

        async def settled() -> bool:
            rows = {r.text: r for r in await s.outbox.rows()}
            return rows["t0"].status == ob.SENT and rows["t1"].status == ob.FAILED

        await until(settled)
    finally:
        await s.stop()
    rows = {r.text: r for r in await s.outbox.rows()}
    assert rows["t0"].attempts == 3 and rows["t2"].attempts == 1
    assert "0xb" in (rows["t1"].error or "")
    assert s.status().failed == 1 and s.status().retried == 2
    assert Counter(text for _, text in smsc.sent) == {"t0": 1, "t2": 1}


async def test_rows_of_a_dead_worker_are_sent_after_its_lease(pg_engine: AsyncEngine) -> None:
    await queue(pg_engine, 5)
    outbox = ob.Outbox(pg_engine, SystemClock())
    claimed = await outbox.claim("dead-worker", 3, lease_s=0.3)  # then it is killed
    assert len(claimed) == 3
    smsc = FakeSmsc()
    s = sender(pg_engine, smsc, "alive")
    await s.start()
    try:
        await until(lambda: all_status(pg_engine, ob.SENT, 5))
    finally:
        await s.stop()
    assert sorted(text for _, text in smsc.sent) == [f"t{n}" for n in range(5)]
    rows = {r.text: r for r in await outbox.rows()}
    assert rows["t0"].attempts == 2 and rows["t4"].attempts == 1


async def test_receipts_of_any_part_in_any_form_even_early_or_at_another_worker(
    pg_engine: AsyncEngine,
) -> None:
    smsc = FakeSmsc(parts=2)
    await queue(pg_engine, 2)
    a = sender(pg_engine, smsc, "a")
    b = sender(pg_engine, smsc, "b", receipt_hold_s=5.0)
    outbox = a.outbox
    # a receipt (decimal form) that arrives at worker b before anything was sent
    early = str(0x1000)
    await b.start()
    await b.on_receipt(early, True)
    assert b.status().unmatched == 1
    await b.stop()
    b = sender(pg_engine, smsc, "b", receipt_hold_s=5.0)
    await b.on_receipt(early, True)  # kept by worker b, while a sends both rows
    await a.start()
    try:
        await until(lambda: _sent(outbox, 2))
        await b.start()
        rows = {r.text: r for r in await outbox.rows()}
        first, second = rows["t0"], rows["t1"]
        assert first.smsc_message_id == "1000" and second.smsc_message_id == "1002"
        # worker b matches its early receipt once a recorded it (first part, decimal form)
        await until(lambda: _status(outbox, "t0", ob.DELIVERED))
        # at worker a: part 2 of t1 (lower-case hex) delivered, part 1 too -> delivered
        await a.on_receipt("1003", True)
        assert (await _row(outbox, "t1")).status == ob.SENT  # one part of two
        await a.on_receipt(str(0x1002), True)
        await until(lambda: _status(outbox, "t1", ob.DELIVERED))
    finally:
        await a.stop()
        await b.stop()


async def _row(outbox: ob.Outbox, text: str) -> ob.OutboxMessage:
    return {r.text: r for r in await outbox.rows()}[text]


async def _status(outbox: ob.Outbox, text: str, status: str) -> bool:
    return (await _row(outbox, text)).status == status


async def test_a_stopping_link_gives_the_row_back_at_once(database_url: str) -> None:
    """``LinkStopped``: not a failure of the row, so no back-off and no retry counted."""
    engine = create_engine(database_url)
    try:
        await queue(engine, 1)
        smsc = FakeSmsc()
        smsc.fail = {"t0": [LinkStopped("stopping (test)")]}
        s = sender(engine, smsc, "w", retry_min_s=30.0, retry_max_s=30.0)
        await s.start()
        try:
            await until(lambda: _status(s.outbox, "t0", ob.SENT), within_s=5)
        finally:
            await s.stop()
        row = await _row(s.outbox, "t0")
        assert row.attempts == 2 and s.status().retried == 0 and s.status().failed == 0
    finally:
        await engine.dispose()


async def _sent(outbox: ob.Outbox, count: int) -> bool:
    rows = await outbox.rows()
    return len(rows) == count and all(r.smsc_message_id for r in rows)


async def test_a_transient_failure_waits_its_back_off(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await queue(engine, 1)
        smsc = FakeSmsc()
        smsc.fail = {"t0": [SendFailed("no response (test)", transient=True)]}
        s = sender(engine, smsc, "w", retry_min_s=0.2, retry_max_s=1.0)
        await s.start()
        try:
            await until(lambda: _status(s.outbox, "t0", ob.SENT))
        finally:
            await s.stop()
        row = await _row(s.outbox, "t0")
        assert row.submitted_at is not None and row.next_attempt_at is not None
        assert row.submitted_at - row.created_at >= timedelta(seconds=0.2)
    finally:
        await engine.dispose()


async def test_rows_go_out_several_at_once_but_one_phone_in_order(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        now = SystemClock().now()
        rows = [
            ob.row(
                now=now,
                source="10001",
                destination="13900000001" if n % 2 else f"1390000{n:04d}",
                text=f"t{n}",
                kind="test",
                dedup_key=f"t{n}",
            )
            for n in range(12)
        ]
        async with engine.begin() as conn:
            await ob.add(conn, *rows)
        in_flight: set[str] = set()
        most = 0
        released = asyncio.Event()
        order: list[str] = []

        async def send(outbound: Outbound) -> list[str]:
            nonlocal most
            assert outbound.destination not in in_flight  # one phone: one at a time
            in_flight.add(outbound.destination)
            most = max(most, len(in_flight))
            if len(in_flight) >= 4:
                released.set()  # four phones' rows were in flight together
            await asyncio.wait_for(released.wait(), 5)
            in_flight.discard(outbound.destination)
            order.append(outbound.text)
            return [f"id-{outbound.text}"]

        s = OutboxSender(
            ob.Outbox(engine, SystemClock()),
            FakeLink(send),
            SenderConfig(worker_id="w", window=8, **FAST),  # type: ignore[arg-type]
        )
        await s.start()
        try:
            await until(lambda: all_status(engine, ob.SENT, 12))
        finally:
            await s.stop()
        assert most >= 4
        same_phone = [t for t in order if int(t[1:]) % 2]
        assert same_phone == [f"t{n}" for n in range(1, 12, 2)]
    finally:
        await engine.dispose()


async def test_a_stale_ussd_result_goes_as_an_sms(database_url: str) -> None:
    from smsmenu.messages import Route, Transport, UssdDialogue

    engine = create_engine(database_url)
    try:
        now = SystemClock().now()
        ussd = Route(Transport.USSD, UssdDialogue(200), final=True)
        async with engine.begin() as conn:
            await ob.add(
                conn,
                ob.row(
                    now=now,
                    source="10001",
                    destination="13800000001",
                    text="fresh",
                    kind="agent_result",
                    dedup_key="fresh",
                    route=ussd,
                ),
                ob.row(
                    now=now - timedelta(minutes=5),
                    source="10001",
                    destination="13800000002",
                    text="stale",
                    kind="agent_result",
                    dedup_key="stale",
                    route=ussd,
                ),
            )
        routes: dict[str, Route] = {}

        async def send(outbound: Outbound) -> list[str]:
            routes[outbound.text] = outbound.route
            return [f"id-{outbound.text}"]

        s = OutboxSender(
            ob.Outbox(engine, SystemClock()),
            FakeLink(send),
            SenderConfig(worker_id="w", **FAST),  # type: ignore[arg-type]
        )
        await s.start()
        try:
            await until(lambda: all_status(engine, ob.SENT, 2))
        finally:
            await s.stop()
        assert routes["fresh"] == ussd
        assert routes["stale"].transport is Transport.SMS
    finally:
        await engine.dispose()


async def test_a_receipt_for_a_direct_reply_is_ignored(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        s = OutboxSender(
            ob.Outbox(engine, SystemClock()),
            FakeLink(
                FakeSmsc().link_of("w").send, sent_here=lambda message_id: message_id == "ABC1"
            ),
            SenderConfig(worker_id="w", **FAST),  # type: ignore[arg-type]
        )
        await s.on_receipt("ABC1", True)  # the link sent it as a menu reply
        await s.on_receipt("ABC2", True)  # unknown here: kept for a while, may be a row's
        assert s.status().unmatched == 1
    finally:
        await engine.dispose()


class GatedSmsc:
    """A link whose first send waits at the SMSC until ``release`` is set."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.at_link = asyncio.Event()
        self.release = asyncio.Event()

    async def send(self, outbound: Outbound) -> list[str]:
        self.sent.append(outbound.text)
        if len(self.sent) == 1:
            self.at_link.set()
            await asyncio.wait_for(self.release.wait(), 10)
        return [f"a-{outbound.text}"]


async def _two_rows_for_one_phone(engine: AsyncEngine, now: datetime) -> None:
    async with engine.begin() as conn:
        await ob.add(
            conn,
            *(
                ob.row(
                    now=now,
                    source="10001",
                    destination="13900000001",
                    text=text,
                    kind="test",
                    dedup_key=text,
                )
                for text in ("r1", "r2")
            ),
        )


async def _taken_and_sent_by_b(engine: AsyncEngine, clock: FakeClock) -> None:
    """Worker b claims both rows (their lease lapsed for b) and the SMSC accepts them."""
    b = ob.Outbox(engine, clock)
    taken = await b.claim("worker-b", 10, lease_s=30)
    assert [m.text for m in taken] == ["r1", "r2"]
    await b.record([(m.lease, f"b-{m.text}") for m in taken], [])


async def _stop_and_check(engine: AsyncEngine, a: OutboxSender, smsc: GatedSmsc) -> None:
    smsc.release.set()
    await until(lambda: _idle(a))
    await a.stop()
    assert smsc.sent == ["r1"]  # r1 was at the link before the lease lapsed; r2 never left
    rows = await ob.Outbox(engine, SystemClock()).rows()
    assert [(r.text, r.status, r.smsc_message_id) for r in rows] == [
        ("r1", ob.SENT, "b-r1"),
        ("r2", ob.SENT, "b-r2"),
    ]


async def _idle(sender: OutboxSender) -> bool:
    return sender.status().in_flight == 0


async def test_a_sender_whose_lease_lapsed_does_not_submit(database_url: str) -> None:
    """Worker a stalls past its lease (no renewal came: lease_s 30, the clock jumps 31 s);
    b claims and sends. a's row waiting behind the phone's earlier row is not submitted,
    and a's late record of the row at the link changes nothing."""
    engine = create_engine(database_url)
    try:
        clock = FakeClock()
        await _two_rows_for_one_phone(engine, clock.now())
        smsc = GatedSmsc()
        config = SenderConfig(worker_id="worker-a", window=2, poll_s=0.02, lease_s=30)
        a = OutboxSender(ob.Outbox(engine, clock), FakeLink(smsc.send), config, clock=clock)
        await a.start()
        try:
            await asyncio.wait_for(smsc.at_link.wait(), 10)
            clock.advance(31)
            await _taken_and_sent_by_b(engine, clock)
        finally:
            await _stop_and_check(engine, a, smsc)
    finally:
        await engine.dispose()


async def test_a_renewal_that_finds_a_row_taken_cancels_its_send(database_url: str) -> None:
    """Worker b's clock is 31 s ahead of a's: b finds a's leases lapsed and takes the rows
    while a still counts them as its own. a's next renewal finds them held by b: the row not yet
    at the link is cancelled at once, before the row ahead of it comes back."""
    engine = create_engine(database_url)
    try:
        clock_a = FakeClock()
        await _two_rows_for_one_phone(engine, clock_a.now())
        smsc = GatedSmsc()
        config = SenderConfig(worker_id="worker-a", window=2, poll_s=0.02, lease_s=0.6)
        a = OutboxSender(ob.Outbox(engine, clock_a), FakeLink(smsc.send), config, clock=clock_a)
        await a.start()
        try:
            await asyncio.wait_for(smsc.at_link.wait(), 10)
            clock_b = FakeClock(clock_a.now() + timedelta(seconds=31))
            await _taken_and_sent_by_b(engine, clock_b)
            await until(lambda: _one_in_flight(a))  # r2 cancelled while r1 still waits
        finally:
            await _stop_and_check(engine, a, smsc)
    finally:
        await engine.dispose()


async def _one_in_flight(sender: OutboxSender) -> bool:
    return sender.status().in_flight == 1
