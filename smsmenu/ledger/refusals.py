"""A refusal as the text a person reads (an SMS, a CLI line, later a page)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from smsmenu.ledger.api import Refusal
from smsmenu.money import format_yuan
from smsmenu.texts import Catalogue


def refusal_text(catalogue: Catalogue, refusal: Refusal, zone: Any = UTC) -> str:
    """The catalogue's text for a refusal, its parameters shown for people (yuan, local time).

    Never raises: a refusal goes back to whoever asked (an SMS, a CLI line), so a rule without
    a text, or whose parameters do not fill its text, still gets a short one: the clauses
    that can be filled (``Catalogue.render_lenient``), else the generic refusal."""
    params: dict[str, Any] = {}
    for name, value in refusal.params.items():
        if name.endswith("_fen") and isinstance(value, int):
            params[name.removesuffix("_fen")] = format_yuan(value)
        elif isinstance(value, datetime):
            params[name] = value.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        else:
            params[name] = value
    key = f"refusal_{refusal.rule.value}"
    text = catalogue.render_lenient(key, **params) if key in catalogue else ""
    return text or catalogue.render("refused_generic")
