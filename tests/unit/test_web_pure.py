"""The web layer's pure parts: scopes, refusal statuses and texts, the report's chart, the
security headers."""

from __future__ import annotations

import pytest

from smsmenu.settings import config_dir
from smsmenu.texts import Catalogue
from smsmenu.web import apikeys
from smsmenu.web.operator_pages import chart
from smsmenu.web.refusals import WebRefusal, WebRule
from smsmenu.web.security import HEADERS

TEXTS = Catalogue.load(config_dir() / "texts", "zh")


@pytest.mark.parametrize(("scope", "agent"), [("operator", None), ("agent:7", 7)])
def test_scopes(scope: str, agent: int | None) -> None:
    assert apikeys.scope_agent(scope) == agent


@pytest.mark.parametrize("scope", ["", "agent:", "agent:x", "agent:３", "admin", "agent:-1"])
def test_bad_scopes(scope: str) -> None:
    with pytest.raises(WebRefusal) as refused:
        apikeys.scope_agent(scope)
    assert refused.value.rule is WebRule.BAD_SCOPE


def test_every_web_rule_has_a_text_and_a_4xx() -> None:
    for rule in WebRule:
        text = TEXTS.render_lenient(f"web_refusal_{rule.value}", length=10)
        assert text, rule
        assert 400 <= WebRefusal(rule).status < 500


def test_chart_scales_to_the_busiest_day() -> None:
    bars = chart([("11-01", 0, 0), ("11-02", 10_000, 200), ("11-03", 5_000, -50)], height=100)
    assert [b.volume_h for b in bars] == [0, 100, 50]
    assert [b.commission_h for b in bars] == [0, 2, 0]
    assert [b.x for b in bars] == [0, 24, 48]
    assert chart([]) == []


def test_csp_allows_no_inline_script_nor_framing() -> None:
    headers = dict(HEADERS)
    csp = headers[b"content-security-policy"].decode()
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe" not in csp
    assert headers[b"x-frame-options"] == b"DENY"
