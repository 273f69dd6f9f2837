"""A ledger command loads the ledger and nothing of the menus, Redis, SMPP or Alembic (the real
entry point, in a process of its own, on SQLite)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from smsmenu.cli.main import root
from tests.probe import loaded, within
from tests.servers import TEST_SECRET_KEY

NOT_FOR_THE_LEDGER = (
    "smsmenu.app",
    "smsmenu.menus",
    "smsmenu.smpp",
    "redis",
    "hiredis",
    "statemachine",
    "alembic",
    "asyncpg",
)


def test_agent_show_loads_only_the_ledger_reads(sqlite_template: Path, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    shutil.copyfile(sqlite_template, path)
    env = {"SMSMENU_DATABASE_URL": f"sqlite+aiosqlite:///{path}"}
    env["SMSMENU_SECRET_KEY"] = TEST_SECRET_KEY
    phone, pins = "13800000001", ["--trade-pin", "135790", "--mgmt-pin", "246801"]
    for args in (
        ["subscriber", "add", "--number", phone, "--kind", "mobile", "--billing", "prepaid"],
        ["agent", "open", "--phone", phone, "--deposit", "1000", *pins],
    ):
        result = CliRunner().invoke(root, args, env=env)
        assert result.exit_code == 0, result.output

    modules, shown = loaded("agent", "show", "--agent", "1", "--json", env=env)

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["phone"] == phone
    assert {"sqlalchemy", "aiosqlite", "smsmenu.app_ledger", "smsmenu.ledger.queries"} <= modules
    assert not within(modules, *NOT_FOR_THE_LEDGER)
    # a read needs neither the ledger's writers and passwords nor PostgreSQL's dialect
    assert not within(
        modules,
        "smsmenu.ledger.service",
        "smsmenu.ledger.passwords",
        "argon2",
        "sqlalchemy.dialects.postgresql",
    )
    assert not within(modules, "smsmenu.cli.menus", "smsmenu.cli.serve", "smsmenu.cli.smpp")
