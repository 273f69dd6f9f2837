"""Imports point inward only: links → menus → ledger, nothing back (DESIGN.md's layout).

The parts may use the shared base modules (messages, clock, texts, settings, money, keys,
digits, links); only the composition root (``app``, ``app_ledger``, ``server``) and the entry
points (``cli``, ``web``) put parts together. A new link is one package beside ``smpp`` that
imports no menu and no ledger.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import smsmenu

ROOT = Path(smsmenu.__file__).parent
BASE = {"messages", "clock", "texts", "settings", "money", "keys", "digits", "links"}
#: What each part may import of smsmenu besides itself and the base modules.
ALLOWED = {
    "ledger": set(),
    "menus": {"ledger"},
    "delivery": {"ledger"},
    "smpp": set(),
}


def smsmenu_imports(package: str) -> set[tuple[str, str]]:
    """(file, first name under smsmenu) of every smsmenu import in ``package``."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "smsmenu" and len(parts) > 1:
                    found.add((str(path.relative_to(ROOT)), parts[1]))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_part_imports_only_inward(package: str) -> None:
    allowed = {package} | BASE | ALLOWED[package]
    outward = sorted((f, name) for f, name in smsmenu_imports(package) if name not in allowed)
    assert not outward, outward


def test_the_base_modules_import_no_part() -> None:
    parts = set(ALLOWED) | {"app", "app_ledger", "server", "cli", "web"}
    for module in BASE:
        path = ROOT / f"{module}.py"
        tree = ast.parse(path.read_text())
        imported = {
            node.module.split(".")[1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("smsmenu.")
        }
        assert not imported & parts, (module, imported & parts)


def test_the_check_sees_imports() -> None:
    """The walker finds what is there (else the tests above could never fail)."""
    assert ("menus/engine.py", "ledger") in smsmenu_imports("menus")
