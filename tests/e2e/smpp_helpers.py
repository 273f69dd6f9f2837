"""Helpers for the SMPP tests: a simulator and a gateway bound to it over TCP, short timers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from smsmenu.messages import Inbound, Outbound
from smsmenu.smpp.gateway import Gateway, GatewayConfig
from smsmenu.smpp.simulator import Simulator

SERVICE = "10001"


class Recorder:
    """A handler that records what it gets and answers with ``reply(inbound)``."""

    def __init__(self, reply: Callable[[Inbound], list[Outbound]] | None = None) -> None:
        self.inbound: list[Inbound] = []
        self.reply = reply or (lambda m: [Outbound(m.source, f"echo:{m.text}", SERVICE, m.route)])
        self.fail_next = 0
        self.changed = asyncio.Event()

    async def __call__(self, inbound: Inbound) -> list[Outbound]:
        self.inbound.append(inbound)
        self.changed.set()
        if self.fail_next > 0:
            self.fail_next -= 1
            raise RuntimeError("handler failure (test)")
        return self.reply(inbound)

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
        "part_timeout_s": 5.0,
    }
    values.update(overrides)
    return GatewayConfig(**values)


@contextlib.asynccontextmanager
async def bound_pair(
    handler: Callable[[Inbound], Awaitable[list[Outbound]]] | None = None,
    on_receipt: Callable[[str, bool], Awaitable[None]] | None = None,
    simulator: dict[str, Any] | None = None,
    **config: Any,
) -> AsyncIterator[tuple[Simulator, Gateway]]:
    sim = Simulator(**{"redeliver_after_s": 0.5, **(simulator or {})})
    port = await sim.start()
    gateway = Gateway(fast_config(port, **config), handler or Recorder(), on_receipt)
    try:
        await gateway.start()
        await gateway.wait_bound(5)
        await sim.wait_bound(5)
        yield sim, gateway
    finally:
        await gateway.stop()
        await sim.stop()
