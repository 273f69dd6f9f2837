"""A real browser for the web tests: headless Chromium from Debian's ``chromium`` package,
driven by Playwright (whose own browser download is not reachable here). When the browser is
missing, ``chromium_path`` installs it (with a CJK font, else Chinese renders as boxes): the
browser tests never skip."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
PACKAGES = ["chromium", "fonts-wqy-zenhei"]
#: Where the tests save the main pages' screenshots: a temp folder, or with
#: ``SMSMENU_SCREENSHOTS=docs/screenshots`` the README's images.
SCREENSHOTS_ENV = "SMSMENU_SCREENSHOTS"
#: A phone's screen: the pages must be usable on one.
PHONE = {"width": 390, "height": 844}


def install_chromium() -> Path:
    """Debian's chromium, installed with apt-get if it is not there yet."""
    if CHROMIUM.exists():
        return CHROMIUM
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    assert CHROMIUM.exists(), "apt-get installed no /usr/bin/chromium"
    return CHROMIUM


def screenshot_dir(default: Path) -> Path:
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
