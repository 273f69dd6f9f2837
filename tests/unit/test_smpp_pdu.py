from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsmenu.smpp import pdu, receipts


def test_short_message_round_trip_keeps_unusual_values() -> None:
    sm = pdu.ShortMessage(
        source="13800000001",
        destination="10001",
        short_message=b"\x00\xff",
        data_coding=0x18,
        source_ton=7,
        source_npi=5,
        esm_class=0x40,
        tlvs=((0x1400, b"\x80\x81"), (pdu.TLV_ITS_SESSION_INFO, b"\xc8\x81")),
    )
    assert pdu.ShortMessage.decode(sm.encode()) == sm


def test_framer_cuts_a_stream_at_any_point() -> None:
    pdus = [pdu.Pdu(pdu.ENQUIRE_LINK, 0, n) for n in range(1, 4)]
    data = b"".join(p.encode() for p in pdus)
    for cut in range(len(data) + 1):
        framer = pdu.Framer()
        got = framer.feed(data[:cut]) + framer.feed(data[cut:])
        assert got == pdus


def test_framer_refuses_a_bad_length() -> None:
    with pytest.raises(pdu.PduError):
        pdu.Framer().feed(b"\x00\x00\x00\x05" + b"\x00" * 12)


def test_bind_round_trip() -> None:
    bind = pdu.Bind("smsmenu", "secret", "vma")
    assert pdu.Bind.decode(bind.encode()) == bind


@pytest.mark.parametrize(("body", "expected"), [(b"", ""), (b"1A\x00", "1A"), (b"abc", "abc")])
def test_message_id_body(body: bytes, expected: str) -> None:
    assert pdu.decode_message_id(body) == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_submit_sm_resp_body_is_an_id_as_text(body: bytes) -> None:
    message_id = pdu.decode_message_id(body)
    assert "\x00" not in message_id and len(message_id) <= len(body)
    assert receipts.normalize(message_id) in receipts.id_forms(message_id)


def test_response_keeps_sequence_and_sets_resp_bit() -> None:
    request = pdu.Pdu(pdu.SUBMIT_SM, 0, 77, b"x")
    resp = pdu.response(request, 0x400)
    assert (resp.command_id, resp.command_status, resp.sequence) == (0x80000004, 0x400, 77)
    assert resp.is_response and not request.is_response


def test_truncated_body_is_a_pdu_error() -> None:
    body = pdu.ShortMessage("1", "2", b"hello").encode()
    with pytest.raises(pdu.PduError):
        pdu.ShortMessage.decode(body[:-3])


def test_data_sm_reads_as_a_short_message() -> None:
    sm = pdu.ShortMessage(
        "13800000001",
        "10001",
        "余额".encode("utf-16-be"),
        data_coding=8,
        tlvs=((pdu.TLV_USSD_SERVICE_OP, b"\x12"),),
    )
    request = pdu.Pdu(pdu.DATA_SM, 0, 5, pdu.encode_data_sm(sm))
    got = pdu.decode_message(request)
    assert got.payload == sm.short_message and got.short_message == b""
    assert got.tlv(pdu.TLV_USSD_SERVICE_OP) == b"\x12" and got.data_coding == 8


@pytest.mark.parametrize(
    ("command_id", "status", "body"),
    [
        (pdu.DELIVER_SM, 0, b"\x00"),
        (pdu.DATA_SM, 0, b"\x00"),
        (pdu.DELIVER_SM, pdu.ESME_RX_T_APPN, b""),
        (pdu.ENQUIRE_LINK, 0, b""),
        (pdu.UNBIND, 0, b""),
    ],
)
def test_response_bodies(command_id: int, status: int, body: bytes) -> None:
    assert pdu.response(pdu.Pdu(command_id, 0, 1), status).body == body


@pytest.mark.parametrize(
    ("command_id", "name"),
    [
        (pdu.SUBMIT_SM, "submit_sm"),
        (pdu.SUBMIT_SM | pdu.RESP, "submit_sm_resp"),
        (pdu.GENERIC_NACK, "generic_nack"),
        (pdu.DATA_SM | pdu.RESP, "data_sm_resp"),
        (0x00000200, "command 0x00000200"),
        (0x80000200, "command 0x80000200"),
    ],
)
def test_command_names(command_id: int, name: str) -> None:
    assert pdu.command_name(command_id) == name


def test_framer_hands_out_the_pdus_before_a_bad_length() -> None:
    framer = pdu.Framer()
    framer.receive(pdu.Pdu(pdu.ENQUIRE_LINK, 0, 1).encode() + b"\x00\x00\x00\x05" + b"\x00" * 12)
    assert framer.next_pdu() == pdu.Pdu(pdu.ENQUIRE_LINK, 0, 1)
    with pytest.raises(pdu.PduError):
        framer.next_pdu()
