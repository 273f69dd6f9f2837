"""Composition root: builds the product's parts from Settings with explicit parameters.

Nothing here runs at import time. Each part has its own clearly separate builder functions
(the ledger's in ``app_ledger``, the others below); the CLI and the server call them.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from smsmenu.app_ledger import (
    close_ledger,
    ledger_outbox,
    load_catalogue,
    open_ledger,
    recovery_loop,
)
from smsmenu.clock import Clock, SystemClock
from smsmenu.keys import SecretKeys
from smsmenu.ledger.api import AgentLedger
from smsmenu.ledger.billing import BillingBackend
from smsmenu.ledger.deadletters import DeadLetters, DeadLetterSink
from smsmenu.ledger.outbox import Outbox
from smsmenu.ledger.service import LedgerService
from smsmenu.ledger.shortcut_acks import ShortcutAcks
from smsmenu.menus.engine import EngineConfig, MenuEngine
from smsmenu.menus.intake import Windows
from smsmenu.menus.store import InProcessStore, RedisStore, SessionStore
from smsmenu.settings import Settings
from smsmenu.smpp.parts import InProcessParts, Limits, PartStore, RedisParts
from smsmenu.texts import Catalogue


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


# ---- the running server (``smsmenu serve``, ``smsmenu demo``) -------------------------------
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import timedelta  # noqa: E402
from typing import Any, cast  # noqa: E402

from smsmenu.ledger.api import RechargeRequest, RechargeView, Refusal, TransferView  # noqa: E402
from smsmenu.links import Ack, Link, LinkStopped, SendFailed  # noqa: E402
from smsmenu.messages import Inbound, Outbound, Route  # noqa: E402
from smsmenu.smpp.link import SmppLink  # noqa: E402
from smsmenu.smpp.outbox import OutboxSender, SenderConfig  # noqa: E402

server_log = logging.getLogger("smsmenu.server")


money_log = logging.getLogger("smsmenu.money")


class LoggedLedger:
    """The ledger as the menus see it, with one log line per money operation (recharge,
    retry, transfer): its outcome, figures and transaction id; never the password."""

    def __init__(self, ledger: LedgerService) -> None:
        self._ledger = ledger

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    async def _logged(self, op: str, fields: str, call: Any) -> Any:
        try:
            view = await call
        except Refusal as refusal:
            money_log.info("money op=%s %s refused=%s", op, fields, refusal.rule.value)
            raise
        except Exception as exc:
            money_log.error("money op=%s %s error=%s", op, fields, type(exc).__name__)
            raise
        if isinstance(view, RechargeView):
            money_log.info(
                "money op=%s %s tx=%d status=%s amount_fen=%d commission_fen=%d debit_fen=%d"
                " float_after_fen=%s",
                op,
                fields,
                view.tx_id,
                view.status.value,
                view.amount_fen,
                view.commission_fen,
                view.debit_fen,
                view.float_after_fen,
            )
        else:
            money_log.info("money op=%s %s tx=%s", op, fields, getattr(view, "tx_id", "-"))
        return view

    async def recharge(self, request: RechargeRequest) -> RechargeView:
        fields = (
            f"agent={request.agent_id} kind={request.kind.value} number={request.number}"
            f" amount_fen={request.amount_fen} key={request.key}"
        )
        view: RechargeView = await self._logged("recharge", fields, self._ledger.recharge(request))
        return view

    async def retry(
        self, agent_id: int, tx_id: int, pin: str, key: str, reply_route: Route | None = None
    ) -> RechargeView:
        view: RechargeView = await self._logged(
            "retry",
            f"agent={agent_id} of_tx={tx_id} key={key}",
            self._ledger.retry(agent_id, tx_id, pin, key, reply_route),
        )
        return view

    async def transfer_to_phone(
        self, agent_id: int, amount_fen: int, pin: str, key: str, reply_route: Route | None = None
    ) -> TransferView:
        view: TransferView = await self._logged(
            "transfer",
            f"agent={agent_id} amount_fen={amount_fen} key={key}",
            self._ledger.transfer_to_phone(agent_id, amount_fen, pin, key, reply_route),
        )
        return view


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
    """The running product: ledger, session store, menu engine, SMSC link and outbox sender."""

    settings: Settings
    ledger: LedgerService
    store: SessionStore
    engine: MenuEngine
    outbox: Outbox
    link: Link = field(init=False)
    sender: OutboxSender = field(init=False)
    accepting: bool = True
    turns: PhoneTurns = field(default_factory=PhoneTurns)

    async def handle(self, inbound: Inbound, ack: Ack) -> None:
        """The link's inbound handler: take the message in, acknowledge it, finish it, send its
        direct replies (one phone's in order); the outbox sender is woken, since a money
        operation writes its result and receipts to the outbox."""
        if not self.accepting:
            raise ShuttingDown("the server is stopping")
        async with self.turns.turn(inbound.source):
            try:
                handled = await self.engine.handle(inbound)
                acked = ack()
                await handled.finish(acked)
            finally:
                self.sender.nudge()
            server_log.info(
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
                    server_log.error(
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

    Order: ledger (schema checked) → recovery pass → session store → menu engine → outbox
    sender → SMPP link (binds in the background; ``await server.link.wait_bound()``).
    On exit: no new messages are taken, the sender finishes its sends in flight, the link
    unbinds, then the store and the ledger close.
    """
    clock = clock or SystemClock()
    catalogue = catalogue or load_catalogue(settings)
    ledger = await open_ledger(settings, clock, catalogue=catalogue, billing=billing)
    background: list[asyncio.Task[None]] = []
    try:
        if recover:
            resolved = await ledger.recover_pending()
            if resolved:
                server_log.info("recovered %d pending recharge(s) at start", len(resolved))
        prefix = store_prefix or settings.redis_prefix
        store = open_session_store(settings, prefix=prefix)
        parts: PartStore = (
            RedisParts(redis_client(settings), prefix, part_limits(settings))
            if settings.redis_url
            else InProcessParts(part_limits(settings))
        )
        acks: ShortcutAcks | None = None
        try:
            if isinstance(store, InProcessStore):  # its memory dies with this process
                acks = await remember_unanswered_shortcuts(ledger, store)
            logged = cast(AgentLedger, LoggedLedger(ledger))
            engine = build_menu_engine(
                settings,
                logged,
                store,
                clock,
                catalogue,
                keys=ledger.ctx.keys,
                dead_letters=DeadLetters(ledger.engine),
                shortcut_acks=acks,
            )
            server = Server(settings, ledger, store, engine, ledger_outbox(ledger))

            async def send(outbound: Outbound) -> list[str]:
                return await server.link.send(outbound)

            server.sender = OutboxSender(
                server.outbox,
                send,
                SenderConfig.from_settings(settings, **(sender_overrides or {})),
                ready=lambda: server.link.bound,
                sent_here=lambda message_id: server.link.sent_here(message_id),
                clock=clock,
            )
            link_values: dict[str, Any] = {
                "response_timeout_s": settings.smpp_response_timeout_s,
                "reconnect_max_s": settings.smpp_reconnect_max_s,
                "throttle_max_s": settings.smpp_throttle_max_s,
                "status_interval_s": 1e9,  # the server writes the status line itself
                **(link_overrides or {}),
            }
            server.link = SmppLink.from_settings(settings, parts, **link_values)
            await server.sender.start()
            await server.link.start(server.handle, server.sender.on_receipt)
            background.append(asyncio.create_task(_status_lines(server), name="status"))
            if recover:
                background.append(
                    asyncio.create_task(
                        recovery_loop(ledger, settings.recovery_interval_s), name="recovery"
                    )
                )
            server_log.info(
                "serving: smsc %s:%d as %s, worker %s, store %s",
                settings.smsc_host,
                settings.smsc_port,
                settings.smsc_system_id,
                server.sender.config.worker_id,
                "redis" if settings.redis_url else "in-process",
            )
            try:
                yield server
            finally:
                server.accepting = False
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
                await server.sender.stop()
                await server.link.stop()
                server_log.info("stopped: %s", await server.status_line())
        finally:
            if acks is not None:
                await acks.stop()
            if isinstance(parts, RedisParts):
                await parts.aclose()
            await store.aclose()
    finally:
        await close_ledger(ledger)


#: How far back an embedded worker looks, at start, for shortcuts whose message it never
#: acknowledged (an SMSC resends within minutes of a rebind).
UNANSWERED_HORIZON = timedelta(hours=1)


async def remember_unanswered_shortcuts(
    ledger: LedgerService, store: InProcessStore
) -> ShortcutAcks:
    """For a worker whose intake memory died with its last run (``ledger.shortcut_acks``):
    remember the recent one-message operations whose message was never acknowledged, and
    start noting the acknowledged ones."""
    acks = ShortcutAcks(ledger.engine, ledger.clock)
    since = ledger.clock.now() - UNANSWERED_HORIZON
    unanswered = await acks.unacked(since)
    for item in unanswered:
        store.remember(
            item.phone, item.fingerprint, item.message_id, int(item.created_at.timestamp() * 1000)
        )
    if unanswered:
        server_log.info("remembered %d unacknowledged shortcut(s) at start", len(unanswered))
    acks.start()
    return acks


async def _status_lines(server: Server) -> None:
    while True:
        await asyncio.sleep(server.settings.status_interval_s)
        server_log.info("%s", await server.status_line())
