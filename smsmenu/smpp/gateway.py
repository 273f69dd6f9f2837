"""The gateway: our ESME. It binds to the SMSC as a transceiver and moves messages both ways.

Theory of operation. One supervisor task connects, binds and serves one TCP link at a time;
when the link ends for any reason (unbind, TCP drop without unbind, enquire_link or bind
time-out, a bug) it backs off and binds again, and it catches everything, so it cannot die
(and a done-callback restarts it if it ever does). A link has its own sequence numbers and
its own table of outstanding requests (our correlator: one dict entry per request in flight,
removed on its response, failed all at once when the link dies).

Inbound: each deliver_sm becomes a task so the reader never waits for the menus. Receipts
(esm_class 0x04) go to ``on_receipt``; a part of a concatenated message is stored
(``smpp.parts``) and acknowledged at once, except the part that completes its set, which
travels with the whole message. A whole message goes to ``handler`` with an ``ack`` to call
once it was taken in: the deliver_sm_resp is written then, never before, and never if the
handler does not call it (the SMSC then delivers it again). Which copy is which message, the
order of one phone's messages and the replies are the handler's business.

Outbound: ``send`` splits the text (UCS2 for Chinese), submits part after part within a
bounded window of outstanding submit_sm, and returns the SMSC's message id of every part
only once its submit_sm_resp came back. ESME_RTHROTTLED / ESME_RMSGQFUL pause all sending
with a growing back-off and the part is submitted again; a link lost or a response timed out
submits it again after the rebind (at most ``max_attempts`` times); any other status
(including vendor-specific ones) is a permanent failure raised to the caller as
``SendFailed`` and the link stays up.

Why not aiosmpplib's ESME: the defects listed in LIBRARY-NOTES (all in 0.7.4) sit in its
receive loop (2, 4-7: hook exceptions kill it, ack before the app, segment joining, enums),
its PDU classes (8: USSD octets as ASCII), its header parsing (9: vendor statuses drop the
link), its sender (1, 10, 11: split without UDHI, dead socket, no window, throttle stall)
and its correlator (3). Overriding each of those would have left only its TCP connect and
bind, on private methods of a 0.x library. This module is that much code again, with every
part of it under our tests; tests/e2e/test_library_defects.py proves the behaviour each
defect would have broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from smsmenu.messages import Inbound, Outbound, Transport
from smsmenu.settings import Settings
from smsmenu.smpp import concat, pdu, receipts
from smsmenu.smpp.inbound import to_inbound
from smsmenu.smpp.parts import Held, InProcessParts, Part, PartStore, Refused
from smsmenu.smpp.text import Alphabet, choose_coding, encode
from smsmenu.smpp.ussd import UssdCodes, reply_tlvs

log = logging.getLogger("smsmenu.smpp")

#: Writes the deliver_sm_resp of a message (every part of it); True if it went to a live link.
Ack = Callable[[], bool]
Handler = Callable[[Inbound, Ack], Awaitable[None]]
ReceiptCallback = Callable[[str, bool], Awaitable[None]]


class LinkLost(ConnectionError):
    """The link to the SMSC ended while a request waited for its response."""


class GatewayStopped(RuntimeError):
    """``send`` was called, or was waiting, when the gateway stopped."""


class SendFailed(Exception):
    """The SMSC refused a message for good (``status``), or never answered it.

    ``accepted`` holds the message ids of the parts accepted before the failure.
    """

    def __init__(self, reason: str, status: int | None, accepted: list[str]) -> None:
        super().__init__(reason)
        self.status = status
        self.accepted = accepted


@dataclass(frozen=True)
class GatewayConfig:
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
    def from_settings(cls, settings: Settings, **overrides: Any) -> GatewayConfig:
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


@dataclass
class GatewayStatus:
    """Counters for the periodic status line."""

    bound: bool = False
    window_in_use: int = 0
    queued: int = 0  # parts given to send() and not yet answered (includes the window)
    sent: int = 0  # parts accepted by the SMSC
    failed: int = 0  # messages refused for good
    retried: int = 0  # parts submitted again (throttled, timed out, link lost)
    received: int = 0  # whole inbound messages acked (a part acked at once is not counted)
    receipts: int = 0
    handler_errors: int = 0
    binds: int = 0
    link_losses: int = 0

    def line(self) -> str:
        return " ".join(f"{key}={value}" for key, value in vars(self).items())


class _Link:
    """One TCP link: writes PDUs, numbers requests, matches responses (our correlator)."""

    _ids = itertools.count(1)

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.id = next(self._ids)
        self.writer = writer
        self.pending: dict[int, asyncio.Future[pdu.Pdu]] = {}
        self._sequence = itertools.count(1)
        self.closed = False

    def write(self, packet: pdu.Pdu) -> None:
        if self.closed:
            raise LinkLost("link closed")
        self.writer.write(packet.encode())

    async def request(self, command_id: int, body: bytes, timeout_s: float) -> pdu.Pdu:
        if self.closed:
            raise LinkLost("link closed")
        seq = next(self._sequence) % 0x7FFFFFFF or next(self._sequence)
        future: asyncio.Future[pdu.Pdu] = asyncio.get_running_loop().create_future()
        self.pending[seq] = future
        try:
            self.write(pdu.Pdu(command_id, 0, seq, body))
            async with asyncio.timeout(timeout_s):
                return await future
        finally:
            self.pending.pop(seq, None)

    def answered(self, packet: pdu.Pdu) -> bool:
        future = self.pending.get(packet.sequence)
        if future is None or future.done():
            return False
        future.set_result(packet)
        return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for future in self.pending.values():
            if not future.done():
                future.set_exception(LinkLost("link lost"))
        with contextlib.suppress(Exception):
            self.writer.transport.abort()


@dataclass(frozen=True)
class _Ack:
    """What it takes to answer one deliver_sm later."""

    link: _Link
    request: pdu.Pdu

    def send(self, status: int = pdu.ESME_ROK) -> bool:
        if self.link.closed:
            return False  # the SMSC will deliver it again on the next link
        with contextlib.suppress(LinkLost, OSError):
            self.link.write(pdu.response(self.request, status))
            return True
        return False


class Gateway:
    """The ESME. ``await start()``, ``await send(outbound)``, ``await stop()``."""

    def __init__(
        self,
        config: GatewayConfig,
        handler: Handler,
        on_receipt: ReceiptCallback | None = None,
        parts: PartStore | None = None,
    ) -> None:
        self.config = config
        self._handler = handler
        self._on_receipt = on_receipt
        self.parts: PartStore = parts if parts is not None else InProcessParts()
        self.counters = GatewayStatus()
        self._link: _Link | None = None
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

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Starts binding in the background; ``wait_bound`` waits for the first bind."""
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

    def status(self) -> GatewayStatus:
        self.counters.bound = self.bound
        return GatewayStatus(**vars(self.counters))

    async def stop(self) -> None:
        """Unbinds (briefly waiting for unbind_resp), closes the link, ends every task.
        Inbound messages still in their handler are not acked: the SMSC will redeliver."""
        self._stopping = True
        link = self._link
        if link is not None and not link.closed:
            with contextlib.suppress(Exception):
                await link.request(pdu.UNBIND, b"", min(1.0, self.config.response_timeout_s))
            link.close()
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

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        handler: Handler,
        on_receipt: ReceiptCallback | None = None,
        parts: PartStore | None = None,
        **overrides: Any,
    ) -> Gateway:
        """The gateway of ``settings`` (smsc_*, smpp_window, enquire_link_s, ussd_op_*)."""
        return cls(GatewayConfig.from_settings(settings, **overrides), handler, on_receipt, parts)

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the link ------------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = 0.0
        while not self._stopping:
            try:
                await self._serve_link()
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

    async def _serve_link(self) -> None:
        self._was_bound = False
        cfg = self.config
        async with asyncio.timeout(cfg.connect_timeout_s):
            reader, writer = await asyncio.open_connection(cfg.host, cfg.port)
        link = _Link(writer)
        reading = asyncio.create_task(self._read(link, reader), name=f"smpp-read-{link.id}")
        keeping: asyncio.Task[None] | None = None
        try:
            bind = pdu.Bind(cfg.system_id, cfg.password, cfg.system_type)
            resp = await link.request(pdu.BIND_TRANSCEIVER, bind.encode(), cfg.response_timeout_s)
            if resp.command_status != pdu.ESME_ROK:
                raise ConnectionError(f"bind refused with status {resp.command_status:#x}")
            self._was_bound = True
            self._link = link
            self.counters.binds += 1
            self._bound.set()
            log.info(
                "smpp bound to %s:%d as %s (link %d)", cfg.host, cfg.port, cfg.system_id, link.id
            )
            keeping = asyncio.create_task(self._keep_alive(link), name=f"smpp-keep-{link.id}")
            await asyncio.wait({reading, keeping}, return_when=asyncio.FIRST_COMPLETED)
            for done in (reading, keeping):
                error = done.exception() if done.done() and not done.cancelled() else None
                if error is not None:
                    raise error
        finally:
            self._bound.clear()
            if self._link is link:
                self._link = None
            link.close()
            for running in (reading, keeping):
                if running is not None:
                    running.cancel()
            await asyncio.gather(reading, *([keeping] if keeping else []), return_exceptions=True)

    async def _read(self, link: _Link, reader: asyncio.StreamReader) -> None:
        framer = pdu.Framer()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    log.warning("smpp link %d: the SMSC closed the connection", link.id)
                    return
                for packet in framer.feed(data):
                    if not self._dispatch(link, packet):
                        return
        finally:
            if self._link is link:
                self._bound.clear()
            link.close()  # fails every request in flight at once: they go again after rebind

    def _dispatch(self, link: _Link, packet: pdu.Pdu) -> bool:
        """Handles one PDU from the SMSC; False when the link must end (unbind)."""
        cid = packet.command_id
        if packet.is_response:  # includes generic_nack
            if not link.answered(packet):
                log.warning("smpp: response %#x to unknown sequence %d", cid, packet.sequence)
        elif cid in (pdu.DELIVER_SM, pdu.DATA_SM):  # some USSD gateways use data_sm
            self._spawn(self._deliver(link, packet))
        elif cid == pdu.ENQUIRE_LINK:
            link.write(pdu.response(packet))
        elif cid == pdu.UNBIND:
            link.write(pdu.response(packet))
            log.info("smpp link %d: the SMSC unbound", link.id)
            return False
        elif cid == pdu.ALERT_NOTIFICATION:
            pass  # has no response; we do not hold messages for absent phones
        else:
            link.write(pdu.Pdu(pdu.GENERIC_NACK, pdu.ESME_RINVCMDID, packet.sequence))
        return True

    async def _keep_alive(self, link: _Link) -> None:
        while True:
            await asyncio.sleep(self.config.enquire_link_s)
            try:
                await link.request(pdu.ENQUIRE_LINK, b"", self.config.response_timeout_s)
            except TimeoutError:
                log.warning("smpp link %d: enquire_link unanswered", link.id)
                return

    # -- inbound -------------------------------------------------------------------------

    async def _deliver(self, link: _Link, packet: pdu.Pdu) -> None:
        ack = _Ack(link, packet)
        try:
            sm = pdu.decode_message(packet)
        except pdu.PduError as exc:
            log.warning("smpp: malformed %#x (%s), refused", packet.command_id, exc)
            ack.send(pdu.ESME_RINVMSGLEN)
            return
        if receipts.is_receipt(sm.esm_class):
            await self._receipt(sm, ack)
            return
        segment, payload = concat.segment_of(sm)
        coding, whole_set = sm.data_coding, None
        if segment is not None:
            stored = await self.parts.add(
                Part(sm.source, sm.destination, segment, sm.data_coding, payload)
            )
            if isinstance(stored, Held):
                ack.send()
                return
            if isinstance(stored, Refused):
                log.warning("mo part from %s refused: %s", sm.source, stored.reason)
                ack.send(stored.status)
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
            ack.send(pdu.ESME_RINVSRCADR)
            return
        written: list[bool] = []

        def take() -> bool:
            """The message was taken in: write its response (once)."""
            if not written:
                written.append(ack.send())
                self.counters.received += written[0]
            return written[0]

        try:
            await self._handler(inbound, take)
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

    async def _receipt(self, sm: pdu.ShortMessage, ack: _Ack) -> None:
        receipt = receipts.parse(sm)
        message_id = self._sent_ids.get(receipts.normalize(receipt.message_id), receipt.message_id)
        log.info("receipt id=%s state=%s", message_id, receipt.state)
        if receipt.state not in ("ENROUTE", "ACCEPTD") and self._on_receipt is not None:
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
        ack.send()

    # -- outbound ------------------------------------------------------------------------

    async def send(self, outbound: Outbound) -> list[str]:
        """Submits ``outbound`` (split into parts when long) and returns the SMSC's message id
        of each part, once every submit_sm_resp came back. Raises ``SendFailed`` when the
        SMSC refuses it for good or never answers; waits through throttling and rebinds."""
        parts = self._parts_of(outbound)
        accepted: list[str] = []
        self.counters.queued += len(parts)
        try:
            for sm in parts:
                try:
                    accepted.append(await self._submit(sm))
                finally:
                    self.counters.queued -= 1
        except SendFailed as exc:
            self.counters.queued -= len(parts) - len(accepted) - 1
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
            self.counters.queued -= len(parts) - len(accepted) - 1
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
        body = sm.encode()
        attempts = 0
        while True:
            await self._wait_unpaused()
            async with self._window:
                link = await self._bound_link()
                self.counters.window_in_use += 1
                try:
                    resp = await link.request(pdu.SUBMIT_SM, body, self.config.response_timeout_s)
                except (TimeoutError, LinkLost) as exc:
                    attempts += 1
                    self.counters.retried += 1
                    if attempts >= self.config.max_attempts:
                        raise SendFailed(
                            f"no submit_sm_resp after {attempts} tries", None, []
                        ) from exc
                    continue
                finally:
                    self.counters.window_in_use -= 1
            status = resp.command_status
            if status == pdu.ESME_ROK:
                self._throttle_delay = 0.0
                message_id = pdu.decode_message_id(resp.body)
                self._remember(message_id)
                self.counters.sent += 1
                return message_id
            if status in self.config.retry_statuses:
                self.counters.retried += 1
                self._throttled()
                continue
            raise SendFailed(f"submit_sm refused with status {status:#x}", status, [])

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

    async def _bound_link(self) -> _Link:
        while True:
            if self._stopping:
                raise GatewayStopped("the gateway is stopping")
            link = self._link
            if link is not None and not link.closed and self._bound.is_set():
                return link
            if link is None or link.closed:
                # the link died and _serve_link has not cleaned up yet: never spin on a set
                # event (Event.wait() returns at once without yielding)
                self._bound.clear()
            await self._bound.wait()

    def sent_here(self, message_id: str) -> bool:
        """Whether this gateway submitted the message ``message_id`` names (any id form):
        a receipt for it that the outbox does not know is a direct reply's."""
        return receipts.normalize(message_id) in self._sent_ids

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
