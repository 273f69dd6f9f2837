"""``smsmenu chat`` and ``smsmenu menu graph`` as a user runs them (subprocesses)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from smsmenu.app import load_catalogue
from smsmenu.clock import SystemClock
from smsmenu.ledger.api import Billing, Kind
from smsmenu.ledger.db import create_engine
from smsmenu.ledger.service import LedgerService
from smsmenu.settings import Settings
from tests.ledger_fixtures import TRADE_PIN, new_agent


def run(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from smsmenu.cli.main import main; main()", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


async def seed(url: str) -> None:
    settings = Settings(database_url=url)
    db = create_engine(url)
    try:
        ledger = LedgerService(db, SystemClock(), load_catalogue(settings), settings)
        await new_agent(ledger, "13800000001")
        await ledger.add_subscriber("13900000002", Kind.MOBILE, Billing.PREPAID, 500)
    finally:
        await db.dispose()


def test_chat_walks_the_menu_and_shows_the_outbox(sqlite_template: Path, tmp_path: Path) -> None:
    shutil.copyfile(sqlite_template, tmp_path / "chat.db")
    url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    asyncio.run(seed(url))
    env = {"SMSMENU_DATABASE_URL": url, "SMSMENU_REDIS_URL": "redis://127.0.0.1:1/0"}
    script = f"hello\n1\n1\n1\n2\n13900000002\n50\n{TRADE_PIN}\n\nYE {TRADE_PIN}\n"
    result = run("chat", "--phone", "13800000001", "--json", stdin=script, env=env)
    assert result.returncode == 0, result.stderr
    turns = [json.loads(line) for line in result.stdout.splitlines()]
    texts = load_catalogue(Settings())
    assert turns[0] == {"input": "hello", "replies": [texts.render("agent_main")], "outbox": []}
    pin_turn = turns[7]
    assert pin_turn["replies"] == []
    assert {row["destination"] for row in pin_turn["outbox"]} == {"13800000001", "13900000002"}
    assert "49.00元" in pin_turn["outbox"][0]["text"]
    assert turns[8]["replies"] == [texts.render("agent_balance_result", balance="951.00元")]
    human = run("chat", "--phone", "13900000002", stdin="1\n1\n", env=env)
    assert human.returncode == 0, human.stderr
    assert "55.00元" in human.stdout


@pytest.mark.parametrize("phone", ["abc", "１３８００００００01", "138²"])
def test_chat_refuses_a_bad_phone_in_one_line(phone: str, tmp_path: Path) -> None:
    env = {"SMSMENU_DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}"}
    result = run("chat", "--phone", phone, env=env)
    assert result.returncode != 0 and result.stderr.count("\n") == 1
    assert "is not a phone number" in result.stderr
    assert "Traceback" not in result.stderr


def test_menu_graph(tmp_path: Path) -> None:
    result = run("menu", "graph", "--out", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rendered"] == (shutil.which("dot") is not None)
    agent = (tmp_path / "agent_menu.dot").read_text(encoding="utf-8")
    for state in ("main", "rc_confirm", "retry_pick", "tp_again", "mp_again"):
        assert state in agent
    assert "main" in (tmp_path / "subscriber_menu.dot").read_text(encoding="utf-8")
    human = run("menu", "graph", "--out", str(tmp_path))
    assert human.returncode == 0
    if not report["rendered"]:
        assert "graphviz 'dot' is not installed" in human.stdout
    else:
        assert (tmp_path / "agent_menu.png").is_file()
