"""The ledger's part of the composition root: the ledger, its text catalogue and its outbox,
built from Settings (``smsmenu.app`` builds the rest of the product on them).

It imports the ledger and nothing else: a CLI command that needs only the ledger starts
without loading the menus, Redis or SMPP; one that only reads (``open_database`` and
``ledger.queries``) without loading the ledger's writers, passwords and caches either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from smsmenu.clock import Clock, SystemClock
from smsmenu.ledger.db import check_schema, create_engine
from smsmenu.settings import Settings, config_dir
from smsmenu.texts import Catalogue

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from smsmenu.ledger.billing import BillingBackend
    from smsmenu.ledger.outbox import Outbox
    from smsmenu.ledger.service import LedgerService


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
    agent_cache: bool = False,
) -> LedgerService:
    """The ledger on ``settings.database_url``; raises ``db.SchemaMissing`` if the schema is
    not at the newest migration (``smsmenu db upgrade``). ``agent_cache``: a long-running
    worker's copy of agents (PostgreSQL only; kept current by the database's notices). Close
    it with ``close_ledger``."""
    from smsmenu.ledger.agent_cache import AgentCache
    from smsmenu.ledger.service import LedgerService

    engine = await open_database(settings, check)
    try:
        cache = AgentCache() if agent_cache and engine.dialect.name == "postgresql" else None
        ledger = LedgerService(  # raises keys.SecretMissing without a secret where one is needed
            engine,
            clock or SystemClock(),
            catalogue or load_catalogue(settings),
            settings,
            billing,
            agent_cache=cache,
        )
        if cache is not None:
            try:
                await cache.listen(engine)
            except BaseException:
                await ledger.aclose()
                raise
        return ledger
    except BaseException:
        await engine.dispose()
        raise


async def open_database(settings: Settings, check: bool = True) -> AsyncEngine:
    """The engine of ``settings.database_url`` (``db.SchemaMissing`` if the schema is not at
    the newest migration, unless ``check`` is off); ``dispose()`` it when done."""
    engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
    try:
        if check:
            await check_schema(engine)
    except BaseException:
        await engine.dispose()
        raise
    return engine


def ledger_outbox(ledger: LedgerService) -> Outbox:
    """The outbox of ``ledger``'s database, for the outbox sender."""
    from smsmenu.ledger.outbox import Outbox

    return Outbox(ledger.engine, ledger.clock, ledger.local_writer)


async def close_ledger(ledger: LedgerService) -> None:
    await ledger.aclose()
    await ledger.engine.dispose()


async def recovery_loop(
    ledger: LedgerService, interval_s: float = 30.0, older_than_s: float = 60.0
) -> None:
    """Resolve reservations left pending by a crash, now and then every ``interval_s`` (run it
    as a task beside the link; cancel it on shutdown). Needed only with an external billing
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
