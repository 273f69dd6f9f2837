"""From deliver_sm to ``Inbound``: decoding, the route, and the redelivery key. Pure.

The redelivery key (``message_key``). SMPP gives a mobile-originated deliver_sm no id of its
own: a redelivery (the SMSC never got our deliver_sm_resp) is a fresh PDU with a fresh
sequence number. Kannel and Jasmin do not try to recognise it at all; they ack at once and
accept the duplicate. We ack only after the handler, so redeliveries are normal and must be
recognised. The key is a hash of what the SMSC sends again unchanged:

- source and destination addresses;
- the decoded text (so a re-encoding of the same text by the SMSC keeps the key);
- for a concatenated message, the reference kind, reference and part count (parts of two
  different long messages with the same text still differ by reference);
- for USSD, ussd_service_op and the raw its_session_info (session number and sequence);
- the SMSC's own id when it sends one (receipted_message_id on an MO, which some SMSCs set).

Not in it: the sequence number, TON/NPI and esm_class bits other than the ones above (a
redelivery may travel another bind with other defaults), data_coding. Consequence the
intake must honour: two identical texts from one phone (an agent typing "1" at two menus)
have the same key. The key therefore means "this content, not yet acknowledged": the
gateway calls ``on_acked(key)`` once its deliver_sm_resp is written, and a later message with
the same key is then a new one. Only a key that was taken in and never acked is a redelivery.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from smsmenu.messages import Inbound
from smsmenu.smpp import pdu
from smsmenu.smpp.concat import Segment
from smsmenu.smpp.text import Alphabet, decode
from smsmenu.smpp.ussd import UssdCodes, inbound_route


def message_key(sm: pdu.ShortMessage, text: str, segment: Segment | None) -> str:
    """The key that stays the same when the SMSC redelivers this message (see module doc)."""
    fields = [sm.source, sm.destination, text]
    if segment is not None:
        fields.append(f"{segment.kind}:{segment.reference}:{segment.total}")
    for tag in (pdu.TLV_USSD_SERVICE_OP, pdu.TLV_ITS_SESSION_INFO, pdu.TLV_RECEIPTED_MESSAGE_ID):
        value = sm.tlv(tag)
        if value is not None:
            fields.append(f"{tag:04x}={value.hex()}")
    digest = hashlib.sha256("\x1f".join(fields).encode("utf-8")).hexdigest()
    return f"mo-{digest[:32]}"


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
        message_key=message_key(sm, text, segment),
        route=inbound_route(sm, codes),
        received_at=received_at,
    )
