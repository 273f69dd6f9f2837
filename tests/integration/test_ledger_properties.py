"""Model-based test: random sequences of deposits, recharges (succeeding or failing in billing),
retries, transfers, reversals, closes, repeated keys and the passing of time keep every
invariant — the books balance, no float goes negative, balances match a simple model, at
most one reversal per agent per business month."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from smsmenu.clock import FakeClock
from smsmenu.keys import SecretKeys
from smsmenu.ledger import rules
from smsmenu.ledger.api import Billing, Kind, RechargeRequest, RechargeStatus, Refusal, Rule
from smsmenu.ledger.billing import ScriptedBilling
from smsmenu.ledger.db import create_engine
from smsmenu.ledger.pins import PinVault
from smsmenu.ledger.service import LedgerService
from smsmenu.settings import Settings
from smsmenu.texts import Catalogue
from tests.ledger_fixtures import TRADE_PIN, new_agent, truncate

T = TypeVar("T")
ZONE = ZoneInfo("Asia/Shanghai")
TARGETS = {
    "13900000001": (Kind.MOBILE, Billing.PREPAID),
    "13900000002": (Kind.MOBILE, Billing.POSTPAID),
    "02787654321": (Kind.FIXED, Billing.POSTPAID),
}
AMOUNTS = [0, 500, 1000, 2000, 10000, 50000, 100000, 101000]
PINS = PinVault(SecretKeys.random().derive("pin-pepper"))


@dataclass
class Rec:
    tx: int
    agent: int
    number: str
    amount: int
    commission: int
    debit: int
    at: datetime
    status: RechargeStatus


def machine(
    make_url: Callable[[], str], catalogue: Catalogue, external: bool
) -> type[RuleBasedStateMachine]:
    class LedgerMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.clock = FakeClock()
            url = make_url()
            self.engine = create_engine(url)
            self.billing = ScriptedBilling() if external else None
            self.ledger = LedgerService(
                self.engine,
                self.clock,
                catalogue,
                Settings(database_url=url),
                self.billing,
                pins=PINS,
            )
            self.agents = [
                self.run(new_agent(self.ledger, "13800000001", 500, 200)).agent_id,
                self.run(new_agent(self.ledger, "13800000002", 500, 333)).agent_id,
            ]
            self.rates = dict(zip(self.agents, (200, 333), strict=True))
            self.floats = dict.fromkeys(self.agents, 50_000)
            self.closed: set[int] = set()
            self.subs = dict.fromkeys(TARGETS, 0)
            self.recs: dict[int, Rec] = {}
            self.reversals: dict[int, list[datetime]] = {a: [] for a in self.agents}
            self.done: list[tuple[Callable[[], Coroutine[Any, Any, Any]], Any]] = []
            for number, (kind, billing) in TARGETS.items():
                self.run(self.ledger.add_subscriber(number, kind, billing))

        def run(self, coro: Coroutine[Any, Any, T]) -> T:
            return self.loop.run_until_complete(coro)

        def teardown(self) -> None:
            self.run(self.engine.dispose())
            self.loop.close()

        def key(self) -> str:
            return uuid.uuid4().hex

        def expect_refusal(self, coro: Coroutine[Any, Any, Any], rule_: Rule) -> None:
            with pytest.raises(Refusal) as caught:
                self.run(coro)
            assert caught.value.rule is rule_, caught.value

        # ---- operations -----------------------------------------------------------------

        @rule(agent=st.integers(0, 1), yuan=st.sampled_from([0, 5, 10, 20, 500, 1000]))
        def deposit(self, agent: int, yuan: int) -> None:
            aid = self.agents[agent]
            call = self.ledger.deposit(aid, yuan * 100, self.key())
            if rules.deposit_rule(yuan * 100):
                self.expect_refusal(call, Rule.BAD_DEPOSIT)
            elif aid in self.closed:
                self.expect_refusal(call, Rule.AGENT_CLOSED)
            else:
                self.run(call)
                self.floats[aid] += yuan * 100

        def _recharge_outcome(self, aid: int, amount: int) -> Rule | None:
            if rules.recharge_amount_rule(amount):
                return Rule.BAD_AMOUNT
            if aid in self.closed:
                return Rule.AGENT_CLOSED
            if self.floats[aid] < rules.price(amount, self.rates[aid]).debit_fen:
                return Rule.INSUFFICIENT_FUNDS
            return None

        def _apply(self, view: Any, aid: int) -> None:
            rec = Rec(
                view.tx_id,
                aid,
                view.number,
                view.amount_fen,
                view.commission_fen,
                view.debit_fen,
                view.created_at,
                view.status,
            )
            self.recs[view.tx_id] = rec
            if view.status is RechargeStatus.SUCCEEDED:
                self.floats[aid] -= view.debit_fen
                self.subs[view.number] += view.amount_fen
            assert view.float_after_fen == self.floats[aid]

        @rule(
            agent=st.integers(0, 1),
            number=st.sampled_from(sorted(TARGETS)),
            amount=st.sampled_from(AMOUNTS),
            fail=st.booleans(),
        )
        def recharge(self, agent: int, number: str, amount: int, fail: bool) -> None:
            aid = self.agents[agent]
            fail = fail and self.billing is not None
            if self.billing is not None:
                self.billing.fail_numbers = {number} if fail else set()
            request = RechargeRequest(
                aid, TARGETS[number][0], number, amount, TRADE_PIN, self.key()
            )
            expected = self._recharge_outcome(aid, amount)
            if expected:
                self.expect_refusal(self.ledger.recharge(request), expected)
                return
            view = self.run(self.ledger.recharge(request))
            assert view.status is (RechargeStatus.FAILED if fail else RechargeStatus.SUCCEEDED)
            self._apply(view, aid)
            self.done.append((lambda r=request: self.ledger.recharge(r), view))

        def _retry_list(self, aid: int) -> list[int]:
            now = self.clock.now()
            listed, seen = [], set()
            for rec in sorted(self.recs.values(), key=lambda r: -r.tx):
                if rec.agent != aid or rec.status is not RechargeStatus.FAILED:
                    continue
                if now - rec.at > rules.RETRY_WINDOW:
                    continue
                later = any(
                    o.agent == aid
                    and o.number == rec.number
                    and o.amount == rec.amount
                    and o.tx > rec.tx
                    and o.status is not RechargeStatus.FAILED
                    for o in self.recs.values()
                )
                if not later and (rec.number, rec.amount) not in seen:
                    seen.add((rec.number, rec.amount))
                    listed.append(rec.tx)
            return listed

        @rule(agent=st.integers(0, 1), data=st.data())
        def retry(self, agent: int, data: st.DataObject) -> None:
            aid = self.agents[agent]
            listed = [v.tx_id for v in self.run(self.ledger.retry_list(aid))]
            assert listed == self._retry_list(aid)
            if not listed:
                return
            tx = data.draw(st.sampled_from(listed))
            if self.billing is not None:
                self.billing.fail_numbers = set()
            expected = self._recharge_outcome(aid, self.recs[tx].amount)
            call = self.ledger.retry(aid, tx, TRADE_PIN, self.key())
            if expected:
                self.expect_refusal(call, expected)
                return
            view = self.run(call)
            assert view.status is RechargeStatus.SUCCEEDED
            self._apply(view, aid)

        @rule(agent=st.integers(0, 1), yuan=st.sampled_from([10, 100, 1000]))
        def transfer(self, agent: int, yuan: int) -> None:
            aid = self.agents[agent]
            call = self.ledger.transfer_to_phone(aid, yuan * 100, TRADE_PIN, self.key())
            if aid in self.closed:
                self.expect_refusal(call, Rule.AGENT_CLOSED)
            elif self.floats[aid] < yuan * 100:
                self.expect_refusal(call, Rule.INSUFFICIENT_FUNDS)
            else:
                view = self.run(call)
                self.floats[aid] -= yuan * 100
                assert view.float_after_fen == self.floats[aid]

        @rule(data=st.data())
        def reverse(self, data: st.DataObject) -> None:
            if self.recs:
                self._reverse(self.recs[data.draw(st.sampled_from(sorted(self.recs)))])

        @rule(agent=st.integers(0, 1))
        def recharge_then_reverse(self, agent: int) -> None:
            """A postpaid recharge reversed at once: drives the monthly limit."""
            before = max(self.recs, default=0)
            self.recharge(agent, "02787654321", 1000, fail=False)
            if max(self.recs, default=0) != before:
                self._reverse(self.recs[max(self.recs)])

        def _reverse(self, rec: Rec) -> None:
            now = self.clock.now()
            call = self.ledger.reverse(rec.tx, self.key())
            if rec.agent in self.closed:
                self.expect_refusal(call, Rule.AGENT_CLOSED)
                return
            month = rules.month_of(now, ZONE)
            facts = rules.ReversalFacts(
                recharge_at=rec.at,
                now=now,
                succeeded=rec.status is RechargeStatus.SUCCEEDED,
                reversals_this_month=sum(
                    rules.month_of(t, ZONE) == month for t in self.reversals[rec.agent]
                ),
                invoice_printed=False,
                target_billing=TARGETS[rec.number][1],
                target_balance_fen=self.subs[rec.number],
                amount_fen=rec.amount,
            )
            expected = rules.reversal_rule(facts, ZONE)
            event(f"reversal: {expected or 'done'}")
            if expected:
                self.expect_refusal(call, expected)
                return
            view = self.run(call)
            assert (view.amount_fen, view.debit_fen) == (rec.amount, rec.debit)
            rec.status = RechargeStatus.REVERSED
            self.floats[rec.agent] += rec.debit
            self.subs[rec.number] -= rec.amount
            self.reversals[rec.agent].append(now)

        @rule(agent=st.integers(0, 1))
        def close(self, agent: int) -> None:
            aid = self.agents[agent]
            call = self.ledger.close_agent(aid, self.key())
            if aid in self.closed:
                self.expect_refusal(call, Rule.AGENT_CLOSED)
            elif self.floats[aid] >= 1000:
                self.expect_refusal(call, Rule.CLOSE_FLOAT_TOO_HIGH)
            else:
                assert self.run(call).paid_out_fen == self.floats[aid]
                self.floats[aid] = 0
                self.closed.add(aid)

        @rule(seconds=st.sampled_from([1, 600, 1799, 1801, 6 * 3600, 86400, 20 * 86400]))
        def time_passes(self, seconds: int) -> None:
            self.clock.advance(seconds)

        @rule(data=st.data())
        def repeat_a_key(self, data: st.DataObject) -> None:
            if not self.done:
                return
            again, first = data.draw(st.sampled_from(self.done))
            view = self.run(again())
            assert (view.tx_id, view.status in (first.status, RechargeStatus.REVERSED)) == (
                first.tx_id,
                True,
            )

        # ---- invariants ----------------------------------------------------------------

        @invariant()
        def books_balance(self) -> None:
            balance = self.run(self.ledger.trial_balance())
            assert balance.ok, balance

        @invariant()
        def balances_match_the_model(self) -> None:
            for aid in self.agents:
                view = self.run(self.ledger.agent(aid))
                assert view.balance_fen == self.floats[aid] >= 0
            for number, expected in self.subs.items():
                sub = self.run(self.ledger.subscriber(number))
                assert sub is not None and sub.balance_fen == expected
            for times in self.reversals.values():
                months = [rules.month_of(t, ZONE) for t in times]
                assert len(months) == len(set(months))

    return LedgerMachine


@pytest.mark.slow
@pytest.mark.parametrize("external", [False, True], ids=["internal", "external"])
def test_ledger_state_machine(
    database_url: str, sqlite_template: Path, tmp_path: Path, catalogue: Catalogue, external: bool
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
        machine(make_url, catalogue, external),
        settings=settings(
            max_examples=8,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
