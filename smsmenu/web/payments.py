"""Online float deposits (SPEC §9: no 500 yuan floor) through a payment provider.

``PaymentProvider`` is what a real provider plugs in as: ``start_url`` is where the agent
goes to pay, and the provider's notification (a POST to ``/pay/<name>/notify``) is read by
``confirmed``, which checks its signature and names the payment it confirms; the agent comes
back to ``/agent/deposit?paid=<id>``. ``SandboxProvider`` is the built-in one (setting
``web_payment_provider = "sandbox"``): its payment page is ours, its "pay" button posts the
signed notification, and no real money moves (demos and tests only).

A payment is deposited once: ``complete`` runs the ledger's deposit command with the key
``payment-<id>`` (a repeated notification gets the first deposit) and then records it.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import insert, select, update

from smsmenu.digits import to_int
from smsmenu.keys import SecretKeys
from smsmenu.ledger.api import DepositView, Refusal
from smsmenu.ledger.models import payments
from smsmenu.ledger.rules import deposit_rule
from smsmenu.web.refusals import WebRefusal, WebRule

if TYPE_CHECKING:
    from smsmenu.web.context import WebContext

CREATED, PAID = "created", "paid"


class PaymentProvider(Protocol):
    name: str

    def start_url(self, payment_id: int, amount_fen: int) -> str:
        """Where the agent goes to pay ``payment_id``."""
        ...

    def confirmed(self, fields: Mapping[str, str]) -> int | None:
        """The payment a notification's ``fields`` confirm, once their signature is checked;
        None if it does not check."""
        ...


class SandboxProvider:
    """The built-in sandbox: its payment page is ``/pay/sandbox/<id>`` of this application;
    its notification is signed with a key derived from ``SECRET_KEY``."""

    name = "sandbox"

    def __init__(self, keys: SecretKeys) -> None:
        self._keys = keys

    def start_url(self, payment_id: int, amount_fen: int) -> str:
        return f"/pay/sandbox/{payment_id}"

    def signature(self, payment_id: int) -> str:
        return self._keys.mac("payment-sandbox", str(payment_id))

    def confirmed(self, fields: Mapping[str, str]) -> int | None:
        payment_id = to_int(fields.get("payment_id", ""), 9)
        signature = fields.get("signature", "")
        if payment_id is None or not hmac.compare_digest(signature, self.signature(payment_id)):
            return None
        return payment_id


def provider(name: str, keys: SecretKeys) -> PaymentProvider | None:
    """The provider named by the ``web_payment_provider`` setting ("" for none)."""
    if not name:
        return None
    if name == SandboxProvider.name:
        return SandboxProvider(keys)
    raise ValueError(f"unknown payment provider {name!r}")


@dataclass(frozen=True)
class PaymentView:
    id: int
    agent_id: int
    amount_fen: int
    status: str
    deposit_tx: int | None


async def create(web: WebContext, agent_id: int, amount_fen: int) -> tuple[PaymentView, str]:
    """A payment of ``amount_fen`` into the float of ``agent_id`` (a deposit's amount rules:
    a multiple of 10 yuan, at least 10) and the provider's URL to pay it."""
    if web.payments is None:
        raise WebRefusal(WebRule.PAYMENTS_OFF)
    rule = deposit_rule(amount_fen)
    if rule:
        raise Refusal(rule)
    async with web.ledger.engine.begin() as conn:
        new_id = (
            await conn.execute(
                insert(payments)
                .values(
                    agent_id=agent_id,
                    amount_fen=amount_fen,
                    provider=web.payments.name,
                    status=CREATED,
                    created_at=web.clock.now(),
                )
                .returning(payments.c.id)
            )
        ).scalar_one()
    view = PaymentView(new_id, agent_id, amount_fen, CREATED, None)
    return view, web.payments.start_url(new_id, amount_fen)


async def get(web: WebContext, payment_id: int) -> PaymentView | None:
    async with web.ledger.engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    payments.c.id,
                    payments.c.agent_id,
                    payments.c.amount_fen,
                    payments.c.status,
                    payments.c.deposit_tx,
                ).where(payments.c.id == payment_id)
            )
        ).first()
    return None if row is None else PaymentView(*row)


async def complete(web: WebContext, payment_id: int) -> DepositView:
    """The provider confirmed ``payment_id``: the deposit (once, whatever the repeats)."""
    payment = await get(web, payment_id)
    if payment is None:
        raise WebRefusal(WebRule.NOT_FOUND)
    deposit = await web.ledger.deposit(
        payment.agent_id, payment.amount_fen, f"payment-{payment.id}"
    )
    async with web.ledger.engine.begin() as conn:
        await conn.execute(
            update(payments)
            .where(payments.c.id == payment.id, payments.c.status == CREATED)
            .values(status=PAID, deposit_tx=deposit.tx_id)
        )
    return deposit
