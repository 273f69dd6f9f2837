"""The SMSC simulator: a real SMPP 3.4 server (SMSC) on asyncio, for tests, demos and people.

An ESME binds (bind_transceiver, or transmitter + receiver) with the configured system_id and
password; the simulator answers enquire_link, takes submit_sm (assigning message ids, sending
delivery receipts back when asked to) and collects what each phone receives, joining
concatenated parts. A "phone" sends text to the bound ESME as deliver_sm: GSM or UCS2, long
texts as concatenated parts (8-bit or 16-bit UDH reference, or sar_* TLVs, in any order), USSD
with ussd_service_op and its_session_info. A deliver_sm that gets no ROK deliver_sm_resp
within ``redeliver_after_s`` (or whose link drops) is delivered again, as a real SMSC does.

With ``spread`` the messages of each phone go to the receiving binds in turn (one to each
worker of several, then again), so that one agent's dialogue travels through every worker;
the receipts of what a phone received take their own turns.

Fault injection for tests: ``drop_link`` closes the TCP link without unbind; ``throttle``
answers submit_sm with ESME_RTHROTTLED (or ESME_RMSGQFUL, or any status, e.g. a vendor
specific 0x400) for some seconds or some PDUs; ``delay_responses`` answers late.

It uses the pure codec in ``smsmenu.smpp.pdu``; the tests also check it against independent
ESMEs (smpp34's Client, aiosmpplib's ESME), so it is not only tested against our SMPP link.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from smsmenu.smpp import concat, pdu
from smsmenu.smpp.text import DC_UCS2, Alphabet, choose_coding, decode, encode
from smsmenu.smpp.ussd import SessionInfo

log = logging.getLogger("smsmenu.simulator")

_BIND_IDS = (pdu.BIND_TRANSCEIVER, pdu.BIND_TRANSMITTER, pdu.BIND_RECEIVER)


# deliver_sm_resp statuses after which the SMSC delivers again; any other refusal is final
TEMPORARY = frozenset(
    {pdu.ESME_RMSGQFUL, pdu.ESME_RTHROTTLED, pdu.ESME_RX_T_APPN, pdu.ESME_RSYSERR}
)


class DeliveryRefused(Exception):
    """The ESME refused a deliver_sm for good (``status``)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"deliver_sm refused with status {status:#x}")
        self.status = status


@dataclass(frozen=True)
class Received:
    """One whole message a phone received (its submit_sm parts joined)."""

    phone: str
    source: str
    text: str
    message_ids: tuple[str, ...]
    data_coding: int
    parts: int
    ussd_service_op: int | None = None
    its_session_info: bytes | None = None
    user_message_reference: int | None = None
    registered_delivery: int = 0

    @property
    def session_info(self) -> SessionInfo | None:
        raw = self.its_session_info
        return SessionInfo.decode(raw) if raw is not None and len(raw) == 2 else None


@dataclass
class Delivery:
    """One MO message (one deliver_sm PDU body) on its way to the ESME, redelivered until
    acked with ESME_ROK (``acked`` completes) or refused with a status that is not
    ``TEMPORARY`` (``acked`` raises ``DeliveryRefused``); ``attempts`` counts the PDUs."""

    sm: pdu.ShortMessage
    acked: asyncio.Future[None]
    attempts: int = 0
    statuses: list[int] = field(default_factory=list)
    as_data_sm: bool = False


