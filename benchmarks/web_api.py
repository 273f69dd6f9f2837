"""Recharges per second through the HTTP API (not a test: prints figures).

``smsmenu web`` runs as a process of its own on PostgreSQL; ``--clients`` concurrent clients
(httpx, keep-alive) post recharges to ``POST /api/v1/recharges``, each with its own
Idempotency-Key, spread over ``--agents`` agents, for ``--seconds``. Beside it, in the same
run, the same recharges through ``LedgerService.recharge`` in this process with the same
concurrency: what the HTTP layer (uvicorn, Starlette, the key lookup, JSON, the audit row)
costs on top of the ledger. Prints recharges/s, p50/p99 latency and the ratio.

    .venv/bin/python benchmarks/web_api.py [--clients 16] [--agents 200] [--seconds 10]

PostgreSQL: the machine's own on 127.0.0.1 if it answers, else a throwaway server (as the
test suite does). Client and server share the machine's cores.

Recorded on 30 November 2026 on the 2-core machine, shared with other engineers' jobs (load
average ~2.3), ``--agents 100``, 16 clients: HTTP API 163-180 recharges/s (p50 70-90 ms, p99
280-420 ms); LedgerService in process 620-900 recharges/s (p50 15-20 ms); the load of the
other jobs moves both by ±20 %. The web process runs at about one core and the httpx client
takes half a core of the same two. py-spy of the web process (after the key lookup and the
audit entry became one autocommitted statement each, ``web.statements``; the audit entry had
been 25 % of its samples, as a transaction of its own): asyncpg 51 %, the event loop 14 %,
SQLAlchemy 11 %, smsmenu 7 %, HTTP parsing (h11) 7 %, Starlette 3 %. Next: the audit entry and
the key lookup in the money's own round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smsmenu.app import load_catalogue
from smsmenu.clock import SystemClock
from smsmenu.ledger.api import Billing, Kind, RechargeRequest
from smsmenu.ledger.db import create_engine, upgrade
from smsmenu.ledger.service import LedgerService
from smsmenu.settings import Settings
from smsmenu.web import apikeys
from smsmenu.web.context import WebContext
from tests import servers

os.environ.setdefault("SMSMENU_SECRET_KEY", servers.TEST_SECRET_KEY)
PIN = "135790"


async def seed(url: str, agents: int) -> tuple[list[int], list[str], str]:
    """Agents with a large float and one target each; an operator key."""
    engine = create_engine(url)
    await upgrade(engine)
    settings = Settings(database_url=url)
    ledger = LedgerService(engine, SystemClock(), load_catalogue(settings), settings)
    ids, targets = [], []
    try:
        for i in range(agents):
            phone, target = f"1380{i:07d}", f"1390{i:07d}"
            await ledger.add_subscriber(phone, Kind.MOBILE, Billing.PREPAID)
            await ledger.add_subscriber(target, Kind.MOBILE, Billing.PREPAID)
            agent = await ledger.open_agent(phone, PIN, "246801", 100_000_000, 200)
            ids.append(agent.agent_id)
            targets.append(target)
        key = await apikeys.create(WebContext.of(ledger), "bench", "operator")
    finally:
        await ledger.aclose()
        await engine.dispose()
    return ids, targets, key


async def closed_loop(
    clients: int, seconds: float, one: object, pairs: list[tuple[int, str]]
) -> list[float]:
    """``clients`` tasks calling ``one(agent, target, n)`` back to back: each call's latency."""
    latencies: list[float] = []
    counter = itertools.count()
    deadline = time.perf_counter() + seconds

    async def client(start: int) -> None:
        i = start
        while time.perf_counter() < deadline:
            agent, target = pairs[i % len(pairs)]
            began = time.perf_counter()
            await one(agent, target, next(counter))  # type: ignore[operator]
            latencies.append(time.perf_counter() - began)
            i += clients

    await asyncio.gather(*(client(c) for c in range(clients)))
    return latencies


def report(name: str, latencies: list[float], seconds: float) -> float:
    rate = len(latencies) / seconds
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{name:<28} {rate:8.0f} recharges/s   p50 {cuts[49] * 1000:6.1f} ms"
        f"   p99 {cuts[98] * 1000:6.1f} ms   ({len(latencies)} in {seconds:.0f} s)"
    )
    return rate


async def over_http(base: str, key: str, args: argparse.Namespace, pairs: list) -> float:  # type: ignore[type-arg]
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as http:

        async def one(agent: int, target: str, n: int) -> None:
            response = await http.post(
                "/api/v1/recharges",
                json={
                    "agent_id": agent,
                    "kind": "mobile",
                    "number": target,
                    "amount_fen": 1000,
                    "pin": PIN,
                },
                headers={"Idempotency-Key": f"http-{n}"},
            )
            assert response.status_code == 201, response.text

        latencies = await closed_loop(args.clients, args.seconds, one, pairs)
    return report("HTTP API (smsmenu web)", latencies, args.seconds)


async def in_process(url: str, args: argparse.Namespace, pairs: list) -> float:  # type: ignore[type-arg]
    engine = create_engine(url)
    settings = Settings(database_url=url)
    ledger = LedgerService(engine, SystemClock(), load_catalogue(settings), settings)
    try:

        async def one(agent: int, target: str, n: int) -> None:
            await ledger.recharge(
                RechargeRequest(agent, Kind.MOBILE, target, 1000, PIN, f"direct-{n}")
            )

        latencies = await closed_loop(args.clients, args.seconds, one, pairs)
    finally:
        await ledger.aclose()
        await engine.dispose()
    return report("LedgerService in process", latencies, args.seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    with servers.postgres_server() as base:
        raw = asyncio.run(servers.create_database(base))
        url = raw.replace("postgresql://", "postgresql+asyncpg://", 1)
        try:
            ids, targets, key = asyncio.run(seed(url, args.agents))
            pairs = list(zip(ids, targets, strict=True))
            port = servers.free_port()
            env = {**os.environ, "SMSMENU_DATABASE_URL": url, "SMSMENU_LOG_LEVEL": "WARNING"}
            command = [sys.executable, "-m", "smsmenu.cli.main", "web", "--port", str(port)]
            with subprocess.Popen(command, env=env) as web:
                try:
                    while not servers.port_open("127.0.0.1", port):
                        time.sleep(0.1)
                    http = asyncio.run(over_http(f"http://127.0.0.1:{port}", key, args, pairs))
                finally:
                    web.terminate()
            direct = asyncio.run(in_process(url, args, pairs))
            print(f"the HTTP layer keeps {http / direct:.0%} of the in-process rate")
        finally:
            asyncio.run(servers.drop_database(raw))


if __name__ == "__main__":
    main()
