"""End-to-end recharge benchmark: shortcut recharges per second through the whole product.

    .venv/bin/python benchmarks/e2e_recharge.py [--seconds 10] [--light 20] [--agents 120]

What it measures, in one run, over loopback on this machine:

1. The transport ceiling: the SMSC simulator (in this process) and an echo ESME (our SMPP link
   with a handler that answers at once, in a subprocess) — deliver_sm in, one submit_sm out,
   per phone in a closed loop — as round trips per second. Nothing can go faster than that.
2. The product, in three setups: the embedded default (one ``smsmenu serve``, SQLite, in-process
   sessions), and PostgreSQL (127.0.0.1:5432, a fresh database of its own) + Redis
   (127.0.0.1:6379, a key prefix of its own) with 1 and with 2 workers, all bound to the same
   simulator. Each agent sends ``CZ 2 <its own target> <amount> <pin>`` and waits for both
   the result SMS and the target's receipt (both come from the outbox: ledger transaction →
   outbox sender → submit_sm) before the next one. A recharge counts when both arrived; its
   latency is from the deliver_sm being queued to the second of the two arriving.
   Each setup runs twice: ``--light`` agents (latency below saturation: a closed loop's mean
   latency is agents ÷ rate) and ``--agents`` agents (saturated).

For each run it prints recharges/s, p50/p90/p99 latency, and the CPU each process used per
recharge (every worker, this process — simulator and load —, PostgreSQL, Redis), and at the end
the ratio of each setup to the ceiling. It is not a test and asserts nothing; the figures go
into the notes.
"""

# A harness, not product code: it starts processes and polls from async code on purpose.
# ruff: noqa: ASYNC110, ASYNC220

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
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
    sent: dict[int, int] | None = None,
) -> tuple[int, list[float], float]:
    """Each user sends, waits for its message(s), again; counts after ``warmup``. ``sent``:
    how many each user sent so far (carried over from run to run, so that no text repeats)."""
    latencies: list[float] = []
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds
    done = 0
    counts = sent if sent is not None else defaultdict(int)

    async def user(index: int, phone: str, other: str | None) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            counts[index] += 1
            n = counts[index]
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
        f"{name:<38} {rate:7.0f}/s  p50 {percentile(latencies, 0.5) * 1000:6.1f} ms"
        f"  p90 {percentile(latencies, 0.9) * 1000:6.1f} ms"
        f"  p99 {percentile(latencies, 0.99) * 1000:6.1f} ms  (n={done})",
        flush=True,
    )
    return rate


# ---- the run ---------------------------------------------------------------------------------


async def seed(url: str, agents: int) -> None:
    """A migrated ledger at ``url`` with ``agents`` agents, each with its own targets."""
    from smsmenu.app_ledger import close_ledger, open_ledger
    from smsmenu.ledger.api import Billing, Kind
    from smsmenu.ledger.db import create_engine, upgrade
    from smsmenu.settings import Settings

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


async def wait_sessions(sim: object, count: int, within_s: float = 30.0) -> None:
    async with asyncio.timeout(within_s):
        while sim.bound_sessions < count:  # type: ignore[attr-defined]
            await asyncio.sleep(0.05)


def drain(phones: Phones) -> None:
    for queue in phones.queues.values():
        while not queue.empty():
            queue.get_nowait()


