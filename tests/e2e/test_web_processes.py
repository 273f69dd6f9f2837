"""The web part inside ``smsmenu serve --web`` and ``smsmenu demo``, as real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.servers import TEST_SECRET_KEY, free_port

SMSMENU = [sys.executable, "-m", "smsmenu.cli.main"]


def wait_for(url: str, process: subprocess.Popen[str], within_s: float = 30) -> bytes:
    deadline = time.monotonic() + within_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body: bytes = response.read()
                return body
        except OSError:
            assert process.poll() is None, "the process ended"
            assert time.monotonic() < deadline, f"{url} never answered"
            time.sleep(0.2)


def test_serve_web_serves_the_pages_beside_the_link(sqlite_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SMSMENU_")},
        "SMSMENU_DATABASE_URL": sqlite_url,
        "SMSMENU_SECRET_KEY": TEST_SECRET_KEY,
        "SMSMENU_SMSC_PORT": str(free_port()),  # nobody there: the link keeps trying
    }
    with subprocess.Popen(
        [*SMSMENU, "serve", "--web", "--web-port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    ) as process:
        try:
            page = wait_for(f"http://127.0.0.1:{port}/agent/login", process)
            assert "代办户登录" in page.decode()
            document = json.loads(wait_for(f"http://127.0.0.1:{port}/api/v1/openapi.json", process))
            assert document["openapi"].startswith("3.")
        finally:
            process.send_signal(signal.SIGTERM)
            _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors


def test_demo_prints_the_web_url_and_serves_it(tmp_path: Path) -> None:
    with subprocess.Popen(
        [*SMSMENU, "demo", "--web-port", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    ) as process:
        assert process.stdout is not None and process.stdin is not None
        deadline = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            found = re.search(r"web +(http://127\.0\.0\.1:[0-9]+/)", line)
            url = found.group(1) if found else None
        assert url is not None
        assert "demo-supervisor" in line and "management password" in line
        page = wait_for(f"{url}operator/login", process)
        assert "营业员登录" in page.decode()
        process.stdin.close()
        process.wait(60)
    assert process.returncode == 0
