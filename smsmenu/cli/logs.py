"""Log lines of every command: one line per event, stamped in the ``TIMEZONE`` setting.

``serve`` and ``demo`` log everything at ``LOG_LEVEL``; the other commands log only what an
operator should keep (a money operation's line, warnings) to ``LOG_FILE`` when it is set;
without it, only warnings, on stderr, so that their output stays what they print.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from smsmenu.settings import Settings


class LogFormatter(logging.Formatter):
    """Log lines stamped in ``zone`` (the TIMEZONE setting): ISO 8601 with its offset, to the
    millisecond, whatever the machine's own time zone."""

    def __init__(self, fmt: str | None, zone: tzinfo) -> None:
        super().__init__(fmt)
        self.zone = zone

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, self.zone).isoformat("T", "milliseconds")


class JsonFormatter(LogFormatter):
    def format(self, record: logging.LogRecord) -> str:
        value: dict[str, Any] = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            value["exc"] = self.formatException(record.exc_info)
        return json.dumps(value, ensure_ascii=False)


def configure_logging(
    level: str, as_json: bool, zone: tzinfo, stream: Any = None, path: Path | None = None
) -> None:
    """One line per event: ``time level logger key=value ...`` (or one JSON object), the time
    in ``zone`` (the TIMEZONE setting)."""
    handler: logging.Handler = (
        logging.FileHandler(path, encoding="utf-8")
        if path is not None
        else logging.StreamHandler(stream or sys.stderr)
    )
    handler.setFormatter(
        JsonFormatter(None, zone)
        if as_json
        else LogFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", zone)
    )
    rootlog = logging.getLogger()
    rootlog.handlers[:] = [handler]
    rootlog.setLevel(level.upper())
    for noisy in ("alembic", "sqlalchemy", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def command_logging(settings: Settings) -> None:
    """Logging of a command other than ``serve`` (see the module notes): without a
    ``LOG_FILE``, Python's last-resort handler prints warnings on stderr."""
    if settings.log_file:
        configure_logging(settings.log_level, False, settings.zone, path=Path(settings.log_file))
