from __future__ import annotations

import pytest

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
