"""Menu steps per second through ``MenuEngine.handle`` (not a test: prints figures).

Many phones in parallel walk the agent menu (navigation steps, a quote from the ledger on each
recharge dialogue, and every ``--recharge-every``-th dialogue a full recharge with the trade
password), with the ledger on PostgreSQL, once with the Redis session store and once with the
in-process store (one worker process each), then with ``--workers`` worker processes sharing
Redis and PostgreSQL as ``smsmenu serve`` workers do. Prints steps/s and p50/p99 latency of
each, their ratios, and the cost of one machine step when machines are pooled and restored
(the engine's design) against building a python-statemachine per message (the naive design).

    .venv/bin/python benchmarks/menu_steps.py [--phones 200] [--seconds 10] [--recharge-every 4]
        [--workers 2]

PostgreSQL and Redis: the machine's own on 127.0.0.1 if they answer, else throwaway servers
(as the test suite does).

Recorded on the 2-core reference machine, shared with other jobs (load average ~3), defaults:
in-process store 2,778 steps/s; Redis store 2,042 steps/s with one worker (p50 93 ms, p99
158 ms with 200 phones queued on one process) and 2,580 with two (p50 52 ms, p99 197 ms);
a machine step costs 246 µs pooled and restored against 2,451 µs built per message. What
limits it: CPU. python-statemachine's own step (~250 µs; its async engine was ~35% more,
hence synchronous, sans-I/O machines), the ledger's SQL for the dialogue opening and the quote,
and the redis-py client (auto-pipelined: ~25 commands per round trip).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smsmenu.app import build_menu_engine, load_catalogue
from smsmenu.clock import SystemClock
from smsmenu.ledger.api import Billing, Kind
from smsmenu.ledger.db import create_engine, upgrade
from smsmenu.ledger.service import LedgerService
from smsmenu.menus.agent import AgentMenu
from smsmenu.menus.base import MachinePool, MenuModel, Turn
from smsmenu.menus.engine import MenuEngine
from smsmenu.menus.sealing import Sealer
from smsmenu.menus.store import InProcessStore, RedisStore, SessionStore
from smsmenu.messages import SMS, Inbound
from smsmenu.settings import Settings
from tests import servers

os.environ.setdefault("SMSMENU_SECRET_KEY", servers.TEST_SECRET_KEY)

PIN = "135790"
# one dialogue: into the recharge flow, a quote, back out, around the account menu, and out
NAVIGATION = ["hi", "1", "1", "1", "2", "TARGET", "50", "0", "0", "0", "00", "1", "1", "3", "0"]
WITH_RECHARGE = ["hi", "1", "1", "1", "2", "TARGET", "50", PIN]


async def seed(ledger: LedgerService, phones: int) -> list[str]:
    """``phones`` agents, each with a customer of its own to recharge."""
    numbers = []
    for i in range(phones):
        phone = f"1380{i:07d}"
        await ledger.add_subscriber(phone, Kind.MOBILE, Billing.PREPAID)
        await ledger.add_subscriber(target(phone), Kind.MOBILE, Billing.PREPAID)
        await ledger.open_agent(phone, PIN, "246801", 1_000_000 * 100, 200)
        numbers.append(phone)
    return numbers


def target(phone: str) -> str:
    return "1390" + phone[4:]


async def drive(
    engine: MenuEngine, phones: list[str], seconds: float, recharge_every: int
) -> tuple[int, int, list[float], float]:
    latencies: list[float] = []
    recharges = 0
    stop = time.monotonic() + seconds
    counter = 0

    async def phone_loop(phone: str) -> None:
        nonlocal recharges, counter
        dialogue = 0
        while time.monotonic() < stop:
            dialogue += 1
            script = WITH_RECHARGE if dialogue % recharge_every == 0 else NAVIGATION
            for step in script:
                text = target(phone) if step == "TARGET" else step
                counter += 1
                inbound = Inbound(phone, "10001", text, received_at=engine.clock.now())
                started = time.perf_counter()
                await engine.answer(inbound)
                latencies.append(time.perf_counter() - started)
            if script is WITH_RECHARGE:
                recharges += 1

    began = time.perf_counter()
    await asyncio.gather(*(phone_loop(phone) for phone in phones))
    elapsed = time.perf_counter() - began
    return len(latencies), recharges, latencies, elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def machine_step_cost(rounds: int = 3000) -> tuple[float, float]:
    """Microseconds per navigation step: pooled + restored, and built per message."""
    settings = Settings()  # type: ignore[call-arg]
    turn = Turn(
        ledger=None,  # type: ignore[arg-type]  (navigation never asks the ledger)
        texts=load_catalogue(settings),
        sealer=Sealer(b"k" * 32),
        zone=settings.zone,
        phone="13800000000",
        message_id="k",
        fingerprint="f",
        route=SMS,
        now=SystemClock().now(),
        agent_id=1,
    )
    pool = MachinePool(AgentMenu)
    began = time.perf_counter()
    for _ in range(rounds):
        turn.parts.clear()
        await pool.step(("session", "account"), "back", turn)
    pooled = (time.perf_counter() - began) / rounds * 1e6
    from statemachine.orderedset import OrderedSet

    began = time.perf_counter()
    for _ in range(rounds):
        turn.parts.clear()
        model = MenuModel(OrderedSet(["session", "account"]))
        model.turn = turn
        AgentMenu(model).send("back", text="")
    naive = (time.perf_counter() - began) / rounds * 1e6
    return pooled, naive


def worker_main(job: dict[str, Any]) -> dict[str, Any]:
    """One worker process: its own ledger connection pool, store and engine, like one
    ``smsmenu serve``; starts at ``job["start_at"]`` so that the workers run together."""
    return asyncio.run(_worker(job))


async def _worker(job: dict[str, Any]) -> dict[str, Any]:
    settings = Settings(database_url=job["url"], rate_limit_per_min=1_000_000)
    db = create_engine(job["url"], pool_size=10, max_overflow=10)
    store: SessionStore = (
        RedisStore.from_url(job["redis_url"], prefix=job["prefix"])
        if job["redis_url"]
        else InProcessStore()
    )
    try:
        catalogue = load_catalogue(settings)
        ledger = LedgerService(db, SystemClock(), catalogue, settings)
        engine = build_menu_engine(settings, ledger, store, catalogue=catalogue)
        await drive(engine, job["phones"], 1.0, job["recharge_every"])
        await asyncio.sleep(max(0.0, job["start_at"] - time.time()))
        steps, recharges, latencies, elapsed = await drive(
            engine, job["phones"], job["seconds"], job["recharge_every"]
        )
        batching = ""
        if isinstance(store, RedisStore) and store.pipeline.batches:
            batching = f"{store.pipeline.commands / store.pipeline.batches:.1f}"
        return {
            "steps": steps,
            "recharges": recharges,
            "latencies": latencies,
            "elapsed": elapsed,
            "batch": batching,
        }
    finally:
        await store.aclose()
        await db.dispose()


def run_workers(
    args: argparse.Namespace, url: str, redis_url: str, phones: list[str], workers: int
) -> dict[str, Any]:
    start_at = time.time() + 3.0 + workers
    prefix = f"bench:{time.time_ns()}:"
    jobs = [
        {
            "url": url,
            "redis_url": redis_url,
            "prefix": prefix,
            "phones": phones[i::workers],
            "seconds": args.seconds,
            "recharge_every": args.recharge_every,
            "start_at": start_at,
            "tag": f"w{i}",
        }
        for i in range(workers)
    ]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        results = list(pool.map(worker_main, jobs))
    latencies = [value for result in results for value in result["latencies"]]
    elapsed = max(result["elapsed"] for result in results)
    return {
        "steps": sum(result["steps"] for result in results),
        "recharges": sum(result["recharges"] for result in results),
        "latencies": latencies,
        "elapsed": elapsed,
        "batch": ", ".join(result["batch"] for result in results if result["batch"]),
    }


def report(name: str, result: dict[str, Any]) -> float:
    rate: float = result["steps"] / result["elapsed"]
    lat = result["latencies"]
    batch = f"; commands per Redis pipeline {result['batch']}" if result["batch"] else ""
    print(
        f"{name:<27} {result['steps']:>6} steps in {result['elapsed']:.1f}s ="
        f" {rate:>6,.0f} steps/s ({result['recharges']} full recharges);"
        f" p50 {percentile(lat, 0.5) * 1e3:.1f} ms, p99 {percentile(lat, 0.99) * 1e3:.1f} ms"
        f"{batch}",
        flush=True,
    )
    return rate


async def prepare(pg_base: str, phones: int) -> tuple[str, list[str]]:
    url = (await servers.create_database(pg_base)).replace("postgresql://", "postgresql+asyncpg://")
    settings = Settings(database_url=url)
    db = create_engine(url)
    try:
        await upgrade(db)
        ledger = LedgerService(db, SystemClock(), load_catalogue(settings), settings)
        print(f"seeding {phones} agents on PostgreSQL ...", flush=True)
        return url, await seed(ledger, phones)
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--phones", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--recharge-every", type=int, default=4, help="every n-th dialogue")
    parser.add_argument("--workers", type=int, default=2, help="worker processes on Redis")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with servers.postgres_server() as pg_base, servers.redis_server() as redis_url:
        url, phones = asyncio.run(prepare(pg_base, args.phones))
        try:
            print(
                f"{args.phones} phones in parallel, {args.seconds:.0f}s per run, a full recharge"
                f" every {args.recharge_every}th dialogue; ledger on PostgreSQL",
                flush=True,
            )
            inproc = report("in-process store, 1 worker", run_workers(args, url, "", phones, 1))
            redis1 = report("Redis store, 1 worker", run_workers(args, url, redis_url, phones, 1))
            rates = {"in-process x1": inproc, "redis x1": redis1}
            if args.workers > 1:
                name = f"Redis store, {args.workers} workers"
                rates[f"redis x{args.workers}"] = report(
                    name, run_workers(args, url, redis_url, phones, args.workers)
                )
            base = rates["in-process x1"]
            print(
                "ratios to in-process x1: "
                + ", ".join(f"{name} {rate / base:.2f}" for name, rate in rates.items())
            )
        finally:
            asyncio.run(servers.drop_database(url.replace("+asyncpg", "")))
        pooled, naive = asyncio.run(machine_step_cost())
        print(
            f"machine step (AgentMenu, back): pooled+restored {pooled:.0f} µs,"
            f" built per message {naive:.0f} µs (x{naive / pooled:.1f})"
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
