"""SMPP 3.4 PDUs as bytes and back: a small codec with no I/O (the h11 way).

Theory of operation: a ``Framer`` is fed whatever bytes the socket produced and hands back the
complete PDUs (header + raw body); ``ShortMessage`` encodes and decodes the body that
submit_sm and deliver_sm share; the few other bodies (bind, bind_resp, submit_sm_resp) have
their own small functions. Decoding is lenient on purpose: any data_coding, TON, NPI, TLV tag
or command_status value is carried as a plain int, never checked against an enum, so an
unusual value from an SMSC can never make a message disappear (aiosmpplib 0.7.4 defects 7
and 9). Only a malformed length is an error (``PduError``), and it is the peer's.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

HEADER = struct.Struct(">IIII")
MAX_PDU = 70_000  # message_payload may hold 64k; anything longer is garbage

# command ids
GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
ALERT_NOTIFICATION = 0x00000102
DATA_SM = 0x00000103
RESP = 0x80000000  # the response to command X is X | RESP

_NAMES = {
    GENERIC_NACK: "generic_nack",
    BIND_RECEIVER: "bind_receiver",
    BIND_TRANSMITTER: "bind_transmitter",
    SUBMIT_SM: "submit_sm",
    DELIVER_SM: "deliver_sm",
    UNBIND: "unbind",
    BIND_TRANSCEIVER: "bind_transceiver",
    ENQUIRE_LINK: "enquire_link",
    ALERT_NOTIFICATION: "alert_notification",
    DATA_SM: "data_sm",
}


def command_name(command_id: int) -> str:
    """``submit_sm``, ``submit_sm_resp`` …, or the id in hex when it is none of ours."""
    if command_id in _NAMES:
        return _NAMES[command_id]
    if command_id & RESP and command_id & ~RESP in _NAMES:
        return _NAMES[command_id & ~RESP] + "_resp"
    return f"command {command_id:#010x}"


# command_status values we act on (anything else is carried as an int)
ESME_ROK = 0x00
ESME_RINVMSGLEN = 0x01
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RSYSERR = 0x08
ESME_RINVSRCADR = 0x0A
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RMSGQFUL = 0x14
ESME_RTHROTTLED = 0x58
ESME_RX_T_APPN = 0x64
ESME_RX_R_APPN = 0x65

# TLV tags
TLV_USER_MESSAGE_REFERENCE = 0x0204
TLV_SAR_MSG_REF_NUM = 0x020C
TLV_SAR_TOTAL_SEGMENTS = 0x020E
TLV_SAR_SEGMENT_SEQNUM = 0x020F
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_STATE = 0x0427
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_USSD_SERVICE_OP = 0x0501
TLV_ITS_SESSION_INFO = 0x1383

ESM_UDHI = 0x40
ESM_TYPE_MASK = 0x3C
ESM_DELIVERY_RECEIPT = 0x04


class PduError(ValueError):
    """The peer sent bytes that are not a PDU (bad length): the connection cannot go on."""


@dataclass(frozen=True)
class Pdu:
    """One PDU: its header and its raw body."""

    command_id: int
    command_status: int
    sequence: int
    body: bytes = b""

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESP)

    def encode(self) -> bytes:
        return (
            HEADER.pack(16 + len(self.body), self.command_id, self.command_status, self.sequence)
            + self.body
        )


_ID_RESPONSES = {SUBMIT_SM, DELIVER_SM, DATA_SM}


def response(request: Pdu, status: int = ESME_ROK, body: bytes | None = None) -> Pdu:
    """The response PDU to ``request`` (same sequence number). The responses whose body is a
    message_id get at least its NUL (deliver_sm_resp's is "unused, set to NULL")."""
    if body is None:
        body = b"\x00" if request.command_id in _ID_RESPONSES and status == ESME_ROK else b""
    return Pdu(request.command_id | RESP, status, request.sequence, body)


class Framer:
    """Cuts a byte stream into PDUs: ``receive`` bytes, take the complete PDUs one by one with
    ``next_pdu`` (or ``feed`` bytes and get every complete PDU so far)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def receive(self, data: bytes) -> None:
        self._buffer += data

    def next_pdu(self) -> Pdu | None:
        """The next complete PDU, or None until more bytes came; ``PduError`` on a bad length
        (the PDUs before it were handed out already)."""
        if len(self._buffer) < 16:
            return None
        length, command_id, status, sequence = HEADER.unpack_from(self._buffer)
        if length < 16 or length > MAX_PDU:
            raise PduError(f"PDU length {length} is out of range")
        if len(self._buffer) < length:
            return None
        body = bytes(self._buffer[16:length])
        del self._buffer[:length]
        return Pdu(command_id, status, sequence, body)

    def feed(self, data: bytes) -> list[Pdu]:
        self.receive(data)
        return list(iter(self.next_pdu, None))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def cstring(self, limit: int = 256) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise PduError("C-octet string without its NUL")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        return raw[:limit].decode("latin-1")

    def octet(self) -> int:
        if self.pos >= len(self.data):
            raise PduError("PDU body ends early")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise PduError("PDU body ends early")
        value = self.data[self.pos : self.pos + n]
        self.pos += n
        return value

    def tlvs(self) -> tuple[tuple[int, bytes], ...]:
        out: list[tuple[int, bytes]] = []
        while self.pos + 4 <= len(self.data):
            tag, length = struct.unpack_from(">HH", self.data, self.pos)
            self.pos += 4
            out.append((tag, self.take(length)))
        return tuple(out)


def _cstring(value: str) -> bytes:
    return value.encode("latin-1") + b"\x00"


def encode_tlvs(tlvs: tuple[tuple[int, bytes], ...]) -> bytes:
    return b"".join(struct.pack(">HH", tag, len(value)) + value for tag, value in tlvs)


@dataclass(frozen=True)
class ShortMessage:
    """The body shared by submit_sm and deliver_sm. TLVs are (tag, raw bytes) pairs."""

    source: str
    destination: str
    short_message: bytes = b""
    data_coding: int = 0
    esm_class: int = 0
    source_ton: int = 0
    source_npi: int = 0
    dest_ton: int = 0
    dest_npi: int = 0
    service_type: str = ""
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present: int = 0
    sm_default_msg_id: int = 0
    tlvs: tuple[tuple[int, bytes], ...] = field(default=())

    def tlv(self, tag: int) -> bytes | None:
        for key, value in self.tlvs:
            if key == tag:
                return value
        return None

    def tlv_int(self, tag: int) -> int | None:
        value = self.tlv(tag)
        return int.from_bytes(value, "big") if value else None

    def with_tlvs(self, *extra: tuple[int, bytes]) -> ShortMessage:
        return replace(self, tlvs=self.tlvs + extra)

    @property
    def payload(self) -> bytes:
        """short_message, or the message_payload TLV when short_message is empty."""
        if self.short_message:
            return self.short_message
        return self.tlv(TLV_MESSAGE_PAYLOAD) or b""

    def encode(self) -> bytes:
        if len(self.short_message) > 254:
            raise ValueError("short_message longer than 254 octets: split it or use a payload")
        return b"".join(
            [
                _cstring(self.service_type),
                bytes([self.source_ton, self.source_npi]),
                _cstring(self.source),
                bytes([self.dest_ton, self.dest_npi]),
                _cstring(self.destination),
                bytes([self.esm_class, self.protocol_id, self.priority_flag]),
                _cstring(self.schedule_delivery_time),
                _cstring(self.validity_period),
                bytes(
                    [
                        self.registered_delivery,
                        self.replace_if_present,
                        self.data_coding,
                        self.sm_default_msg_id,
                        len(self.short_message),
                    ]
                ),
                self.short_message,
                encode_tlvs(self.tlvs),
            ]
        )

    @classmethod
    def decode(cls, body: bytes) -> ShortMessage:
        r = _Reader(body)
        service_type = r.cstring()
        source_ton, source_npi = r.octet(), r.octet()
        source = r.cstring()
        dest_ton, dest_npi = r.octet(), r.octet()
        destination = r.cstring()
        esm_class, protocol_id, priority = r.octet(), r.octet(), r.octet()
        schedule, validity = r.cstring(), r.cstring()
        registered, replace_flag, data_coding, default_id = (
            r.octet(),
            r.octet(),
            r.octet(),
            r.octet(),
        )
        short_message = r.take(r.octet())
        return cls(
            source=source,
            destination=destination,
            short_message=short_message,
            data_coding=data_coding,
            esm_class=esm_class,
            source_ton=source_ton,
            source_npi=source_npi,
            dest_ton=dest_ton,
            dest_npi=dest_npi,
            service_type=service_type,
            protocol_id=protocol_id,
            priority_flag=priority,
            schedule_delivery_time=schedule,
            validity_period=validity,
            registered_delivery=registered,
            replace_if_present=replace_flag,
            sm_default_msg_id=default_id,
            tlvs=r.tlvs(),
        )


def encode_data_sm(sm: ShortMessage) -> bytes:
    """A data_sm body carrying ``sm``: its text goes in message_payload (data_sm has no
    short_message field)."""
    tlvs = sm.tlvs
    if sm.short_message:
        tlvs = ((TLV_MESSAGE_PAYLOAD, sm.short_message), *tlvs)
    return b"".join(
        [
            _cstring(sm.service_type),
            bytes([sm.source_ton, sm.source_npi]),
            _cstring(sm.source),
            bytes([sm.dest_ton, sm.dest_npi]),
            _cstring(sm.destination),
            bytes([sm.esm_class, sm.registered_delivery, sm.data_coding]),
            encode_tlvs(tlvs),
        ]
    )


def decode_data_sm(body: bytes) -> ShortMessage:
    """A data_sm body as a ShortMessage (empty short_message; the text in message_payload),
    so that the rest of the inbound path needs to know nothing about data_sm."""
    r = _Reader(body)
    service_type = r.cstring()
    source_ton, source_npi = r.octet(), r.octet()
    source = r.cstring()
    dest_ton, dest_npi = r.octet(), r.octet()
    destination = r.cstring()
    esm_class, registered, data_coding = r.octet(), r.octet(), r.octet()
    return ShortMessage(
        source=source,
        destination=destination,
        data_coding=data_coding,
        esm_class=esm_class,
        source_ton=source_ton,
        source_npi=source_npi,
        dest_ton=dest_ton,
        dest_npi=dest_npi,
        service_type=service_type,
        registered_delivery=registered,
        tlvs=r.tlvs(),
    )


def decode_message(request: Pdu) -> ShortMessage:
    """The message of a deliver_sm, submit_sm or data_sm request."""
    if request.command_id == DATA_SM:
        return decode_data_sm(request.body)
    return ShortMessage.decode(request.body)


@dataclass(frozen=True)
class Bind:
    """The body of bind_transmitter / bind_receiver / bind_transceiver."""

    system_id: str
    password: str
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    def encode(self) -> bytes:
        return b"".join(
            [
                _cstring(self.system_id),
                _cstring(self.password),
                _cstring(self.system_type),
                bytes([self.interface_version, self.addr_ton, self.addr_npi]),
                _cstring(self.address_range),
            ]
        )

    @classmethod
    def decode(cls, body: bytes) -> Bind:
        r = _Reader(body)
        system_id, password, system_type = r.cstring(), r.cstring(), r.cstring()
        version, ton, npi = r.octet(), r.octet(), r.octet()
        return cls(system_id, password, system_type, version, ton, npi, r.cstring())


def encode_message_id(message_id: str) -> bytes:
    """The body of submit_sm_resp / bind_*_resp: one C-octet string."""
    return _cstring(message_id)


def decode_message_id(body: bytes) -> str:
    """The message_id (or system_id) of a *_resp body; empty when the body is (legally) empty."""
    if not body:
        return ""
    end = body.find(b"\x00")
    return (body if end < 0 else body[:end]).decode("latin-1")
