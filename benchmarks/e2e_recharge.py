"""End-to-end recharge benchmark: shortcut recharges per second through the whole product.

    .venv/bin/python benchmarks/e2e_recharge.py [--agents 120] [--seconds 10] [--workers 1]

What it measures, over loopback on this machine, with PostgreSQL (127.0.0.1:5432, a fresh
database of its own) and Redis (127.0.0.1:6379, a key prefix of its own):

1. The transport ceiling: the SMSC simulator (in this process) and an echo ESME (our SMPP link
   with a handler that answers at once, in a subprocess) — deliver_sm in, one submit_sm out,
   per phone in a closed loop — as round trips per second. Nothing can go faster than that.
2. The product: ``smsmenu serve`` worker(s) (subprocesses) bound to the same simulator; each of
   ``--agents`` agents sends ``CZ 2 <its own target> <amount> <pin>`` and waits for both the
   result SMS and the target's receipt (both come from the outbox: ledger transaction →
   outbox sender → submit_sm) before the next one. A recharge counts when both arrived;
   its latency is from the deliver_sm being queued to the second of the two arriving.

It prints completed recharges/s, p50/p90/p99 latency, and the ratio to the ceiling. It is
not a test and asserts nothing; numbers go into the notes.
"""

# A harness, not product code: it starts processes and polls from async code on purpose.
# ruff: noqa: ASYNC110, ASYNC220, ASYNC240

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import servers  # noqa: E402  (the tests' own database helpers)

os.environ.setdefault("SMSMENU_SECRET_KEY", servers.TEST_SECRET_KEY)

