"""The SMPP link: our ESME, a thin asyncio driver of ``smpp.session`` (a ``links.Link``).

Theory of operation. One supervisor task connects, binds (as a transceiver) and serves one TCP
connection at a time; when the connection ends for any reason (unbind, TCP drop without
unbind, enquire_link or bind time-out, a bug) it backs off and binds again, and it catches
everything, so it cannot die (and a done-callback restarts it if it ever does). What SMPP
allows on a connection, its sequence numbers and which response answers which request are the
connection's ``Session`` (pure, no I/O); this module moves bytes between it and the socket,
keeps one future per request in flight (failed all at once when the connection dies) and keeps
the time: response and enquire_link time-outs, back-offs, the throttle pause.

Inbound: each deliver_sm (or data_sm) becomes a task so the reader never waits for the menus.
Receipts (esm_class 0x04) go to ``on_receipt``; a part of a concatenated message is stored
(``smpp.parts``) and acknowledged at once, except the part that completes its set, which
travels with the whole message. A whole message goes to ``on_inbound`` with an ``Ack`` to call
once it was taken in: the deliver_sm_resp is written then, never before, and never if the
handler does not call it (the SMSC then delivers it again). Which copy is which message, the
order of one phone's messages and the replies are the handler's business.

Outbound: ``send`` splits the text (UCS2 for Chinese), submits part after part within a
bounded window of outstanding submit_sm, and returns the SMSC's message id of every part only
once its submit_sm_resp came back. ESME_RTHROTTLED / ESME_RMSGQFUL pause all sending with a
growing back-off and the part is submitted again; a link lost or a response timed out submits
it again after the rebind (at most ``max_attempts`` times, then ``SendFailed(transient=True)``);
any other status (vendor-specific ones too) refuses the text (``SubmitRefused``: transient for
ESME_RSYSERR and ESME_RX_T_APPN, permanent otherwise) and the link stays up. Once ``stop``
began, ``send`` raises ``LinkStopped``.

A second link (SMGP, CMPP, SGIP) is one module like this one, beside its own codec: a class with
``links.Link``'s members, built from its settings (and a ``PartStore`` if its operator splits
long messages), with a pure session of its own behind it (login, sequence numbers, the
operator's active-test keep-alive, the table of requests waiting) — what ``smpp.session`` is
here. What its callers rely on: ``on_inbound`` gets each message whole and the operator hears
of it only through its ``Ack``; ``on_receipt`` names a message by an id ``send`` returned (or
``sent_here`` recognises); ``send`` returns one id per part or raises only ``SendFailed``
(``transient`` decided by the link, from its own status codes) or ``LinkStopped``. No status
code, window or rebind leaves the module.

Why not aiosmpplib's ESME: the defects listed in LIBRARY-NOTES (all in 0.7.4) sit in its
receive loop (2, 4-7: hook exceptions kill it, ack before the app, segment joining, enums),
its PDU classes (8: USSD octets as ASCII), its header parsing (9: vendor statuses drop the
link), its sender (1, 10, 11: split without UDHI, dead socket, no window, throttle stall)
and its correlator (3). Overriding each of those would have left only its TCP connect and
bind, on private methods of a 0.x library. tests/e2e/test_library_defects.py proves the
behaviour each defect would have broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from smsmenu.links import (
    Ack,
    InboundHandler,
    LinkStatus,
    LinkStopped,
    ReceiptHandler,
    SendFailed,
)
from smsmenu.messages import Outbound, Transport
from smsmenu.settings import Settings
from smsmenu.smpp import concat, pdu, receipts
from smsmenu.smpp.inbound import to_inbound
from smsmenu.smpp.parts import Held, InProcessParts, Part, PartStore, Refused
from smsmenu.smpp.session import Deliver, RemoteProtocolError, Response, Session, State
from smsmenu.smpp.text import Alphabet, choose_coding, encode
from smsmenu.smpp.ussd import UssdCodes, reply_tlvs

log = logging.getLogger("smsmenu.smpp")

#: submit_sm statuses after which the text may be accepted if sent again later.
TRANSIENT_STATUSES = frozenset(
    {pdu.ESME_RSYSERR, pdu.ESME_RMSGQFUL, pdu.ESME_RTHROTTLED, pdu.ESME_RX_T_APPN}
)


class SubmitRefused(SendFailed):
    """The SMSC answered a submit_sm with ``status`` (see ``TRANSIENT_STATUSES``)."""

    def __init__(self, status: int) -> None:
        super().__init__(
            f"submit_sm refused with status {status:#x}", transient=status in TRANSIENT_STATUSES
        )
        self.status = status


class LinkLost(ConnectionError):
    """The connection ended while a request waited for its response."""


@dataclass(frozen=True)
class SmppConfig:
    """How to reach the SMSC and how patient to be. Time-outs are short in tests."""

    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = "smsmenu"
    password: str = "secret"
    system_type: str = ""
    window: int = 32
    enquire_link_s: float = 30.0
    response_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    throttle_min_s: float = 0.5
    throttle_max_s: float = 30.0
    max_attempts: int = 5
    registered_delivery: int = 1  # ask for delivery receipts of SMS (not of USSD)
    source_ton: int = 0
    source_npi: int = 0
    dest_ton: int = 0
    dest_npi: int = 1
    retry_statuses: frozenset[int] = frozenset({pdu.ESME_RMSGQFUL, pdu.ESME_RTHROTTLED})
    alphabet: Alphabet = Alphabet.GSM
    codes: UssdCodes = field(default_factory=UssdCodes)
    status_interval_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SmppConfig:
        values: dict[str, Any] = {
            "host": settings.smsc_host,
            "port": settings.smsc_port,
            "system_id": settings.smsc_system_id,
            "password": settings.smsc_password.get_secret_value(),
            "system_type": settings.smsc_system_type,
            "window": settings.smpp_window,
            "enquire_link_s": float(settings.enquire_link_s),
            "codes": UssdCodes(
                open=settings.ussd_op_open,
                continue_=settings.ussd_op_continue,
                reply=settings.ussd_op_reply,
                final=settings.ussd_op_final,
            ),
        }
        values.update(overrides)
        return cls(**values)


class _Connection:
    """One TCP connection: its session, its writer, and a future per request in flight."""

    _ids = itertools.count(1)

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.id = next(self._ids)
        self.writer = writer
        self.session = Session()
        self.waiting: dict[int, asyncio.Future[Response]] = {}
        self.closed = False
        self._write_due = False

    @property
    def bound(self) -> bool:
        return not self.closed and self.session.state is State.BOUND

    def flush(self) -> None:
        """Writes what the session has to say, once this turn of the event loop is over: what
        many tasks say meanwhile (answers, submits) goes out in one write, one system call."""
        if not self._write_due and not self.closed:
            self._write_due = True
            asyncio.get_running_loop().call_soon(self._write)

    def _write(self) -> None:
        self._write_due = False
        data = self.session.data_to_send()
        if data and not self.closed:
            self.writer.write(data)

    async def request(self, sequence: int, timeout_s: float) -> Response:
        """Writes the request ``sequence`` the session just made and waits for its response."""
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.waiting[sequence] = future
        self.flush()
        try:
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            self.session.timed_out(sequence)
            raise
        finally:
            self.waiting.pop(sequence, None)

    def answered(self, response: Response) -> None:
        future = self.waiting.get(response.sequence)
        if future is not None and not future.done():
            future.set_result(response)

    def answer(self, deliver: Deliver, status: int = pdu.ESME_ROK) -> bool:
        """Answers ``deliver``; False when its connection is gone (the SMSC delivers it again
        on the next one)."""
        if self.closed or self.session.state is State.CLOSED:
            return False
        self.session.answer(deliver, status)
        self.flush()
        return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.session.close()
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(LinkLost("link lost"))
        with contextlib.suppress(Exception):
            self.writer.transport.abort()


class SmppLink:
    """Our ESME as a ``links.Link``: ``await start(on_inbound, on_receipt)``, ``await
    send(outbound)``, ``await stop()`` (see the module notes)."""

    name = "smpp"

    def __init__(self, config: SmppConfig, parts: PartStore | None = None) -> None:
        self.config = config
        self.parts: PartStore = parts if parts is not None else InProcessParts()
        self.counters = LinkStatus(window=config.window)
        self._queued = 0  # parts given to send() and not yet answered (includes the window)
        self._on_inbound: InboundHandler | None = None
        self._on_receipt: ReceiptHandler | None = None
        self._connection: _Connection | None = None
        self._bound = asyncio.Event()
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        self._housekeeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._window = asyncio.Semaphore(config.window)
        self._paused_until = 0.0
        self._throttle_delay = 0.0
        self._reference = itertools.count(1)
        self._sent_ids: OrderedDict[str, str] = OrderedDict()
        self._was_bound = False

    @classmethod
    def from_settings(
        cls, settings: Settings, parts: PartStore | None = None, **overrides: Any
    ) -> SmppLink:
        """The link of ``settings`` (smsc_*, smpp_window, enquire_link_s, ussd_op_*)."""
        return cls(SmppConfig.from_settings(settings, **overrides), parts)

    # -- life cycle ----------------------------------------------------------------------

    async def start(self, on_inbound: InboundHandler, on_receipt: ReceiptHandler) -> None:
        """Starts binding in the background; ``wait_bound`` waits for the first bind."""
        self._on_inbound, self._on_receipt = on_inbound, on_receipt
        self._stopping = False
        self._start_supervisor()
        self._housekeeper = asyncio.create_task(self._housekeeping(), name="smpp-housekeeping")

    def _start_supervisor(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="smpp-supervisor")
        self._supervisor.add_done_callback(self._supervisor_done)

    def _supervisor_done(self, task: asyncio.Task[None]) -> None:
        if self._stopping or task.cancelled():
            return
        log.error("smpp supervisor ended unexpectedly (%r): restarting it", task.exception())
        self._start_supervisor()

    async def wait_bound(self, within_s: float = 10.0) -> None:
        async with asyncio.timeout(within_s):
            await self._bound.wait()

    @property
    def bound(self) -> bool:
        return self._bound.is_set()

    def status(self) -> LinkStatus:
        return replace(self.counters, bound=self.bound, extra={"queued": self._queued})

    async def stop(self) -> None:
        """Unbinds (briefly waiting for unbind_resp), closes the connection, ends every task.
        Inbound messages still in their handler are not acked: the SMSC will redeliver."""
        self._stopping = True
        conn = self._connection
        if conn is not None and conn.bound:
            with contextlib.suppress(Exception):
                unbind = conn.session.unbind()
                await conn.request(unbind, min(1.0, self.config.response_timeout_s))
        if conn is not None:
            conn.close()
        tasks: list[asyncio.Task[None]] = [
            t for t in (self._supervisor, self._housekeeper) if t is not None
        ]
        tasks += list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._bound.clear()
        self._bound.set()  # wake senders waiting for a bind: they see _stopping and give up
        self._bound.clear()

    # -- the connection ------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = 0.0
        while not self._stopping:
            try:
                await self._serve_connection()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("smpp link ended: %s: %s", type(exc).__name__, exc)
            if self._stopping:
                break
            self.counters.link_losses += 1
            delay = self.config.reconnect_min_s if self._was_bound else self._grow(delay)
            log.info("smpp rebinding in %.1fs", delay)
            await asyncio.sleep(delay)

    def _grow(self, delay: float) -> float:
        return min(self.config.reconnect_max_s, max(self.config.reconnect_min_s, delay * 2))

    async def _serve_connection(self) -> None:
        self._was_bound = False
        cfg = self.config
        async with asyncio.timeout(cfg.connect_timeout_s):
            reader, writer = await asyncio.open_connection(cfg.host, cfg.port)
        conn = _Connection(writer)
        reading = asyncio.create_task(self._read(conn, reader), name=f"smpp-read-{conn.id}")
        keeping: asyncio.Task[None] | None = None
        try:
            bind = conn.session.bind(cfg.system_id, cfg.password, cfg.system_type)
            resp = await conn.request(bind, cfg.response_timeout_s)
            if not resp.ok:
                raise ConnectionError(f"bind refused with status {resp.status:#x}")
            self._was_bound = True
            self._connection = conn
            self.counters.binds += 1
            self._bound.set()
            log.info(
                "smpp bound to %s:%d as %s (link %d)", cfg.host, cfg.port, cfg.system_id, conn.id
            )
            keeping = asyncio.create_task(self._keep_alive(conn), name=f"smpp-keep-{conn.id}")
            await asyncio.wait({reading, keeping}, return_when=asyncio.FIRST_COMPLETED)
            for done in (reading, keeping):
                error = done.exception() if done.done() and not done.cancelled() else None
                if error is not None:
                    raise error
        finally:
            self._bound.clear()
            if self._connection is conn:
                self._connection = None
            conn.close()
            for running in (reading, keeping):
                if running is not None:
                    running.cancel()
            await asyncio.gather(reading, *([keeping] if keeping else []), return_exceptions=True)

    async def _read(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        try:
            while conn.session.state is not State.CLOSED:
                data = await reader.read(65536)
                if not data:
                    log.warning("smpp link %d: the SMSC closed the connection", conn.id)
                    return
                conn.session.receive_data(data)
                self._take_events(conn)
                conn.flush()
        finally:
            if self._connection is conn:
                self._bound.clear()
            conn.close()  # fails every request in flight at once: they go again after rebind

    def _take_events(self, conn: _Connection) -> None:
        """Handles every event the bytes read so far make."""
        while True:
            try:
                event = conn.session.next_event()
            except RemoteProtocolError as exc:  # answered by the session where SMPP wants it
                log.warning("smpp link %d: %s", conn.id, exc)
                continue
            if event is None:
                return
            if isinstance(event, Response):
                if not event.late:
                    conn.answered(event)
                    continue
                log.warning(
                    "smpp link %d: %s_resp %d (status %#x) came after its time-out",
                    conn.id,
                    pdu.command_name(event.request),
                    event.sequence,
                    event.status,
                )
            elif isinstance(event, Deliver):
                if not self._stopping:  # not acked: the SMSC delivers it again
                    self._spawn(self._deliver(conn, event))
            else:
                log.info("smpp link %d: the SMSC unbound", conn.id)

    async def _keep_alive(self, conn: _Connection) -> None:
        while True:
            await asyncio.sleep(self.config.enquire_link_s)
            if not conn.bound:
                return
            try:
                await conn.request(conn.session.enquire_link(), self.config.response_timeout_s)
            except TimeoutError:
                log.warning("smpp link %d: enquire_link unanswered", conn.id)
                return

    # -- inbound -------------------------------------------------------------------------

    async def _deliver(self, conn: _Connection, deliver: Deliver) -> None:
        def answer(status: int = pdu.ESME_ROK) -> bool:
            return conn.answer(deliver, status)

        sm = deliver.message
        if receipts.is_receipt(sm.esm_class):
            await self._receipt(sm, answer)
            return
        segment, payload = concat.segment_of(sm)
        coding, whole_set = sm.data_coding, None
        if segment is not None:
            stored = await self.parts.add(
                Part(sm.source, sm.destination, segment, sm.data_coding, payload)
            )
            if isinstance(stored, Held):
                answer()
                return
            if isinstance(stored, Refused):
                log.warning("mo part from %s refused: %s", sm.source, stored.reason)
                answer(stored.status)
                return
            payload, coding, whole_set = stored.payload, stored.data_coding, stored.key
        try:
            inbound = to_inbound(
                sm,
                payload,
                coding,
                segment,
                alphabet=self.config.alphabet,
                codes=self.config.codes,
                received_at=datetime.now(UTC),
            )
        except ValueError as exc:  # e.g. no source address: refused for good, not redelivered
            log.warning("smpp: unusable message from %r refused: %s", sm.source, exc)
            answer(pdu.ESME_RINVSRCADR)
            return
        written: list[bool] = []

        def take() -> bool:
            """The message was taken in: write its response (once)."""
            if not written:
                written.append(answer())
                self.counters.received += written[0]
            return written[0]

        assert self._on_inbound is not None, "deliveries come only after start()"
        try:
            await self._on_inbound(inbound, take)
        except Exception as exc:
            self.counters.handler_errors += 1
            log.error(
                "mo from %s: handler failed (%s)%s",
                inbound.source,
                type(exc).__name__,
                "" if written else ", not acked: the SMSC will deliver it again",
            )
        if whole_set is not None and written and written[0]:
            await self.parts.done(whole_set)

    async def _receipt(self, sm: pdu.ShortMessage, answer: Ack) -> None:
        receipt = receipts.parse(sm)
        message_id = self._sent_ids.get(receipts.normalize(receipt.message_id), receipt.message_id)
        log.debug("receipt id=%s state=%s", message_id, receipt.state)
        if receipt.state not in ("ENROUTE", "ACCEPTD"):
            assert self._on_receipt is not None, "deliveries come only after start()"
            try:
                await self._on_receipt(message_id, receipt.delivered)
            except Exception as exc:
                log.error(
                    "on_receipt(%s) failed (%r): not acked, the SMSC will redeliver",
                    message_id,
                    exc,
                )
                return
        self.counters.receipts += 1
        answer()

    # -- outbound ------------------------------------------------------------------------

    async def send(self, outbound: Outbound) -> list[str]:
        """Submits ``outbound`` (split into parts when long) and returns the SMSC's message id
        of each part, once every submit_sm_resp came back. Raises ``SendFailed`` when the
        SMSC refuses it or never answers, ``LinkStopped`` when the link stops first; waits
        through throttling and rebinds."""
        parts = self._parts_of(outbound)
        accepted: list[str] = []
        self._queued += len(parts)
        try:
            for sm in parts:
                try:
                    accepted.append(await self._submit(sm))
                finally:
                    self._queued -= 1
        except SendFailed as exc:
            self._queued -= len(parts) - len(accepted) - 1
            self.counters.failed += 1
            exc.accepted = accepted
            log.error(
                "mt destination=%s failed after %d/%d parts: %s",
                outbound.destination,
                len(accepted),
                len(parts),
                exc,
            )
            raise
        except BaseException:
            self._queued -= len(parts) - len(accepted) - 1
            raise
        log.info(
            "mt destination=%s transport=%s len=%d parts=%d ids=%s",
            outbound.destination,
            outbound.route.transport.value,
            len(outbound.text),
            len(parts),
            ",".join(accepted),
        )
        return accepted

    def _parts_of(self, outbound: Outbound) -> list[pdu.ShortMessage]:
        cfg = self.config
        base = pdu.ShortMessage(
            source=outbound.source,
            destination=outbound.destination,
            source_ton=cfg.source_ton,
            source_npi=cfg.source_npi,
            dest_ton=cfg.dest_ton,
            dest_npi=cfg.dest_npi,
        )
        if outbound.route.transport is Transport.USSD:
            # A USSD string is never concatenated: it travels whole, in message_payload when
            # it does not fit short_message. No delivery receipt is asked for.
            coding = choose_coding(outbound.text, cfg.alphabet)
            body = encode(outbound.text, coding, cfg.alphabet)
            tlvs = reply_tlvs(outbound.route, cfg.codes)
            if len(body) > 254:
                tlvs = ((pdu.TLV_MESSAGE_PAYLOAD, body), *tlvs)
                body = b""
            return [replace(base, short_message=body, data_coding=coding, tlvs=tlvs)]
        split = concat.split(outbound.text, next(self._reference) & 0xFF, cfg.alphabet)
        return [
            replace(
                base,
                short_message=part,
                data_coding=split.data_coding,
                esm_class=split.esm_class,
                registered_delivery=cfg.registered_delivery,
            )
            for part in split.parts
        ]

    async def _submit(self, sm: pdu.ShortMessage) -> str:
        attempts = 0
        while True:
            await self._wait_unpaused()
            async with self._window:
                conn = await self._bound_connection()
                self.counters.window_in_use += 1
                try:
                    submit = conn.session.submit(sm)
                    resp = await conn.request(submit, self.config.response_timeout_s)
                except (TimeoutError, LinkLost) as exc:
                    attempts += 1
                    self.counters.retried += 1
                    if attempts >= self.config.max_attempts:
                        raise SendFailed(
                            f"no submit_sm_resp after {attempts} tries", transient=True
                        ) from exc
                    continue
                finally:
                    self.counters.window_in_use -= 1
            if resp.ok:
                self._throttle_delay = 0.0
                self._remember(resp.message_id)
                self.counters.sent += 1
                return resp.message_id
            if resp.status in self.config.retry_statuses:
                self.counters.retried += 1
                self._throttled()
                continue
            raise SubmitRefused(resp.status)

    def _throttled(self) -> None:
        now = time.monotonic()
        if now < self._paused_until:
            return  # the responses of parts in flight during a pause do not grow it
        cfg = self.config
        self._throttle_delay = min(
            cfg.throttle_max_s, max(cfg.throttle_min_s, self._throttle_delay * 2)
        )
        self._paused_until = now + self._throttle_delay
        log.warning("smpp throttled by the SMSC: pausing sends for %.1fs", self._throttle_delay)

    async def _wait_unpaused(self) -> None:
        while True:
            left = self._paused_until - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(left)

    async def _bound_connection(self) -> _Connection:
        while True:
            if self._stopping:
                raise LinkStopped("the link is stopping")
            conn = self._connection
            if conn is not None and conn.bound and self._bound.is_set():
                return conn
            if conn is None or not conn.bound:
                # the connection died and _serve_connection has not cleaned up yet: never spin
                # on a set event (Event.wait() returns at once without yielding)
                self._bound.clear()
            await self._bound.wait()

    def sent_here(self, message_id: str) -> bool:
        """Whether this link submitted the message ``message_id`` names (any id form): a
        receipt for it that the outbox does not know is a direct reply's."""
        return receipts.normalize(message_id) in self._sent_ids

    def receipt_forms(self, message_id: str) -> frozenset[str]:
        """Hex or decimal, any case, without leading zeros (``receipts.stored_forms``)."""
        return receipts.stored_forms(message_id)

    def _remember(self, message_id: str) -> None:
        for form in receipts.id_forms(message_id):
            self._sent_ids[form] = message_id
            self._sent_ids.move_to_end(form)
        while len(self._sent_ids) > 300_000:
            self._sent_ids.popitem(last=False)

    # -- housekeeping --------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        last_status = time.monotonic()
        while True:
            await asyncio.sleep(min(1.0, self.parts.limits.timeout_s / 2))
            now = time.monotonic()
            try:
                await self.parts.expire()
            except Exception as exc:  # the store is away: try again later
                log.error("expiring mo parts failed: %s", exc)
            if now - last_status >= self.config.status_interval_s:
                last_status = now
                log.info("smpp status %s", self.status().line())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("smpp inbound task failed: %r (the SMSC will redeliver)", error)
