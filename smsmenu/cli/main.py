"""Entry point of the ``smsmenu`` command: the root group and ``main``.

The root group names every command and where it lives; a command's module is imported only
when that command runs or shows its own help (``cli.lazy``), so ``smsmenu --help`` loads no
database, menu or SMPP code. Each entry's help is the first paragraph of the command's own.
"""

from __future__ import annotations

import sys

import click

from smsmenu import __version__
from smsmenu.cli import fail
from smsmenu.cli.lazy import LazyCommand, LazyGroup

COMMANDS = {
    "agent": LazyCommand("smsmenu.cli.ledger:agent", "Agents (代办户) and their float accounts."),
    "apikey": LazyCommand(
        "smsmenu.cli.web:apikey",
        "Keys of the HTTP API (SPEC §9): one per client, scoped, revocable.",
    ),
    "cards": LazyCommand(
        "smsmenu.cli.cards:cards", "Recharge cards (充值卡): batches, cards, counts."
    ),
    "chat": LazyCommand(
        "smsmenu.cli.menus:chat",
        "Talk to the menus as PHONE: one message per line, until end of input.",
    ),
    "db": LazyCommand("smsmenu.cli.ledger:db", "The ledger's database schema."),
    "deadletter": LazyCommand(
        "smsmenu.cli.ledger:deadletter_group", "Messages that could not be handled (SPEC §11)."
    ),
    "demo": LazyCommand(
        "smsmenu.cli.serve:demo",
        "Everything in one process: a fresh SQLite ledger (schema upgraded, seeded), in-process"
        " sessions, the SMSC simulator with the SMPP link, menus and outbox sender bound to it,"
        " and the phone console (or ``--script``).",
    ),
    "ledger": LazyCommand("smsmenu.cli.ledger:ledger_group", "The books."),
    "menu": LazyCommand("smsmenu.cli.menus:menu", "The menu state machines."),
    "operator": LazyCommand(
        "smsmenu.cli.web:operator",
        "Staff accounts of the operator's web pages (roles staff and supervisor).",
    ),
    "outbox": LazyCommand(
        "smsmenu.cli.ledger:outbox_group", "Texts waiting in (or sent from) the outbox."
    ),
    "recharge": LazyCommand("smsmenu.cli.ledger:recharge", "Recharges (空中充值)."),
    "report": LazyCommand("smsmenu.cli.ledger:report", "Reports."),
    "secret": LazyCommand(
        "smsmenu.cli.serve:secret", "The SECRET_KEY every worker shares (SPEC §10)."
    ),
    "serve": LazyCommand(
        "smsmenu.cli.serve:serve",
        "Run the server: bind to the SMSC, answer the menus, send the outbox.",
    ),
    "simulator": LazyCommand(
        "smsmenu.cli.smpp:simulator",
        "The SMSC simulator: an SMPP server with a phone console (or a scripted dialogue).",
    ),
    "subscriber": LazyCommand("smsmenu.cli.ledger:subscriber", "Subscriber accounts."),
    "web": LazyCommand(
        "smsmenu.cli.web:web",
        "Serve the web pages and the HTTP API (SPEC §9) on the ledger, without SMPP.",
    ),
}


@click.group(cls=LazyGroup, lazy=COMMANDS)
@click.version_option(__version__, prog_name="smsmenu")
def root() -> None:
    """SMS/USSD menu server for telecom air recharge (空中充值)."""


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
