"""Helpers for the SMPP tests: a simulator and an SMPP link bound to it over TCP, short timers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from smsmenu.links import Ack, InboundHandler, ReceiptHandler
from smsmenu.messages import Inbound, Outbound
from smsmenu.smpp.link import SmppConfig, SmppLink
from smsmenu.smpp.parts import PartStore
from smsmenu.smpp.simulator import Simulator

SERVICE = "10001"


class Recorder:
    """A handler that records what it gets, acks it and answers with ``reply(inbound)``
    through the link it is started with (``start_link`` sets ``link``)."""

    def __init__(self, reply: Callable[[Inbound], list[Outbound]] | None = None) -> None:
        self.inbound: list[Inbound] = []
        self.reply = reply or (lambda m: [Outbound(m.source, f"echo:{m.text}", SERVICE, m.route)])
        self.fail_next = 0
        self.changed = asyncio.Event()
        self.link: SmppLink | None = None

    async def __call__(self, inbound: Inbound, ack: Ack) -> None:
        self.inbound.append(inbound)
        self.changed.set()
        if self.fail_next > 0:
            self.fail_next -= 1
            raise RuntimeError("handler failure (test)")
        replies = self.reply(inbound)
        ack()
        assert self.link is not None
        for reply in replies:
            await self.link.send(reply)

    async def wait(self, count: int, within_s: float = 10.0) -> list[Inbound]:
        async with asyncio.timeout(within_s):
            while len(self.inbound) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.inbound


class Receipts:
    def __init__(self) -> None:
        self.got: list[tuple[str, bool]] = []

    async def __call__(self, message_id: str, delivered: bool) -> None:
        self.got.append((message_id, delivered))


def fast_config(port: int, **overrides: Any) -> SmppConfig:
    values: dict[str, Any] = {
        "port": port,
        "response_timeout_s": 2.0,
        "enquire_link_s": 5.0,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.5,
        "throttle_min_s": 0.05,
        "throttle_max_s": 0.4,
        "connect_timeout_s": 2.0,
        "max_attempts": 5,
    }
    values.update(overrides)
    return SmppConfig(**values)


async def start_link(
    link: SmppLink, handler: InboundHandler, on_receipt: ReceiptHandler | None = None
) -> SmppLink:
    """Starts ``link`` with ``handler`` (a ``Recorder`` answers through it) and
    ``on_receipt`` (receipts are recorded and dropped if none)."""
    if isinstance(handler, Recorder):
        handler.link = link
    await link.start(handler, on_receipt or Receipts())
    return link


@contextlib.asynccontextmanager
async def bound_pair(
    handler: InboundHandler | None = None,
    on_receipt: ReceiptHandler | None = None,
    simulator: dict[str, Any] | None = None,
    parts: PartStore | None = None,
    **config: Any,
) -> AsyncIterator[tuple[Simulator, SmppLink]]:
    sim = Simulator(**{"redeliver_after_s": 0.5, **(simulator or {})})
    port = await sim.start()
    link = SmppLink(fast_config(port, **config), parts)
    try:
        await start_link(link, handler or Recorder(), on_receipt)
        await link.wait_bound(5)
        await sim.wait_bound(5)
        yield sim, link
    finally:
        await link.stop()
        await sim.stop()
