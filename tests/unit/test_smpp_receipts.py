from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsmenu.smpp import pdu, receipts


@pytest.mark.parametrize(
    ("esm_class", "expected"),
    [(0x04, True), (0x44, True), (0x00, False), (0x08, False), (0x40, False), (0x24, False)],
)
def test_is_receipt(esm_class: int, expected: bool) -> None:
    assert receipts.is_receipt(esm_class) is expected


TEXT = (
    "id:0123456789 sub:001 dlvrd:001 submit date:2611231200 done date:2611231201 "
    "stat:DELIVRD err:000 text:hello world"
)


def test_parse_text_fields() -> None:
    fields = receipts.parse_text(TEXT)
    assert fields["id"] == "0123456789"
    assert fields["submit date"] == "2611231200"
    assert fields["stat"] == "DELIVRD"
    assert fields["text"] == "hello world"


@pytest.mark.parametrize(
    ("sm", "receipt"),
    [
        (
            pdu.ShortMessage("1", "2", TEXT.encode(), esm_class=4),
            receipts.Receipt("0123456789", "DELIVRD", "000"),
        ),
        (
            pdu.ShortMessage("1", "2", b"id:7 stat:UNDELIV err:001", esm_class=4),
            receipts.Receipt("7", "UNDELIV", "001"),
        ),
        (  # TLVs win over the text
            pdu.ShortMessage(
                "1",
                "2",
                b"id:7 stat:UNDELIV",
                esm_class=4,
                tlvs=((pdu.TLV_RECEIPTED_MESSAGE_ID, b"1A\x00"), (pdu.TLV_MESSAGE_STATE, b"\x02")),
            ),
            receipts.Receipt("1A", "DELIVRD", ""),
        ),
    ],
)
def test_parse(sm: pdu.ShortMessage, receipt: receipts.Receipt) -> None:
    assert receipts.parse(sm) == receipt


def test_delivered_and_final() -> None:
    assert receipts.Receipt("1", "DELIVRD").delivered
    assert receipts.Receipt("1", "UNDELIV").final
    assert not receipts.Receipt("1", "ENROUTE").final


@pytest.mark.parametrize(
    ("submitted", "receipted", "match"),
    [
        ("1A", "26", True),
        ("1a", "0026", True),
        ("26", "1a", True),
        ("abc", "ABC", True),
        ("0042", "42", True),
        ("1A", "27", False),
        ("msg-1", "msg-1", True),
        ("msg-1", "msg-2", False),
        ("1²", "1²", True),  # Latin-1 0xB2 in an id: compared as text, never read as a number
        ("1²", "12", False),
        ("１２", "12", False),
        ("12", "c", True),
    ],
)
def test_ids_match(submitted: str, receipted: str, match: bool) -> None:
    assert receipts.ids_match(submitted, receipted) is match


# Receipts are read from whatever an SMSC sends: any octets, any length a message_payload
# allows (64 kB), ids in any form. Garbage is a receipt with no usable id or an id as text.
FIELD_WORDS = st.sampled_from(["id:", "sub:", "stat:", "err:", "text:", "submit date:", " ", "\t"])
RECEIPT_BYTES = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(FIELD_WORDS, st.text(max_size=12)), max_size=30).map(
        lambda parts: "".join(parts).encode("utf-8", "surrogatepass")
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    payload=RECEIPT_BYTES,
    in_tlv=st.booleans(),
    receipted_id=st.none() | st.binary(max_size=70),
    state=st.none() | st.binary(max_size=9),
)
def test_any_octets_are_a_receipt(
    payload: bytes, in_tlv: bool, receipted_id: bytes | None, state: bytes | None
) -> None:
    tlvs = [(pdu.TLV_MESSAGE_PAYLOAD, payload)] if in_tlv else []
    tlvs += [(pdu.TLV_RECEIPTED_MESSAGE_ID, receipted_id)] if receipted_id is not None else []
    tlvs += [(pdu.TLV_MESSAGE_STATE, state)] if state is not None else []
    sm = pdu.ShortMessage("1", "2", b"" if in_tlv else payload[:254], esm_class=4, tlvs=tuple(tlvs))
    receipt = receipts.parse(sm)
    assert isinstance(receipt.message_id, str) and isinstance(receipt.state, str)
    assert receipts.normalize(receipt.message_id) in receipts.id_forms(receipt.message_id)


@settings(max_examples=300, deadline=None)
@given(submitted=st.text(), receipted=st.text())
def test_any_ids_compare(submitted: str, receipted: str) -> None:
    forms = receipts.id_forms(submitted)
    assert receipts.normalize(submitted) in forms
    assert receipts.ids_match(submitted, submitted)
    assert receipts.ids_match(submitted, receipted) in (True, False)


@pytest.mark.parametrize(
    "payload",
    [
        "id:x" + " " * 65_000 + "y",
        "id:1 stat:" + "\t" * 65_000 + "DELIVRD",
        "id:" + "id " * 21_000,
        "text:" + "stat" * 16_000,
    ],
    ids=["spaces", "tabs", "keys-without-colon", "repeated-word"],
)
def test_a_64k_receipt_is_read_at_once(payload: str) -> None:
    """A message_payload receipt of 64 kB is read in linear time (the link's receive loop
    waits on it): the old pattern took minutes on a run of spaces inside a value."""
    sm = pdu.ShortMessage(
        "1", "2", esm_class=4, tlvs=((pdu.TLV_MESSAGE_PAYLOAD, payload.encode()),)
    )
    started = time.perf_counter()
    receipts.parse(sm)
    assert time.perf_counter() - started < 1.0
