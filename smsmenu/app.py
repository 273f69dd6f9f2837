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
    except BaseException:
        await engine.dispose()
        raise
    return LedgerService(
        engine,
        clock or SystemClock(),
        catalogue or load_catalogue(settings),
        settings,
        billing,
    )


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
from smsmenu.ledger.api import AgentLedger  # noqa: E402
from smsmenu.menus.engine import EngineConfig, MenuEngine  # noqa: E402
from smsmenu.menus.store import InProcessStore, RedisStore, SessionStore  # noqa: E402


def open_session_store(settings: Settings, prefix: str = "smsmenu:") -> SessionStore:
    """Redis at ``settings.redis_url`` (any number of workers), or, when it is empty, the
    in-process store (one worker). Close it with ``await store.aclose()``."""
    if settings.redis_url:
        return RedisStore.from_url(settings.redis_url, prefix=prefix)
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
