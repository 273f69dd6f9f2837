"""Composition root: builds the product's parts from Settings with explicit parameters.

Nothing here runs at import time. Each part has its own clearly separate builder functions
(the ledger's are below); the CLI and the server call them.
"""

from __future__ import annotations

from smsmenu.clock import Clock, SystemClock

# ---- ledger ---------------------------------------------------------------------------------
from smsmenu.ledger.billing import BillingBackend
from smsmenu.ledger.db import check_schema, create_engine
from smsmenu.ledger.outbox import Outbox
from smsmenu.ledger.service import LedgerService
from smsmenu.settings import Settings, config_dir
from smsmenu.texts import Catalogue


def load_catalogue(settings: Settings) -> Catalogue:
    """The text catalogue of ``settings.language`` from the config folder."""
    return Catalogue.load(config_dir() / "texts", settings.language)


async def open_ledger(
    settings: Settings,
    clock: Clock | None = None,
    *,
    catalogue: Catalogue | None = None,
    billing: BillingBackend | None = None,
    check: bool = True,
) -> LedgerService:
    """The ledger on ``settings.database_url``; raises ``db.SchemaMissing`` if the schema is
    not at the newest migration (``smsmenu db upgrade``). Close it with ``close_ledger``."""
    engine = create_engine(settings.database_url)
    try:
        if check:
            await check_schema(engine)
        return LedgerService(  # raises keys.SecretMissing without a secret where one is needed
            engine,
            clock or SystemClock(),
            catalogue or load_catalogue(settings),
            settings,
            billing,
        )
    except BaseException:
        await engine.dispose()
        raise


def ledger_outbox(ledger: LedgerService) -> Outbox:
    """The outbox of ``ledger``'s database, for the SMPP sender."""
    return Outbox(ledger.engine, ledger.clock)


async def close_ledger(ledger: LedgerService) -> None:
    await ledger.engine.dispose()


async def recovery_loop(
    ledger: LedgerService, interval_s: float = 30.0, older_than_s: float = 60.0
) -> None:
    """Resolve reservations left pending by a crash, now and then every ``interval_s`` (run it
    as a task beside the gateway; cancel it on shutdown). Needed only with an external billing
    backend: the internal one never leaves anything pending."""
    import asyncio
    import logging

    log = logging.getLogger("smsmenu.ledger")
    while True:
        try:
            resolved = await ledger.recover_pending(older_than_s)
            if resolved:
                log.info("recovered %d pending recharge(s)", len(resolved))
        except Exception:  # a database hiccup must not end the loop
            log.exception("recovery pass failed")
        await asyncio.sleep(interval_s)


# ---- menus ----------------------------------------------------------------------------------
from redis.asyncio import BlockingConnectionPool, Redis  # noqa: E402

from smsmenu.ledger.api import AgentLedger  # noqa: E402
from smsmenu.menus.engine import EngineConfig, MenuEngine  # noqa: E402
from smsmenu.menus.store import InProcessStore, RedisStore, SessionStore  # noqa: E402


def open_session_store(settings: Settings, prefix: str = "smsmenu:") -> SessionStore:
    """Redis at ``settings.redis_url`` (any number of workers), or, when it is empty, the
    in-process store (one worker). Close it with ``await store.aclose()``."""
    if settings.redis_url:
        # A blocking pool: under load a handler waits for a free connection rather than
        # failing (redis-py's default pool raises MaxConnectionsError past 100).
        pool = BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=settings.redis_max_connections, timeout=20
        )
        return RedisStore(Redis.from_pool(pool), prefix=prefix)  # closes the pool with it
    return InProcessStore()


def build_menu_engine(
    settings: Settings,
    ledger: AgentLedger,
    store: SessionStore,
    clock: Clock | None = None,
    catalogue: Catalogue | None = None,
) -> MenuEngine:
    """The menu engine (``await engine.handle(inbound)``) on ``ledger`` and ``store``."""
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
        ),
    )


# ---- the running server (``smsmenu serve``, ``smsmenu demo``) -------------------------------
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from collections import OrderedDict  # noqa: E402
from collections.abc import AsyncIterator, Callable  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from typing import Any, cast  # noqa: E402

from smsmenu.ledger.api import RechargeRequest, RechargeView, Refusal, TransferView  # noqa: E402
from smsmenu.messages import Inbound, Outbound, Route  # noqa: E402
from smsmenu.smpp.gateway import Gateway  # noqa: E402
from smsmenu.smpp.outbox import OutboxSender, SenderConfig  # noqa: E402

server_log = logging.getLogger("smsmenu.server")