@dataclass
class _Fault:
    status: int
    until: float | None  # monotonic deadline, or None
    remaining: int | None  # PDU count, or None

    def active(self, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        return self.remaining is None or self.remaining > 0


class _Session:
    """One TCP connection from an ESME."""

    def __init__(self, sim: Simulator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.sim = sim
        self.reader = reader
        self.writer = writer
        self.bound_as: int | None = None
        self.system_id = ""
        self.sequence = itertools.count(1)
        self.outstanding: dict[int, tuple[Delivery, asyncio.TimerHandle]] = {}
        self.closed = False
        self.silent = False  # a half-open link: reads everything, answers nothing

    @property
    def can_receive(self) -> bool:
        return self.bound_as in (pdu.BIND_TRANSCEIVER, pdu.BIND_RECEIVER) and not self.closed

    def write(self, packet: pdu.Pdu) -> None:
        if not self.closed:
            self.writer.write(packet.encode())

    def deliver(self, delivery: Delivery) -> None:
        seq = next(self.sequence)
        delivery.attempts += 1
        timer = asyncio.get_running_loop().call_later(
            self.sim.redeliver_after_s, self._no_answer, seq
        )
        self.outstanding[seq] = (delivery, timer)
        if delivery.as_data_sm:
            self.write(pdu.Pdu(pdu.DATA_SM, 0, seq, pdu.encode_data_sm(delivery.sm)))
        else:
            self.write(pdu.Pdu(pdu.DELIVER_SM, 0, seq, delivery.sm.encode()))

    def _no_answer(self, seq: int) -> None:
        entry = self.outstanding.pop(seq, None)
        if entry is not None:
            self.sim._requeue(entry[0])

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for delivery, timer in self.outstanding.values():
            timer.cancel()
            self.sim._requeue(delivery)
        self.outstanding.clear()
        with contextlib.suppress(Exception):
            self.writer.close()


class Simulator:
    """An SMSC on 127.0.0.1. ``await start()`` returns the port (0 picks a free one)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        system_id: str = "smsmenu",
        password: str = "secret",
        service_number: str = "10001",
        alphabet: Alphabet = Alphabet.GSM,
        receipts: bool = True,
        receipt_id_decimal: bool = False,
        redeliver_after_s: float = 5.0,
        spread: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.system_id = system_id
        self.password = password
        self.service_number = service_number
        self.alphabet = alphabet
        self.receipts = receipts
        self.receipt_id_decimal = receipt_id_decimal
        self.redeliver_after_s = redeliver_after_s
        # spread: each phone's messages go to the receiving binds in turn (several workers);
        # else all go to the newest bind.
        self.spread = spread
        self._turns: dict[tuple[str, bool], int] = defaultdict(int)
        self.received: dict[str, list[Received]] = defaultdict(list)
        self.submits: list[pdu.ShortMessage] = []  # every accepted submit_sm, in order
        self.refused: list[tuple[pdu.ShortMessage, int]] = []
        self.binds = 0
        self.enquire_links = 0
        self.deliveries: list[Delivery] = []
        self.on_received: Callable[[Received], None] | None = None  # e.g. the console
        self._server: asyncio.Server | None = None
        self._sessions: list[_Session] = []
        self._waiting: list[Delivery] = []
        self._next_id = itertools.count(1)
        self._ref = itertools.count(1)
        self._parts: concat.Reassembler[tuple[pdu.ShortMessage, str]] = concat.Reassembler(60)
        self._faults: list[_Fault] = []
        self._delay_s = 0.0
        self._unanswered = 0
        self.max_unanswered = 0  # most submit_sm waiting for their (delayed) response at once
        self._changed = asyncio.Condition()
        self._bound = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- server -------------------------------------------------------------------------

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("simulator listening on %s:%d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        for session in list(self._sessions):
            session.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for delivery in self.deliveries:
            if not delivery.acked.done():
                delivery.acked.cancel()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def bound_sessions(self) -> int:
        return sum(1 for s in self._sessions if s.bound_as is not None and not s.closed)

    async def wait_bound(self, within_s: float = 10.0) -> None:
        """Waits until an ESME that can receive is bound."""
        async with asyncio.timeout(within_s):
            while not any(s.can_receive for s in self._sessions):
                self._bound.clear()
                await self._bound.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(self, reader, writer)
        self._sessions.append(session)
        framer = pdu.Framer()
        try:
            while not session.closed:
                data = await reader.read(65536)
                if not data:
                    break
                for packet in framer.feed(data):
                    if not session.silent:
                        self._handle(session, packet)
                await writer.drain()
        except (ConnectionError, pdu.PduError, asyncio.CancelledError):
            pass
        finally:
            session.close()
            self._sessions.remove(session)
            await self._notify()

    def _handle(self, session: _Session, packet: pdu.Pdu) -> None:
        cid = packet.command_id
        if cid in _BIND_IDS:
            self._bind(session, packet)
        elif cid == pdu.ENQUIRE_LINK:
            self.enquire_links += 1
            session.write(pdu.response(packet))
        elif cid == pdu.UNBIND:
            session.write(pdu.response(packet))
            session.bound_as = None
            self._spawn(self._close_soon(session))
        elif cid == pdu.SUBMIT_SM:
            self._submit(session, packet)
        elif cid in (pdu.DELIVER_SM | pdu.RESP, pdu.DATA_SM | pdu.RESP, pdu.GENERIC_NACK):
            self._deliver_resp(session, packet)
        elif packet.is_response:
            pass  # enquire_link_resp, unbind_resp
        else:
            session.write(pdu.Pdu(pdu.GENERIC_NACK, pdu.ESME_RINVCMDID, packet.sequence))

    def _bind(self, session: _Session, packet: pdu.Pdu) -> None:
        status = pdu.ESME_ROK
        try:
            bind = pdu.Bind.decode(packet.body)
        except pdu.PduError:
            session.write(pdu.response(packet, pdu.ESME_RBINDFAIL))
            return
        if session.bound_as is not None:
            status = pdu.ESME_RALYBND
        elif bind.system_id != self.system_id:
            status = pdu.ESME_RINVSYSID
        elif bind.password != self.password:
            status = pdu.ESME_RINVPASWD
        session.write(pdu.response(packet, status, pdu.encode_message_id("smsmenu-sim")))
        if status == pdu.ESME_ROK:
            session.bound_as = packet.command_id
            session.system_id = bind.system_id
            self.binds += 1
            log.info("bound %s as %#x", bind.system_id, packet.command_id)
            self._flush()
            self._bound.set()

    async def _close_soon(self, session: _Session) -> None:
        await asyncio.sleep(0.05)
        session.close()

    # -- submit_sm (the ESME sends to phones) -------------------------------------------

    def _take_fault(self) -> int | None:
        now = time.monotonic()
        self._faults = [f for f in self._faults if f.active(now)]
        if not self._faults:
            return None
        fault = self._faults[0]
        if fault.remaining is not None:
            fault.remaining -= 1
        return fault.status

    def _submit(self, session: _Session, packet: pdu.Pdu) -> None:
        if session.bound_as not in (pdu.BIND_TRANSCEIVER, pdu.BIND_TRANSMITTER):
            self._answer(session, pdu.response(packet, pdu.ESME_RINVBNDSTS))
            return
        try:
            sm = pdu.ShortMessage.decode(packet.body)
        except pdu.PduError:
            self._answer(session, pdu.response(packet, pdu.ESME_RINVMSGLEN))
            return
        fault = self._take_fault()
        if fault is not None:
            self.refused.append((sm, fault))
            self._answer(session, pdu.response(packet, fault))
            return
        message_id = format(next(self._next_id) + 0x1000, "X")
        self.submits.append(sm)
        self._answer(session, pdu.response(packet, body=pdu.encode_message_id(message_id)))
        self._collect(sm, message_id)
        if self.receipts and sm.registered_delivery & 0x01:
            self._spawn(self._send_receipt(sm, message_id))

    def _answer(self, session: _Session, packet: pdu.Pdu) -> None:
        if self._delay_s <= 0:
            session.write(packet)
            return
        self._unanswered += 1
        self.max_unanswered = max(self.max_unanswered, self._unanswered)

        def later() -> None:
            self._unanswered -= 1
            session.write(packet)

        asyncio.get_running_loop().call_later(self._delay_s, later)

    def _collect(self, sm: pdu.ShortMessage, message_id: str) -> None:
        segment, payload = concat.segment_of(sm)
        if segment is None:
            self._store(sm, payload, sm.data_coding, (message_id,), 1)
            return
        joined = self._parts.add(
            sm.destination,
            sm.source,
            segment,
            sm.data_coding,
            payload,
            (sm, message_id),
            time.monotonic(),
        )
        if joined is not None:
            first = joined.tokens[0][0]
            ids = tuple(token[1] for token in joined.tokens)
            self._store(first, joined.payload, joined.data_coding, ids, segment.total)

    def _store(
        self, sm: pdu.ShortMessage, payload: bytes, coding: int, ids: tuple[str, ...], parts: int
    ) -> None:
        op = sm.tlv(pdu.TLV_USSD_SERVICE_OP)
        message = Received(
            phone=sm.destination,
            source=sm.source,
            text=decode(payload, coding, self.alphabet),
            message_ids=ids,
            data_coding=coding,
            parts=parts,
            ussd_service_op=op[0] if op else None,
            its_session_info=sm.tlv(pdu.TLV_ITS_SESSION_INFO),
            user_message_reference=sm.tlv_int(pdu.TLV_USER_MESSAGE_REFERENCE),
            registered_delivery=sm.registered_delivery,
        )
        self.received[sm.destination].append(message)
        if self.on_received is not None:
            self.on_received(message)
        log.info(
            "phone %s received %d chars in %d part(s)", sm.destination, len(message.text), parts
        )
        self._spawn(self._notify())

    async def _send_receipt(self, sm: pdu.ShortMessage, message_id: str) -> None:
        await asyncio.sleep(0.01)
        shown = str(int(message_id, 16)) if self.receipt_id_decimal else message_id
        text = (
            f"id:{shown} sub:001 dlvrd:001 submit date:2611231200 done date:2611231200 "
            "stat:DELIVRD err:000 text:"
        )
        receipt = pdu.ShortMessage(
            source=sm.destination,
            destination=sm.source,
            short_message=text.encode("ascii"),
            esm_class=pdu.ESM_DELIVERY_RECEIPT,
            tlvs=((pdu.TLV_MESSAGE_STATE, b"\x02"),)
            if self.receipt_id_decimal
            else (
                (pdu.TLV_RECEIPTED_MESSAGE_ID, message_id.encode() + b"\x00"),
                (pdu.TLV_MESSAGE_STATE, b"\x02"),
            ),
        )
        self.deliver_sm(receipt)

    # -- deliver_sm (phones send to the ESME) --------------------------------------------

    def deliver_sm(self, sm: pdu.ShortMessage, *, as_data_sm: bool = False) -> Delivery:
        """Queues one deliver_sm (or data_sm) for the bound ESME; redelivered until acked
        with ESME_ROK."""
        delivery = Delivery(sm, asyncio.get_running_loop().create_future(), as_data_sm=as_data_sm)
        self.deliveries.append(delivery)
        self._waiting.append(delivery)
        self._flush()
        return delivery

    def _requeue(self, delivery: Delivery) -> None:
        if not delivery.acked.done():
            self._waiting.append(delivery)
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        targets = [s for s in self._sessions if s.can_receive]
        if not targets:
            return
        waiting, self._waiting = self._waiting, []
        for delivery in waiting:
            if self.spread:
                # a phone's own messages and the receipts of what it received take turns
                # apart: receipts do not decide which worker the phone's next message meets
                turns = (delivery.sm.source, delivery.sm.esm_class == pdu.ESM_DELIVERY_RECEIPT)
                turn = self._turns[turns]
                self._turns[turns] = turn + 1
                targets[turn % len(targets)].deliver(delivery)
            else:
                targets[-1].deliver(delivery)

    def _deliver_resp(self, session: _Session, packet: pdu.Pdu) -> None:
        entry = session.outstanding.pop(packet.sequence, None)
        if entry is None:
            return
        delivery, timer = entry
        timer.cancel()
        delivery.statuses.append(packet.command_status)
        if packet.command_status == pdu.ESME_ROK:
            if not delivery.acked.done():
                delivery.acked.set_result(None)
        elif packet.command_status in TEMPORARY:  # the SMSC tries again later
            asyncio.get_running_loop().call_later(self.redeliver_after_s, self._requeue, delivery)
        elif not delivery.acked.done():  # refused for good: the SMSC gives up
            delivery.acked.set_exception(DeliveryRefused(packet.command_status))

    def send(
        self,
        phone: str,
        text: str,
        *,
        to: str | None = None,
        data_coding: int | None = None,
        concat_mode: str = "udh8",
        order: Iterable[int] | None = None,
        reference: int | None = None,
        part_size: int | None = None,
        tlvs: tuple[tuple[int, bytes], ...] = (),
        source_ton: int = 1,
        source_npi: int = 1,
    ) -> list[Delivery]:
        """A phone sends ``text`` to ``to`` (the service number): one deliver_sm, or
        concatenated parts when it does not fit one (``concat_mode`` 'udh8', 'udh16' or
        'sar'; ``order`` the part numbers 1..n to send, in that order — leave one out to
        lose it, repeat one to duplicate it; ``part_size`` forces splitting
        into parts of that many characters). Returns the deliveries, one per part."""
        coding = choose_coding(text, self.alphabet) if data_coding is None else data_coding
        limit = 70 if coding == DC_UCS2 else 160
        step = part_size or (67 if coding == DC_UCS2 else 153)
        chunks = [text] if part_size is None and len(text) <= limit else _cut(text, step)
        base = pdu.ShortMessage(
            source=phone,
            destination=to or self.service_number,
            data_coding=coding,
            source_ton=source_ton,
            source_npi=source_npi,
            tlvs=tlvs,
        )
        if len(chunks) == 1:
            body = (
                encode(text, coding, self.alphabet) if coding in (0, 8) else text.encode("latin-1")
            )
            return [self.deliver_sm(_with(base, short_message=body))]
        total = len(chunks)
        ref = (next(self._ref) & 0xFF) if reference is None else reference
        numbers = list(order) if order is not None else list(range(1, total + 1))
        if not all(1 <= n <= total for n in numbers):
            raise ValueError(f"order must name parts 1..{total}")
        out = []
        for seq in numbers:
            body = encode(chunks[seq - 1], coding, self.alphabet)
            if concat_mode == "udh8":
                sm = _with(
                    base,
                    esm_class=0x40,
                    short_message=bytes([5, 0, 3, ref & 0xFF, total, seq]) + body,
                )
            elif concat_mode == "udh16":
                udh = bytes([6, 8, 4, (ref >> 8) & 0xFF, ref & 0xFF, total, seq])
                sm = _with(base, esm_class=0x40, short_message=udh + body)
            elif concat_mode == "sar":
                sm = _with(base, short_message=body).with_tlvs(
                    (pdu.TLV_SAR_MSG_REF_NUM, ref.to_bytes(2, "big")),
                    (pdu.TLV_SAR_TOTAL_SEGMENTS, bytes([total])),
                    (pdu.TLV_SAR_SEGMENT_SEQNUM, bytes([seq])),
                )
            else:
                raise ValueError(f"unknown concat mode {concat_mode!r}")
            out.append(self.deliver_sm(sm))
        return out

    def send_ussd(
        self,
        phone: str,
        text: str,
        *,
        op: int,
        session: int,
        sequence: int = 0,
        user_message_reference: int | None = None,
        to: str | None = None,
    ) -> Delivery:
        """A phone sends ``text`` inside a USSD dialogue (``op`` e.g. 1 opens, 18 continues)."""
        tlvs = [
            (pdu.TLV_USSD_SERVICE_OP, bytes([op])),
            (pdu.TLV_ITS_SESSION_INFO, SessionInfo(session, sequence).encode()),
        ]
        if user_message_reference is not None:
            tlvs.append((pdu.TLV_USER_MESSAGE_REFERENCE, user_message_reference.to_bytes(2, "big")))
        return self.send(phone, text, to=to, tlvs=tuple(tlvs))[0]

    # -- what phones got ------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, phone: str, count: int = 1, within_s: float = 10.0) -> list[Received]:
        """Waits until ``phone`` has received at least ``count`` messages; returns them all."""
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: len(self.received[phone]) >= count)
        return list(self.received[phone])

    async def next_message(self, phone: str, after: int, within_s: float = 10.0) -> Received:
        """The message number ``after`` (0-based) that ``phone`` receives, waiting for it."""
        return (await self.wait_for(phone, after + 1, within_s))[after]

    # -- faults ----------------------------------------------------------------------------

    def drop_link(self) -> int:
        """Closes every ESME connection at once, without unbind. Returns how many."""
        count = 0
        for session in list(self._sessions):
            with contextlib.suppress(Exception):
                session.writer.transport.abort()
            session.close()
            count += 1
        return count

    def unbind_links(self) -> int:
        """Sends unbind to every bound ESME (as an SMSC going down for maintenance does)."""
        count = 0
        for session in self._sessions:
            if session.bound_as is not None and not session.closed:
                session.write(pdu.Pdu(pdu.UNBIND, 0, next(session.sequence)))
                count += 1
        return count

    def silence_links(self) -> int:
        """The current links go silent: still open, but nothing is answered any more (a
        half-open TCP link). Only an enquire_link time-out can tell the ESME."""
        for session in self._sessions:
            session.silent = True
        return len(self._sessions)

    def throttle(
        self,
        status: int = pdu.ESME_RTHROTTLED,
        *,
        seconds: float | None = None,
        count: int | None = None,
    ) -> None:
        """Answers submit_sm with ``status`` (0x58, 0x14, a vendor 0x400 …) for ``seconds``
        or for ``count`` PDUs (or both: whichever ends first)."""
        until = time.monotonic() + seconds if seconds is not None else None
        self._faults.append(_Fault(status, until, count))

    def clear_faults(self) -> None:
        self._faults.clear()
        self._delay_s = 0.0

    def delay_responses(self, seconds: float) -> None:
        """Answers every later submit_sm only after ``seconds``."""
        self._delay_s = seconds

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _cut(text: str, step: int) -> list[str]:
    """Cut on characters, keeping a surrogate pair whole (text is str, so always whole)."""
    return [text[i : i + step] for i in range(0, len(text), step)] or [""]


def _with(base: pdu.ShortMessage, **changes: Any) -> pdu.ShortMessage:
    return replace(base, **changes)
