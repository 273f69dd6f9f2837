"""Which modules the ``smsmenu`` command loads: the real entry point in a process of its own,
which prints ``sys.modules`` on stderr as it exits."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

#: What no help screen may load: the database, Redis, the menus' machines, passwords, settings.
HEAVY = (
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "redis",
    "hiredis",
    "statemachine",
    "argon2",
    "alembic",
    "pydantic",
    "pydantic_core",
    "pydantic_settings",
)

_MARK = "MODULES:"
_PROBE = f"""
import sys
try:
    if sys.argv[1:]:
        from smsmenu.cli.main import main
        main()
    else:
        import smsmenu.cli.main
finally:
    print({_MARK!r}, sorted(sys.modules), file=sys.stderr)
"""


def loaded(
    *args: str, env: dict[str, str] | None = None
) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The modules loaded by ``smsmenu ARGS`` (no ARGS: by importing ``smsmenu.cli.main``)."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    head, _, listing = result.stderr.rpartition(_MARK)
    assert listing, result.stderr
    result.stderr = head
    return set(ast.literal_eval(listing.strip())), result


def within(modules: set[str], *packages: str) -> set[str]:
    """The modules of ``modules`` that are ``packages`` or inside them."""
    return {m for m in modules for p in packages if m == p or m.startswith(f"{p}.")}
