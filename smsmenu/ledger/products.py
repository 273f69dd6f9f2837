"""The product catalogue (config/products.toml): add-ons for sale and the validity bands.

Data packs (流量) and plans (套餐) have a code, a name, a price in fen and what they grant (MB
of data, a plan's validity in days). The validity bands say how many days a top-up of a
prepaid number adds to its validity (有效期). ``load_products`` reads and checks the file at
start: a malformed entry is a ``ProductsError`` naming it. Pure apart from reading the file.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from smsmenu.money import FEN_PER_YUAN

_CODE = re.compile(r"[A-Za-z0-9]{1,16}")
DATA, PLAN = "data", "plan"


class ProductsError(ValueError):
    """config/products.toml does not fit; the message names the entry."""


@dataclass(frozen=True)
class Item:
    code: str  # upper-case
    kind: str  # data | plan
    name: str
    price_fen: int
    data_mb: int
    days: int | None  # a plan's validity; a data pack's, if it ends

    def valid_until(self, today: date) -> date | None:
        """The last day the item holds when bought ``today``."""
        return None if self.days is None else today + timedelta(days=self.days - 1)


@dataclass(frozen=True)
class Products:
    items: tuple[Item, ...]
    bands: tuple[tuple[int, int], ...]  # (least amount in fen, days), ascending

    def item(self, code: str) -> Item | None:
        code = code.upper()
        return next((item for item in self.items if item.code == code), None)

    def of_kind(self, kind: str) -> list[Item]:
        return [item for item in self.items if item.kind == kind]

    def validity_days(self, amount_fen: int) -> int:
        """Days a top-up of ``amount_fen`` adds to a prepaid number's validity."""
        days = 0
        for least, band_days in self.bands:
            if amount_fen >= least:
                days = band_days
        return days

    def extended(self, valid_until: date | None, today: date, amount_fen: int) -> date | None:
        """The validity after a top-up of ``amount_fen``."""
        return extend(valid_until, today, self.validity_days(amount_fen))


def extend(valid_until: date | None, today: date, days: int) -> date | None:
    """A validity extended by ``days``: never shortened; one already past runs from today
    (PostgreSQL's ``ledger_book`` computes the same, migration 0006)."""
    if days == 0:
        return valid_until
    start = today if valid_until is None or valid_until < today else valid_until
    return start + timedelta(days=days)


def _item(entry: Any, index: int) -> Item:
    where = f"[[item]] #{index + 1}"
    if not isinstance(entry, dict):
        raise ProductsError(f"{where} is not a table")
    allowed = {"code", "kind", "name", "price_yuan", "data_mb", "days"}
    if set(entry) - allowed:
        raise ProductsError(f"{where}: unknown keys {sorted(set(entry) - allowed)}")
    code, kind, name = entry.get("code"), entry.get("kind"), entry.get("name")
    price, data_mb, days = entry.get("price_yuan"), entry.get("data_mb", 0), entry.get("days")
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        raise ProductsError(f"{where}: code must be 1 to 16 letters or digits")
    where = f"[[item]] {code}"
    if kind not in (DATA, PLAN):
        raise ProductsError(f"{where}: kind must be data or plan")
    if not isinstance(name, str) or not name.strip():
        raise ProductsError(f"{where}: name missing")
    if not isinstance(price, int) or isinstance(price, bool) or not 1 <= price <= 10_000:
        raise ProductsError(f"{where}: price_yuan must be whole yuan, 1 to 10000")
    if not isinstance(data_mb, int) or data_mb < 0 or (kind == DATA) != (data_mb > 0):
        raise ProductsError(f"{where}: data_mb must be > 0 for data packs only")
    if days is not None and (not isinstance(days, int) or not 1 <= days <= 3660):
        raise ProductsError(f"{where}: days must be 1 to 3660")
    if kind == PLAN and days is None:
        raise ProductsError(f"{where}: a plan needs days")
    return Item(code.upper(), kind, name, price * FEN_PER_YUAN, data_mb, days)


def parse_products(raw: dict[str, Any]) -> Products:
    """Products from the parsed TOML; ``ProductsError`` names the first bad entry."""
    if set(raw) - {"item", "validity"}:
        raise ProductsError(f"unknown sections {sorted(set(raw) - {'item', 'validity'})}")
    items = tuple(_item(entry, i) for i, entry in enumerate(raw.get("item", [])))
    codes = [item.code for item in items]
    if len(set(codes)) != len(codes):
        raise ProductsError("an item code is used twice")
    bands: list[tuple[int, int]] = []
    for i, band in enumerate(raw.get("validity", [])):
        least, days = (band.get("min_yuan"), band.get("days")) if isinstance(band, dict) else (0, 0)
        if not isinstance(least, int) or least < 1 or not isinstance(days, int) or days < 1:
            raise ProductsError(f"[[validity]] #{i + 1}: min_yuan and days must be whole, > 0")
        bands.append((least * FEN_PER_YUAN, days))
    bands.sort()
    if any(a[1] > b[1] for a, b in pairwise(bands)):
        raise ProductsError("[[validity]]: a higher band must not give fewer days")
    return Products(items, tuple(bands))


def load_products(folder: Path) -> Products:
    """Read and check ``folder``/products.toml."""
    path = folder / "products.toml"
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProductsError(f"{path}: {exc}") from None
    return parse_products(raw)
