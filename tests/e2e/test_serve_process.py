"""``smsmenu serve`` as real processes bound to a simulator the test runs: kill -9 right after
a PIN message was acknowledged and a restart; two workers on one PostgreSQL and Redis with
one agent's messages spread over both binds."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from smsmenu.app import close_ledger, open_ledger
from smsmenu.ledger.api import RechargeStatus
from smsmenu.ledger.outbox import DELIVERED, SENT, Outbox
from smsmenu.money import format_yuan
from smsmenu.settings import Settings
from smsmenu.smpp import pdu
from smsmenu.smpp.simulator import Simulator
from tests.e2e.stack import AGENT, MOBILE, seed
from tests.ledger_fixtures import TRADE_PIN, truncate
from tests.servers import TEST_SECRET_KEY

SMSMENU = [sys.executable, "-m", "smsmenu.cli.main"]


def serve_env(database_url: str, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSMENU_")}
    env.update(
        SMSMENU_DATABASE_URL=database_url,
        SMSMENU_SECRET_KEY=TEST_SECRET_KEY,
        SMSMENU_SMSC_PORT=str(port),
        SMSMENU_OUTBOX_LEASE_S="1.5",
        SMSMENU_OUTBOX_POLL_S="0.05",
        SMSMENU_OUTBOX_RETRY_MIN_S="0.05",
        SMSMENU_OUTBOX_RETRY_MAX_S="0.5",
        SMSMENU_SMPP_RESPONSE_TIMEOUT_S="2",
        SMSMENU_SMPP_RECONNECT_MAX_S="0.5",
        SMSMENU_SMPP_THROTTLE_MAX_S="0.3",
        SMSMENU_STATUS_INTERVAL_S="0.2",
        **extra,
    )
    return env


class Workers:
    """``smsmenu serve`` processes; each logs to its own file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.folder / f"serve-{len(self.procs)}.log").open("wb") as log:
            proc = subprocess.Popen(
                [*SMSMENU, "serve"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.procs.append(proc)
        return proc

    def log(self, index: int) -> str:
        return (self.folder / f"serve-{index}.log").read_text(encoding="utf-8")

    async def terminate(self, proc: subprocess.Popen[bytes]) -> int:
        proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(proc.wait, 20)

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    running = Workers(tmp_path)
    try:
        yield running
    finally:
        running.kill_all()


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(redeliver_after_s=1.0, spread=True)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def seeded(database_url: str) -> None:
    """The agent and subscribers of tests/e2e/stack.py, written by the test itself."""
    ledger = await open_ledger(Settings(database_url=database_url))  # type: ignore[call-arg]
    try:

        class _Server:  # what ``seed`` needs of a Server
            pass

        holder = _Server()
        holder.ledger = ledger  # type: ignore[attr-defined]
        await seed(holder)  # type: ignore[arg-type]
    finally:
        await close_ledger(ledger)


async def bound(sim: Simulator, count: int, within_s: float = 20.0) -> None:
    """Until ``count`` ESMEs are bound (a process takes a moment to start)."""
    async with asyncio.timeout(within_s):
        while sim.bound_sessions < count:  # noqa: ASYNC110 - the simulator has no bind event
            await asyncio.sleep(0.02)


async def recorded(database_url: str, count: int, within_s: float = 10.0) -> None:
    """Until ``count`` outbox rows are recorded as accepted by the SMSC (their ids stored)."""
    ledger = await open_ledger(Settings(database_url=database_url))  # type: ignore[call-arg]
    try:
        outbox = Outbox(ledger.engine, ledger.clock)
        async with asyncio.timeout(within_s):
            while sum(1 for r in await outbox.rows() if r.smsc_message_id) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        await close_ledger(ledger)


async def say(sim: Simulator, text: str, index: int, phone: str = AGENT) -> str:
    sim.send(phone, text)
    return (await sim.next_message(phone, index, 10)).text


async def test_kill_9_after_the_pin_was_acked_then_restart(
    sqlite_url: str, simulator: Simulator, workers: Workers
) -> None:
    sim = simulator
    await seeded(sqlite_url)
    env = serve_env(sqlite_url, sim.port)
    first = workers.start(env)
    await bound(sim, 1)
    opened = await sim.next_message(AGENT, 0, 10)
    assert "代办户号1" in opened.text
    for n, text in enumerate(["x", "1", "1", "1", "2", MOBILE], start=1):
        await say(sim, text, n)
    assert MOBILE in await say(sim, "50", 7)
    await recorded(sqlite_url, 1)  # the opening notice's acceptance is on record
    # The SMSC refuses every submit_sm for now: the result and the receipt stay in the
    # outbox (claimed by the worker, in flight) when the worker dies.
    sim.throttle(pdu.ESME_RTHROTTLED, seconds=60)
    (pin,) = sim.send(AGENT, TRADE_PIN)
    await asyncio.wait_for(pin.acked, 10)  # the SMSC got its deliver_sm_resp
    first.kill()  # SIGKILL, right after the ack
    assert await asyncio.to_thread(first.wait, 10) == -signal.SIGKILL
    sim.clear_faults()
    second = workers.start(env)
    result = await sim.next_message(AGENT, 8, 15)
    receipt = await sim.next_message(MOBILE, 0, 15)
    assert result.text.startswith("充值成功：号码13900000002，金额50.00元，佣金1.00元，扣款49.00元")
    assert receipt.text.startswith("您的号码13900000002已充值50.00元，当前余额55.00元")
    ledger = await open_ledger(Settings(database_url=sqlite_url))  # type: ignore[call-arg]
    try:
        outbox = Outbox(ledger.engine, ledger.clock)

        async def all_done() -> bool:
            rows = await outbox.rows()
            return all(r.status == DELIVERED for r in rows)

        async with asyncio.timeout(10):
            while not await all_done():  # noqa: ASYNC110 - a database state
                await asyncio.sleep(0.05)
        views = await ledger.recharges(1)
        assert [(v.number, v.amount_fen, v.status) for v in views] == [
            (MOBILE, 5000, RechargeStatus.SUCCEEDED)
        ]
        assert (await ledger.agent(1)).balance_fen == 1000_00 - 49_00
    finally:
        await close_ledger(ledger)
    assert await workers.terminate(second) == 0  # SIGTERM: a clean stop
    got = [m.text for m in sim.received[AGENT]]
    assert len(got) == 9 and len(sim.received[MOBILE]) == 1, got  # none twice
    check = await asyncio.to_thread(
        subprocess.run, [*SMSMENU, "ledger", "check"], env=env, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    assert "trial balance zero" in check.stdout
    assert TRADE_PIN not in workers.log(0) + workers.log(1)
    assert (
        "money op=recharge agent=1 kind=mobile number=13900000002 amount_fen=5000" in workers.log(0)
    )
    assert "stopped: status bound=False" in workers.log(1)


async def test_two_workers_on_postgres_and_redis_share_one_agent(
    ledger_pg_url: str,
    redis_url: str,
    redis_prefix: str,
    simulator: Simulator,
    workers: Workers,
) -> None:
    sim = simulator
    await truncate(ledger_pg_url)
    await seeded(ledger_pg_url)
    env = serve_env(
        ledger_pg_url, sim.port, SMSMENU_REDIS_URL=redis_url, SMSMENU_REDIS_PREFIX=redis_prefix
    )
    a, b = workers.start(env), workers.start(env)
    await bound(sim, 2)
    assert (await sim.next_message(AGENT, 0, 10)).text.startswith("您已开通")
    index = 1
    expected_float = 1000_00
    for text, reply in [
        ("x", "空中充值业务"),
        ("1", "天翼"),
        ("1", "空中充值"),
        ("1", "充值类型"),
        ("2", "请输入C网手机号码"),
        (MOBILE, "请输入充值金额"),
        ("50", "C网手机13900000002"),
    ]:
        assert (await say(sim, text, index)).startswith(reply), text
        index += 1
    sim.send(AGENT, TRADE_PIN)
    expected_float -= 49_00
    result = await sim.next_message(AGENT, index, 10)
    assert f"余额{format_yuan(expected_float)}" in result.text
    index += 1
    for yuan in (10, 20, 30, 40):
        sim.send(AGENT, f"CZ 2 {MOBILE} {yuan} {TRADE_PIN}")
        expected_float -= yuan * 100 - yuan * 2
        got = await sim.next_message(AGENT, index, 10)
        assert got.text.startswith(f"充值成功：号码{MOBILE}，金额{yuan}.00元")
        assert f"余额{format_yuan(expected_float)}" in got.text
        index += 1
    receipts = await sim.wait_for(MOBILE, 5, 10)
    # both workers took the agent's messages, and each sent some of the outbox
    assert await workers.terminate(a) == 0 and await workers.terminate(b) == 0
    logs = [workers.log(0), workers.log(1)]
    assert all(re.search(r" mo id=[0-9a-f]{16} source=13800000001", log) for log in logs)
    assert any("status bound=True" in log for log in logs)
    texts = Counter(m.text for m in sim.received[AGENT] + sim.received[MOBILE])
    assert set(texts.values()) == {1}, texts.most_common(2)
    assert len(sim.received[AGENT]) == index and len(receipts) == 5
    ledger = await open_ledger(Settings(database_url=ledger_pg_url))  # type: ignore[call-arg]
    try:
        rows = await Outbox(ledger.engine, ledger.clock).rows()
        assert all(r.status in (SENT, DELIVERED) and r.attempts == 1 for r in rows)
        assert len({r.claimed_by for r in rows}) <= 1  # leases released (None)
        assert (await ledger.agent(1)).balance_fen == expected_float
        assert (await ledger.trial_balance()).ok
    finally:
        await close_ledger(ledger)