PG = os.environ.get("SMSMENU_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("SMSMENU_BENCH_REDIS", "redis://127.0.0.1:6379/0")
PIN = "135790"
# Each agent cycles over its own targets and 100 amounts: an identical shortcut (same agent,
# target, amount) within 60 s would ask for a confirmation instead of recharging.
TARGETS = 20


def target(agent: int, index: int) -> str:
    return f"139{index:02d}{agent:06d}"


# ---- the echo ESME (run as a subprocess: --echo-esme PORT) ----------------------------------


async def echo_esme(port: int) -> None:
    from smsmenu.links import Ack
    from smsmenu.messages import Inbound, Outbound
    from smsmenu.smpp.link import SmppConfig, SmppLink

    async def handler(inbound: Inbound, ack: Ack) -> None:
        ack()
        await link.send(Outbound(inbound.source, "ok", inbound.destination, inbound.route))

    async def no_receipts(message_id: str, delivered: bool) -> None:
        return None  # none are asked for

    link = SmppLink(SmppConfig(port=port, window=64, registered_delivery=0))
    await link.start(handler, no_receipts)
    await asyncio.Event().wait()


# ---- helpers ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Phones:
    """Per phone a queue of what it received (fed by the simulator's callback)."""

    def __init__(self) -> None:
        self.queues: dict[str, asyncio.Queue[str]] = defaultdict(asyncio.Queue)

    def received(self, message: object) -> None:
        self.queues[message.phone].put_nowait(message.text)  # type: ignore[attr-defined]


async def closed_loop(
    sim: object,
    phones: Phones,
    users: list[tuple[str, object]],
    make_text: object,
    seconds: float,
    warmup: float,
) -> tuple[int, list[float], float]:
    """Each user sends, waits for its message(s), again; counts after ``warmup``."""
    latencies: list[float] = []
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds
    done = 0

    async def user(index: int, phone: str, other: str | None) -> None:
        nonlocal done
        n = 0
        while time.perf_counter() < stop_at:
            n += 1
            t0 = time.perf_counter()
            sim.send(phone, make_text(index, n))  # type: ignore[attr-defined,operator]
            await asyncio.wait_for(phones.queues[phone].get(), 30)
            if other is not None:
                to = other if isinstance(other, str) else other(index, n)  # type: ignore[operator]
                await asyncio.wait_for(phones.queues[to].get(), 30)
            t1 = time.perf_counter()
            if t0 >= measure_from and t1 <= stop_at:
                latencies.append(t1 - t0)
                done += 1

    await asyncio.gather(*(user(i, p, o) for i, (p, o) in enumerate(users)))
    return done, latencies, seconds


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids`` (Linux /proc), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def pids_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def report(name: str, done: int, latencies: list[float], seconds: float) -> float:
    rate = done / seconds
    print(
        f"{name:<34} {rate:8.0f}/s  p50 {percentile(latencies, 0.5) * 1000:6.1f} ms"
        f"  p90 {percentile(latencies, 0.9) * 1000:6.1f} ms"
        f"  p99 {percentile(latencies, 0.99) * 1000:6.1f} ms  (n={done})"
    )
    return rate


# ---- the run ---------------------------------------------------------------------------------


async def setup_database(agents: int) -> str:
    from smsmenu.app import close_ledger, open_ledger
    from smsmenu.ledger.api import Billing, Kind
    from smsmenu.ledger.db import create_engine, upgrade
    from smsmenu.settings import Settings

    url = (await servers.create_database(PG)).replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    ledger = await open_ledger(Settings(database_url=url))  # type: ignore[call-arg]
    try:
        for i in range(agents):
            phone = f"138{i:08d}"
            await ledger.add_subscriber(phone, Kind.MOBILE, Billing.PREPAID)
            for t in range(TARGETS):
                await ledger.add_subscriber(target(i, t), Kind.MOBILE, Billing.PREPAID)
            await ledger.open_agent(phone, PIN, "246801", 10_000_000_00, 200)
    finally:
        await close_ledger(ledger)
    return url


async def wait_sessions(sim: object, count: int, within_s: float = 30.0) -> None:
    async with asyncio.timeout(within_s):
        while sim.bound_sessions < count:  # type: ignore[attr-defined]
            await asyncio.sleep(0.05)


async def main(args: argparse.Namespace) -> None:
    from smsmenu.smpp.simulator import Simulator

    print(f"setting up PostgreSQL database and {args.agents} agents ...", flush=True)
    url = await setup_database(args.agents)
    sim = Simulator(redeliver_after_s=30.0, spread=True)
    phones = Phones()
    sim.on_received = phones.received
    port = await sim.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # 1. the transport ceiling: simulator <-> echo ESME
        echo = subprocess.Popen([sys.executable, __file__, "--echo-esme", str(port)])
        procs.append(echo)
        await wait_sessions(sim, 1)
        users = [(f"137{i:08d}", None) for i in range(args.agents)]
        done, lat, secs = await closed_loop(
            sim, phones, users, lambda i, n: f"ping {n}", args.seconds, 1.0
        )
        ceiling = report("transport ceiling (echo ESME)", done, lat, secs)
        echo.terminate()
        echo.wait(10)
        procs.remove(echo)
        await asyncio.sleep(0.5)

        # 2. the product
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMSMENU_")}
        env.update(
            SMSMENU_DATABASE_URL=url,
            SMSMENU_SECRET_KEY=servers.TEST_SECRET_KEY,
            SMSMENU_REDIS_URL=REDIS,
            SMSMENU_REDIS_PREFIX=f"bench:{uuid.uuid4().hex[:8]}:",
            SMSMENU_SMSC_PORT=str(port),
            SMSMENU_RATE_LIMIT_PER_MIN="1000000",
            SMSMENU_SMPP_WINDOW=str(args.window),
            SMSMENU_STATUS_INTERVAL_S="5",
            SMSMENU_LOG_LEVEL=args.log_level,
            SMSMENU_OUTBOX_POLL_S="0.05",
        )
        logs = Path(args.logs)
        logs.mkdir(parents=True, exist_ok=True)
        for w in range(args.workers):
            with (logs / f"serve-{w}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            *(
                                ["-m", "cProfile", "-o", str(logs / f"serve-{w}.prof")]
                                if args.profile
                                else []
                            ),
                            "-m",
                            "smsmenu.cli.main",
                            "serve",
                        ],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                    )
                )
        for w, proc in enumerate(procs):
            (logs / f"serve-{w}.pid").write_text(str(proc.pid))
        await wait_sessions(sim, args.workers)
        for queue in phones.queues.values():
            while not queue.empty():
                queue.get_nowait()
        await asyncio.sleep(1.0)  # the agents' opening notices go out first
        for queue in phones.queues.values():
            while not queue.empty():
                queue.get_nowait()
        agents = [(f"138{i:08d}", f"139{i:08d}") for i in range(args.agents)]

        def text(i: int, n: int) -> str:
            amount = 10 * (1 + (n // TARGETS) % 100)
            return f"CZ 2 {target(i, n % TARGETS)} {amount} {PIN}"

        def receiver(i: int, n: int) -> str:
            return target(i, n % TARGETS)

        groups = {
            "simulator+load (this process)": [os.getpid()],
            "smsmenu serve": [p.pid for p in procs],
            "postgres (all backends)": pids_named("postgres"),
            "redis-server": pids_named("redis-server"),
        }
        before = {k: cpu_seconds(v) for k, v in groups.items()}
        pg_before = {pid: cpu_seconds([pid]) for pid in pids_named("postgres")}
        wall0 = time.perf_counter()
        users: list[tuple[str, object]] = [(p, receiver) for p, _ in agents]
        done, lat, secs = await closed_loop(sim, phones, users, text, args.seconds, 2.0)
        wall = time.perf_counter() - wall0
        rate = report(f"recharges ({args.workers} worker(s))", done, lat, secs)
        total_done = max(1, done * wall / secs)  # the warm-up ran too
        print(f"CPU during the run ({wall:.1f}s wall, {os.cpu_count()} cores):")
        groups["postgres (all backends)"] = pids_named("postgres")  # the pool connected lazily
        before_pg = {pid: cpu for pid, cpu in pg_before.items()}
        for k, v in groups.items():
            if k.startswith("postgres"):
                used = sum(cpu_seconds([pid]) - before_pg.get(pid, 0.0) for pid in v)
            else:
                used = cpu_seconds(v) - before[k]
            print(
                f"  {k:<32} {used:6.2f} s = {used / wall * 100:5.1f}% of a core,"
                f" {used / total_done * 1000:5.2f} ms per recharge"
            )
        print(
            f"ratio to the transport ceiling: {rate / ceiling:.2f}"
            f"  (each recharge = 1 deliver_sm in, 2 submit_sm out, 2 receipts back)"
        )
        print(f"worker logs: {logs}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        await sim.stop()
        await servers.drop_database(url.replace("+asyncpg", "", 1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=120)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--logs", default="/tmp/smsmenu-bench")
    parser.add_argument("--profile", action="store_true", help="cProfile the worker(s).")
    parser.add_argument("--echo-esme", type=int, default=None, help=argparse.SUPPRESS)
    cli = parser.parse_args()
    if cli.echo_esme is not None:
        asyncio.run(echo_esme(cli.echo_esme))
    else:
        asyncio.run(main(cli))
