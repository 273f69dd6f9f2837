"""Digits as the product reads them from a phone, the SMSC or a command line: ASCII 0-9 only.

Such text may hold digits of other scripts: full-width ``３``, Arabic-Indic ``٣``, superscript
``²``, circled ``①``. ``str.isdigit`` is true for all of them, ``int()`` reads some
(``int("３") == 3``), raises on others (``int("²")``) and on more than 4300 digits, so neither
is used on such text: these are. Patterns spell digits ``[0-9]``, never ``\\d`` (which matches
the digits of every script). Pure.
"""

from __future__ import annotations


def is_digits(text: str) -> bool:
    """True when ``text`` is one or more ASCII digits and nothing else."""
    return text.isascii() and text.isdigit()


def to_int(text: str, max_digits: int) -> int | None:
    """``text`` as a number when it is ASCII digits only, at most ``max_digits`` of them."""
    return int(text) if is_digits(text) and len(text) <= max_digits else None


def masked(text: str) -> str:
    """``text`` with every digit of any script replaced by ``*``: how a text that may hold a
    password (or a number) is kept for people to read."""
    return "".join("*" if ch.isnumeric() else ch for ch in text)
