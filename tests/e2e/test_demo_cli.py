"""``smsmenu demo`` as a person runs it: one command on a fresh checkout, a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIALOGUE = ROOT / "config" / "demo.dialogue"
SMSMENU = [sys.executable, "-m", "smsmenu.cli.main"]


def demo(*args: str, stdin: str | None = None, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SMSMENU, "demo", *args],
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_demo_plays_its_dialogue_file(tmp_path: Path) -> None:
    done = demo("--script", str(DIALOGUE), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "script passed: 24 steps" in done.stdout
    assert "trade password 135790" in done.stdout and "float 1000.00元" in done.stdout


def test_demo_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.dialogue"
    text = DIALOGUE.read_text(encoding="utf-8").replace("余额951.00元", "余额950.00元")
    wrong.write_text(text, encoding="utf-8")
    done = demo("--script", str(wrong), "--reply-timeout", "3", cwd=tmp_path)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("smsmenu: line ") and "余额951.00元" in line


def test_demo_console_exits_cleanly_at_end_of_input(tmp_path: Path) -> None:
    db = tmp_path / "my.db"
    done = demo("--db", str(db), stdin="13800000001> YE 135790\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "< 13800000001 from 10001: 充值专用账户可用余额：1000.00元" in done.stdout
    assert db.exists() and (tmp_path / "my.log").exists()
    assert "135790" not in (tmp_path / "my.log").read_text(encoding="utf-8")
    closed = demo(cwd=tmp_path)  # stdin closed at once
    assert closed.returncode == 0, closed.stderr
    assert "end of input" in closed.stdout


def test_serve_without_a_schema_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSMENU_")}
    env["SMSMENU_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    done = subprocess.run(
        [*SMSMENU, "serve"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("smsmenu: database sqlite+aiosqlite:///") and "upgrade" in last
