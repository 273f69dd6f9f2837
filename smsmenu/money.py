"""Money is integer fen (1 yuan = 100 fen); these turn it into text and back. Pure."""

from __future__ import annotations

import re

FEN_PER_YUAN = 100
_WHOLE_YUAN = re.compile(r"[0-9]{1,9}")
_DECIMAL_YUAN = re.compile(r"([0-9]{1,9})(?:\.([0-9]{1,2}))?")


def format_yuan(fen: int) -> str:
    """``5000`` -> ``"50.00元"``; negative amounts keep their sign."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), FEN_PER_YUAN)
    return f"{sign}{whole}.{part:02d}元"


def parse_whole_yuan(text: str) -> int | None:
    """A whole number of yuan typed by a person, in fen; None if it is not one."""
    text = text.strip()
    if not _WHOLE_YUAN.fullmatch(text):
        return None
    return int(text) * FEN_PER_YUAN


def parse_yuan(text: str) -> int | None:
    """Yuan with at most two decimals (``"12.5"``), in fen; None if malformed."""
    match = _DECIMAL_YUAN.fullmatch(text.strip())
    if not match:
        return None
    whole, part = match.group(1), (match.group(2) or "").ljust(2, "0")
    return int(whole) * FEN_PER_YUAN + int(part)
