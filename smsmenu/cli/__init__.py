"""The ``smsmenu`` command's output conventions, which every command follows.

Every command takes ``--json``. A refusal or bad input prints one line on stderr and exits
non-zero; no stack trace ever reaches the user. Every command gets its Settings from
``command_settings()`` (a bad one: one line naming its key) and runs what needs the ledger inside
``startup_errors`` (no schema, no secret: one line). Every time a person reads (text output, log
lines) is in the ``TIMEZONE`` setting (``local_time``, ``logs.LogFormatter``); JSON output keeps
times as ISO 8601 with the offset of that zone. The command modules (``cli.ledger``, ``cli.menus``,
``cli.smpp``, ``cli.serve``) define the commands, only parse arguments and call
``smsmenu.app`` (or ``smsmenu.app_ledger``); ``cli.main`` is the entry point: its root group
names every command and imports a command's module only when that command is used.
Nothing heavy is imported here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import datetime, tzinfo
from enum import Enum
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:  # pydantic and SQLAlchemy are imported by the commands that need them
    from smsmenu.settings import Settings


def to_jsonable(value: Any, zone: tzinfo | None = None) -> Any:
    """Dataclasses, enums and datetimes as plain JSON values; datetimes as ISO 8601 with their
    offset, moved into ``zone`` when given (the same instant)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {key: to_jsonable(item, zone) for key, item in asdict(value).items()}
    if isinstance(value, dict):
        return {str(key): to_jsonable(item, zone) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item, zone) for item in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return (value.astimezone(zone) if zone else value).isoformat()
    return value


def emit(
    as_json: bool, value: Any, human: Callable[[Any], str], zone: tzinfo | None = None
) -> None:
    """Print ``value`` as JSON (its times in ``zone``, the TIMEZONE setting) or as the human
    text ``human(value)``."""
    if as_json:
        click.echo(json.dumps(to_jsonable(value, zone), ensure_ascii=False))
    else:
        click.echo(human(value))


def local_time(when: datetime, zone: tzinfo) -> str:
    """A time as a person reads it: in ``zone`` (the TIMEZONE setting), to the second."""
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


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
