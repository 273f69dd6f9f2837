"""The ``smsmenu`` command: the root group and the output conventions every command follows.

Every command takes ``--json``. A refusal or bad input prints one line on stderr and exits
non-zero; no stack trace ever reaches the user. The command modules (``cli.ledger``,
``cli.menus``, ``cli.smpp``) add their commands to ``root``, only parse arguments and call
``smsmenu.app``; ``cli.main`` imports them all and is the entry point.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import datetime
from enum import Enum
from typing import Any, NoReturn

import click

from smsmenu import __version__


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums and datetimes as plain JSON values."""
    if is_dataclass(value) and not isinstance(value, type):
        return {key: to_jsonable(item) for key, item in asdict(value).items()}
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def emit(as_json: bool, value: Any, human: Callable[[Any], str]) -> None:
    """Print ``value`` as JSON or as the human text ``human(value)``."""
    if as_json:
        click.echo(json.dumps(to_jsonable(value), ensure_ascii=False))
    else:
        click.echo(human(value))


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and a non-zero exit."""
    click.echo(f"smsmenu: {message}", err=True)
    sys.exit(code)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group()
@click.version_option(__version__, prog_name="smsmenu")
def root() -> None:
    """SMS/USSD menu server for telecom air recharge (空中充值)."""
