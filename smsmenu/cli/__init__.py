"""The ``smsmenu`` command: the root group and the output conventions every command follows.

Every command takes ``--json``. A refusal or bad input prints one line on stderr and exits
non-zero; no stack trace ever reaches the user. Every time a person reads (text output, log
lines) is in the ``TIMEZONE`` setting (``local_time``, ``LogFormatter``); JSON output keeps times
as ISO 8601 with the offset of that zone. The command modules (``cli.ledger``,
``cli.menus``, ``cli.smpp``) add their commands to ``root``, only parse arguments and call
``smsmenu.app``; ``cli.main`` imports them all and is the entry point.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import datetime, tzinfo
from enum import Enum
from typing import Any, NoReturn

import click

from smsmenu import __version__


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


class LogFormatter(logging.Formatter):
    """Log lines stamped in ``zone`` (the TIMEZONE setting): ISO 8601 with its offset, to the
    millisecond, whatever the machine's own time zone."""

    def __init__(self, fmt: str | None, zone: tzinfo) -> None:
        super().__init__(fmt)
        self.zone = zone

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, self.zone).isoformat("T", "milliseconds")


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and a non-zero exit."""
    click.echo(f"smsmenu: {message}", err=True)
    sys.exit(code)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group()
@click.version_option(__version__, prog_name="smsmenu")
def root() -> None:
    """SMS/USSD menu server for telecom air recharge (空中充值)."""
