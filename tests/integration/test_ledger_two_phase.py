"""Two-phase recharges with an external billing backend: failures, time-outs, the retry list,
crashes at every step (fault injection and a real SIGKILL) and the recovery pass."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from smsmenu.clock import FakeClock
from smsmenu.ledger import two_phase
from smsmenu.ledger.api import (
    AgentView,
    Billing,
    Kind,
    RechargeRequest,
    RechargeStatus,
    Refusal,
    Rule,
)
from smsmenu.ledger.billing import Credit, FileBilling, ScriptedBilling
from smsmenu.ledger.db import create_engine
from smsmenu.ledger.outbox import Outbox
from smsmenu.ledger.service import LedgerService
from smsmenu.settings import Settings
from smsmenu.texts import Catalogue
from tests.ledger_fixtures import TRADE_PIN, new_agent

MOBILE = "13900000002"
FIXED = "02787654321"


class Crash(Exception):
    """A simulated process death at a named step."""


@dataclass
class Faults:
    at: set[str] = field(default_factory=set)
    seen: list[str] = field(default_factory=list)

    def __call__(self, step: str) -> None:
        self.seen.append(step)
        if step in self.at:
            raise Crash(step)


@dataclass
class External:
    ledger: LedgerService
    billing: ScriptedBilling
    faults: Faults
    agent: AgentView


@pytest.fixture
async def ext(
    ledger_settings: Settings, clock: FakeClock, catalogue: Catalogue
) -> AsyncIterator[External]:
    settings = ledger_settings
    engine = create_engine(settings.database_url)
    billing = ScriptedBilling()
    faults = Faults()
    ledger = LedgerService(
        engine, clock, catalogue, settings, billing, faults=faults, billing_timeout_s=0.2
    )
    try:
        agent = await new_agent(ledger)
        await ledger.add_subscriber(MOBILE, Kind.MOBILE, Billing.PREPAID, 500)
        await ledger.add_subscriber(FIXED, Kind.FIXED, Billing.POSTPAID)
        yield External(ledger, billing, faults, agent)
        balance = await ledger.trial_balance()
        assert balance.ok, balance
    finally:
        await engine.dispose()


def req(ext: External, key: str, yuan: int = 100, number: str = MOBILE) -> RechargeRequest:
    kind = Kind.MOBILE if number.startswith("1") else Kind.FIXED
    return RechargeRequest(ext.agent.agent_id, kind, number, yuan * 100, TRADE_PIN, key)


async def float_of(ext: External) -> int:
    return (await ext.ledger.agent(ext.agent.agent_id)).balance_fen


async def balance_of(ext: External, number: str = MOBILE) -> int:
    view = await ext.ledger.subscriber(number)
    assert view is not None
    return view.balance_fen


async def test_credit_then_post(ext: External) -> None:
    view = await ext.ledger.recharge(req(ext, "k"))
    assert view.status is RechargeStatus.SUCCEEDED and view.float_after_fen == 100000 - 9800
    assert ext.billing.credits == {"k": (MOBILE, 10000)}
    assert await balance_of(ext) == 10500
    assert ext.faults.seen == ["reserved", "committed", "credited", "resolving"]
    assert await ext.ledger.recharge(req(ext, "k")) == view
    assert ext.billing.calls == 1


async def test_billing_failure_voids_and_joins_the_retry_list(ext: External) -> None:
    ext.billing.fail_numbers.add(MOBILE)
    failed = await ext.ledger.recharge(req(ext, "k1"))
    assert failed.status is RechargeStatus.FAILED
    assert failed.float_after_fen == 100000 == await float_of(ext)
    assert await balance_of(ext) == 500
    rows = [
        m for m in await Outbox(ext.ledger.engine, ext.ledger.clock).rows() if m.ref == failed.tx_id
    ]
    assert [m.kind for m in rows] == ["agent_result"]  # no receipt for the target
    assert "失败" in rows[0].text and "1000.00元" in rows[0].text
    assert [v.tx_id for v in await ext.ledger.retry_list(ext.agent.agent_id)] == [failed.tx_id]

    ext.billing.fail_numbers.clear()
    retried = await ext.ledger.retry(ext.agent.agent_id, failed.tx_id, TRADE_PIN, "retry-1")
    assert retried.status is RechargeStatus.SUCCEEDED and retried.tx_id != failed.tx_id
    assert (retried.number, retried.amount_fen) == (failed.number, failed.amount_fen)
    assert await ext.ledger.retry(ext.agent.agent_id, failed.tx_id, TRADE_PIN, "retry-1") == retried
    assert await ext.ledger.retry_list(ext.agent.agent_id) == []
    with pytest.raises(Refusal) as caught:
        await ext.ledger.retry(ext.agent.agent_id, failed.tx_id, TRADE_PIN, "retry-2")
    assert caught.value.rule is Rule.NOT_RETRYABLE
    with pytest.raises(Refusal) as caught:
        await ext.ledger.retry(ext.agent.agent_id, 9999, TRADE_PIN, "retry-3")
    assert caught.value.rule is Rule.RECHARGE_UNKNOWN
    assert await balance_of(ext) == 10500


async def test_retry_list_window_and_dedup(ext: External, clock: FakeClock) -> None:
    ext.billing.fail_numbers.update({MOBILE, FIXED})
    old = await ext.ledger.recharge(req(ext, "old", 50))
    clock.advance(3600)
    first = await ext.ledger.recharge(req(ext, "a", 100))
    second = await ext.ledger.recharge(req(ext, "b", 100))  # same target and amount: one entry
    fixed = await ext.ledger.recharge(req(ext, "c", 20, FIXED))
    assert {first.status, second.status, fixed.status} == {RechargeStatus.FAILED}
    listed = await ext.ledger.retry_list(ext.agent.agent_id)
    assert [v.tx_id for v in listed] == [fixed.tx_id, second.tx_id, old.tx_id]
    clock.advance(23 * 3600 - 1)  # old is now 24 h - 1 s... plus the hour: 24 h exactly -1 s
    assert old.tx_id in {v.tx_id for v in await ext.ledger.retry_list(ext.agent.agent_id)}
    clock.advance(2)
    assert old.tx_id not in {v.tx_id for v in await ext.ledger.retry_list(ext.agent.agent_id)}
    with pytest.raises(Refusal) as caught:
        await ext.ledger.retry(ext.agent.agent_id, old.tx_id, TRADE_PIN, "late")
    assert caught.value.rule is Rule.NOT_RETRYABLE
    # a later success for the same target and amount (not via retry) takes it off the list
    ext.billing.fail_numbers.discard(FIXED)
    await ext.ledger.recharge(req(ext, "d", 20, FIXED))
    assert fixed.tx_id not in {v.tx_id for v in await ext.ledger.retry_list(ext.agent.agent_id)}


async def test_retry_wrong_pin_is_counted(ext: External) -> None:
    ext.billing.fail_numbers.add(MOBILE)
    failed = await ext.ledger.recharge(req(ext, "k1"))
    with pytest.raises(Refusal) as caught:
        await ext.ledger.retry(ext.agent.agent_id, failed.tx_id, "000001", "r")
    assert caught.value.rule is Rule.WRONG_PIN and caught.value.params["remaining"] == 2


@pytest.mark.parametrize("credit_anyway", [False, True])
async def test_time_out(ext: External, credit_anyway: bool) -> None:
    ext.billing.timeout_numbers.add(MOBILE)
    ext.billing.credit_on_timeout = credit_anyway
    view = await ext.ledger.recharge(req(ext, "slow"))
    if credit_anyway:  # the backend did credit before timing out: posted, never voided
        assert view.status is RechargeStatus.SUCCEEDED
        assert await balance_of(ext) == 10500
    else:
        assert view.status is RechargeStatus.FAILED
        assert await float_of(ext) == 100000 and await balance_of(ext) == 500


@pytest.mark.parametrize(
    ("step", "credited", "status"),
    [
        ("reserved", False, None),  # the reservation never committed: nothing at all
        ("committed", False, RechargeStatus.FAILED),  # reserved, billing never asked: void
        ("credited", True, RechargeStatus.SUCCEEDED),  # billing credited, not posted: post
        ("resolving", True, RechargeStatus.SUCCEEDED),  # the post rolled back: post again
    ],
)
async def test_crash_at_each_step_then_recovery(
    ext: External, step: str, credited: bool, status: RechargeStatus | None
) -> None:
    ext.faults.at.add(step)
    with pytest.raises(Crash):
        await ext.ledger.recharge(req(ext, "k"))
    ext.faults.at.clear()
    assert ("k" in ext.billing.credits) is credited
    views = await ext.ledger.recharges()
    if status is None:
        assert views == [] and await float_of(ext) == 100000
        assert await ext.ledger.recover_pending(0) == []
        return
    assert [v.status for v in views] == [RechargeStatus.PENDING]
    assert await float_of(ext) == 100000 - 9800  # reserved, not available
    assert (await ext.ledger.trial_balance()).ok
    assert await ext.ledger.recover_pending(older_than_s=60) == []  # too recent to touch
    resolved = await ext.ledger.recover_pending(0)
    assert [v.status for v in resolved] == [status]
    expected_float = 100000 - 9800 if credited else 100000
    assert await float_of(ext) == expected_float
    assert await balance_of(ext) == (10500 if credited else 500)
    assert await ext.ledger.recover_pending(0) == []  # resolved once
    # the caller's retry of the same key gets the resolved result and moves nothing
    assert (await ext.ledger.recharge(req(ext, "k"))).status is status
    assert await float_of(ext) == expected_float
    results = [
        m
        for m in await Outbox(ext.ledger.engine, ext.ledger.clock).rows()
        if m.kind == "agent_result"
    ]
    assert len(results) == 1


async def test_a_reservation_resolves_at_most_once(ext: External) -> None:
    ext.faults.at.add("credited")
    with pytest.raises(Crash):
        await ext.ledger.recharge(req(ext, "k"))
    ext.faults.at.clear()
    tx = (await ext.ledger.recharges())[0].tx_id
    # two recovery passes race (two workers starting at once)
    first, second = await asyncio.gather(
        ext.ledger.recover_pending(0), ext.ledger.recover_pending(0)
    )
    assert [v.status for v in first + second] in (
        [RechargeStatus.SUCCEEDED],
        [RechargeStatus.SUCCEEDED, RechargeStatus.SUCCEEDED],
    )
    # a late void of a posted reservation changes nothing
    assert (
        await two_phase.resolve(ext.ledger.ctx, tx, Credit.FAILED, "late", None)
    ).status is RechargeStatus.SUCCEEDED
    assert await float_of(ext) == 100000 - 9800 and await balance_of(ext) == 10500


async def test_pending_reservation_blocks_close(ext: External) -> None:
    ext.faults.at.add("committed")
    with pytest.raises(Crash):
        await ext.ledger.recharge(req(ext, "k", 1000))
    ext.faults.at.clear()
    await ext.ledger.transfer_to_phone(ext.agent.agent_id, 2000, TRADE_PIN, "t")  # 0 available
    with pytest.raises(Refusal) as caught:
        await ext.ledger.close_agent(ext.agent.agent_id, "c")
    assert caught.value.rule is Rule.RESERVATION_PENDING
    await ext.ledger.recover_pending(0)
    assert await float_of(ext) == 98000  # the void gave the reservation back


async def test_internal_billing_crash_leaves_nothing(
    ledger: LedgerService,
) -> None:
    agent = await new_agent(ledger)
    await ledger.add_subscriber(MOBILE, Kind.MOBILE, Billing.PREPAID)
    for step in ("credited", "posting"):
        ledger.faults = Faults({step})
        with pytest.raises(Crash):
            await ledger.recharge(
                RechargeRequest(agent.agent_id, Kind.MOBILE, MOBILE, 10000, TRADE_PIN, "k")
            )
        assert await ledger.recharges() == []
        assert (await ledger.agent(agent.agent_id)).balance_fen == 100000
    ledger.faults = None
    view = await ledger.recharge(
        RechargeRequest(agent.agent_id, Kind.MOBILE, MOBILE, 10000, TRADE_PIN, "k")
    )
    assert view.status is RechargeStatus.SUCCEEDED


# ---- a real process killed with SIGKILL -------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from smsmenu.app import load_catalogue
    from smsmenu.clock import SystemClock
    from smsmenu.ledger.api import Kind, RechargeRequest
    from smsmenu.ledger.billing import FileBilling
    from smsmenu.ledger.db import create_engine
    from smsmenu.ledger.service import LedgerService
    from smsmenu.settings import Settings

    url, billing_path, agent, mode = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

    def faults(step):
        if mode == "self" and step == "credited":
            os.kill(os.getpid(), signal.SIGKILL)

    async def main():
        settings = Settings(database_url=url)
        engine = create_engine(url)
        ledger = LedgerService(engine, SystemClock(), load_catalogue(settings), settings,
                               FileBilling(billing_path), faults=faults)
        n = 0
        while True:
            await ledger.recharge(RechargeRequest(agent, Kind.MOBILE, "13900000002", 1000,
                                                  "135790", f"child-{n}"))
            print(n, flush=True)
            n += 1

    asyncio.run(main())
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["self", "random"])
async def test_sigkill_mid_recharge_loses_nothing(
    database_url: str, catalogue: Catalogue, tmp_path: Path, mode: str
) -> None:
    settings = Settings(database_url=database_url)
    billing = FileBilling(tmp_path / "billing.db")
    engine = create_engine(database_url)
    from smsmenu.clock import SystemClock

    ledger = LedgerService(engine, SystemClock(), catalogue, settings, billing)
    try:
        agent = await new_agent(ledger, deposit_yuan=100000)
        await ledger.add_subscriber(MOBILE, Kind.MOBILE, Billing.PREPAID)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            database_url,
            str(tmp_path / "billing.db"),
            str(agent.agent_id),
            mode,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None and child.stderr is not None
        if mode == "random":  # let it run a few recharges, then kill it wherever it is
            for _ in range(20):
                line = await asyncio.wait_for(child.stdout.readline(), 60)
                assert line, (await child.stderr.read()).decode()
            os.kill(child.pid, signal.SIGKILL)
        await asyncio.wait_for(child.wait(), 60)
        stderr = (await child.stderr.read()).decode()
        assert child.returncode == -signal.SIGKILL, stderr

        if mode == "self":  # killed after billing credited and before the post
            assert [v.status for v in await ledger.recharges()] == [RechargeStatus.PENDING]
        await ledger.recover_pending(0)
        views = await ledger.recharges()
        # a kill before billing credited is voided (failed), after it posted: none stays pending
        statuses = {v.status for v in views}
        assert views and statuses <= {RechargeStatus.SUCCEEDED, RechargeStatus.FAILED}
        if mode == "self":
            assert statuses == {RechargeStatus.SUCCEEDED}
        done = [v for v in views if v.status is RechargeStatus.SUCCEEDED]
        debits = sum(v.debit_fen for v in done)
        assert (await ledger.agent(agent.agent_id)).balance_fen == 10_000_000 - debits
        target = await ledger.subscriber(MOBILE)
        assert target is not None
        # the ledger's view of the target equals what billing really credited
        assert target.balance_fen == billing.total(MOBILE) == sum(v.amount_fen for v in done)
        balance = await ledger.trial_balance()
        assert balance.ok, balance
    finally:
        await engine.dispose()


async def test_recovery_loop_resolves_in_the_background(ext: External) -> None:
    from smsmenu.app import recovery_loop

    ext.faults.at.add("credited")
    with pytest.raises(Crash):
        await ext.ledger.recharge(req(ext, "k"))
    ext.faults.at.clear()
    task = asyncio.create_task(recovery_loop(ext.ledger, interval_s=0.01, older_than_s=0))
    try:
        for _ in range(500):
            if (await ext.ledger.recharges())[0].status is not RechargeStatus.PENDING:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert (await ext.ledger.recharges())[0].status is RechargeStatus.SUCCEEDED


@pytest.mark.parametrize("credited", [False, True])
async def test_no_answer_from_billing_leaves_the_recharge_pending(
    ext: External, credited: bool
) -> None:
    """Billing's credit and its status both time out: nobody knows whether the target has the
    money, so nothing is guessed. The reservation stays for the recovery pass, which resolves
    it once billing answers again."""
    ext.billing.timeout_numbers.add(MOBILE)
    ext.billing.credit_on_timeout = credited
    ext.billing.status_hangs = True
    view = await ext.ledger.recharge(req(ext, "lost"))
    assert view.status is RechargeStatus.PENDING and view.float_after_fen is None
    assert await float_of(ext) == 100000 - 9800  # still reserved
    assert await balance_of(ext) == 500
    assert (await ext.ledger.trial_balance()).ok
    outbox = Outbox(ext.ledger.engine, ext.ledger.clock)
    assert [m for m in await outbox.rows() if m.ref == view.tx_id] == []  # no result yet
    assert await ext.ledger.recharge(req(ext, "lost")) == view  # a repeat: the same answer
    assert await ext.ledger.recover_pending(0) == []  # billing still silent: left pending

    ext.billing.status_hangs = False
    resolved = await ext.ledger.recover_pending(0)
    status = RechargeStatus.SUCCEEDED if credited else RechargeStatus.FAILED
    assert [(v.tx_id, v.status) for v in resolved] == [(view.tx_id, status)]
    assert await ext.ledger.recover_pending(0) == []  # once
    assert await float_of(ext) == (100000 - 9800 if credited else 100000)
    assert await balance_of(ext) == (10500 if credited else 500)
    results = [m for m in await outbox.rows() if m.ref == view.tx_id]
    assert [m.kind for m in results] == (
        ["agent_result", "target_receipt"] if credited else ["agent_result"]
    )
