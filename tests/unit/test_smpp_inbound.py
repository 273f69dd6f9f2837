from __future__ import annotations

from smsmenu.messages import Transport
from smsmenu.smpp import pdu
from smsmenu.smpp.concat import Segment
from smsmenu.smpp.inbound import resend_marks, to_inbound
from smsmenu.smpp.text import Alphabet
from smsmenu.smpp.ussd import UssdCodes


def _sm(**kw: object) -> pdu.ShortMessage:
    base: dict[str, object] = {"source": "13800000001", "destination": "10001"}
    base.update(kw)
    return pdu.ShortMessage(**base)  # type: ignore[arg-type]


def test_marks_are_stable_across_what_a_resend_changes() -> None:
    a = resend_marks(_sm(source_ton=1, data_coding=0), None)
    b = resend_marks(_sm(source_ton=0, data_coding=8, esm_class=0x08), None)
    assert a == b == ""


def test_marks_differ_on_what_makes_another_message() -> None:
    base = resend_marks(_sm(), None)
    assert resend_marks(_sm(), Segment("udh8", 1, 2, 1)) != base
    assert resend_marks(_sm(), Segment("udh8", 1, 2, 1)) != resend_marks(
        _sm(), Segment("udh8", 2, 2, 1)
    )
    ussd = _sm(tlvs=((pdu.TLV_USSD_SERVICE_OP, b"\x12"), (pdu.TLV_ITS_SESSION_INFO, b"\x05\x02")))
    ussd_next = _sm(
        tlvs=((pdu.TLV_USSD_SERVICE_OP, b"\x12"), (pdu.TLV_ITS_SESSION_INFO, b"\x05\x04"))
    )
    assert len({base, resend_marks(ussd, None), resend_marks(ussd_next, None)}) == 3
    smsc_id = _sm(tlvs=((pdu.TLV_RECEIPTED_MESSAGE_ID, b"77\x00"),))
    assert resend_marks(smsc_id, None) != base


def test_marks_never_hold_the_text() -> None:
    inbound = to_inbound(
        _sm(), b"CZ 2 13900000002 50 135790", 0, None, alphabet=Alphabet.GSM, codes=UssdCodes()
    )
    assert "135790" not in inbound.resend_marks


def test_to_inbound() -> None:
    sm = _sm(tlvs=((pdu.TLV_USSD_SERVICE_OP, b"\x01"), (pdu.TLV_ITS_SESSION_INFO, b"\x90\x00")))
    inbound = to_inbound(
        sm, "中".encode("utf-16-be"), 8, None, alphabet=Alphabet.GSM, codes=UssdCodes()
    )
    assert inbound.text == "中"
    assert inbound.route.transport is Transport.USSD
    assert inbound.route.ussd is not None and inbound.route.ussd.session == 0x90
    assert inbound.resend_marks == "0501=01 1383=9000"
