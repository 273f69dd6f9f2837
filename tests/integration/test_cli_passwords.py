"""Passwords kept off the command line (where ``ps`` shows them): every command that takes one
also asks for it without echo when the option is omitted on a terminal, or reads it from
stdin with ``-`` (one line each, in the command's option order). CliRunner for stdin, and one
real process on a pseudo-terminal for the hidden prompt."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import shutil
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from smsmenu.app import load_catalogue
from smsmenu.cli.main import root
from smsmenu.clock import SystemClock
from smsmenu.ledger.api import Kind, RechargeRequest, RechargeStatus
from smsmenu.ledger.billing import ScriptedBilling
from smsmenu.ledger.db import create_engine
from smsmenu.ledger.service import LedgerService
from smsmenu.settings import Settings
from tests.conftest import TEST_SECRET_KEY

pytestmark = pytest.mark.timeout(60)

PHONE, TARGET = "13800000001", "13900000002"
TRADE, MGMT = "135790", "246801"
OPEN = ["agent", "open", "--phone", PHONE, "--deposit", "1000", "--json"]
MAKE = ["recharge", "make", "--agent", "1", "--kind", "mobile", "--number", TARGET]


class Cli:
    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, *args: str, input: str = "") -> Result:
        env = {"SMSMENU_DATABASE_URL": self.url}
        return CliRunner().invoke(root, list(args), env=env, input=input)

    def ok(self, *args: str, input: str = "") -> dict[str, object]:
        result = self(*args, "--json", input=input)
        assert result.exit_code == 0, (args, result.output, result.stderr)
        assert TRADE not in result.output and MGMT not in result.output
        value = json.loads(result.stdout)
        assert isinstance(value, dict)
        return value


async def ledger_of(url: str) -> LedgerService:
    settings = Settings(database_url=url)
    engine = create_engine(settings.database_url)
    return LedgerService(engine, SystemClock(), load_catalogue(settings), settings)


def subscribers(cli: Cli) -> None:
    for number in (PHONE, TARGET):
        add = ["subscriber", "add", "--number", number, "--kind", "mobile"]
        cli.ok(*add, "--billing", "prepaid")


@pytest.fixture
def cli(sqlite_template: Path, tmp_path: Path) -> Cli:
    shutil.copyfile(sqlite_template, tmp_path / "ledger.db")
    cli = Cli(f"sqlite:///{tmp_path / 'ledger.db'}")
    subscribers(cli)
    return cli


def one_line(result: Result) -> str:
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr.strip()


def usage_error(result: Result) -> str:
    """click's usage error (the entry point prints only its last line)."""
    assert result.exit_code == 2, result.output
    return result.stderr.strip().splitlines()[-1]


def test_both_passwords_from_stdin_in_option_order(cli: Cli) -> None:
    opened = cli.ok(*OPEN, "--mgmt-pin", "-", "--trade-pin", "-", input=f"{TRADE}\n{MGMT}\n")
    assert opened["agent_id"] == 1

    async def check() -> tuple[bool, bool]:
        ledger = await ledger_of(cli.url)
        try:
            return await ledger.verify_mgmt_pin(1, MGMT), await ledger.verify_mgmt_pin(1, TRADE)
        finally:
            await ledger.engine.dispose()

    assert asyncio.run(check()) == (True, False)  # the first line is the trade password
    made = cli.ok(*MAKE, "--amount", "50", "--pin", "-", input=f"{TRADE}\n")
    assert made["status"] == "succeeded"


def test_one_password_from_stdin_the_other_given(cli: Cli) -> None:
    cli.ok(*OPEN, "--trade-pin", TRADE, "--mgmt-pin", "-", input=f"{MGMT}\r\n")
    wrong = cli(*MAKE, "--amount", "50", "--pin", "-", input=f"{MGMT}\n")
    assert wrong.exit_code == 1 and one_line(wrong).startswith("smsmenu: refused (wrong_pin)")
    assert MGMT not in wrong.output


