"""Model-based test: random interleavings of card redemptions (right and wrong PINs, call
credit or an item, repeated keys), 销户 at the counter, agent recharges and the passing of
time keep the books balanced, never redeem a card twice, and agree with a simple model of
balances, card states and closed numbers. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select

from smsmenu.clock import FakeClock
from smsmenu.keys import SecretKeys
from smsmenu.ledger.api import Billing, Kind, RechargeRequest, Refusal, Rule
from smsmenu.ledger.db import create_engine
from smsmenu.ledger.models import txns
from smsmenu.ledger.pins import PinVault
from smsmenu.ledger.service import LedgerService
from smsmenu.settings import Settings
from smsmenu.texts import Catalogue
from tests.ledger_fixtures import TRADE_PIN, new_agent, truncate

T = TypeVar("T")
PHONES = ["13900000001", "13900000002", "13900000003"]
CARDS = {f"50000000{i:02d}": (f"{400000 + i}", 1000 * (i % 4 + 1)) for i in range(6)}
PINS = PinVault(SecretKeys.random().derive("pin-pepper"))
PRICES = {None: 0, "D100": 1000, "D500": 3000}


def machine(make_url: Callable[[], str], catalogue: Catalogue) -> type[RuleBasedStateMachine]:
    class CardsMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.clock = FakeClock()
            url = make_url()
            self.engine = create_engine(url)
            self.ledger = LedgerService(
                self.engine, self.clock, catalogue, Settings(database_url=url), pins=PINS
            )
            self.agent = self.run(new_agent(self.ledger, "13800000001", 5000, 200)).agent_id
            for phone in PHONES:
                self.run(self.ledger.add_subscriber(phone, Kind.MOBILE, Billing.PREPAID))
            body = "".join(
                f"{n},{pin},{fen // 100},2099-12-31\n" for n, (pin, fen) in CARDS.items()
            )
            rows = self.ledger.parse_cards("number,pin,value,expires\n" + body)
            self.run(self.ledger.import_cards("props", rows))
            self.balances = dict.fromkeys(PHONES, 0)
            self.redeemed: dict[str, str] = {}  # card -> the key that redeemed it
            self.closed: set[str] = set()
            self.keys: list[tuple[str, str, str, str | None]] = []  # (key, phone, card, item)

        def run(self, coro: Coroutine[Any, Any, T]) -> T:
            return self.loop.run_until_complete(coro)

        def teardown(self) -> None:
            self.run(self.engine.dispose())
            self.loop.close()

        def refused(self, coro: Coroutine[Any, Any, Any]) -> Rule:
            with pytest.raises(Refusal) as caught:
                self.run(coro)
            return caught.value.rule

        @rule(
            phone=st.sampled_from(PHONES),
            card=st.sampled_from(sorted(CARDS)),
            right=st.booleans(),
            item=st.sampled_from(sorted(PRICES, key=str)),
        )
        def redeem(self, phone: str, card: str, right: bool, item: str | None) -> None:
            pin, value = CARDS[card]
            key = uuid.uuid4().hex
            call = self.ledger.redeem_card(phone, card, pin if right else "999999", item, key)
            if phone in self.closed:
                assert self.refused(call) is Rule.SUBSCRIBER_CLOSED
                return
            try:
                view = self.run(call)
            except Refusal as refusal:
                allowed = {Rule.CARD_INVALID, Rule.CARD_LOCKED}
                if right:
                    allowed |= {Rule.CARD_USED, Rule.CARD_VALUE_TOO_LOW}
                assert refusal.rule in allowed, refusal
                if refusal.rule is Rule.CARD_VALUE_TOO_LOW:
                    assert PRICES[item] > value
                if refusal.rule is Rule.CARD_USED:
                    assert card in self.redeemed
                return
            assert right and card not in self.redeemed
            self.redeemed[card] = key
            self.balances[phone] += value - PRICES[item]
            assert view.credit_fen == value - PRICES[item]
            self.keys.append((key, phone, card, item))

        @rule(data=st.data())
        def repeat(self, data: st.DataObject) -> None:
            """A repeated key gets the first result and moves nothing."""
            if not self.keys:
                return
            key, phone, card, item = data.draw(st.sampled_from(self.keys))
            pin = CARDS[card][0]
            view = self.run(self.ledger.redeem_card(phone, card, pin, item, key))
            assert view.card_number == card and view.number == phone

        @rule(phone=st.sampled_from(PHONES))
        def close(self, phone: str) -> None:
            call = self.ledger.close_subscriber(phone, uuid.uuid4().hex)
            if phone in self.closed:
                assert self.refused(call) is Rule.SUBSCRIBER_CLOSED
                return
            closed = self.run(call)
            assert closed.refund_fen == self.balances[phone]
            self.balances[phone] = 0
            self.closed.add(phone)

        @rule(phone=st.sampled_from(PHONES), yuan=st.sampled_from([10, 50, 100]))
        def recharge(self, phone: str, yuan: int) -> None:
            request = RechargeRequest(
                self.agent, Kind.MOBILE, phone, yuan * 100, TRADE_PIN, uuid.uuid4().hex
            )
            if phone in self.closed:
                assert self.refused(self.ledger.recharge(request)) is Rule.TARGET_CLOSED
                return
            self.run(self.ledger.recharge(request))
            self.balances[phone] += yuan * 100

        @rule(minutes=st.sampled_from([1, 31]))
        def later(self, minutes: int) -> None:
            self.clock.advance(minutes * 60)

        @invariant()
        def books_balance(self) -> None:
            balance = self.run(self.ledger.trial_balance())
            assert balance.ok, balance

        @invariant()
        def model_agrees(self) -> None:
            for phone, expected in self.balances.items():
                sub = self.run(self.ledger.subscriber(phone))
                assert sub is not None and sub.balance_fen == expected, phone
            stats = self.run(self.ledger.card_stats("props"))
            assert stats.redeemed == len(self.redeemed)
            assert stats.redeemed_fen == sum(CARDS[c][1] for c in self.redeemed)

            async def redemptions() -> int:
                async with self.engine.connect() as conn:
                    stmt = select(func.count(func.distinct(txns.c.ref))).where(txns.c.op == "card")
                    once = (await conn.execute(stmt)).scalar_one()
                    all_ = (
                        await conn.execute(
                            select(func.count()).select_from(txns).where(txns.c.op == "card")
                        )
                    ).scalar_one()
                assert once == all_  # never two redemptions of one card
                return int(all_)

            assert self.run(redemptions()) == len(self.redeemed)

    return CardsMachine


@pytest.mark.slow
def test_cards_state_machine(
    database_url: str, sqlite_template: Path, tmp_path: Path, catalogue: Catalogue
) -> None:
    counter = iter(range(10**6))

    def make_url() -> str:
        if database_url.startswith("sqlite"):
            path = tmp_path / f"m{next(counter)}.db"
            shutil.copyfile(sqlite_template, path)
            return f"sqlite+aiosqlite:///{path}"
        asyncio.run(truncate(database_url))
        return database_url

    run_state_machine_as_test(
        machine(make_url, catalogue),
        settings=settings(
            max_examples=10,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
