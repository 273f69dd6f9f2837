"""The simulator's script mode: in-process and as the ``smsmenu simulator`` command."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from smsmenu.messages import Inbound, Outbound
from smsmenu.smpp import script
from smsmenu.smpp.link import SmppLink
from tests.e2e.smpp_helpers import SERVICE, Recorder, bound_pair, fast_config, start_link
from tests.servers import free_port

# a hang must fail the test, not stall CI
pytestmark = pytest.mark.timeout(60)


def _menu(m: Inbound) -> list[Outbound]:
    text = {"1": "主菜单 1 天翼", "*100#": "主菜单（USSD）", "#": "再见"}.get(m.text, f"?{m.text}")
    return [Outbound(m.source, text, SERVICE, m.route.ending(m.text == "#"))]


DIALOGUE = """
timeout 5
> 13800000001: 1
< 13800000001: 主菜单 1 天翼
>ussd 13800000002: *100#
< 13800000002: 主菜单…
>ussd 13800000002: #
< 13800000002: ~再见$
"""


async def test_script_passes_and_a_mismatch_names_its_line() -> None:
    async with bound_pair(Recorder(_menu)) as (sim, _link):
        outcome = await script.run_script(sim, script.parse(DIALOGUE))
        assert outcome.ok and outcome.steps == 7
        bad = "> 13800000003: 1\n< 13800000003: 子菜单\n"
        outcome = await script.run_script(sim, script.parse(bad))
        assert not outcome.ok
        assert outcome.failure == "line 2: 13800000003 expected '子菜单', got '主菜单 1 天翼'"
        late = "timeout 0.2\n< 13800000009: x\n"
        outcome = await script.run_script(sim, script.parse(late))
        assert outcome.failure.startswith("line 2: 13800000009 got no reply within 0.2s")


async def _run_cli(
    tmp_path: Path, dialogue: str, *args: str, stdin: bytes = b"", password: str = "secret"
) -> tuple[int, str, str]:
    path = tmp_path / "dialogue.txt"
    path.write_text(dialogue, encoding="utf-8")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from smsmenu.cli.main import main; main()",
        "simulator", "--port", str(port),
        "--script", str(path), "--bind-timeout", "10", "--reply-timeout", "5", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    link = await start_link(SmppLink(fast_config(port, password=password)), Recorder(_menu))
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    finally:
        await link.stop()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_script_mode(tmp_path: Path) -> None:
    code, out, err = await _run_cli(tmp_path, DIALOGUE)
    assert code == 0, err
    assert "script passed: 7 steps" in out


async def test_cli_expected_password_from_stdin(tmp_path: Path) -> None:
    """``--password -``: the SMSC password the simulator expects, kept out of ``ps``."""
    code, out, err = await _run_cli(
        tmp_path, DIALOGUE, "--password", "-", stdin=b"pw-from-stdin\n", password="pw-from-stdin"
    )
    assert code == 0, err
    assert "script passed: 7 steps" in out


async def test_cli_script_mismatch_exits_non_zero(tmp_path: Path) -> None:
    code, _out, err = await _run_cli(tmp_path, "> 13800000001: 1\n< 13800000001: 余额\n")
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "smsmenu: line 2: 13800000001 expected '余额', got '主菜单 1 天翼'"
    )


async def test_cli_console(tmp_path: Path) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from smsmenu.cli.main import main; main()",
        "simulator", "--port", str(port),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    link = SmppLink(fast_config(port))
    try:
        banner = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert f"127.0.0.1:{port}" in banner.decode()
        await start_link(link, Recorder(_menu))
        await link.wait_bound(10)
        proc.stdin.write(b"13800000001> 1\n13800000002 ussd> *100#\n")
        await proc.stdin.drain()
        lines: list[str] = []
        async with asyncio.timeout(10):
            while len([line for line in lines if line.startswith("<")]) < 2:
                lines.append((await proc.stdout.readline()).decode().rstrip("\n"))
        assert "< 13800000001 from 10001: 主菜单 1 天翼" in lines
        assert "< 13800000002 from 10001: 主菜单（USSD）  [ussd op=2 session=1 open]" in lines
    finally:
        await link.stop()
        proc.terminate()
        await proc.wait()
