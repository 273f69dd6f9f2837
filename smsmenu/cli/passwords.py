"""Passwords for the commands that take one, kept off the command line where ``ps`` shows them.

An option declared with ``password_option`` may be given as before, or as ``-`` (read one line
of stdin), or left out: then it is asked for without echo when stdin is a terminal. A command
taking two reads its ``-`` lines in its option order (``read`` is given them in that order).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def password_option(*names: str, help: str, asked: bool = True) -> Callable[[F], F]:
    """A click option for a password (see the module notes), documented in ``--help``;
    ``asked=False`` for one whose absence means something else (``help`` says what)."""
    how = "'-' reads it from stdin (one line)"
    how += "; left out, it is asked for without echo on a terminal." if asked else "."
    how += " A password given here is visible to other users (ps)."
    return click.option(*names, default=None, metavar="PASSWORD|-", help=f"{help} {how}")


def read(*passwords: tuple[str, str, str | None], confirm: bool = False) -> list[str]:
    """Each password of ``(option, prompt label, value given)``, in the order given: the value,
    one stdin line for ``-``, or asked for on a terminal (twice when ``confirm``: one that is
    being set). Left out without a terminal, or ``-`` with no line left: click's usage error,
    naming the option."""
    values = []
    for option, label, given in passwords:
        if given == "-":
            line = sys.stdin.readline()
            if not line:
                raise click.UsageError(f"{option} -: stdin ended before its line")
            values.append(line.rstrip("\r\n"))
        elif given is not None:
            values.append(given)
        elif sys.stdin.isatty():
            asked = click.prompt(label, hide_input=True, confirmation_prompt=confirm, err=True)
            values.append(str(asked))
        else:
            raise click.UsageError(
                f"Missing option '{option}': give it, or '-' to read it from stdin"
                " (on a terminal it is asked for)"
            )
    return values
