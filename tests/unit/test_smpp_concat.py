from __future__ import annotations

import struct

import pytest

from smsmenu.smpp import concat, pdu, text
from smsmenu.smpp.concat import Reassembler, Segment
from smsmenu.smpp.text import Alphabet


def _texts(split: concat.Split, alphabet: Alphabet = Alphabet.GSM) -> list[str]:
    out = []
    for part in split.parts:
        body = concat.strip_udh(part)[1] if split.esm_class & pdu.ESM_UDHI else part
        out.append(text.decode(body, split.data_coding, alphabet))
    return out


@pytest.mark.parametrize(
    ("value", "parts", "coding"),
    [
        ("中" * 70, 1, 8),
        ("中" * 71, 2, 8),
        ("中" * 134, 2, 8),
        ("中" * 135, 3, 8),
        ("a" * 160, 1, 0),
        ("a" * 161, 2, 0),
        ("a" * 306, 2, 0),
        ("a" * 307, 3, 0),
        ("€" * 80, 1, 0),  # two septets each: exactly 160
        ("€" * 81, 2, 0),
    ],
)
def test_split_limits(value: str, parts: int, coding: int) -> None:
    split = concat.split(value, reference=7)
    assert len(split.parts) == parts
    assert split.data_coding == coding
    assert "".join(_texts(split)) == value
    if parts > 1:
        assert split.esm_class == pdu.ESM_UDHI  # defect 1: UDHI whenever there is a UDH
        for index, part in enumerate(split.parts, start=1):
            assert part[:6] == bytes([5, 0, 3, 7, parts, index])
            assert len(part) <= (140 if coding == 8 else 159)  # GSM: 6 + 153 septets
    else:
        assert split.esm_class == 0


def test_split_never_cuts_a_surrogate_pair() -> None:
    value = "中" * 66 + "😀" + "中" * 10  # the emoji straddles unit 67
    split = concat.split(value, 1)
    assert _texts(split) == ["中" * 66, "😀" + "中" * 10]


def test_split_never_cuts_an_escape() -> None:
    value = "a" * 152 + "€" + "a" * 7
    assert _texts(concat.split(value, 1)) == ["a" * 152, "€" + "a" * 7]


def _udh8(ref: int, total: int, seq: int) -> bytes:
    return bytes([5, 0, 3, ref, total, seq])


def _udh16(ref: int, total: int, seq: int) -> bytes:
    return bytes([6, 8, 4]) + struct.pack(">H", ref) + bytes([total, seq])


@pytest.mark.parametrize(
    ("sm", "segment", "payload"),
    [
        (pdu.ShortMessage("1", "2", b"plain"), None, b"plain"),
        (
            pdu.ShortMessage("1", "2", _udh8(9, 3, 2) + b"x", esm_class=0x40),
            Segment("udh8", 9, 3, 2),
            b"x",
        ),
        (
            pdu.ShortMessage("1", "2", _udh16(0xBEEF, 12, 11) + b"y", esm_class=0x40),
            Segment("udh16", 0xBEEF, 12, 11),
            b"y",
        ),
        (  # another IE before the concat one
            pdu.ShortMessage(
                "1", "2", bytes([9, 0x24, 2, 1, 1]) + _udh8(1, 2, 1)[1:] + b"z", esm_class=0x40
            ),
            Segment("udh8", 1, 2, 1),
            b"z",
        ),
        (
            pdu.ShortMessage(
                "1",
                "2",
                b"s",
                tlvs=(
                    (pdu.TLV_SAR_MSG_REF_NUM, b"\x01\x02"),
                    (pdu.TLV_SAR_TOTAL_SEGMENTS, b"\x02"),
                    (pdu.TLV_SAR_SEGMENT_SEQNUM, b"\x02"),
                ),
            ),
            Segment("sar", 0x102, 2, 2),
            b"s",
        ),
        (pdu.ShortMessage("1", "2", _udh8(1, 1, 1) + b"one", esm_class=0x40), None, b"one"),
        (pdu.ShortMessage("1", "2", _udh8(1, 2, 3) + b"bad", esm_class=0x40), None, b"bad"),
        (  # UDHI set but no concat IE
            pdu.ShortMessage("1", "2", bytes([3, 0x24, 1, 1]) + b"w", esm_class=0x40),
            None,
            b"w",
        ),
        (  # message_payload instead of short_message
            pdu.ShortMessage("1", "2", b"", tlvs=((pdu.TLV_MESSAGE_PAYLOAD, b"long"),)),
            None,
            b"long",
        ),
    ],
)
def test_segment_of(sm: pdu.ShortMessage, segment: Segment | None, payload: bytes) -> None:
    assert concat.segment_of(sm) == (segment, payload)


def test_reassembly_numeric_order_and_per_sender_keys() -> None:
    r: Reassembler[str] = Reassembler(timeout_s=10)
    total = 12
    order = [1, 10, 11, 12, 2, 3, 4, 5, 6, 7, 8, 9]  # string order: defect 5
    got = None
    for seq in order:
        # a second phone uses the same reference at the same time: defect 4
        assert (
            r.add(
                "B", "10001", Segment("udh8", 5, total, seq), 0, f"b{seq},".encode(), f"b{seq}", 0
            )
            is None
            or seq == 9
        )
        got = r.add(
            "A", "10001", Segment("udh8", 5, total, seq), 0, f"{seq},".encode(), f"a{seq}", 0
        )
    assert got is not None
    assert got.payload == b"".join(f"{n},".encode() for n in range(1, 13))
    assert sorted(got.tokens) == sorted(f"a{n}" for n in range(1, 13))
    assert len(r) == 0


def test_reassembly_kinds_do_not_mix_and_duplicates_are_kept_once() -> None:
    r: Reassembler[int] = Reassembler()
    assert r.add("A", "D", Segment("udh8", 1, 2, 1), 8, b"x", 1, 0) is None
    assert r.add("A", "D", Segment("udh16", 1, 2, 2), 8, b"y", 2, 0) is None
    assert r.add("A", "D", Segment("udh8", 1, 2, 1), 8, b"DUP", 3, 0) is None
    joined = r.add("A", "D", Segment("udh8", 1, 2, 2), 8, b"z", 4, 0)
    assert joined is not None and joined.payload == b"xz" and joined.tokens == (1, 3, 4)
    assert len(r) == 1  # the 16-bit set still waits


def test_reassembly_expires_incomplete_sets() -> None:
    r: Reassembler[int] = Reassembler(timeout_s=5, max_pending=1)
    r.add("A", "D", Segment("sar", 1, 2, 1), 0, b"x", 1, now=0)
    r.add("B", "D", Segment("sar", 1, 2, 1), 0, b"x", 2, now=1)
    assert [e.tokens for e in r.expire(now=2)] == [(1,)]  # over max_pending: oldest goes
    assert r.expire(now=5.9) == []
    assert [e.tokens for e in r.expire(now=6)] == [(2,)]
