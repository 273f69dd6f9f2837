from __future__ import annotations

from smsmenu.messages import Transport
from smsmenu.smpp import pdu
from smsmenu.smpp.concat import Segment
from smsmenu.smpp.inbound import message_key, to_inbound
from smsmenu.smpp.text import Alphabet
from smsmenu.smpp.ussd import UssdCodes


def _sm(**kw: object) -> pdu.ShortMessage:
    base: dict[str, object] = {"source": "13800000001", "destination": "10001"}
    base.update(kw)
    return pdu.ShortMessage(**base)  # type: ignore[arg-type]


def test_key_is_stable_across_what_a_redelivery_changes() -> None:
    a = message_key(_sm(source_ton=1, data_coding=0), "1", None)
    b = message_key(_sm(source_ton=0, data_coding=8, esm_class=0x08), "1", None)
    assert a == b


def test_key_differs_on_what_makes_another_message() -> None:
    base = message_key(_sm(), "1", None)
    assert message_key(_sm(), "2", None) != base
    assert message_key(_sm(source="13800000002"), "1", None) != base
    assert message_key(_sm(), "1", Segment("udh8", 1, 2, 1)) != base
    assert message_key(_sm(), "1", Segment("udh8", 1, 2, 1)) != message_key(
        _sm(), "1", Segment("udh8", 2, 2, 1)
    )
    ussd = _sm(tlvs=((pdu.TLV_USSD_SERVICE_OP, b"\x12"), (pdu.TLV_ITS_SESSION_INFO, b"\x05\x02")))
    ussd_next = _sm(
        tlvs=((pdu.TLV_USSD_SERVICE_OP, b"\x12"), (pdu.TLV_ITS_SESSION_INFO, b"\x05\x04"))
    )
    assert len({base, message_key(ussd, "1", None), message_key(ussd_next, "1", None)}) == 3
    smsc_id = _sm(tlvs=((pdu.TLV_RECEIPTED_MESSAGE_ID, b"77\x00"),))
    assert message_key(smsc_id, "1", None) != base


def test_to_inbound() -> None:
    sm = _sm(tlvs=((pdu.TLV_USSD_SERVICE_OP, b"\x01"), (pdu.TLV_ITS_SESSION_INFO, b"\x90\x00")))
    inbound = to_inbound(
        sm, "中".encode("utf-16-be"), 8, None, alphabet=Alphabet.GSM, codes=UssdCodes()
    )
    assert inbound.text == "中"
    assert inbound.route.transport is Transport.USSD
    assert inbound.route.ussd is not None and inbound.route.ussd.session == 0x90
    assert inbound.message_key.startswith("mo-")
