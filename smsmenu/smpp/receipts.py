"""Delivery receipts: recognising them and reading their outcome.

Pure. A deliver_sm is a receipt when esm_class bits 2-5 say "MC delivery receipt" (0x04).
The outcome is read from the message_state TLV when present, else from the ``stat:`` field of
the de-facto text form (SMPP 3.4 appendix B):
``id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD
err:E text:...``. The message id from receipted_message_id wins over the text's ``id:``.

Message ids: some SMSCs answer submit_sm_resp with a hex id and write the same id in decimal
in the receipt text (or the other way round). ``id_forms`` gives every reading of an id, and
two ids match when their forms meet (``ids_match('1A', '26')``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from smsmenu.digits import to_int
from smsmenu.smpp import pdu

# message_state values (SMPP 3.4 section 5.2.28)
STATE_NAMES = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
FINAL_STATES = {"DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "REJECTD"}

# A field's name, at the start or after white space; its value runs to the next name.
_NAME = re.compile(r"(?<!\S)(id|sub|dlvrd|submit date|done date|stat|err|text)\s*:", re.IGNORECASE)


@dataclass(frozen=True)
class Receipt:
    message_id: str
    state: str  # DELIVRD, UNDELIV, ... (upper case), "" if unknown
    error: str = ""

    @property
    def delivered(self) -> bool:
        return self.state == "DELIVRD"

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


def is_receipt(esm_class: int) -> bool:
    return (esm_class & pdu.ESM_TYPE_MASK) == pdu.ESM_DELIVERY_RECEIPT


def parse_text(text: str) -> dict[str, str]:
    """The fields of the text form, keys lower-case (``submit date`` keeps its space).
    Linear in the text's length: a receipt may be a 64 kB message_payload of anything."""
    names = list(_NAME.finditer(text))
    ends = [name.start() for name in names[1:]] + [len(text)]  # one more when there is none
    return {
        name.group(1).lower(): text[name.end() : end].strip()
        for name, end in zip(names, ends, strict=False)
    }


def parse(sm: pdu.ShortMessage) -> Receipt:
    """The receipt a deliver_sm carries (call only when ``is_receipt``)."""
    fields = parse_text(sm.payload.decode("latin-1"))
    tlv_id = sm.tlv(pdu.TLV_RECEIPTED_MESSAGE_ID)
    message_id = tlv_id.rstrip(b"\x00").decode("latin-1") if tlv_id else fields.get("id", "")
    state_value = sm.tlv_int(pdu.TLV_MESSAGE_STATE)
    if state_value is not None:
        state = STATE_NAMES.get(state_value, "UNKNOWN")
    else:
        state = fields.get("stat", "").upper()
    return Receipt(message_id.strip(), state, fields.get("err", ""))


def normalize(message_id: str) -> str:
    """An id as written, lower case, without leading zeros."""
    return message_id.strip().lower().lstrip("0") or "0"


def id_forms(message_id: str) -> frozenset[str]:
    """Every normalized form an SMSC may write ``message_id`` (from a submit_sm_resp) in a
    receipt: as is, its hex digits read as a number in decimal, its decimal digits in hex."""
    bare = normalize(message_id)
    forms = {bare}
    if re.fullmatch(r"[0-9a-f]+", bare) and len(bare) <= 32:
        forms.add(str(int(bare, 16)))
    decimal = to_int(bare, 38)
    if decimal is not None:
        forms.add(format(decimal, "x"))
    return frozenset(forms)


def stored_forms(message_id: str) -> frozenset[str]:
    """``id_forms`` and the cases an outbox may have stored a submit_sm_resp id in (as the
    SMSC wrote it, upper or lower case)."""
    raw = message_id.strip()
    forms = set(id_forms(raw)) | {raw, raw.upper(), raw.lower()}
    return frozenset(forms | {form.upper() for form in forms})


def ids_match(submitted: str, receipted: str) -> bool:
    """True when the receipt's id may name the message the SMSC gave ``submitted`` to."""
    return normalize(receipted) in id_forms(submitted)
