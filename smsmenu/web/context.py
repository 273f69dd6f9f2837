"""What every page and API call works with, built once per application."""

from __future__ import annotations

from dataclasses import dataclass

from smsmenu.clock import Clock
from smsmenu.keys import SecretKeys
from smsmenu.ledger.service import LedgerService
from smsmenu.settings import Settings
from smsmenu.texts import Catalogue
from smsmenu.web.payments import PaymentProvider


@dataclass
class WebContext:
    ledger: LedgerService
    settings: Settings
    keys: SecretKeys
    catalogue: Catalogue
    clock: Clock
    payments: PaymentProvider | None  # None: no online deposit (no provider configured)

    @classmethod
    def of(cls, ledger: LedgerService, payments: PaymentProvider | None = None) -> WebContext:
        return cls(
            ledger, ledger.settings, ledger.ctx.keys, ledger.catalogue, ledger.clock, payments
        )
