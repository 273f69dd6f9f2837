"""``smsmenu apikey``, ``smsmenu operator`` and ``smsmenu web``, run for real on SQLite and
PostgreSQL: a key made on the command line opens the API; ``smsmenu web`` serves it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.integration.test_cli_ledger import Cli, cli, seed  # noqa: F401 (the fixture)
from tests.probe import loaded, within
from tests.servers import TEST_SECRET_KEY, free_port


def test_apikey_create_list_revoke(cli: Cli) -> None:  # noqa: F811
    agent_id = seed(cli)
    made = cli.json("apikey", "create", "--name", "erp", "--scope", "operator")
    assert set(made) == {"name", "scope", "key"} and made["name"] == "erp"  # type: ignore[index]
    scoped = cli.json("apikey", "create", "--name", "shop", "--scope", f"agent:{agent_id}")
    assert scoped["scope"] == f"agent:{agent_id}"  # type: ignore[index]
    listed = cli.json("apikey", "list")
    assert [k["name"] for k in listed] == ["erp", "shop"]  # type: ignore[union-attr,index]
    assert made["key"] not in json.dumps(listed)  # type: ignore[index]
    cli.refused("name_taken", "apikey", "create", "--name", "erp", "--scope", "operator")
    cli.refused("bad_scope", "apikey", "create", "--name", "x", "--scope", "agent:one")
    cli.refused("agent_unknown", "apikey", "create", "--name", "y", "--scope", "agent:999")
    assert cli.json("apikey", "revoke", "--name", "erp") == {"name": "erp", "revoked": True}
    again = cli("apikey", "revoke", "--name", "erp", ok=False)
    assert again.exit_code == 1


def test_operator_create(cli: Cli) -> None:  # noqa: F811
    seed(cli)
    made = cli.runner.invoke(
        __import__("smsmenu.cli.main", fromlist=["root"]).root,
        [
            "operator",
            "create",
            "--name",
            "boss",
            "--role",
            "supervisor",
            "--password",
            "-",
            "--json",
        ],
        input="long-enough-1\n",
        env={"SMSMENU_DATABASE_URL": cli.url},
    )
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout) == {"id": 1, "name": "boss", "role": "supervisor"}
    short = cli(
        "operator", "create", "--name", "x", "--role", "staff", "--password", "short", ok=False
    )
    assert short.exit_code == 1 and "weak_password" in short.stderr


def test_web_serves_the_api(cli: Cli) -> None:  # noqa: F811
    agent_id = seed(cli)
    key = cli.json("apikey", "create", "--name", "erp", "--scope", "operator")["key"]  # type: ignore[index]
    port = free_port()
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from smsmenu.cli.main import main; main()",
            "web",
            "--port",
            str(port),
        ],
        env={
            **os.environ,
            "SMSMENU_DATABASE_URL": cli.url,
            "SMSMENU_SECRET_KEY": TEST_SECRET_KEY,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        _check_web(process, port, agent_id, key)


def _check_web(process: subprocess.Popen[str], port: int, agent_id: int, key: str) -> None:
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/agents/{agent_id}",
            headers={"Authorization": f"Bearer {key}"},
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    agent = json.loads(response.read())
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.2)
        assert agent["agent_id"] == agent_id
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/agent/login", timeout=5) as page:
            assert page.headers["content-security-policy"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=20)
    assert process.returncode == 0, errors
    assert key not in errors


def test_key_commands_load_no_web_server(cli: Cli) -> None:  # noqa: F811
    """``apikey`` and ``operator`` open the ledger only: no HTTP server, templates, menus or
    SMPP (the real entry point, a process of its own)."""
    seed(cli)
    env = {"SMSMENU_DATABASE_URL": cli.url, "SMSMENU_SECRET_KEY": TEST_SECRET_KEY}
    modules, listed = loaded("apikey", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "smsmenu.web.apikeys" in modules
    heavy = ("starlette", "uvicorn", "jinja2", "smsmenu.app", "smsmenu.menus", "smsmenu.smpp")
    assert not within(modules, *heavy)
    help_modules, shown = loaded("web", "--help", env=env)
    assert shown.returncode == 0
    assert not within(help_modules, "starlette", "uvicorn", "sqlalchemy", "smsmenu.web")
