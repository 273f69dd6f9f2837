"""Composition root: builds the product's parts from Settings with explicit parameters.

The parts, each with its own lifespan (an async context manager that builds it and tears it
down), so that a process runs the subset it needs:

* ``ledger_part``   the ledger (``app_ledger``: a ledger-only CLI command imports just that)
* ``sessions_part`` the session store and the store of long messages' parts
* ``menus_part``    the menu engine on a ledger and a session store
* ``link_part``     the operator link (SMPP)
* ``delivery_part`` the outbox sender over a link; a committed recharge's notices go to it
* ``web_part``      the web pages and the HTTP API on a ledger, served over HTTP; no SMPP (its
                    one-time codes wait in the outbox for a worker's sender)
* ``run_server``    all of them, joined by ``server.Server`` (``smsmenu serve``, ``demo``)
* ``run_web``       the ledger and the web part alone (``smsmenu web``)

Nothing here runs at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from redis.asyncio import BlockingConnectionPool, Redis

from smsmenu.app_ledger import (
    close_ledger,
    ledger_outbox,
    load_catalogue,
    open_ledger,
    recovery_loop,
)
from smsmenu.clock import Clock, SystemClock
from smsmenu.delivery.sender import OutboxSender, SenderConfig
from smsmenu.keys import SecretKeys
from smsmenu.ledger.api import AgentLedger
from smsmenu.ledger.billing import BillingBackend
from smsmenu.ledger.deadletters import DeadLetters, DeadLetterSink
from smsmenu.ledger.service import LedgerService
from smsmenu.ledger.shortcut_acks import ShortcutAcks
from smsmenu.links import Link
from smsmenu.menus.engine import EngineConfig, MenuEngine
from smsmenu.menus.intake import Windows
from smsmenu.menus.store import InProcessStore, RedisStore, SessionStore
from smsmenu.server import Server
from smsmenu.settings import Settings
from smsmenu.smpp.link import SmppLink
from smsmenu.smpp.parts import InProcessParts, Limits, PartStore, RedisParts
from smsmenu.texts import Catalogue

if TYPE_CHECKING:  # the web's packages are imported only by a process that serves it
    from starlette.applications import Starlette

log = logging.getLogger("smsmenu.server")


# ---- menus ----------------------------------------------------------------------------------
def intake_windows(settings: Settings) -> Windows:
    """The time windows of ``menus.intake``'s rule, from the settings."""
    return Windows(
        resend_after_ms=int(settings.inbound_resend_after_s * 1000),
        ack_grace_ms=int(settings.inbound_ack_grace_s * 1000),
    )


def open_session_store(settings: Settings, prefix: str = "smsmenu:") -> SessionStore:
    """Redis at ``settings.redis_url`` (any number of workers), or, when it is empty, the
    in-process store (one worker). Close it with ``await store.aclose()``."""
    windows, lock_s = intake_windows(settings), settings.session_lock_s
    if settings.redis_url:
        return RedisStore(redis_client(settings), prefix, lock_s, windows)
    return InProcessStore(lock_s, windows)


def redis_client(settings: Settings) -> Redis:
    """A client of ``settings.redis_url``; closing it closes its pool."""
    # A blocking pool: under load a handler waits for a free connection rather than
    # failing (redis-py's default pool raises MaxConnectionsError past 100).
    pool = BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=settings.redis_max_connections, timeout=20
    )
    return Redis.from_pool(pool)


def part_limits(settings: Settings) -> Limits:
    return Limits(
        timeout_s=settings.smpp_part_timeout_s,
        max_parts=settings.smpp_max_parts,
        max_sender_bytes=settings.smpp_part_bytes_per_sender,
        max_sets=settings.smpp_max_part_sets,
    )


def build_menu_engine(
    settings: Settings,
    ledger: AgentLedger,
    store: SessionStore,
    clock: Clock | None = None,
    catalogue: Catalogue | None = None,
    *,
    keys: SecretKeys | None = None,
    dead_letters: DeadLetterSink | None = None,
    shortcut_acks: ShortcutAcks | None = None,
) -> MenuEngine:
    """The menu engine (``await engine.handle(inbound)``) on ``ledger`` and ``store``;
    dead letters go to ``dead_letters`` (default: the ledger's database, when ``ledger`` is a
    ``LedgerService``)."""
    if dead_letters is None:
        if not isinstance(ledger, LedgerService):
            raise TypeError("build_menu_engine needs dead_letters for this ledger")
        dead_letters = DeadLetters(ledger.engine)
    return MenuEngine(
        ledger=ledger,
        store=store,
        texts=catalogue or load_catalogue(settings),
        clock=clock or SystemClock(),
        config=EngineConfig(
            service_number=settings.service_number,
            zone=settings.zone,
            session_timeout_s=settings.session_timeout_s,
            rate_limit_per_min=settings.rate_limit_per_min,
            max_attempts=settings.inbound_max_attempts,
        ),
        keys=keys or SecretKeys.from_settings(settings),
        dead_letters=dead_letters,
        shortcut_acks=shortcut_acks,
    )


