"""Real PostgreSQL and Redis servers for the tests: the machine's own when they answer on
127.0.0.1, else throwaway ones started from the installed binaries. Never a skip: if neither
can be had, the tests that need them fail, saying why.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg

#: The secret the tests' and benchmarks' processes share (SPEC §10: every worker of a
#: deployment shares one); never one for production.
TEST_SECRET_KEY = "test-secret-key-not-for-production"


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise RuntimeError(f"PostgreSQL is not reachable and no {name} binary is installed")
    return candidates[-1]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yields a libpq-style base URL (no database) of a running PostgreSQL server."""
    base = os.environ.get("SMSMENU_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
    if port_open("127.0.0.1", 5432) and "SMSMENU_TEST_PG_THROWAWAY" not in os.environ:
        yield base
        return
    folder = Path(tempfile.mkdtemp(prefix="smsmenu-pg-"))
    data, port = folder / "data", free_port()
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        shutil.chown(folder, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_postgres, _pg_binary("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=on"
    pg_ctl = [*as_postgres, _pg_binary("pg_ctl"), "-D", str(data)]
    subprocess.run([*pg_ctl, "-o", opts, "-w", "-l", str(folder / "log"), "start"], check=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


async def create_database(base_url: str) -> str:
    """Creates a fresh database for this test run and returns its libpq URL."""
    name = f"smsmenu_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(f"{base_url}/postgres")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{base_url}/{name}"


async def drop_database(url: str) -> None:
    base, name = url.rsplit("/", 1)
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Yields the URL of a running Redis server."""
    if port_open("127.0.0.1", 6379) and "SMSMENU_TEST_REDIS_THROWAWAY" not in os.environ:
        yield "redis://127.0.0.1:6379/0"
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("Redis is not reachable on 127.0.0.1:6379 and redis-server is missing")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the throwaway redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
