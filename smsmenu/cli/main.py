"""Entry point of the ``smsmenu`` command: every command module, then the root group."""

from __future__ import annotations

import sys

import click

from smsmenu.cli import fail, root

# Command modules register their commands on ``root`` when imported (one line each):
from smsmenu.cli import ledger as _ledger  # noqa: F401  (db, subscriber, agent, recharge, …)
from smsmenu.cli import menus as _menus  # noqa: F401  (chat, menu graph)


def main() -> None:
    """Entry point: runs the command; an unexpected error is one line, not a traceback."""
    try:
        root.main(standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted", 130)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:
        fail(f"error: {type(exc).__name__}: {exc}")
