"""The ledger's commands (SPEC §12), run for real against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from smsmenu.cli.main import root
from smsmenu.ledger import rules
from tests.servers import TEST_SECRET_KEY

AGENT_KEYS = {"agent_id", "phone", "status", "balance_fen", "commission_bp"}
RECHARGE_KEYS = {
    "tx_id",
    "number",
    "kind",
    "amount_fen",
    "commission_fen",
    "debit_fen",
    "status",
    "created_at",
}
SUBSCRIBER_KEYS = {"number", "kind", "billing", "status", "balance_fen"}


class Cli:
    def __init__(self, url: str) -> None:
        self.url = url
        self.runner = CliRunner()

    def __call__(self, *args: str, ok: bool = True) -> Result:
        result = self.runner.invoke(root, list(args), env={"SMSMENU_DATABASE_URL": self.url})
        if ok:
            assert result.exit_code == 0, (args, result.output, result.stderr)
        return result

    def json(self, *args: str) -> object:
        return json.loads(self(*args, "--json").stdout)

    def refused(self, rule: str, *args: str) -> str:
        result = self(*args, ok=False)
        assert result.exit_code == 1, result.output
        line = result.stderr.strip()
        assert "\n" not in line and line.startswith(f"smsmenu: refused ({rule}): "), line
        return line


def run(
    url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real entry point in a process of its own (``env``: more variables)."""
    return subprocess.run(
        [sys.executable, "-c", "from smsmenu.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        check=False,
        env={
            "SMSMENU_DATABASE_URL": url,
            "SMSMENU_SECRET_KEY": TEST_SECRET_KEY,
            "PATH": "/usr/bin:/bin",
            **(env or {}),
        },
    )


@pytest.fixture
def cli(database_url: str) -> Cli:
    return Cli(database_url)


def seed(cli: Cli) -> int:
    assert cli.json("db", "upgrade") == {"upgraded": True}
    cli("subscriber", "add", "--number", "13800000001", "--kind", "mobile", "--billing", "prepaid")
    cli(
        "subscriber",
        "add",
        "--number",
        "13900000002",
        "--kind",
        "mobile",
        "--billing",
        "prepaid",
        "--balance",
        "5",
    )
    shown = cli.json(
        "subscriber",
        "add",
        "--number",
        "02787654321",
        "--kind",
        "fixed",
        "--billing",
        "postpaid",
        "--balance",
        "-30.50",
    )
    assert shown == {
        "number": "02787654321",
        "kind": "fixed",
        "billing": "postpaid",
        "status": "active",
        "balance_fen": -3050,
    }
    opened = cli.json(
        "agent",
        "open",
        "--phone",
        "13800000001",
        "--trade-pin",
        "135790",
        "--mgmt-pin",
        "246801",
        "--deposit",
        "1000",
    )
    assert isinstance(opened, dict) and set(opened) == AGENT_KEYS
    assert opened["phone"] == "13800000001" and opened["balance_fen"] == 100000
    assert opened["status"] == "active" and opened["commission_bp"] == 200
    return int(opened["agent_id"])


def test_recharge_flow(cli: Cli) -> None:
    agent = str(seed(cli))
    made = cli.json(
        "recharge",
        "make",
        "--agent",
        agent,
        "--kind",
        "mobile",
        "--number",
        "13900000002",
        "--amount",
        "100",
        "--pin",
        "135790",
        "--key",
        "cli-1",
    )
    assert isinstance(made, dict) and set(made) == RECHARGE_KEYS
    assert (
        made["amount_fen"],
        made["commission_fen"],
        made["debit_fen"],
        made["status"],
        made["kind"],
    ) == (10000, 200, 9800, "succeeded", "mobile")
    datetime.fromisoformat(str(made["created_at"]))
    again = cli.json(
        "recharge",
        "make",
        "--agent",
        agent,
        "--kind",
        "mobile",
        "--number",
        "13900000002",
        "--amount",
        "100",
        "--pin",
        "135790",
        "--key",
        "cli-1",
    )
    assert again == made  # the same key: the first result, no second debit
    assert cli.json("agent", "show", "--agent", agent) == {
        "agent_id": int(agent),
        "phone": "13800000001",
        "status": "active",
        "balance_fen": 90200,
        "commission_bp": 200,
    }
    sub = cli.json("subscriber", "show", "--number", "13900000002")
    assert isinstance(sub, dict) and sub["balance_fen"] == 10500
    assert set(sub) == SUBSCRIBER_KEYS | {"valid_until", "allowances"}  # prepaid: SPEC §8
    fixed = cli.json(
        "recharge",
        "make",
        "--agent",
        agent,
        "--kind",
        "fixed",
        "--number",
        "02787654321",
        "--amount",
        "50",
        "--pin",
        "135790",
        "--notify",
        "13900000002",
    )
    assert isinstance(fixed, dict)
    listed = cli.json("recharge", "list", "--agent", agent)
    assert isinstance(listed, list) and [r["tx_id"] for r in listed] == [
        fixed["tx_id"],
        made["tx_id"],
    ]
    assert all(set(r) == RECHARGE_KEYS for r in listed)
    today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    assert len(cli.json("recharge", "list", "--agent", agent, "--from", today, "--to", today)) == 2  # type: ignore[arg-type]
    assert cli.json("recharge", "list", "--agent", agent, "--to", "2000-01-01") == []
    human = cli("recharge", "list", "--agent", agent).stdout
    assert "02787654321" in human and "succeeded" in human

    second = cli.json(
        "recharge",
        "make",
        "--agent",
        agent,
        "--kind",
        "fixed",
        "--number",
        "02787654321",
        "--amount",
        "50",
        "--pin",
        "135790",
    )
    assert isinstance(second, dict)
    if rules.is_last_day_of_month(datetime.now(UTC), ZoneInfo("Asia/Shanghai")):
        cli.refused("reversal_last_day", "recharge", "reverse", "--tx", str(second["tx_id"]))
    else:
        cli.refused("reversal_not_postpaid", "recharge", "reverse", "--tx", str(made["tx_id"]))
        reversed_ = cli.json("recharge", "reverse", "--tx", str(second["tx_id"]))
        assert isinstance(reversed_, dict) and reversed_["recharge_tx_id"] == second["tx_id"]
        cli.refused("reversal_not_succeeded", "recharge", "reverse", "--tx", str(second["tx_id"]))
        # -30.50 + 50 + 50 - 50 = 19.50 < 50.00; and the monthly limit comes first anyway
        cli.refused("reversal_monthly_limit", "recharge", "reverse", "--tx", str(fixed["tx_id"]))
    invoiced = cli.json("recharge", "invoice", "--tx", str(made["tx_id"]))
    assert isinstance(invoiced, dict) and invoiced["tx_id"] == made["tx_id"]
    cli.refused("recharge_unknown", "recharge", "invoice", "--tx", "9999")
    cli.refused(
        "recharge_unknown", "recharge", "retry", "--agent", agent, "--tx", "9999", "--pin", "135790"
    )
    assert cli.json("recharge", "retry-list", "--agent", agent) == []
    assert cli.json("recharge", "recover", "--older-than", "0") == []

    check = cli.json("ledger", "check")
    assert isinstance(check, dict) and check["ok"] is True and check["total_fen"] == 0
    assert "trial balance zero" in cli("ledger", "check").stdout
    daily = cli.json("report", "daily")
    assert (
        isinstance(daily, list)
        and daily[0]["agent_id"] == int(agent)
        and daily[0]["recharges"] == 3
    )
    # 2.00 + 1.00 + 1.00 yuan of commission, less the 1.00 the reversal (if any) clawed back
    clawed_back = (
        0 if rules.is_last_day_of_month(datetime.now(UTC), ZoneInfo("Asia/Shanghai")) else 100
    )
    assert (daily[0]["commission_fen"], daily[0]["reversed_commission_fen"]) == (
        400 - clawed_back,
        clawed_back,
    )
    assert "net commission" in cli("report", "daily", "--help").stdout
    records = cli.json("report", "records", "--agent", agent)
    assert isinstance(records, list) and {r["kind"] for r in records} >= {"recharge", "deposit"}
    rows = cli.json("outbox", "list", "--destination", "13900000002")
    assert isinstance(rows, list) and {r["kind"] for r in rows} == {"target_receipt"}
    assert all("135790" not in r["text"] for r in cli.json("outbox", "list"))  # type: ignore[union-attr]


def test_agent_lifecycle(cli: Cli) -> None:
    agent = str(seed(cli))
    cli.refused("bad_deposit", "agent", "deposit", "--agent", agent, "--amount", "15")
    deposited = cli.json("agent", "deposit", "--agent", agent, "--amount", "20", "--key", "d1")
    assert isinstance(deposited, dict) and deposited["balance_fen"] == 102000
    assert (
        cli.json("agent", "deposit", "--agent", agent, "--amount", "20", "--key", "d1") == deposited
    )
    assert cli.json("agent", "suspend", "--agent", agent)["status"] == "suspended"  # type: ignore[index]
    cli.refused(
        "agent_suspended",
        "recharge",
        "make",
        "--agent",
        agent,
        "--kind",
        "mobile",
        "--number",
        "13900000002",
        "--amount",
        "10",
        "--pin",
        "135790",
    )
    assert cli.json("agent", "resume", "--agent", agent)["status"] == "active"  # type: ignore[index]
    cli.refused(
        "phone_unknown", "agent", "change-phone", "--agent", agent, "--phone", "13700000000"
    )
    moved = cli.json("agent", "change-phone", "--agent", agent, "--phone", "13900000002")
    assert isinstance(moved, dict) and moved["phone"] == "13900000002"
    line = cli.refused("close_float_too_high", "agent", "close", "--agent", agent)
    assert "1020.00元" in line
    cli.refused("agent_unknown", "agent", "show", "--agent", "999")
    cli.refused(
        "opening_deposit_too_small",
        "agent",
        "open",
        "--phone",
        "13800000001",
        "--trade-pin",
        "135790",
        "--mgmt-pin",
        "246801",
        "--deposit",
        "499",
    )


def test_close_pays_out_the_remainder(cli: Cli) -> None:
    seed(cli)
    # an agent with no commission can spend its float to exactly zero, then close
    cli("subscriber", "add", "--number", "13800000009", "--kind", "mobile", "--billing", "prepaid")
    other = cli.json(
        "agent",
        "open",
        "--phone",
        "13800000009",
        "--trade-pin",
        "135790",
        "--mgmt-pin",
        "246801",
        "--deposit",
        "500",
        "--commission-bp",
        "0",
    )
    assert isinstance(other, dict)
    for n in range(5):
        cli(
            "recharge",
            "make",
            "--agent",
            str(other["agent_id"]),
            "--kind",
            "mobile",
            "--number",
            "13900000002",
            "--amount",
            "100",
            "--pin",
            "135790",
            "--key",
            f"drain-{n}",
        )
    closed = cli.json("agent", "close", "--agent", str(other["agent_id"]))
    assert isinstance(closed, dict) and closed["status"] == "closed" and closed["paid_out_fen"] == 0
    assert cli.json("ledger", "check")["ok"] is True  # type: ignore[index]


def test_refusal_is_one_line_and_moves_nothing(cli: Cli) -> None:
    agent = str(seed(cli))
    cli("agent", "deposit", "--agent", agent, "--amount", "10")  # float 1010.00 covers 980.00
    cli(
        "recharge",
        "make",
        "--agent",
        agent,
        "--kind",
        "mobile",
        "--number",
        "13900000002",
        "--amount",
        "1000",
        "--pin",
        "135790",
    )
    before = cli.json("agent", "show", "--agent", agent)
    line = cli.refused(
        "insufficient_funds",
        "recharge",
        "make",
        "--agent",
        agent,
        "--kind",
        "mobile",
        "--number",
        "13900000002",
        "--amount",
        "1000",
        "--pin",
        "135790",
    )
    assert "余额不足" in line
    cli.refused(
        "wrong_pin",
        "recharge",
        "make",
        "--agent",
        agent,
        "--kind",
        "mobile",
        "--number",
        "13900000002",
        "--amount",
        "10",
        "--pin",
        "000000",
    )
    cli.refused(
        "bad_amount",
        "recharge",
        "make",
        "--agent",
        agent,
        "--kind",
        "mobile",
        "--number",
        "13900000002",
        "--amount",
        "15",
        "--pin",
        "135790",
    )
    cli.refused(
        "target_unknown",
        "recharge",
        "make",
        "--agent",
        agent,
        "--kind",
        "mobile",
        "--number",
        "13900000099",
        "--amount",
        "10",
        "--pin",
        "135790",
    )
    cli.refused(
        "bad_number",
        "recharge",
        "make",
        "--agent",
        agent,
        "--kind",
        "fixed",
        "--number",
        "13900000002",
        "--amount",
        "10",
        "--pin",
        "135790",
    )
    assert cli.json("agent", "show", "--agent", agent) == before
    assert "135790" not in line


def test_entry_point_bad_input_and_refusals(database_url: str) -> None:
    """The installed entry point, in a process of its own: one line, non-zero, nothing moved."""
    cli = Cli(database_url)
    agent = str(seed(cli))
    make = ["recharge", "make", "--agent", agent, "--number", "13900000002", "--pin", "135790"]
    for args, needle in (
        ([*make, "--kind", "satellite", "--amount", "10"], "satellite"),
        ([*make, "--kind", "mobile", "--amount", "ten"], "bad amount"),
        ([*make, "--kind", "mobile", "--amount", "1000", "--json"], None),
        ([*make, "--kind", "mobile", "--amount", "1000"], "refused (insufficient_funds)"),
    ):
        result = run(database_url, *args)
        if needle is None:
            assert result.returncode == 0, result.stderr
            assert set(json.loads(result.stdout)) == RECHARGE_KEYS
            continue
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert result.stderr.strip().count("\n") == 0 and needle in result.stderr, result.stderr
    shown = cli.json("agent", "show", "--agent", agent)
    assert isinstance(shown, dict) and shown["balance_fen"] == 100000 - 98000
    for args, needle in (
        (["agent", "show", "--agent", "x"], "--agent"),
        (["recharge", "list", "--agent", agent, "--from", "2026-13-01"], "--from"),
    ):
        result = cli(*args, ok=False)
        assert result.exit_code != 0 and needle in result.output


def test_missing_schema_is_one_line(tmp_path: Path) -> None:
    empty = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    result = run(empty, "agent", "show", "--agent", "1")
    assert result.returncode == 1 and "smsmenu db upgrade" in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert run(empty, "db", "upgrade").returncode == 0
    assert "refused (agent_unknown)" in run(empty, "agent", "show", "--agent", "1").stderr


def test_subscriber_status_and_a_broken_ledger(cli: Cli) -> None:
    agent = str(seed(cli))
    shown = cli.json("subscriber", "set-status", "--number", "13800000001", "--status", "suspended")
    assert isinstance(shown, dict) and shown["status"] == "suspended"
    cli.refused(
        "phone_suspended",
        "recharge",
        "make",
        "--agent",
        agent,
        "--kind",
        "mobile",
        "--number",
        "13900000002",
        "--amount",
        "10",
        "--pin",
        "135790",
    )
    cli.refused(
        "target_unknown",
        "subscriber",
        "set-status",
        "--number",
        "13700000000",
        "--status",
        "active",
    )
    assert cli("subscriber", "show", "--number", "13700000000", ok=False).exit_code == 1
    closed = cli.json("subscriber", "set-status", "--number", "02787654321", "--status", "closed")
    assert isinstance(closed, dict) and closed["status"] == "closed"
    line = cli.refused(
        "subscriber_closed",
        *("subscriber", "set-status", "--number", "02787654321", "--status", "active"),
    )
    assert "02787654321" in line
    assert cli.json("subscriber", "show", "--number", "02787654321")["status"] == "closed"  # type: ignore[index]
    # a tampered balance makes `ledger check` fail with one line
    import asyncio

    from sqlalchemy import text

    from smsmenu.ledger.db import create_engine

    async def tamper(delta: int) -> None:
        engine = create_engine(cli.url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text("UPDATE accounts SET balance = balance + :d WHERE kind = 'float'"),
                    {"d": delta},
                )
        finally:
            await engine.dispose()

    asyncio.run(tamper(1))
    broken = cli("ledger", "check", ok=False)
    assert broken.exit_code == 1 and "trial balance is off" in broken.stderr
    assert broken.stderr.strip().count("\n") == 0
    asyncio.run(tamper(-1))
    assert cli.json("ledger", "check")["ok"] is True  # type: ignore[index]


def test_deadletter_list(cli: Cli) -> None:
    assert cli.json("db", "upgrade") == {"upgraded": True}
    assert cli.json("deadletter", "list") == []
    assert cli("deadletter", "list").stdout.strip() == "no dead letters"

    async def add() -> None:
        from smsmenu.ledger.db import create_engine
        from smsmenu.ledger.deadletters import DeadLetter, DeadLetters

        engine = create_engine(cli.url)
        try:
            await DeadLetters(engine).add(
                DeadLetter(
                    "0123456789abcdef", "13800000001", "10001", "sms", "YE ******",
                    "RuntimeError: boom", 3, datetime(2026, 11, 10, 2, 0, tzinfo=UTC),
                )
            )  # fmt: skip
        finally:
            await engine.dispose()

    asyncio.run(add())
    (letter,) = cli.json("deadletter", "list")
    assert letter["text"] == "YE ******" and letter["attempts"] == 3
    assert letter["source"] == "13800000001" and letter["error"] == "RuntimeError: boom"
    assert "RuntimeError: boom" in cli("deadletter", "list").stdout


def test_a_fixed_line_is_refused_as_notify_number(cli: Cli) -> None:
    agent = str(seed(cli))
    cli("subscriber", "add", "--number", "02787650000", "--kind", "phs", "--billing", "prepaid")
    make = ("recharge", "make", "--agent", agent, "--kind", "fixed", "--number", "02787654321")
    make += ("--amount", "50", "--pin", "135790", "--notify")
    line = cli.refused("bad_notify_number", *make, "02787654321")
    assert "通知号码" in line
    assert cli.json("recharge", "list", "--agent", agent) == []
    made = cli.json(*make, "02787650000")
    assert isinstance(made, dict) and made["status"] == "succeeded"
    rows = cli.json("outbox", "list", "--destination", "02787650000")
    assert isinstance(rows, list) and [r["kind"] for r in rows] == ["target_receipt"]


def test_times_are_shown_in_the_timezone_setting(cli: Cli) -> None:
    """SPEC §12: a person reads TIMEZONE's time (default Asia/Shanghai); JSON keeps ISO 8601
    with the offset of that zone (the same instant)."""
    agent = str(seed(cli))
    make = ("recharge", "make", "--agent", agent, "--kind", "mobile", "--number", "13900000002")
    made = cli.json(*make, "--amount", "10", "--pin", "135790")
    assert isinstance(made, dict)
    created = datetime.fromisoformat(str(made["created_at"]))
    assert created.utcoffset() == timedelta(hours=8)
    seen = created.strftime("%Y-%m-%d %H:%M:%S")
    assert seen in cli("recharge", "list", "--agent", agent).stdout
    assert seen in cli("report", "records", "--agent", agent).stdout
    records = cli.json("report", "records", "--agent", agent)
    assert isinstance(records, list) and {r["created_at"][-6:] for r in records} == {"+08:00"}
    rows = cli.json("outbox", "list")
    assert isinstance(rows, list) and {r["created_at"][-6:] for r in rows} == {"+08:00"}
    env = {"SMSMENU_DATABASE_URL": cli.url, "SMSMENU_TIMEZONE": "America/New_York"}
    listed = cli.runner.invoke(root, ["recharge", "list", "--agent", agent, "--json"], env=env)
    (there,) = json.loads(listed.stdout)
    assert datetime.fromisoformat(there["created_at"]) == created  # the same instant
    assert there["created_at"][-6:] in ("-05:00", "-04:00")
    human = cli.runner.invoke(root, ["report", "records", "--agent", agent], env=env).stdout
    assert created.astimezone(ZoneInfo("America/New_York")).strftime("%H:%M:%S") in human


def test_a_malformed_password_is_a_format_error(cli: Cli) -> None:
    """``--pin abc`` is no wrong trade password: it counts nothing and locks nothing."""
    agent = str(seed(cli))
    make = ["recharge", "make", "--agent", agent, "--kind", "mobile", "--number", "13900000002"]
    for n in range(4):
        cli.refused("bad_pin_format", *make, "--amount", "10", "--pin", "abc", "--key", f"f{n}")
    line = cli.refused("wrong_pin", *make, "--amount", "10", "--pin", "000000")
    assert "还可尝试2次" in line  # the malformed ones counted nothing
    assert cli.json("recharge", "list", "--agent", agent) == []


def test_money_commands_log_their_line_to_the_log_file(cli: Cli, tmp_path: Path) -> None:
    """The line every money operation gets (as ``serve`` logs it), for the command line too:
    to ``SMSMENU_LOG_FILE``; no password in it, nothing on stderr."""
    seed(cli)
    log_file = tmp_path / "ops.log"
    env = {"SMSMENU_LOG_FILE": str(log_file)}
    done = run(
        cli.url, "agent", "deposit", "--agent", "1", "--amount", "100", "--key", "d-1", env=env
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    refused = run(
        cli.url,
        *("recharge", "make", "--agent", "1", "--kind", "mobile", "--number", "13900000002"),
        *("--amount", "100", "--pin", "864209", "--key", "r-1"),
        env=env,
    )
    assert refused.returncode == 1
    lines = log_file.read_text(encoding="utf-8").splitlines()
    money = [line for line in lines if " smsmenu.money " in line]
    assert len(money) == 2, lines
    deposit, recharge = money
    assert "money op=deposit agent=1 amount_fen=10000 key=d-1 tx=" in deposit
    assert "op=recharge agent=1 kind=mobile number=13900000002 amount_fen=10000 key=r-1" in recharge
    assert recharge.endswith(" refused=wrong_pin") and "864209" not in log_file.read_text()
