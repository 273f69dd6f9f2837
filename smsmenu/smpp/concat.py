"""Long messages: splitting outbound text into concatenated parts, joining inbound parts.

Pure. Outbound: text is cut on character boundaries (a UCS2 surrogate pair or a GSM escape
sequence is never split) into parts that each carry a UDH with an 8-bit reference
(IEI 0x00): UCS2 70 characters in one SMS, 67 per part; default alphabet 160 / 153. The
caller sets UDHI (esm_class 0x40) on every part of a split message (aiosmpplib defect 1).

Inbound: ``segment_of`` reads a part's position from the UDH (IEI 0x00, 8-bit reference, or
IEI 0x08, 16-bit reference — defect 6) or from the sar_* TLVs. ``Reassembler`` keeps the parts
keyed by (source, destination, reference kind, reference, total) — never by the reference
alone, since two phones may pick the same one (defect 4) — and joins them in numeric order
(defect 5) once all are there. Duplicate parts are kept once (their ack tokens are all
returned, so every copy the SMSC sent gets its response); incomplete sets expire.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from smsmenu.smpp import pdu
from smsmenu.smpp.text import DC_UCS2, Alphabet, choose_coding, encode

IEI_CONCAT_8 = 0x00
IEI_CONCAT_16 = 0x08

_LIMITS = {DC_UCS2: (140, 134)}  # octets: one whole SMS, one part after a 6-octet UDH
_DEFAULT_LIMITS = (160, 153)  # septets, one per octet as SMPP carries them


@dataclass(frozen=True)
class Split:
    """An outbound text as submit_sm payloads: ``data_coding``, ``esm_class``, the parts."""

    data_coding: int
    esm_class: int
    parts: tuple[bytes, ...]


def _chunks(text: str, data_coding: int, alphabet: Alphabet) -> list[bytes]:
    """The encoded octets of each character (a surrogate pair or escape stays one chunk)."""
    return [encode(ch, data_coding, alphabet) for ch in text]


def split(text: str, reference: int, alphabet: Alphabet = Alphabet.GSM) -> Split:
    """``text`` as one or more parts; ``reference`` (0-255) is the 8-bit concat reference."""
    if not 0 <= reference <= 255:
        raise ValueError("the 8-bit concatenation reference is one octet")
    coding = choose_coding(text, alphabet)
    single, per_part = _LIMITS.get(coding, _DEFAULT_LIMITS)
    encoded = encode(text, coding, alphabet)
    if len(encoded) <= single:
        return Split(coding, 0, (encoded,))
    bodies: list[bytes] = []
    current = b""
    for chunk in _chunks(text, coding, alphabet):
        if len(current) + len(chunk) > per_part:
            bodies.append(current)
            current = b""
        current += chunk
    if current:
        bodies.append(current)
    if len(bodies) > 255:
        raise ValueError("text too long for one concatenated message (255 parts)")
    total = len(bodies)
    parts = tuple(
        bytes([5, IEI_CONCAT_8, 3, reference, total, index]) + body
        for index, body in enumerate(bodies, start=1)
    )
    return Split(coding, pdu.ESM_UDHI, parts)


@dataclass(frozen=True)
class Segment:
    """Where one part belongs: reference kind ('udh8', 'udh16', 'sar'), reference, total, seq."""

    kind: str
    reference: int
    total: int
    seq: int


def strip_udh(short_message: bytes) -> tuple[bytes, bytes]:
    """(UDH including its length octet, the rest) of a short_message that has UDHI set."""
    if not short_message:
        return b"", b""
    udhl = short_message[0]
    return short_message[: 1 + udhl], short_message[1 + udhl :]


def segment_of(sm: pdu.ShortMessage) -> tuple[Segment | None, bytes]:
    """A part's segment (None for a whole message) and its payload without the UDH."""
    payload = sm.payload
    if sm.esm_class & pdu.ESM_UDHI:
        udh, payload = strip_udh(payload)
        pos = 1
        while pos + 2 <= len(udh):
            iei, length = udh[pos], udh[pos + 1]
            value = udh[pos + 2 : pos + 2 + length]
            pos += 2 + length
            if iei == IEI_CONCAT_8 and len(value) == 3:
                return _checked(Segment("udh8", value[0], value[1], value[2])), payload
            if iei == IEI_CONCAT_16 and len(value) == 4:
                reference = struct.unpack(">H", value[:2])[0]
                return _checked(Segment("udh16", reference, value[2], value[3])), payload
    ref = sm.tlv_int(pdu.TLV_SAR_MSG_REF_NUM)
    total = sm.tlv_int(pdu.TLV_SAR_TOTAL_SEGMENTS)
    seq = sm.tlv_int(pdu.TLV_SAR_SEGMENT_SEQNUM)
    if ref is not None and total is not None and seq is not None:
        return _checked(Segment("sar", ref, total, seq)), payload
    return None, payload


def _checked(segment: Segment) -> Segment | None:
    """A segment that says 1 of 1, or is out of range, is read as a whole message."""
    if segment.total <= 1 or not 1 <= segment.seq <= segment.total:
        return None
    return segment


T = TypeVar("T")

PartsKey = tuple[str, str, str, int, int]


@dataclass
class _Pending(Generic[T]):
    first_seen: float
    data_coding: int
    parts: dict[int, bytes] = field(default_factory=dict)
    tokens: list[T] = field(default_factory=list)


@dataclass(frozen=True)
class Joined(Generic[T]):
    """A complete message: its key, data_coding of part 1, joined payload, every ack token."""

    key: PartsKey
    data_coding: int
    payload: bytes
    tokens: tuple[T, ...]


@dataclass(frozen=True)
class Expired(Generic[T]):
    key: PartsKey
    tokens: tuple[T, ...]


class Reassembler(Generic[T]):
    """Joins parts. ``add`` returns the whole message once its last part arrives.

    ``token`` is whatever the caller wants back with the whole message (the simulator keeps
    each submit_sm part and the message id it gave it).
    """

    def __init__(self, timeout_s: float = 300.0, max_pending: int = 10_000) -> None:
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self._pending: dict[PartsKey, _Pending[T]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(
        self,
        source: str,
        destination: str,
        segment: Segment,
        data_coding: int,
        payload: bytes,
        token: T,
        now: float,
    ) -> Joined[T] | None:
        key: PartsKey = (source, destination, segment.kind, segment.reference, segment.total)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(now, data_coding)
        pending.tokens.append(token)
        pending.parts.setdefault(segment.seq, payload)  # a duplicate part is kept once
        if segment.seq == 1:
            pending.data_coding = data_coding
        if len(pending.parts) < segment.total:
            return None
        del self._pending[key]
        joined = b"".join(pending.parts[seq] for seq in sorted(pending.parts))
        return Joined(key, pending.data_coding, joined, tuple(pending.tokens))

    def expire(self, now: float) -> list[Expired[T]]:
        """Drops the sets older than the timeout (and the oldest beyond ``max_pending``)."""
        gone = [k for k, p in self._pending.items() if now - p.first_seen >= self.timeout_s]
        overflow = len(self._pending) - len(gone) - self.max_pending
        if overflow > 0:
            going = set(gone)
            rest = sorted(
                (k for k in self._pending if k not in going),
                key=lambda k: self._pending[k].first_seen,
            )
            gone += rest[:overflow]
        return [Expired(k, tuple(self._pending.pop(k).tokens)) for k in gone]
