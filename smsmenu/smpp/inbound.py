"""From deliver_sm to ``Inbound``: decoding, the route, and the resend marks. Pure.

SMPP gives a mobile-originated deliver_sm no id of its own: a copy the SMSC resends (our
deliver_sm_resp never reached it) is a fresh PDU with a fresh sequence number, maybe on another
bind with other defaults. Which copy is which message is decided when the message is taken in
(``menus.intake``), by a keyed fingerprint of the addresses, the text and the ``resend_marks``
made here: what else a resent copy keeps unchanged —

- for a concatenated message, the reference kind, reference and part count (two long messages
  with the same text differ by reference);
- for USSD, ussd_service_op and the raw its_session_info (session number and sequence);
- the SMSC's own id when it sends one (receipted_message_id on an MO, which some SMSCs set).

Not in them: the sequence number, TON/NPI and esm_class bits other than the ones above,
data_coding (a resend may be encoded otherwise: the decoded text is what counts).
"""

from __future__ import annotations

from datetime import datetime

from smsmenu.messages import Inbound
from smsmenu.smpp import pdu
from smsmenu.smpp.concat import Segment
from smsmenu.smpp.text import Alphabet, decode
from smsmenu.smpp.ussd import UssdCodes, inbound_route


def resend_marks(sm: pdu.ShortMessage, segment: Segment | None) -> str:
    """The fields besides addresses and text that a resent copy keeps (see module notes)."""
    fields = []
    if segment is not None:
        fields.append(f"{segment.kind}:{segment.reference}:{segment.total}")
    for tag in (pdu.TLV_USSD_SERVICE_OP, pdu.TLV_ITS_SESSION_INFO, pdu.TLV_RECEIPTED_MESSAGE_ID):
        value = sm.tlv(tag)
        if value is not None:
            fields.append(f"{tag:04x}={value.hex()}")
    return " ".join(fields)


def to_inbound(
    sm: pdu.ShortMessage,
    payload: bytes,
    data_coding: int,
    segment: Segment | None,
    *,
    alphabet: Alphabet,
    codes: UssdCodes,
    received_at: datetime | None = None,
) -> Inbound:
    """One whole inbound message. ``sm`` is the (first) part: it carries the addresses and
    the USSD TLVs; ``payload`` is the joined payload without UDH."""
    text = decode(payload, data_coding, alphabet)
    return Inbound(
        source=sm.source,
        destination=sm.destination,
        text=text,
        route=inbound_route(sm, codes),
        received_at=received_at,
        resend_marks=resend_marks(sm, segment),
    )
