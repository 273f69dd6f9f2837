"""A newcomer's settings at the command line (SPEC §12): the plain database URLs people copy
work; a malformed setting or a missing secret is one line naming its key, and exit 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from smsmenu.cli.main import root

pytestmark = pytest.mark.timeout(60)  # a command that does not stop at its settings would run on

COMMANDS = [
    ["db", "upgrade"],
    ["agent", "show", "--agent", "1"],
    ["chat", "--phone", "13800000001"],
    ["serve"],
    ["simulator", "--no-console"],
    ["demo"],
]


def invoke(*args: str, env: dict[str, str | None]) -> tuple[int, str]:
    result = CliRunner().invoke(root, list(args), env=env, input="")
    return result.exit_code, result.stderr


def one_line(stderr: str) -> str:
    assert stderr.endswith("\n") and stderr.count("\n") == 1, stderr
    return stderr.strip()


def test_plain_sqlite_url(tmp_path: Path) -> None:
    env: dict[str, str | None] = {"SMSMENU_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    assert invoke("db", "upgrade", env=env) == (0, "")
    add = ["subscriber", "add", "--number", "13900000002", "--kind", "mobile"]
    assert invoke(*add, "--billing", "prepaid", env=env) == (0, "")
    assert (tmp_path / "x.db").is_file()


def test_plain_postgresql_url(postgres_url: str) -> None:
    plain = postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    for url in (plain, plain.replace("postgresql://", "postgres://", 1)):
        code, stderr = invoke("db", "upgrade", env={"SMSMENU_DATABASE_URL": url})
        assert (code, stderr) == (0, "")
        code, stderr = invoke("agent", "show", "--agent", "1", env={"SMSMENU_DATABASE_URL": url})
        assert code == 1 and one_line(stderr).startswith("smsmenu: refused (agent_unknown)")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SMSMENU_SMSC_PORT", "not-a-port", "Input should be a valid integer"),
        ("SMSMENU_DATABASE_URL", "postgresql+psycopg2://u:hunter2@h/d", "synchronous driver"),
        ("SMSMENU_DATABASE_URL", "mysql://u:hunter2@h/d", "sqlite:// or postgresql://"),
        ("SMSMENU_TIMEZONE", "Mars/Olympus", "unknown time zone"),
    ],
)
def test_a_bad_setting_is_one_line_naming_its_key(
    command: list[str], name: str, value: str, says: str
) -> None:
    code, stderr = invoke(*command, env={name: value})
    line = one_line(stderr)
    assert code == 1 and line.startswith(f"smsmenu: bad setting {name}: ") and says in line, line
    assert "hunter2" not in line


@pytest.mark.parametrize("command", [["agent", "show", "--agent", "1"], ["serve"]])
def test_a_missing_secret_is_one_line(command: list[str], tmp_path: Path) -> None:
    env: dict[str, str | None] = {"SMSMENU_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    assert invoke("db", "upgrade", env=env) == (0, "")
    env |= {"SMSMENU_REDIS_URL": "redis://127.0.0.1:1/0", "SMSMENU_SECRET_KEY": ""}
    code, stderr = invoke(*command, env=env)
    *logged, line = stderr.strip().splitlines()
    assert code == 1 and line.startswith("smsmenu: SMSMENU_SECRET_KEY is not set"), stderr
    assert all(" INFO smsmenu.server starting: " in log for log in logged), stderr  # serve's log


def test_the_entry_point_says_the_same(tmp_path: Path) -> None:
    """The installed entry point, in a process of its own."""
    result = subprocess.run(
        [sys.executable, "-c", "from smsmenu.cli.main import main; main()", "db", "upgrade"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={"SMSMENU_SMSC_PORT": "70000", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert one_line(result.stderr).startswith("smsmenu: bad setting SMSMENU_SMSC_PORT: ")


def test_a_damaged_key_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "demo.db.key").write_text("short\n")
    env: dict[str, str | None] = {"SMSMENU_SECRET_KEY": ""}
    code, stderr = invoke("demo", "--db", str(tmp_path / "demo.db"), env=env)
    assert code == 1 and one_line(stderr).startswith("smsmenu: the secret key file "), stderr
