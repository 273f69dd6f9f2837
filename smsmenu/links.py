"""The operator link: what the server, the outbox sender and the menus see of a connection to
an operator's message centre. SMPP is one link (``smsmenu.smpp.link``); SMGP (China Telecom),
CMPP or SGIP would be others, each one module implementing ``Link`` over its own codec.

A link moves texts both ways. Inbound, it hands each whole message (long ones joined) to
``on_inbound`` with an ``Ack``: the link acknowledges the message to the operator only when the
handler calls it (after the message was taken in), and never if it does not (the operator then
delivers the message again). Delivery receipts go to ``on_receipt``. Outbound, ``send`` returns
the operator's message id of every part once each was accepted, and raises ``SendFailed`` when
the operator refuses the text (``transient``: worth trying again later) or ``LinkStopped`` when
the link is stopping. What a link knows of its own protocol (statuses, windows, rebinds) stays
inside it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from smsmenu.messages import Inbound, Outbound

#: Acknowledges a message (every part of it) to the operator; True if it went to a live link.
Ack = Callable[[], bool]
#: Takes a whole inbound message in; calls the ack once it was taken in.
InboundHandler = Callable[[Inbound, Ack], Awaitable[None]]
#: A delivery receipt: the operator's message id and whether the text was delivered.
ReceiptHandler = Callable[[str, bool], Awaitable[None]]


class SendFailed(Exception):
    """The operator refused a text, or never answered for it. ``transient``: it may be
    accepted if sent again later; ``accepted``: the ids of the parts accepted before."""

    def __init__(self, reason: str, *, transient: bool, accepted: list[str] | None = None):
        super().__init__(reason)
        self.transient = transient
        self.accepted = accepted or []


class LinkStopped(RuntimeError):
    """``send`` was called, or was waiting, when the link stopped."""


@dataclass
class LinkStatus:
    """Counters of a link, for the status line."""

    bound: bool = False
    window_in_use: int = 0
    window: int = 0
    received: int = 0  # inbound messages acknowledged
    sent: int = 0  # parts accepted by the operator
    failed: int = 0  # texts refused for good
    retried: int = 0  # parts sent again (throttled, timed out, link lost)
    receipts: int = 0
    handler_errors: int = 0
    binds: int = 0
    link_losses: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        values = {k: v for k, v in vars(self).items() if k != "extra"} | self.extra
        return " ".join(f"{key}={value}" for key, value in values.items())


class Link(Protocol):
    """One connection to an operator's message centre (see the module notes)."""

    name: str

    async def start(self, on_inbound: InboundHandler, on_receipt: ReceiptHandler) -> None:
        """Connect in the background (and again after any loss) and deliver to the handlers."""
        ...

    async def stop(self) -> None:
        """Stop taking messages (those in a handler are not acknowledged), end every task."""
        ...

    async def wait_bound(self, within_s: float = 10.0) -> None: ...

    @property
    def bound(self) -> bool: ...

    async def send(self, outbound: Outbound) -> list[str]:
        """The operator's id of each part, once all were accepted (see the module notes)."""
        ...

    def sent_here(self, message_id: str) -> bool:
        """Whether this link sent the message ``message_id`` names (any form of the id)."""
        ...

    def receipt_forms(self, message_id: str) -> frozenset[str]:
        """Every form of ``message_id`` under which a receipt may name that message, or the
        outbox may have stored it: a receipt and a sent message match when their forms meet."""
        ...

    def status(self) -> LinkStatus: ...