def test_retry_reads_its_password_from_stdin(cli: Cli) -> None:
    cli.ok(*OPEN, "--trade-pin", TRADE, "--mgmt-pin", MGMT)

    async def fail_once() -> int:
        ledger = await ledger_of(cli.url)
        ledger.billing = ScriptedBilling(fail_numbers=[TARGET])
        try:
            request = RechargeRequest(1, Kind.MOBILE, TARGET, 3000, TRADE, "k-failed")
            failed = await ledger.recharge(request)
            assert failed.status is RechargeStatus.FAILED
            return failed.tx_id
        finally:
            await ledger.engine.dispose()

    tx = str(asyncio.run(fail_once()))
    retried = cli.ok("recharge", "retry", "--agent", "1", "--tx", tx, "--pin", "-", input=TRADE)
    assert retried["status"] == "succeeded" and retried["number"] == TARGET


@pytest.mark.parametrize(
    ("args", "option"),
    [
        ([*OPEN, "--mgmt-pin", MGMT], "--trade-pin"),
        ([*OPEN, "--trade-pin", TRADE], "--mgmt-pin"),
        ([*MAKE, "--amount", "50"], "--pin"),
        (["recharge", "retry", "--agent", "1", "--tx", "1"], "--pin"),
    ],
)
def test_omitted_without_a_terminal_is_one_line_naming_the_option(
    cli: Cli, args: list[str], option: str
) -> None:
    error = usage_error(cli(*args))
    assert error.startswith(f"Error: Missing option '{option}': ") and "'-'" in error, error
    assert cli("agent", "show", "--agent", "1").exit_code == 1  # nothing opened


def test_stdin_without_the_line_is_one_line(cli: Cli) -> None:
    result = cli(*OPEN, "--trade-pin", "-", "--mgmt-pin", "-", input=f"{TRADE}\n")
    assert "--mgmt-pin -: stdin ended" in usage_error(result)
    assert TRADE not in result.output


@pytest.mark.parametrize(
    "command", [["agent", "open"], ["recharge", "make"], ["recharge", "retry"], ["simulator"]]
)
def test_help_says_how(command: list[str]) -> None:
    result = CliRunner().invoke(root, [*command, "--help"])
    text = " ".join(result.output.split())
    assert "'-' reads it from stdin" in text, text
    assert "visible to other users" in text


def test_hidden_prompt_on_a_terminal(sqlite_template: Path, tmp_path: Path) -> None:
    """``agent open`` with neither password, in a process of its own whose terminal is a
    pseudo-terminal: four prompts (each password twice), nothing echoed."""
    shutil.copyfile(sqlite_template, tmp_path / "ledger.db")
    cli = Cli(f"sqlite:///{tmp_path / 'ledger.db'}")
    subscribers(cli)
    env = {
        "SMSMENU_DATABASE_URL": cli.url,
        "SMSMENU_SECRET_KEY": TEST_SECRET_KEY,
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    command = [sys.executable, "-c", "from smsmenu.cli.main import main; main()", *OPEN]
    pid, terminal = pty.fork()
    if pid == 0:  # the child: its stdin, stdout, stderr and controlling terminal are the pty
        os.execve(sys.executable, command, env)
    seen = b""
    for answer in (TRADE, TRADE, MGMT, MGMT):
        seen += read_until(terminal, b": ")
        os.write(terminal, answer.encode() + b"\n")
    seen += read_until(terminal, None)
    _, status = os.waitpid(pid, 0)
    text = seen.decode()
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert text.count("password") >= 2 and "Repeat" in text, text
    assert TRADE not in text and MGMT not in text  # never echoed
    assert '"agent_id": 1' in text


def read_until(fd: int, marker: bytes | None, within_s: float = 30.0) -> bytes:
    """Bytes from ``fd`` up to and with ``marker`` (None: until the other side closes)."""
    got, deadline = b"", time.monotonic() + within_s
    while marker is None or marker not in got:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"waited for {marker!r}, got {got!r}"
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            chunk = b""
        if not chunk:
            assert marker is None, got
            return got
        got += chunk
    return got
