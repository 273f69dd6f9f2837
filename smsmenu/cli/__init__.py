"""The ``smsmenu`` command: the root group and the output conventions every command follows.

Every command takes ``--json``. A refusal or bad input prints one line on stderr and exits
non-zero; no stack trace ever reaches the user. Every command gets its Settings from
``command_settings()`` (a bad one: one line naming its key) and runs what needs the ledger inside
``startup_errors`` (no schema, no secret: one line). The command modules (``cli.ledger``,
``cli.menus``, ``cli.smpp``, ``cli.serve``) add their commands to ``root``, only parse
arguments and call ``smsmenu.app``; ``cli.main`` imports them all and is the entry point.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, NoReturn

import click

from smsmenu import __version__

if TYPE_CHECKING:  # pydantic and SQLAlchemy are imported by the commands that need them
    from smsmenu.settings import Settings


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


def command_settings() -> Settings:
    """The Settings of config/ and SMSMENU_*; a value that does not fit is one line naming its
    key, and exit 1."""
    from smsmenu.settings import BadSetting, load_settings

    try:
        return load_settings()
    except BadSetting as exc:
        fail(str(exc))


@contextmanager
def startup_errors(settings: Settings) -> Iterator[None]:
    """What stops a command before it can start, as one line and exit 1: a database without
    the ledger's schema, a missing ``SECRET_KEY``."""
    from smsmenu.keys import SecretMissing
    from smsmenu.ledger.db import SchemaMissing

    try:
        yield
    except SchemaMissing as exc:
        fail(f"database {safe_url(settings.database_url)}: {exc}")
    except SecretMissing as exc:
        fail(str(exc))


def safe_url(url: str) -> str:
    """A database/Redis URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':', 1)[0]}@{host}"
    return url


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group()
@click.version_option(__version__, prog_name="smsmenu")
def root() -> None:
    """SMS/USSD menu server for telecom air recharge (空中充值)."""
