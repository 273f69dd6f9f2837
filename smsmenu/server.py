"""The running server: a link's messages to the menu engine, its replies back to the link.

``app.run_server`` builds the parts (ledger, sessions, menus, link, delivery) and this object
joins them: it is the link's inbound handler. The money a message moves is written by the
ledger with its notices, which reach the phones through the outbox sender; the menu's direct
replies (a prompt, a refusal) go straight to the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from smsmenu.delivery.sender import OutboxSender
from smsmenu.ledger.outbox import Outbox
from smsmenu.ledger.service import LedgerService
from smsmenu.links import Ack, Link, LinkStopped, SendFailed
from smsmenu.menus.engine import MenuEngine
from smsmenu.menus.store import SessionStore
from smsmenu.messages import Inbound
from smsmenu.settings import Settings

log = logging.getLogger("smsmenu.server")


class ShuttingDown(RuntimeError):
    """The server is stopping: the message is not taken (not acked; the SMSC redelivers it,
    possibly to another worker)."""


class PhoneTurns:
    """One phone's messages are handled in this process one after the other, in arrival
    order, from taking in through the replies (the session store's lock orders them across
    workers; this keeps a waiting message from overtaking another)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, phone: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(phone, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[phone]


@dataclass
class Server:
    """The running product: ledger, session store, menu engine, link and outbox sender."""

    settings: Settings
    ledger: LedgerService
    store: SessionStore
    engine: MenuEngine
    outbox: Outbox
    link: Link
    sender: OutboxSender
    accepting: bool = True
    turns: PhoneTurns = field(default_factory=PhoneTurns)

    async def handle(self, inbound: Inbound, ack: Ack) -> None:
        """The link's inbound handler: take the message in, acknowledge it, finish it, send its
        direct replies (one phone's in order). A money operation's notices reached the sender
        when they committed (``LedgerContext.on_committed`` / ``on_queued``)."""
        if not self.accepting:
            raise ShuttingDown("the server is stopping")
        async with self.turns.turn(inbound.source):
            handled = await self.engine.handle(inbound)
            acked = ack()
            await handled.finish(acked)
            log.info(
                "mo id=%s source=%s destination=%s transport=%s len=%d acked=%s replies=%d",
                handled.message_id or "-",
                inbound.source,
                inbound.destination,
                inbound.route.transport.value,
                len(inbound.text),
                acked,
                len(handled.replies),
            )  # the text may hold a password: only its length is logged
            for reply in handled.replies:
                try:
                    await self.link.send(reply)
                except (SendFailed, LinkStopped) as exc:
                    log.error(
                        "reply to %s for id=%s not sent: %s",
                        reply.destination,
                        handled.message_id,
                        exc,
                    )

    async def status_line(self) -> str:
        """bound, window in use, queue (outbox rows due), sent, failed, and more counters."""
        gw, out = self.link.status(), self.sender.status()
        try:
            due: int | str = await self.outbox.due_count()
        except Exception:
            due = "?"
        return (
            f"status bound={gw.bound} window={gw.window_in_use}/{gw.window}"
            f" queue={due} sent={out.sent} failed={out.failed} retried={out.retried}"
            f" in_flight={out.in_flight} received={gw.received} receipts={out.receipts}"
            f" replies_sent={gw.sent} binds={gw.binds} link_losses={gw.link_losses}"
        )

    async def status_lines(self) -> None:
        """A status line every ``status_interval_s`` (run as a task; cancel it to stop)."""
        while True:
            await asyncio.sleep(self.settings.status_interval_s)
            log.info("%s", await self.status_line())
