"""USSD over SMPP: the ussd_service_op, its_session_info and user_message_reference TLVs.

Pure. The TLVs are octets, read and written as ints (aiosmpplib 0.7.4 types them as ASCII
strings, so any octet >= 0x80 fails both ways: defect 8). its_session_info is two octets:
octet 1 the session number (0-255), octet 2 = sequence << 1 | end-of-session bit.

Which ussd_service_op values open or continue a dialogue, and which ones our replies carry,
differ between gateways: ``UssdCodes`` holds them (settings ``ussd_op_*``).
"""

from __future__ import annotations

from dataclasses import dataclass

from smsmenu.messages import Route, Transport, UssdDialogue
from smsmenu.smpp import pdu


@dataclass(frozen=True)
class UssdCodes:
    open: int = 1  # PSSR indication, from the phone
    continue_: int = 18  # USSR confirm, from the phone
    reply: int = 2  # USSR request, ours: the dialogue goes on
    final: int = 17  # PSSR response, ours: the last message


@dataclass(frozen=True)
class SessionInfo:
    session: int
    sequence: int = 0
    end: bool = False

    def encode(self) -> bytes:
        if not 0 <= self.session <= 255 or not 0 <= self.sequence <= 127:
            raise ValueError("its_session_info: session is one octet, sequence seven bits")
        return bytes([self.session, (self.sequence << 1) | int(self.end)])

    @classmethod
    def decode(cls, value: bytes) -> SessionInfo:
        if len(value) != 2:
            raise ValueError(f"its_session_info is two octets, got {len(value)}")
        return cls(value[0], value[1] >> 1, bool(value[1] & 1))


def inbound_route(sm: pdu.ShortMessage, codes: UssdCodes) -> Route:
    """The route of an inbound message: SMS, or USSD with the dialogue it belongs to.

    A message is USSD when it carries ussd_service_op. Without its_session_info the session
    number is 0. It opens a dialogue when its op is ``codes.open``; every other op continues.
    """
    op = sm.tlv(pdu.TLV_USSD_SERVICE_OP)
    if op is None:
        return Route()
    raw_info = sm.tlv(pdu.TLV_ITS_SESSION_INFO)
    try:
        info = SessionInfo.decode(raw_info) if raw_info is not None else SessionInfo(0)
    except ValueError:
        info = SessionInfo(0)
    umr = sm.tlv(pdu.TLV_USER_MESSAGE_REFERENCE)
    dialogue = UssdDialogue(
        session=info.session,
        user_message_reference=int.from_bytes(umr[:2], "big") if umr else None,
        opening=bool(op) and op[0] == codes.open,
    )
    return Route(Transport.USSD, dialogue, final=False)


def reply_tlvs(route: Route, codes: UssdCodes) -> tuple[tuple[int, bytes], ...]:
    """The TLVs a reply on ``route`` carries (none for SMS)."""
    if route.transport is not Transport.USSD or route.ussd is None:
        return ()
    dialogue = route.ussd
    op = codes.final if route.final else codes.reply
    tlvs: list[tuple[int, bytes]] = [
        (pdu.TLV_USSD_SERVICE_OP, bytes([op])),
        (pdu.TLV_ITS_SESSION_INFO, SessionInfo(dialogue.session, 0, route.final).encode()),
    ]
    if dialogue.user_message_reference is not None:
        tlvs.append(
            (pdu.TLV_USER_MESSAGE_REFERENCE, dialogue.user_message_reference.to_bytes(2, "big"))
        )
    return tuple(tlvs)
