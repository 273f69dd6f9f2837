"""The outbox sender: moves outbox rows (results, receipts) to the phones, once each.

Theory of operation. The ledger writes a notice in the same transaction as the money it
reports (``ledger/outbox.py``); this module is the only reader, and sends through any
``links.Link``. Rows reach it two ways. The normal one: a recharge's writer stores its notices
already claimed for this worker (``LedgerContext.claim_for``) and, once committed, ``hand``s
them here: they are sent at once, with no query to find them. The other: a loop claims due
rows with a lease (``Outbox.claim``: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so that several
workers on one database never claim the same row) — the notices of other operations, those
of a worker that died, retries — as many as free places in its window, waking on ``nudge()``
and else every ``poll_s``. Each row is sent in its own task, rows of one phone one after the
other (in id order). A row counts as sent only once the link accepted every part; the ids are
then recorded (``Outbox.record``, batched: one transaction for everything that completed
meanwhile).

A USSD notice (a result that ends its dialogue) older than ``ussd_stale_s`` is sent as an
SMS: its dialogue is long over (the worker was down, the SMSC unreachable).

Failures. ``SendFailed`` that the link calls ``transient`` (no response, system error, queue
full …) or any other exception queues the row again with a growing back-off; a permanent
refusal marks it failed for good. ``LinkStopped`` gives the row back at once.

Leases. A claimed row is this worker's only while its lease runs. Every write about it —
renewal, ``mark_failed``, recording the submit — names the claim (``Lease``: row, worker and the
attempt number the claim set) and the database ignores it once another claim took the row
(``ledger/outbox.py``). While a row is in flight (and until its submit is recorded) its lease is
renewed every third of ``lease_s``, so a send that waits through a rebind or a throttle keeps
it. The worker keeps each lease's expiry from the claim and the renewals, and hands a row to the
link only while its lease still has a renewal period to run: a worker that stalled, or could not
renew, does not submit what another worker may already be sending. When a renewal finds rows
no longer held, their sends that have not reached the link yet (waiting behind an earlier row
of the same phone) are cancelled. Leases are compared across workers, so their clocks must agree
to well within a renewal period.

Crash semantics (SPEC §6): a worker that dies (or stalls past its lease) leaves its claimed rows
leased; when the lease expires another worker (or the restarted one) claims them again. That is
the only resend, and only of a row the first worker had handed to the link but not recorded as
accepted (it cannot know whether the SMSC took it). The late worker can neither requeue nor
re-record a row another claim holds, so no third send follows.

Delivery receipts. ``on_receipt`` (the link's receipt handler) matches a receipt to its row in
memory first: every form of the id (``Link.receipt_forms``) of every part of each row this
worker sent maps to the row, so a receipt for any part of a long message matches; a long
message counts as delivered when every part is, undeliverable as soon as one part is. A
receipt for a direct menu reply this worker sent (no outbox row) is ignored. A receipt for an id
this worker does not know (sent by another worker, or before it restarted) is kept and applied
to the database with the others, in one transaction per batch (the recorder's), by any stored
form of its id (the first part's id is stored). One that matches nothing yet — it can overtake
the recording of the submit — is tried again with the next batches (every ``orphan_retry_s``,
and at once in memory when this worker records the row) until ``receipt_hold_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from smsmenu.clock import Clock, SystemClock
from smsmenu.ledger.outbox import Lease, Outbox, OutboxMessage
from smsmenu.ledger.recharge_plan import Claim
from smsmenu.links import Link, LinkStopped, SendFailed
from smsmenu.messages import SMS, Outbound, Transport
from smsmenu.settings import Settings

log = logging.getLogger("smsmenu.outbox")


def default_worker_id() -> str:
    """``hostname-pid``: unique per running worker, readable in ``claimed_by``."""
    return f"{socket.gethostname()}-{os.getpid()}"[:64]


@dataclass(eq=False)
class _Claim:
    """A row this worker holds: the lease its writes name, the lease's expiry as the claim or
    the last renewal set it, and whether the row was handed to the link."""

    message: OutboxMessage
    until: datetime
    task: asyncio.Task[None] | None = None
    handed: bool = False


@dataclass(frozen=True)
class SenderConfig:
    worker_id: str = field(default_factory=default_worker_id)
    window: int = 32  # rows in flight at once
    lease_s: float = 30.0
    poll_s: float = 0.5
    retry_min_s: float = 1.0
    retry_max_s: float = 300.0
    max_attempts: int = 20
    receipt_hold_s: float = 60.0
    drain_s: float = 10.0
    record_delay_s: float = 0.02
    ussd_stale_s: float = 60.0  # a USSD notice older than this goes as an SMS
    orphan_retry_s: float = 0.5  # how often receipts not matched yet are tried again

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SenderConfig:
        values: dict[str, Any] = {
            "window": settings.smpp_window,
            "lease_s": settings.outbox_lease_s,
            "poll_s": settings.outbox_poll_s,
            "retry_min_s": settings.outbox_retry_min_s,
            "retry_max_s": settings.outbox_retry_max_s,
            "max_attempts": settings.outbox_max_attempts,
        }
        if settings.worker_id:
            values["worker_id"] = settings.worker_id
        values.update(overrides)
        return cls(**values)

    @property
    def renew_s(self) -> float:
        """How often leases in flight are renewed; a row is handed to the link only while its
        lease has at least this long to run."""
        return max(0.05, self.lease_s / 3)


@dataclass
class SenderStatus:
    sent: int = 0  # rows accepted by the SMSC
    failed: int = 0  # rows refused for good
    retried: int = 0  # rows queued again after a transient failure
    in_flight: int = 0
    receipts: int = 0  # receipts matched to a row
    unmatched: int = 0  # receipts kept for later (not matched yet)


@dataclass(eq=False)
class _Sent:
    """What this worker remembers of a row it sent: its parts' delivery state."""

    row: int
    first_id: str  # the SMSC message id the row is recorded under
    parts: int
    delivered: set[str] = field(default_factory=set)
    done: bool = False


