"""The web part served over real HTTP from a thread with its own event loop (uvicorn on a
free port): for the API's property run and the browser tests, which call it from outside."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, TypeVar

from smsmenu.app import ledger_part, load_catalogue, web_part
from smsmenu.clock import Clock, SystemClock
from smsmenu.ledger.service import LedgerService
from smsmenu.settings import Settings

T = TypeVar("T")


class ShiftedClock:
    """Real time moving on from ``start`` (so that date rules, such as no reversal on a
    month's last day, do not depend on the day the tests run)."""

    def __init__(self, start: datetime) -> None:
        self._offset = start - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


class WebThread:
    """``with WebThread(settings) as web:`` ``web.url`` answers; ``web.run(coroutine)`` runs
    on the server's loop (to seed or read its ledger)."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.url = ""
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="web", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._failed = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        catalogue = load_catalogue(self.settings)
        async with (
            ledger_part(self.settings, self.clock, catalogue, recover=False) as ledger,
            web_part(self.settings, ledger, "127.0.0.1", 0) as server,
        ):
            self.ledger: LedgerService = ledger
            self.url = server.url.rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=60)

    def __enter__(self) -> WebThread:
        self._thread.start()
        self._ready.wait(60)
        if self._failed is not None or not self.url:
            raise RuntimeError("the web part did not start") from self._failed
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
