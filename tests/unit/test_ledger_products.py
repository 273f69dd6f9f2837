"""The product catalogue and validity bands (config/products.toml): checked at start, the
validity never shortened. Pure."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from smsmenu.ledger.products import ProductsError, load_products, parse_products
from smsmenu.settings import config_dir

ITEM = {"code": "D1", "kind": "data", "name": "1M", "price_yuan": 1, "data_mb": 1}


def test_the_packaged_catalogue_loads() -> None:
    products = load_products(config_dir())
    assert products.item("d100") is not None and products.item("nope") is None
    assert {item.kind for item in products.items} == {"data", "plan"}


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"item": [{**ITEM, "code": "a b"}]}, "code"),
        ({"item": [{**ITEM, "kind": "tv"}]}, "kind"),
        ({"item": [{**ITEM, "price_yuan": 0}]}, "price_yuan"),
        ({"item": [{**ITEM, "data_mb": 0}]}, "data_mb"),
        ({"item": [{**ITEM, "kind": "plan", "data_mb": 0}]}, "days"),
        ({"item": [ITEM, ITEM]}, "twice"),
        ({"item": [{**ITEM, "colour": 1}]}, "unknown"),
        ({"validity": [{"min_yuan": 10}]}, "validity"),
        ({"validity": [{"min_yuan": 10, "days": 90}, {"min_yuan": 50, "days": 30}]}, "fewer"),
        ({"shop": []}, "unknown"),
    ],
)
def test_a_bad_entry_is_named(raw: dict[str, Any], names: str) -> None:
    with pytest.raises(ProductsError, match=names):
        parse_products(raw)


def test_validity_bands() -> None:
    products = parse_products(
        {"validity": [{"min_yuan": 50, "days": 90}, {"min_yuan": 10, "days": 30}]}
    )
    today = date(2026, 11, 10)
    assert products.validity_days(999) == 0 and products.validity_days(1000) == 30
    assert products.validity_days(4999) == 30 and products.validity_days(5000) == 90
    assert products.extended(None, today, 999) is None  # below every band: unchanged
    assert products.extended(None, today, 1000) == date(2026, 12, 10)
    assert products.extended(date(2027, 6, 1), today, 1000) == date(2027, 7, 1)
    assert products.extended(date(2026, 1, 1), today, 1000) == date(2026, 12, 10)  # from today