# ---- the parts' lifespans ---------------------------------------------------------------------
@contextlib.asynccontextmanager
async def ledger_part(
    settings: Settings,
    clock: Clock,
    catalogue: Catalogue,
    billing: BillingBackend | None = None,
    *,
    recover: bool = True,
) -> AsyncIterator[LedgerService]:
    """The ledger of a long-running worker: an agent cache on PostgreSQL, reservations left
    pending by a crash resolved at start and then every ``recovery_interval_s``."""
    ledger = await open_ledger(
        settings, clock, catalogue=catalogue, billing=billing, agent_cache=True
    )
    recovery: asyncio.Task[None] | None = None
    try:
        if recover:
            resolved = await ledger.recover_pending()
            if resolved:
                log.info("recovered %d pending recharge(s) at start", len(resolved))
            recovery = asyncio.create_task(
                recovery_loop(ledger, settings.recovery_interval_s), name="recovery"
            )
        yield ledger
    finally:
        if recovery is not None:
            recovery.cancel()
            await asyncio.gather(recovery, return_exceptions=True)
        await close_ledger(ledger)


@contextlib.asynccontextmanager
async def sessions_part(
    settings: Settings, prefix: str | None = None
) -> AsyncIterator[tuple[SessionStore, PartStore]]:
    """The session store and the parts store: on Redis when ``redis_url`` is set (any number
    of workers), else in this process (one worker)."""
    prefix = prefix or settings.redis_prefix
    store = open_session_store(settings, prefix=prefix)
    parts: PartStore = (
        RedisParts(redis_client(settings), prefix, part_limits(settings))
        if settings.redis_url
        else InProcessParts(part_limits(settings))
    )
    try:
        yield store, parts
    finally:
        if isinstance(parts, RedisParts):
            await parts.aclose()
        await store.aclose()


@contextlib.asynccontextmanager
async def menus_part(
    settings: Settings,
    ledger: LedgerService,
    store: SessionStore,
    clock: Clock,
    catalogue: Catalogue,
) -> AsyncIterator[MenuEngine]:
    """The menu engine; with the in-process store, whose memory dies with the process, the
    one-message operations left unanswered by the last run are remembered first."""
    acks = (
        await remember_unanswered_shortcuts(ledger, store)
        if isinstance(store, InProcessStore)
        else None
    )
    try:
        yield build_menu_engine(
            settings,
            ledger,
            store,
            clock,
            catalogue,
            keys=ledger.ctx.keys,
            dead_letters=DeadLetters(ledger.engine),
            shortcut_acks=acks,
        )
    finally:
        if acks is not None:
            await acks.stop()


@contextlib.asynccontextmanager
async def link_part(
    settings: Settings, parts: PartStore, overrides: dict[str, Any] | None = None
) -> AsyncIterator[Link]:
    """The SMPP link of ``settings`` (not started: ``link.start(on_inbound, on_receipt)``);
    stopped on exit."""
    values: dict[str, Any] = {
        "response_timeout_s": settings.smpp_response_timeout_s,
        "reconnect_max_s": settings.smpp_reconnect_max_s,
        "throttle_max_s": settings.smpp_throttle_max_s,
        "status_interval_s": 1e9,  # the server writes the status line itself
        **(overrides or {}),
    }
    link = SmppLink.from_settings(settings, parts, **values)
    try:
        yield link
    finally:
        await link.stop()


@contextlib.asynccontextmanager
async def delivery_part(
    settings: Settings,
    ledger: LedgerService,
    link: Link,
    clock: Clock,
    overrides: dict[str, Any] | None = None,
) -> AsyncIterator[OutboxSender]:
    """The outbox sender over ``link``, started; a recharge's notices are stored claimed for
    it and handed to it once committed. On exit it finishes its sends in flight."""
    sender = OutboxSender(
        ledger_outbox(ledger),
        link,
        SenderConfig.from_settings(settings, **(overrides or {})),
        clock=clock,
    )
    ledger.ctx.claim_for, ledger.ctx.on_committed = sender.claim, sender.hand
    ledger.ctx.on_queued = sender.nudge
    await sender.start()
    try:
        yield sender
    finally:
        ledger.ctx.claim_for = ledger.ctx.on_committed = ledger.ctx.on_queued = None
        await sender.stop()


@dataclass(frozen=True)
class WebServer:
    """The web part running: its application and the URL it answers on."""

    app: Starlette
    url: str


