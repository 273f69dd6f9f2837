"""What every part of the ledger needs: the database, the clock, the texts, the settings.

``LedgerContext`` is built once by ``LedgerService`` and handed to the modules that do the
work (operator, recharge, two_phase, reversal, passwords, reports), with the recharge writer of
its database (``writer``). A worker that sends the outbox itself sets ``claim_for`` (the claim
under which a recharge's notices are stored for its sender) and ``on_committed`` (they are
handed to the sender once committed), and ``on_queued`` (an operation committed notices
queued for any worker: the sender's claim loop looks now). ``products`` is the catalogue of
add-ons and validity bands (config/products.toml). It is mutable on purpose: tests swap the
billing backend or the fault hook on a running service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine

from smsmenu.clock import Clock
from smsmenu.keys import SecretKeys
from smsmenu.ledger.billing import BillingBackend, InternalBilling
from smsmenu.ledger.pins import PinVault
from smsmenu.ledger.products import Products, load_products
from smsmenu.settings import Settings, config_dir
from smsmenu.texts import Catalogue

if TYPE_CHECKING:
    from smsmenu.ledger.cards import CardPins
    from smsmenu.ledger.outbox import OutboxMessage
    from smsmenu.ledger.recharge_plan import Claim
    from smsmenu.ledger.writer import RechargeWriter

#: Fault-injection hook, called with the name of the step just done; raising from it simulates
#: a crash there. Two-phase: "reserved" (before the reservation commits), "committed" (after),
#: "credited" (billing said yes or no), "resolving" (before the post/void commits).
#: One transaction (internal billing): "credited" and "posting" (both before the commit).
Faults = Callable[[str], None]


@dataclass
class LedgerContext:
    engine: AsyncEngine
    clock: Clock
    catalogue: Catalogue
    settings: Settings
    keys: SecretKeys
    pins: PinVault  # peppered with ``keys.derive("pin-pepper")``
    billing: BillingBackend = field(default_factory=InternalBilling)
    faults: Faults | None = None
    billing_timeout_s: float = 10.0
    claim_for: Callable[[], Claim | None] | None = None
    on_committed: Callable[[tuple[OutboxMessage, ...]], None] | None = None
    on_queued: Callable[[], None] | None = None
    products: Products = field(default_factory=lambda: load_products(config_dir()))
    writer: RechargeWriter = field(init=False)
    zone: ZoneInfo = field(init=False)
    service_number: str = field(init=False)
    postgres: bool = field(init=False)
    card_pins: CardPins = field(init=False)  # keyed with ``keys.derive("card-pin")``

    def __post_init__(self) -> None:
        from smsmenu.ledger.cards import CardPins

        self.card_pins = CardPins(self.keys.derive("card-pin"))
        self.zone = self.settings.zone
        self.service_number = self.settings.service_number
        self.postgres = self.engine.dialect.name == "postgresql"

    def claim(self) -> Claim | None:
        """The claim a recharge's notices are stored under (None: queued for any worker)."""
        return self.claim_for() if self.claim_for is not None else None

    def committed(self, rows: tuple[OutboxMessage, ...]) -> None:
        """Notices just committed: to this worker's sender if they were claimed for it."""
        if rows and self.on_committed is not None:
            self.on_committed(rows)

    def queued(self) -> None:
        """An operation committed notices queued for any worker: the sender may claim now."""
        if self.on_queued is not None:
            self.on_queued()

    def today(self) -> date:
        """Today's business date (``TIMEZONE``)."""
        return self.clock.now().astimezone(self.zone).date()

    def fault(self, step: str) -> None:
        if self.faults is not None:
            self.faults(step)

    def text(self, key: str, **params: Any) -> str:
        return self.catalogue.render(key, **params)
