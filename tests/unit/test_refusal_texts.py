"""Every refusal text renders with the parameters the code passes, and a refusal whose
parameters do not fill its text still gets a short text, never an exception (SPEC §4: a
refusal goes back to the phone; an exception would leave the message unacked for ever).

The call sites are read from the package's source: every ``Refusal(...)`` with its rule and
keyword names. A site whose rule is a variable may raise any rule with its keywords."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import smsmenu
from smsmenu.ledger.api import Refusal, Rule
from smsmenu.ledger.refusals import refusal_text
from smsmenu.settings import config_dir
from smsmenu.texts import Catalogue

TEXTS = Catalogue.load(config_dir() / "texts", "zh")
ZONE = ZoneInfo("Asia/Shanghai")
SMS_CHARS = 70
PACKAGE = Path(smsmenu.__file__).parent
SAMPLES: dict[str, Any] = {
    "remaining": 2,
    "until": datetime(2026, 11, 10, 2, 30, tzinfo=UTC),
    "number": "13900000002",
    "tx_id": 7,
    "agent_id": 1,
    "key": "cli-recharge-1",
}


def sample(name: str) -> Any:
    return 12345 if name.endswith("_fen") else SAMPLES.get(name, "x")


def call_sites() -> list[tuple[str, int, Rule | None, tuple[str, ...]]]:
    """(module, line, rule or None for a variable, keyword names) of every Refusal(...)."""
    sites = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "Refusal"
            ):
                continue
            first = node.args[0]
            rule = (
                Rule[first.attr]
                if isinstance(first, ast.Attribute)
                and isinstance(first.value, ast.Name)
                and first.value.id == "Rule"
                else None
            )
            names = tuple(keyword.arg or "**" for keyword in node.keywords)
            sites.append((str(path.relative_to(PACKAGE)), node.lineno, rule, names))
    return sites


SITES = call_sites()


def test_the_sites_are_found() -> None:
    assert len(SITES) > 40
    assert ("ledger/admission.py", Rule.INSUFFICIENT_FUNDS, ("available_fen",)) in {
        (module, rule, names) for module, _, rule, names in SITES
    }
    assert not [site for site in SITES if "**" in site[3]], "parameters the test cannot see"


def test_every_rule_has_a_text() -> None:
    assert [rule for rule in Rule if f"refusal_{rule.value}" not in TEXTS] == []


@pytest.mark.parametrize(
    ("module", "line", "rule", "names"), SITES, ids=[f"{site[0]}:{site[1]}" for site in SITES]
)
def test_a_site_renders_every_rule_it_may_raise(
    module: str,
    line: int,
    rule: Rule | None,
    names: tuple[str, ...],
    caplog: pytest.LogCaptureFixture,
) -> None:
    for each in [rule] if rule is not None else list(Rule):
        refusal = Refusal(each, **{name: sample(name) for name in names})
        text = refusal_text(TEXTS, refusal, ZONE)
        assert text and len(text) <= SMS_CHARS and "{" not in text and "}" not in text, text
    if rule is not None:
        cut = [r.getMessage() for r in caplog.records if r.name == "smsmenu.texts"]
        assert cut == [], "the parameters this site passes do not fill its text"


@pytest.mark.parametrize("rule", list(Rule))
def test_no_parameters_at_all_still_gives_a_short_text(rule: Rule) -> None:
    text = refusal_text(TEXTS, Refusal(rule), ZONE)
    assert text and len(text) <= SMS_CHARS and "{" not in text


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        (Rule.WRONG_PIN, "交易密码错误。"),
        (Rule.INSUFFICIENT_FUNDS, "余额不足。"),
        (Rule.CLOSE_FLOAT_TOO_HIGH, "须低于10元才能销户。"),
        (Rule.PIN_LOCKED, "交易密码连续错误3次。"),
    ],
)
def test_the_clauses_that_cannot_be_filled_are_left_out(rule: Rule, text: str) -> None:
    assert refusal_text(TEXTS, Refusal(rule), ZONE) == text


def test_a_text_with_nothing_left_or_no_text_is_the_generic_refusal() -> None:
    texts = Catalogue({"refusal_wrong_pin": "{remaining}", "refused_generic": "no"}, "x")
    assert refusal_text(texts, Refusal(Rule.WRONG_PIN), ZONE) == "no"
    assert refusal_text(texts, Refusal(Rule.BAD_AMOUNT), ZONE) == "no"


@pytest.mark.parametrize(
    "template",
    ["{remaining:d} left.", "{0} and {1}.", "{remaining.real} of {x[1]}.", "odd } brace.", "{"],
)
def test_malformed_fields_never_raise(template: str) -> None:
    texts = Catalogue({"refusal_wrong_pin": template, "refused_generic": "no"}, "x")
    assert refusal_text(texts, Refusal(Rule.WRONG_PIN, remaining="two"), ZONE)