@dataclass(eq=False)
class _Orphan:
    """A receipt this worker could not match in memory: looked up in the database from
    ``due`` on, until ``expires``."""

    forms: frozenset[str]
    delivered: bool
    expires: float
    due: float


class OutboxSender:
    """Sends outbox rows through ``link``; see the module notes."""

    def __init__(
        self,
        outbox: Outbox,
        link: Link,
        config: SenderConfig | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.outbox = outbox
        self.config = config or SenderConfig()
        self.link = link
        self._orphans_tried = 0.0
        self._clock = clock or SystemClock()
        self.counters = SenderStatus()
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._renew_task: asyncio.Task[None] | None = None
        self._recorder: asyncio.Task[None] | None = None
        self._inflight: dict[int, _Claim] = {}
        self._gates: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        self._to_record: list[tuple[Lease, str]] = []
        self._to_deliver: list[tuple[int, str, bool]] = []
        self._record_wake = asyncio.Event()
        self._by_id: OrderedDict[str, _Sent] = OrderedDict()
        self._orphans: list[_Orphan] = []  # receipts to apply to the database (batched)
        self._window_full = False

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        self._loop_task = asyncio.create_task(self._run(), name="outbox-sender")
        self._renew_task = asyncio.create_task(self._renew(), name="outbox-renew")
        self._recorder = asyncio.create_task(self._record_loop(), name="outbox-recorder")

    async def stop(self, drain_s: float | None = None) -> None:
        """Stops claiming, lets the sends in flight finish (up to ``drain_s``), records what
        they got. Rows still unsent keep their lease and are claimed again after it."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await asyncio.gather(self._loop_task, return_exceptions=True)
        pending = [claim.task for claim in self._inflight.values() if claim.task is not None]
        if pending:
            wait_s = self.config.drain_s if drain_s is None else drain_s
            _done, left = await asyncio.wait(pending, timeout=wait_s)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
        if self._recorder is not None:
            self._record_wake.set()
            self._recorder.cancel()
            await asyncio.gather(self._recorder, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._flush()
        if self._renew_task is not None:
            self._renew_task.cancel()
            await asyncio.gather(self._renew_task, return_exceptions=True)

    def nudge(self) -> None:
        """New rows may be due: claim now rather than at the next poll."""
        self._wake.set()

    def claim(self) -> Claim:
        """The claim under which a writer stores notices for this worker to ``hand`` over."""
        lease = timedelta(seconds=self.config.lease_s)
        return Claim(self.config.worker_id, self._clock.now() + lease)

    def hand(self, rows: tuple[OutboxMessage, ...]) -> None:
        """Notices just committed, claimed for this worker in their transaction: send them
        now (a notice claimed for another worker, or queued, is the claim loop's)."""
        for message in rows:
            if message.claimed_by == self.config.worker_id and not self._stopping:
                self._dispatch(message)

    def status(self) -> SenderStatus:
        self.counters.in_flight = len(self._inflight)
        self.counters.unmatched = len(self._orphans)
        return SenderStatus(**vars(self.counters))

    # -- the claim loop --------------------------------------------------------------------

    async def _run(self) -> None:
        cfg = self.config
        while not self._stopping:
            self._wake.clear()  # a nudge from now on wakes the wait below at once
            free = cfg.window - len(self._inflight)
            claimed: list[OutboxMessage] = []
            if free > 0 and self.link.bound:
                try:
                    claimed = await self.outbox.claim(cfg.worker_id, free, cfg.lease_s)
                except Exception as exc:
                    log.error("outbox claim failed: %s: %s", type(exc).__name__, exc)
            for message in claimed:
                self._dispatch(message)
            self._window_full = free <= 0 or len(claimed) == free
            if claimed and len(claimed) == free:
                continue  # the window was the limit: more may be due
            self._retry_orphans()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(cfg.poll_s):
                    await self._wake.wait()

    def _dispatch(self, message: OutboxMessage) -> None:
        lock, queue = self._gates.setdefault(message.destination, (asyncio.Lock(), []))
        queue.append(message.id)
        assert message.claimed_until is not None, "a claimed row has a lease"
        claim = _Claim(message, message.claimed_until)
        claim.task = asyncio.create_task(self._send_row(claim, lock), name=f"outbox-{message.id}")
        self._inflight[message.id] = claim

    async def _send_row(self, claim: _Claim, lock: asyncio.Lock) -> None:
        message = claim.message
        try:
            async with lock:  # one phone's rows in id order
                await self._deliver(claim)
        except Exception as exc:  # never let a row's task die silently
            log.error("outbox id=%d: %s: %s", message.id, type(exc).__name__, exc)
        finally:
            if self._inflight.get(message.id) is claim:
                del self._inflight[message.id]
            gate = self._gates.get(message.destination)
            if gate is not None:
                gate[1].remove(message.id)
                if not gate[1]:
                    del self._gates[message.destination]
            if self._window_full:  # the loop waits for a free place: there is one now
                self._wake.set()

    async def _deliver(self, claim: _Claim) -> None:
        message = claim.message
        margin = timedelta(seconds=self.config.renew_s)
        if self._clock.now() + margin >= claim.until:
            # not renewed in time (the database out of reach, this worker stalled): another
            # worker may claim it any moment, so it is not submitted here
            log.warning(
                "outbox id=%d: lease about to lapse, not sent: left to the next claim", message.id
            )
            return
        route = message.route
        age = (self._clock.now() - message.created_at).total_seconds()
        if route.transport is Transport.USSD and age > self.config.ussd_stale_s:
            # the dialogue it belonged to is long over (a restart, an outage): as an SMS
            route = SMS
        outbound = Outbound(message.destination, message.text, message.source, route)
        claim.handed = True
        try:
            ids = await self.link.send(outbound)
        except SendFailed as exc:
            await self._failed(message, str(exc), exc.transient)
            return
        except LinkStopped:
            # Not handed over (or not known to be): give it back at once, for whoever runs.
            await self._mark_failed(message, "link stopped", self._clock.now())
            return
        except Exception as exc:
            await self._failed(message, f"{type(exc).__name__}: {exc}", True)
            return
        self.counters.sent += 1
        log.debug(
            "outbox id=%d kind=%s ref=%s destination=%s parts=%d ids=%s attempt=%d",
            message.id,
            message.kind,
            message.ref,
            message.destination,
            len(ids),
            ",".join(ids),
            message.attempts,
        )
        if ids:
            self._remember(message.id, ids)
            self._to_record.append((message.lease, ids[0]))
            self._record_wake.set()

    async def _failed(self, message: OutboxMessage, error: str, transient: bool) -> None:
        cfg = self.config
        if transient and message.attempts < cfg.max_attempts:
            delay = min(cfg.retry_max_s, cfg.retry_min_s * 2 ** max(0, message.attempts - 1))
            retry_at = self._clock.now() + timedelta(seconds=delay)
            self.counters.retried += 1
            log.warning(
                "outbox id=%d to %s: %s; again in %.1fs",
                message.id,
                message.destination,
                error,
                delay,
            )
            await self._mark_failed(message, error, retry_at)
        else:
            self.counters.failed += 1
            log.error(
                "outbox id=%d to %s failed for good: %s", message.id, message.destination, error
            )
            await self._mark_failed(message, error, None)

    async def _mark_failed(
        self, message: OutboxMessage, error: str, retry_at: datetime | None
    ) -> None:
        if not await self.outbox.mark_failed(message.lease, error, retry_at):
            log.warning("outbox id=%d: its lease lapsed and another claim holds it", message.id)

    async def _renew(self) -> None:
        cfg = self.config
        while True:
            await asyncio.sleep(cfg.renew_s)
            claims = list(self._inflight.values())
            leases = [claim.message.lease for claim in claims]
            leases += [lease for lease, _ in self._to_record]  # sent, not yet recorded
            if not leases:
                continue
            try:
                held = await self.outbox.renew(leases, cfg.lease_s)
            except Exception as exc:
                log.error("outbox lease renewal failed: %s", exc)
                continue
            for claim in claims:
                until = held.get(claim.message.id)
                if until is not None:
                    claim.until = until
                elif not claim.handed and claim.task is not None:
                    log.warning(
                        "outbox id=%d: another claim holds it: its send is cancelled",
                        claim.message.id,
                    )
                    claim.task.cancel()

    # -- recording -------------------------------------------------------------------------

    async def _record_loop(self) -> None:
        pause = 0.05
        while True:
            await self._record_wake.wait()
            # a moment to gather: a row's submit and its receipts, and other rows, are then
            # recorded in one transaction
            await asyncio.sleep(self.config.record_delay_s)
            self._record_wake.clear()
            try:
                await self._flush()
                pause = 0.05
            except Exception as exc:
                log.error("outbox recording failed (%s): retrying", exc)
                self._record_wake.set()
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    async def _flush(self) -> None:
        submitted, self._to_record = self._to_record, []
        delivered, self._to_deliver = self._to_deliver, []
        orphans = self._due_orphans()
        if not submitted and not delivered and not orphans:
            return
        started = time.monotonic()
        try:
            recorded = await self.outbox.record(submitted, delivered)
            if orphans:
                self._matched(orphans, await self.outbox.apply_receipts(
                    [(sorted(orphan.forms), orphan.delivered) for orphan in orphans]
                ))  # fmt: skip
            lost = [lease.id for lease, _ in submitted if lease.id not in recorded]
            if lost:
                log.warning("outbox ids=%s: sent after their lease lapsed; not recorded", lost)
            log.debug(
                "outbox recorded %d submitted, %d delivered in %.1f ms",
                len(submitted),
                len(delivered),
                (time.monotonic() - started) * 1000,
            )
        except BaseException:
            self._to_record[:0] = submitted
            self._to_deliver[:0] = delivered
            raise

    # -- receipts --------------------------------------------------------------------------

    def _remember(self, row: int, ids: list[str]) -> None:
        sent = _Sent(row, ids[0], len(ids))
        forms: set[str] = set()
        for message_id in ids:
            for form in self.link.receipt_forms(message_id):
                self._by_id[form] = sent
                self._by_id.move_to_end(form)
                forms.add(form)
        while len(self._by_id) > 500_000:
            self._by_id.popitem(last=False)
        if self._orphans:  # receipts that overtook this send
            keep = []
            for orphan in self._orphans:
                if orphan.forms & forms:
                    self._apply(sent, next(iter(orphan.forms & forms)), orphan.delivered)
                else:
                    keep.append(orphan)
            self._orphans = keep

    def _apply(self, sent: _Sent, form: str, delivered: bool) -> None:
        if sent.done:
            return
        self.counters.receipts += 1
        if not delivered:
            sent.done = True
            self._to_deliver.append((sent.row, sent.first_id, False))
        else:
            sent.delivered.add(form)
            if len(sent.delivered) >= sent.parts:
                sent.done = True
                self._to_deliver.append((sent.row, sent.first_id, True))
        self._record_wake.set()

    async def on_receipt(self, message_id: str, delivered: bool) -> None:
        """The link's receipt handler. Never raises: what it cannot match in memory is kept
        for the recorder's next batch (see the module notes)."""
        forms = self.link.receipt_forms(message_id)
        for form in forms:
            sent = self._by_id.get(form)
            if sent is not None:
                self._apply(sent, form, delivered)
                return
        if self.link.sent_here(message_id):
            return  # a direct menu reply of this worker: no outbox row
        hold = time.monotonic() + self.config.receipt_hold_s
        self._orphans.append(_Orphan(forms, delivered, hold, due=0.0))
        self._record_wake.set()

    def _due_orphans(self) -> list[_Orphan]:
        """The receipts to look up in the database now (those due); the expired forgotten."""
        now, due, keep = time.monotonic(), [], []
        for orphan in self._orphans:
            if now >= orphan.expires:
                log.warning("receipt for %s matched no outbox row", sorted(orphan.forms)[:2])
            elif now >= orphan.due:
                orphan.due = now + self.config.orphan_retry_s
                due.append(orphan)
                keep.append(orphan)
            else:
                keep.append(orphan)
        self._orphans = keep
        return due

    def _matched(self, tried: list[_Orphan], found: set[str]) -> None:
        """Forget the receipts whose row the database matched (``found``: stored ids)."""
        matched = [orphan for orphan in tried if orphan.forms & found]
        self.counters.receipts += len(matched)
        if matched:
            self._orphans = [orphan for orphan in self._orphans if orphan not in matched]

    def _retry_orphans(self) -> None:
        """Receipts waiting for their row get another look with the recorder's next batch."""
        now = time.monotonic()
        if self._orphans and now - self._orphans_tried >= self.config.orphan_retry_s:
            self._orphans_tried = now
            self._record_wake.set()


__all__ = ["OutboxSender", "SenderConfig", "SenderStatus", "default_worker_id"]
