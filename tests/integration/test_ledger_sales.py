"""An agent sells a data pack or plan from its float (CZ 5), on SQLite and PostgreSQL, and
through the menu engine's shortcut."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from smsmenu.ledger.api import Billing, Kind, Refusal, Rule
from smsmenu.ledger.models import ADDON_SALES, COMMISSION_EXPENSE, lines, outbox
from smsmenu.ledger.service import LedgerService
from tests.integration.conftest import MOBILE, World
from tests.ledger_fixtures import TRADE_PIN, new_agent

TARGET = "13900000002"


async def test_sale_books_price_commission_and_the_allowance(ledger: LedgerService) -> None:
    agent = await new_agent(ledger, commission_bp=200)  # float 1000.00
    await ledger.add_subscriber(TARGET, Kind.MOBILE, Billing.PREPAID, 100)
    view = await ledger.sell_item(agent.agent_id, TARGET, "p90", TRADE_PIN, "s1")
    assert (view.item_code, view.price_fen, view.commission_fen, view.debit_fen) == (
        "P90",
        8000,
        160,
        7840,
    )
    assert view.float_after_fen == 100000 - 7840
    assert await ledger.sell_item(agent.agent_id, TARGET, "P90", TRADE_PIN, "s1") == view
    assert (await ledger.agent(agent.agent_id)).balance_fen == 100000 - 7840
    sub = await ledger.subscriber(TARGET)
    assert sub is not None and sub.balance_fen == 100  # no call credit: an item
    assert [(a.code, a.valid_until) for a in sub.allowances] == [("P90", date(2027, 2, 7))]
    async with ledger.engine.connect() as conn:
        booked = {
            r.account_id: r.amount_fen
            for r in await conn.execute(select(lines).where(lines.c.txn_id == view.tx_id))
        }
        sent = (await conn.execute(select(outbox.c.destination, outbox.c.text))).all()
    assert booked[ADDON_SALES] == 8000 and booked[COMMISSION_EXPENSE] == -160
    assert {d for d, _ in sent} == {agent.phone, TARGET}
    assert all(TRADE_PIN not in text for _, text in sent)
    records = await ledger.records(agent.agent_id)
    assert records[0].kind == "sale" and records[0].amount_fen == 8000


@pytest.mark.parametrize(
    ("number", "code", "pin", "rule"),
    [
        (TARGET, "NOPE", TRADE_PIN, Rule.ITEM_UNKNOWN),
        ("13900000099", "D100", TRADE_PIN, Rule.TARGET_UNKNOWN),
        (TARGET, "D100", "000001", Rule.WRONG_PIN),
        ("0278765", "D100", TRADE_PIN, Rule.BAD_NUMBER),
    ],
)
async def test_sale_refusals_move_nothing(
    ledger: LedgerService, number: str, code: str, pin: str, rule: Rule
) -> None:
    agent = await new_agent(ledger)
    await ledger.add_subscriber(TARGET, Kind.MOBILE, Billing.PREPAID)
    with pytest.raises(Refusal) as caught:
        await ledger.sell_item(agent.agent_id, number, code, pin, "k")
    assert caught.value.rule is rule
    assert (await ledger.agent(agent.agent_id)).balance_fen == 100000


async def test_sale_needs_the_funds(ledger: LedgerService) -> None:
    agent = await new_agent(ledger, deposit_yuan=500)
    await ledger.add_subscriber(TARGET, Kind.MOBILE, Billing.PREPAID)
    await ledger.transfer_to_phone(agent.agent_id, 45000, TRADE_PIN, "t")
    with pytest.raises(Refusal) as caught:
        await ledger.sell_item(agent.agent_id, TARGET, "P90", TRADE_PIN, "k")
    assert caught.value.rule is Rule.INSUFFICIENT_FUNDS


async def test_cz_5_through_the_engine(world: World) -> None:
    assert await world.send(f"CZ 5 {MOBILE} D500 {TRADE_PIN}") == []
    (result,) = await world.notices()
    assert result.kind == "agent_result" and "500M流量包" in result.text
    (receipt,) = await world.notices(MOBILE)
    assert receipt.kind == "target_receipt" and "500M流量包" in receipt.text
    assert await world.send(f"CZ 5 {MOBILE} X1 {TRADE_PIN}") == [
        world.t("refusal_item_unknown", code="X1")
    ]
