"""The text catalogue: every SMS text lives in config/texts/<area>.<language>.toml, none in code.

Each file holds flat ``key = "text with {placeholders}"`` entries; keys are unique across the
files of one language. A second language is another set of files with its own suffix.
"""

from __future__ import annotations

import logging
import re
import tomllib
from pathlib import Path
from typing import Any

log = logging.getLogger("smsmenu.texts")

# A clause of a text: up to and with its punctuation mark (Chinese or Latin).
_CLAUSE = re.compile(r"[^，。；：！？,.;:!?]+[，。；：！？,.;:!?]*")
_ENDS = "。.！!？?"  # marks that may end a text
# What str.format raises for a field its parameters do not fill (or a malformed field).
_UNFILLED = (KeyError, IndexError, AttributeError, ValueError, TypeError)


class Catalogue:
    def __init__(self, entries: dict[str, str], language: str) -> None:
        self._entries = entries
        self.language = language

    @classmethod
    def load(cls, folder: Path, language: str) -> Catalogue:
        entries: dict[str, str] = {}
        for path in sorted(folder.glob(f"*.{language}.toml")):
            with path.open("rb") as handle:
                for key, value in tomllib.load(handle).items():
                    if key in entries:
                        raise ValueError(f"text key {key!r} is defined twice ({path.name})")
                    if not isinstance(value, str):
                        raise ValueError(f"text key {key!r} in {path.name} is not a string")
                    entries[key] = value
        if not entries:
            raise ValueError(f"no texts for language {language!r} in {folder}")
        return cls(entries, language)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def render(self, key: str, /, **params: Any) -> str:
        """The text for ``key`` with its placeholders filled; KeyError names a missing one."""
        try:
            template = self._entries[key]
        except KeyError:
            raise KeyError(f"no text {key!r} in the {self.language} catalogue") from None
        return template.format(**params)

    def render_lenient(self, key: str, /, **params: Any) -> str:
        """The text for ``key`` with the clauses that ``params`` do not fill left out
        (``"交易密码错误，还可尝试{remaining}次。"`` without ``remaining``: ``"交易密码错误。"``);
        "" when no clause is left. For texts filled from values a caller may get wrong: it
        never raises for the parameters, and logs the key of a text it had to cut."""
        template = self._entries[key]
        try:
            return template.format(**params)
        except _UNFILLED:
            log.warning("text %s: its parameters do not fill it; clauses left out", key)
        kept: list[str] = []
        for clause in _CLAUSE.findall(template):
            try:
                kept.append(clause.format(**params))
            except _UNFILLED:
                continue
        text = "".join(kept).rstrip("，；：,;:")
        if text and template[-1] in _ENDS and text[-1] not in _ENDS:
            text += template[-1]
        return text
