from __future__ import annotations

import pytest

from smsmenu.messages import Route, Transport, UssdDialogue
from smsmenu.smpp import pdu
from smsmenu.smpp.ussd import SessionInfo, UssdCodes, inbound_route, reply_tlvs

CODES = UssdCodes()


@pytest.mark.parametrize(
    ("raw", "info"),
    [
        (b"\x00\x00", SessionInfo(0, 0, False)),
        (b"\x05\x03", SessionInfo(5, 1, True)),
        (b"\xc8\x80", SessionInfo(200, 64, False)),  # defect 8: octets >= 0x80
        (b"\xff\xff", SessionInfo(255, 127, True)),
    ],
)
def test_session_info_both_ways(raw: bytes, info: SessionInfo) -> None:
    assert SessionInfo.decode(raw) == info
    assert info.encode() == raw


def _ussd(op: int, info: bytes | None, umr: int | None = None) -> pdu.ShortMessage:
    tlvs = [(pdu.TLV_USSD_SERVICE_OP, bytes([op]))]
    if info is not None:
        tlvs.append((pdu.TLV_ITS_SESSION_INFO, info))
    if umr is not None:
        tlvs.append((pdu.TLV_USER_MESSAGE_REFERENCE, umr.to_bytes(2, "big")))
    return pdu.ShortMessage("13800000001", "10001", b"1", tlvs=tuple(tlvs))


@pytest.mark.parametrize(
    ("sm", "dialogue"),
    [
        (_ussd(1, b"\x81\x00", 0x8001), UssdDialogue(0x81, 0x8001, True)),
        (_ussd(18, b"\xfe\x04"), UssdDialogue(0xFE, None, False)),
        (_ussd(0x80, None), UssdDialogue(0, None, False)),
        (_ussd(1, b"\x01"), UssdDialogue(0, None, True)),  # malformed info: session 0
    ],
)
def test_inbound_route(sm: pdu.ShortMessage, dialogue: UssdDialogue) -> None:
    assert inbound_route(sm, CODES) == Route(Transport.USSD, dialogue, final=False)


def test_sms_has_no_ussd_route() -> None:
    assert inbound_route(pdu.ShortMessage("1", "2", b"x"), CODES) == Route()


def test_configurable_open_code() -> None:
    route = inbound_route(_ussd(0x20, b"\x01\x00"), UssdCodes(open=0x20))
    assert route.ussd is not None and route.ussd.opening


def test_reply_tlvs_continue_and_final() -> None:
    route = Route(Transport.USSD, UssdDialogue(200, 0xABCD), final=False)
    assert reply_tlvs(route, CODES) == (
        (pdu.TLV_USSD_SERVICE_OP, b"\x02"),
        (pdu.TLV_ITS_SESSION_INFO, b"\xc8\x00"),
        (pdu.TLV_USER_MESSAGE_REFERENCE, b"\xab\xcd"),
    )
    assert reply_tlvs(route.ending(True), CODES)[:2] == (
        (pdu.TLV_USSD_SERVICE_OP, b"\x11"),
        (pdu.TLV_ITS_SESSION_INFO, b"\xc8\x01"),
    )
    assert reply_tlvs(Route(), CODES) == ()
