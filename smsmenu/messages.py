"""Inbound / Outbound: the values that cross between the transport (SMPP) and the menus.

They carry no SMPP detail beyond what a reply must echo: a USSD reply has to travel inside the
dialogue it answers, so a ``Route`` says how a text reaches its phone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Transport(StrEnum):
    SMS = "sms"
    USSD = "ussd"


@dataclass(frozen=True)
class UssdDialogue:
    """The USSD dialogue a message belongs to: what every reply in it must echo.

    ``session`` is octet 1 of ``its_session_info`` (0-255); ``user_message_reference`` is echoed
    where the request had one; ``opening`` is true on the message that opened the dialogue.
    """

    session: int
    user_message_reference: int | None = None
    opening: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.session <= 255:
            raise ValueError(f"USSD session number {self.session} is not one octet")
        umr = self.user_message_reference
        if umr is not None and not 0 <= umr <= 0xFFFF:
            raise ValueError(f"user_message_reference {umr} is not two octets")


@dataclass(frozen=True)
class Route:
    """How a text reaches a phone: as a plain SMS, or inside its USSD dialogue.

    Over USSD ``final`` marks the message that ends the dialogue; it means nothing for SMS.
    """

    transport: Transport = Transport.SMS
    ussd: UssdDialogue | None = None
    final: bool = True

    def __post_init__(self) -> None:
        if (self.transport is Transport.USSD) != (self.ussd is not None):
            raise ValueError("a USSD route needs its dialogue, an SMS route has none")

    def ending(self, final: bool) -> Route:
        return Route(self.transport, self.ussd, final)


SMS = Route()


@dataclass(frozen=True)
class Inbound:
    """One whole message from a phone (concatenated parts already joined).

    It has no identity of its own: SMPP gives none, and the same text may come twice as two
    inputs or as one input resent (``menus.intake`` decides which, when it is taken in).
    ``resend_marks`` are the transport's fields that a resent copy keeps unchanged besides the
    addresses and the text (a concatenation reference, USSD session TLVs); ``received_at`` is
    when this copy arrived.
    """

    source: str
    destination: str
    text: str
    route: Route = SMS
    received_at: datetime | None = None
    resend_marks: str = ""

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError("an inbound message needs its source number")


@dataclass(frozen=True)
class Outbound:
    """One text to one phone, from ``source`` (the service number)."""

    destination: str
    text: str
    source: str
    route: Route = field(default=SMS)

    def __post_init__(self) -> None:
        if not self.destination:
            raise ValueError("an outbound message needs its destination")
        if not self.text:
            raise ValueError("an outbound message needs text")