def start_workers(
    name: str, count: int, env: dict[str, str], args: argparse.Namespace
) -> list[subprocess.Popen[bytes]]:
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for w in range(count):
        profile = ["-m", "cProfile", "-o", str(logs / f"{name}-{w}.prof")] if args.profile else []
        with (logs / f"{name}-{w}.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, *profile, "-m", "smsmenu.cli.main", "serve"],
                    env={**env, "SMSMENU_WORKER_ID": f"{name}-{w}"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
        (logs / f"{name}-{w}.pid").write_text(str(procs[-1].pid))
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


async def measure(
    sim: object,
    phones: Phones,
    name: str,
    agents: int,
    workers: list[subprocess.Popen[bytes]],
    sent: dict[int, int],
    args: argparse.Namespace,
) -> float:
    """One closed loop of ``agents`` agents through ``workers``: its figures and the CPU each
    process used per recharge. Returns the rate."""

    def text(i: int, n: int) -> str:
        amount = 10 * (1 + (n // TARGETS) % 100)
        return f"CZ 2 {target(i, n % TARGETS)} {amount} {PIN}"

    def receiver(i: int, n: int) -> str:
        return target(i, n % TARGETS)

    groups: dict[str, Callable[[], list[int]]] = {
        **{f"worker {w}": (lambda p=p: [p.pid]) for w, p in enumerate(workers)},
        "simulator + load (this process)": lambda: [os.getpid()],
        "postgres (all backends)": lambda: pids_named("postgres"),
        "redis-server": lambda: pids_named("redis-server"),
    }
    before = {pid: cpu_seconds([pid]) for pids in groups.values() for pid in pids()}
    wall0 = time.perf_counter()
    users: list[tuple[str, object]] = [(f"138{i:08d}", receiver) for i in range(agents)]
    done, lat, secs = await closed_loop(sim, phones, users, text, args.seconds, 2.0, sent)
    wall = time.perf_counter() - wall0
    rate = report(f"{name}, {agents} agents", done, lat, secs)
    total_done = max(1.0, done * wall / secs)  # the warm-up ran too
    workers_used = 0.0
    for group, pids in groups.items():
        # a process that started meanwhile (a PostgreSQL backend) counts from zero
        used = sum(cpu_seconds([pid]) - before.get(pid, 0.0) for pid in pids())
        workers_used += used if group.startswith("worker ") else 0.0
        print(
            f"    {group:<34} {used / wall * 100:5.1f}% of a core,"
            f" {used / total_done * 1000:5.2f} ms CPU per recharge"
        )
    if len(workers) > 1:
        in_all = workers_used / total_done * 1000
        print(f"    {'workers in all':<34} {in_all:18.2f} ms CPU per recharge")
    return rate


async def main(args: argparse.Namespace) -> None:
    from smsmenu.smpp.simulator import Simulator

    sim = Simulator(redeliver_after_s=30.0, spread=True)
    phones = Phones()
    sim.on_received = phones.received
    port = await sim.start()
    print(f"{os.cpu_count()} cores; {args.seconds:.0f} s per run after a 2 s warm-up", flush=True)
    rates: dict[str, float] = {}
    try:
        # 1. the transport ceiling: simulator <-> echo ESME
        echo = subprocess.Popen([sys.executable, __file__, "--echo-esme", str(port)])
        try:
            await wait_sessions(sim, 1)
            users = [(f"137{i:08d}", None) for i in range(args.agents)]
            done, lat, secs = await closed_loop(
                sim, phones, users, lambda i, n: f"ping {n}", args.seconds, 1.0
            )
            ceiling = report(f"transport ceiling (echo ESME), {args.agents}", done, lat, secs)
        finally:
            echo.terminate()
            echo.wait(10)
        await asyncio.sleep(0.5)

        base = {k: v for k, v in os.environ.items() if not k.startswith("SMSMENU_")}
        base.update(
            SMSMENU_SECRET_KEY=servers.TEST_SECRET_KEY,
            SMSMENU_SMSC_PORT=str(port),
            SMSMENU_RATE_LIMIT_PER_MIN="1000000",
            SMSMENU_SMPP_WINDOW=str(args.window),
            SMSMENU_STATUS_INTERVAL_S="5",
            SMSMENU_LOG_LEVEL=args.log_level,
        )
        with tempfile.TemporaryDirectory() as folder:
            setups = []
            if "embedded" in args.setups:
                sqlite = f"sqlite+aiosqlite:///{folder}/bench.db"
                setups.append(("embedded (SQLite, in-process)", 1, sqlite, {}))
            pg_url = ""
            if {"pg1", "pg2"} & set(args.setups):
                pg_url = (await servers.create_database(PG)).replace(
                    "postgresql://", "postgresql+asyncpg://", 1
                )
            redis = {"SMSMENU_REDIS_URL": REDIS}
            for workers in (1, 2):
                if f"pg{workers}" in args.setups:
                    name = f"PostgreSQL + Redis, {workers} worker(s)"
                    setups.append((name, workers, pg_url, redis))
            seeded: set[str] = set()
            sent: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
            try:
                for name, count, url, extra in setups:
                    if url not in seeded:
                        print(f"seeding {args.agents} agents ...", flush=True)
                        await seed(url, args.agents)
                        seeded.add(url)
                    env = {
                        **base,
                        **extra,
                        "SMSMENU_DATABASE_URL": url,
                        "SMSMENU_REDIS_PREFIX": f"bench:{uuid.uuid4().hex[:8]}:",
                    }
                    procs = start_workers(name.split(" ")[0].lower() + str(count), count, env, args)
                    try:
                        await wait_sessions(sim, count)
                        await asyncio.sleep(1.0)  # the agents' opening notices go out first
                        drain(phones)
                        print(name, flush=True)
                        for agents in (args.light, args.agents):
                            rate = await measure(sim, phones, name, agents, procs, sent[url], args)
                            rates[f"{name}, {agents} agents"] = rate
                            drain(phones)
                    finally:
                        stop_workers(procs)
                        await asyncio.sleep(0.5)
            finally:
                if pg_url:
                    await servers.drop_database(pg_url.replace("+asyncpg", "", 1))
        print("ratio to the transport ceiling (each recharge: 1 deliver_sm in, 2 submit_sm out):")
        for name, rate in rates.items():
            print(f"    {name:<50} {rate / ceiling:5.2f}")
        print(f"worker logs: {args.logs}")
    finally:
        await sim.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=120, help="agents of the saturated runs")
    parser.add_argument("--light", type=int, default=20, help="agents of the latency runs")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--setups",
        default="embedded,pg1,pg2",
        type=lambda text: text.split(","),
        help="which of embedded, pg1, pg2 to run",
    )
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
