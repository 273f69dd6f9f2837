"""A ``links.Link`` for tests of what sits above a link (the outbox sender): sends go to a
function the test gives, ids have the SMPP forms (hex or decimal, any case)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from smsmenu.links import InboundHandler, LinkStatus, ReceiptHandler
from smsmenu.messages import Outbound
from smsmenu.smpp import receipts


class FakeLink:
    name = "fake"

    def __init__(
        self,
        send: Callable[[Outbound], Awaitable[list[str]]],
        sent_here: Callable[[str], bool] = lambda _id: False,
    ) -> None:
        self._send, self._sent_here = send, sent_here
        self.bound = True

    async def start(self, on_inbound: InboundHandler, on_receipt: ReceiptHandler) -> None:
        pass

    async def stop(self) -> None:
        self.bound = False

    async def wait_bound(self, within_s: float = 10.0) -> None:
        pass

    async def send(self, outbound: Outbound) -> list[str]:
        return await self._send(outbound)

    def sent_here(self, message_id: str) -> bool:
        return self._sent_here(message_id)

    def receipt_forms(self, message_id: str) -> frozenset[str]:
        return receipts.stored_forms(message_id)

    def status(self) -> LinkStatus:
        return LinkStatus(bound=self.bound)
