"""Entry point of the ``smsmenu`` command: every command module, then the root group."""

from __future__ import annotations

import sys

import click

# Command modules register their commands on ``root`` when imported (one line each):
from smsmenu.cli import fail, ledger, menus, root, serve, smpp  # noqa: F401  (they add commands)


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


if __name__ == "__main__":
    main()
