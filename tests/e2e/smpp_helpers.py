"""Helpers for the SMPP tests: a simulator and a gateway bound to it over TCP, short timers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from smsmenu.messages import Inbound, Outbound
from smsmenu.smpp.gateway import Ack, Gateway, GatewayConfig, Handler
from smsmenu.smpp.parts import PartStore
from smsmenu.smpp.simulator import Simulator

SERVICE = "10001"


class Recorder:
    """A handler that records what it gets, acks it and answers with ``reply(inbound)``
    through the gateway it is bound with (``bound_pair`` sets ``gateway``)."""

    def __init__(self, reply: Callable[[Inbound], list[Outbound]] | None = None) -> None:
        self.inbound: list[Inbound] = []
        self.reply = reply or (lambda m: [Outbound(m.source, f"echo:{m.text}", SERVICE, m.route)])
        self.fail_next = 0
        self.changed = asyncio.Event()
        self.gateway: Gateway | None = None

    async def __call__(self, inbound: Inbound, ack: Ack) -> None:
        self.inbound.append(inbound)
        self.changed.set()
        if self.fail_next > 0:
            self.fail_next -= 1
            raise RuntimeError("handler failure (test)")
        replies = self.reply(inbound)
        ack()
        assert self.gateway is not None
        for reply in replies:
            await self.gateway.send(reply)

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


def fast_config(port: int, **overrides: Any) -> GatewayConfig:
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
    return GatewayConfig(**values)


def gateway_for(
    config: GatewayConfig,
    handler: Handler,
    on_receipt: Callable[[str, bool], Awaitable[None]] | None = None,
    parts: PartStore | None = None,
) -> Gateway:
    """A gateway with ``handler`` (a ``Recorder`` answers through it)."""
    gateway = Gateway(config, handler, on_receipt, parts)
    if isinstance(handler, Recorder):
        handler.gateway = gateway
    return gateway


@contextlib.asynccontextmanager
async def bound_pair(
    handler: Handler | None = None,
    on_receipt: Callable[[str, bool], Awaitable[None]] | None = None,
    simulator: dict[str, Any] | None = None,
    parts: PartStore | None = None,
    **config: Any,
) -> AsyncIterator[tuple[Simulator, Gateway]]:
    sim = Simulator(**{"redeliver_after_s": 0.5, **(simulator or {})})
    port = await sim.start()
    gateway = gateway_for(fast_config(port, **config), handler or Recorder(), on_receipt, parts)
    try:
        await gateway.start()
        await gateway.wait_bound(5)
        await sim.wait_bound(5)
        yield sim, gateway
    finally:
        await gateway.stop()
        await sim.stop()