@contextlib.asynccontextmanager
async def web_part(
    settings: Settings, ledger: LedgerService, host: str = "127.0.0.1", port: int = 8080
) -> AsyncIterator[WebServer]:
    """The web pages and the HTTP API on ``ledger``, served by uvicorn on ``host:port`` (0: a
    free port) until exit. It needs no SMPP: the SMS it sends (one-time codes) go to the
    outbox, for the sender of a ``serve`` worker (or of this process)."""
    from smsmenu.web.app import build_app
    from smsmenu.web.context import WebContext
    from smsmenu.web.http import http_server
    from smsmenu.web.payments import provider

    payments = provider(settings.web_payment_provider, ledger.ctx.keys)
    app = build_app(WebContext.of(ledger, payments))
    server = http_server(app, host, port)
    task = asyncio.create_task(server.serve(), name="web")
    while not server.started:
        if task.done():  # it could not bind: its error
            await task
            raise OSError(f"cannot listen on {host}:{port}")
        await asyncio.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    log.info("web: http://%s:%d/", host, bound)
    try:
        yield WebServer(app, f"http://{host}:{bound}/")
    finally:
        server.should_exit = True
        await task


async def run_web(
    settings: Settings, host: str, port: int, stop: asyncio.Event, *, clock: Clock | None = None
) -> None:
    """``smsmenu web``: the ledger and the web part, until ``stop`` is set."""
    clock = clock or SystemClock()
    catalogue = load_catalogue(settings)
    async with (
        ledger_part(settings, clock, catalogue, recover=False) as ledger,
        web_part(settings, ledger, host, port),
    ):
        await stop.wait()


@contextlib.asynccontextmanager
async def run_server(
    settings: Settings,
    *,
    clock: Clock | None = None,
    billing: BillingBackend | None = None,
    catalogue: Catalogue | None = None,
    store_prefix: str | None = None,
    link_overrides: dict[str, Any] | None = None,
    sender_overrides: dict[str, Any] | None = None,
    recover: bool = True,
) -> AsyncIterator[Server]:
    """Builds and runs the server of ``settings``; tears it down in reverse order on exit.

    Order: ledger (schema checked, recovery pass) → sessions → menus → link → delivery; then
    the link starts (it binds in the background: ``await server.link.wait_bound()``).
    On exit: no new messages are taken, the sender finishes its sends in flight, the link
    unbinds, then the menus, the sessions and the ledger close.
    """
    clock = clock or SystemClock()
    catalogue = catalogue or load_catalogue(settings)
    async with contextlib.AsyncExitStack() as parts:
        ledger = await parts.enter_async_context(
            ledger_part(settings, clock, catalogue, billing, recover=recover)
        )
        store, part_store = await parts.enter_async_context(sessions_part(settings, store_prefix))
        engine = await parts.enter_async_context(
            menus_part(settings, ledger, store, clock, catalogue)
        )
        link = await parts.enter_async_context(link_part(settings, part_store, link_overrides))
        sender = await parts.enter_async_context(
            delivery_part(settings, ledger, link, clock, sender_overrides)
        )
        outbox = ledger_outbox(ledger)
        server = Server(settings, ledger, store, engine, outbox, link, sender)
        await link.start(server.handle, sender.on_receipt)
        status = asyncio.create_task(server.status_lines(), name="status")
        log.info(
            "serving: smsc %s:%d as %s, worker %s, store %s",
            settings.smsc_host,
            settings.smsc_port,
            settings.smsc_system_id,
            sender.config.worker_id,
            "redis" if settings.redis_url else "in-process",
        )
        try:
            yield server
        finally:
            server.accepting = False
            status.cancel()
            await asyncio.gather(status, return_exceptions=True)
            await sender.stop()  # its sends in flight finish while the link is up
            await link.stop()
            log.info("stopped: %s", await server.status_line())


#: How far back an embedded worker looks, at start, for shortcuts whose message it never
#: acknowledged (an SMSC resends within minutes of a rebind).
UNANSWERED_HORIZON = timedelta(hours=1)


async def remember_unanswered_shortcuts(
    ledger: LedgerService, store: InProcessStore
) -> ShortcutAcks:
    """For a worker whose intake memory died with its last run (``ledger.shortcut_acks``):
    remember the recent one-message operations whose message was never acknowledged, and
    start noting the acknowledged ones."""
    acks = ShortcutAcks(ledger.engine, ledger.clock, local=ledger.local_writer)
    since = ledger.clock.now() - UNANSWERED_HORIZON
    unanswered = await acks.unacked(since)
    for item in unanswered:
        store.remember(
            item.phone, item.fingerprint, item.message_id, int(item.created_at.timestamp() * 1000)
        )
    if unanswered:
        log.info("remembered %d unacknowledged shortcut(s) at start", len(unanswered))
    acks.start()
    return acks