class Intake:
    """Turns the gateway's redelivery keys into keys of one message each.

    The gateway's ``message_key`` is a hash of what the SMSC sends again unchanged
    (``smpp/inbound.py``): a redelivery has the key of its first copy, but so has the same text
    typed again by the same phone once the first was acknowledged (an agent sends ``1`` at two
    menus, or the same trade password to confirm two recharges). The engine needs one key per
    message (its stored reply and the ledger's idempotency key derive from it, and ledger keys
    are kept for ever), so the key given to the engine is ``<gateway key>.<n>``: ``n`` starts
    at the current time in microseconds the first time a gateway key is seen (or seen again
    after its counter expired) and goes up by one each time a message with that key is
    acknowledged. A redelivery (never acknowledged) gets the same ``n``; a new message with the
    same content the next one; a counter started later never meets an old one, so a key is
    never reused, not even after a restart or an expiry.

    With Redis the counters are shared by all workers and survive their restarts. The
    in-process counters (one worker) start afresh with the process: a message the SMSC
    delivers again after a crash (the crash fell between the menu's commit and the
    deliver_sm_resp) is then taken as new. A crash between writing the deliver_sm_resp and
    counting it makes the next identical message look like a redelivery (answered again, not
    run again): never a double operation.
    """

    def __init__(
        self, store: SessionStore, ttl_s: int = 86400, now_us: Callable[[], int] | None = None
    ) -> None:
        self._now_us = now_us or (lambda: time.time_ns() // 1000)
        self._redis = store.client if isinstance(store, RedisStore) else None
        self._prefix = store.prefix if isinstance(store, RedisStore) else ""
        self._ttl_s = ttl_s
        self._counts: OrderedDict[str, int] = OrderedDict()

    def _name(self, key: str) -> str:
        return f"{self._prefix}acked:{key}"

    async def key(self, gateway_key: str) -> str:
        if self._redis is not None:
            name = self._name(gateway_key)
            raw = await self._redis.get(name)
            if raw is None:
                await self._redis.set(name, self._now_us(), nx=True, ex=self._ttl_s)
                raw = await self._redis.get(name)
            count = int(raw) if raw is not None else self._now_us()
        else:
            count = self._counts.setdefault(gateway_key, self._now_us())
        return f"{gateway_key}.{count}"

    async def acked(self, gateway_key: str) -> None:
        if self._redis is not None:
            name = self._name(gateway_key)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(name, self._now_us(), nx=True, ex=self._ttl_s)  # expired meanwhile
                pipe.incr(name)
                pipe.expire(name, self._ttl_s)
                await pipe.execute()
            return
        self._counts[gateway_key] = self._counts.get(gateway_key, self._now_us()) + 1
        self._counts.move_to_end(gateway_key)
        while len(self._counts) > 200_000:
            self._counts.popitem(last=False)


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


@dataclass
class Server:
    """The running product: ledger, session store, menu engine, gateway and outbox sender."""

    settings: Settings
    ledger: LedgerService
    store: SessionStore
    engine: MenuEngine
    outbox: Outbox
    intake: Intake
    gateway: Gateway = field(init=False)
    sender: OutboxSender = field(init=False)
    accepting: bool = True

    async def handle(self, inbound: Inbound) -> list[Outbound]:
        """The gateway's handler: the engine's direct reply; the outbox sender is woken, since
        a money operation writes its result and receipts to the outbox."""
        if not self.accepting:
            raise ShuttingDown("the server is stopping")
        key = await self.intake.key(inbound.message_key)
        try:
            return await self.engine.handle(replace(inbound, message_key=key))
        finally:
            self.sender.nudge()

    async def acked(self, gateway_key: str) -> None:
        """The gateway's ``on_acked``: that message is taken; the same content is new now."""
        await self.intake.acked(gateway_key)

    async def status_line(self) -> str:
        """bound, window in use, queue (outbox rows due), sent, failed, and more counters."""
        gw, out = self.gateway.status(), self.sender.status()
        try:
            due: int | str = await self.outbox.due_count()
        except Exception:
            due = "?"
        return (
            f"status bound={gw.bound} window={gw.window_in_use}/{self.gateway.config.window}"
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
    gateway_overrides: dict[str, Any] | None = None,
    sender_overrides: dict[str, Any] | None = None,
    recover: bool = True,
) -> AsyncIterator[Server]:
    """Builds and runs the server of ``settings``; tears it down in reverse order on exit.

    Order: ledger (schema checked) → recovery pass → session store → menu engine → outbox
    sender → gateway (binds in the background; ``await server.gateway.wait_bound()``).
    On exit: no new messages are taken, the sender finishes its sends in flight, the gateway
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
        store = open_session_store(settings, prefix=store_prefix or settings.redis_prefix)
        try:
            logged = cast(AgentLedger, LoggedLedger(ledger))
            engine = build_menu_engine(settings, logged, store, clock, catalogue)
            server = Server(settings, ledger, store, engine, ledger_outbox(ledger), Intake(store))

            async def send(outbound: Outbound) -> list[str]:
                return await server.gateway.send(outbound)

            server.sender = OutboxSender(
                server.outbox,
                send,
                SenderConfig.from_settings(settings, **(sender_overrides or {})),
                ready=lambda: server.gateway.bound,
                sent_here=lambda message_id: server.gateway.sent_here(message_id),
                clock=clock,
            )
            gateway_values: dict[str, Any] = {
                "response_timeout_s": settings.smpp_response_timeout_s,
                "reconnect_max_s": settings.smpp_reconnect_max_s,
                "throttle_max_s": settings.smpp_throttle_max_s,
                "status_interval_s": 1e9,  # the server writes the status line itself
                **(gateway_overrides or {}),
            }
            server.gateway = Gateway.from_settings(
                settings, server.handle, server.sender.on_receipt, server.acked, **gateway_values
            )
            await server.sender.start()
            await server.gateway.start()
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
                await server.gateway.stop()
                server_log.info("stopped: %s", await server.status_line())
        finally:
            await store.aclose()
    finally:
        await close_ledger(ledger)


async def _status_lines(server: Server) -> None:
    while True:
        await asyncio.sleep(server.settings.status_interval_s)
        server_log.info("%s", await server.status_line())
