from __future__ import annotations

import pytest

from smsmenu.smpp import script
from smsmenu.smpp.console import describe, parse_line
from smsmenu.smpp.simulator import Received

SCRIPT = """
# a dialogue
timeout 2
> 13800000001: 1
< 13800000001: 主菜单 1 天翼
>ussd 13800000002: *100#
< 13800000002: 主菜单…
< 13800000002: *余额
< 13800000002: ~^\\d+元$
wait 0.1
"""


def test_parse() -> None:
    steps = script.parse(SCRIPT)
    assert [(s.line, s.kind) for s in steps] == [
        (3, "timeout"),
        (4, "send"),
        (5, "expect"),
        (6, "ussd"),
        (7, "expect"),
        (8, "expect"),
        (9, "expect"),
        (10, "wait"),
    ]
    assert steps[1].phone == "13800000001" and steps[1].text == "1"
    assert steps[0].seconds == 2


@pytest.mark.parametrize(
    ("pattern", "got", "ok"),
    [
        ("主菜单 1 天翼", "主菜单 1 天翼", True),
        ("主菜单 1 天翼", "主菜单 1 天翼 ", False),
        ("主菜单…", "主菜单 1 天翼", True),
        ("主菜单...", "子菜单", False),
        ("*余额", "可用余额 50.00元", True),
        ("~^\\d+元$", "50元", True),
        ("~^\\d+元$", "x50元", False),
    ],
)
def test_matches(pattern: str, got: str, ok: bool) -> None:
    assert script.Step(1, "expect", "1", pattern).matches(got) is ok


@pytest.mark.parametrize("bad", ["hello", "timeout x", "> nocolon"])
def test_bad_lines_name_their_number(bad: str) -> None:
    with pytest.raises(script.ScriptError, match="line 2"):
        script.parse("# ok\n" + bad)


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("13800000001> 1", ("13800000001", "1", False)),
        ("13800000001 ussd> *100#", ("13800000001", "*100#", True)),
        ("  13800000001>CZ 2 139 50 123456\n", ("13800000001", "CZ 2 139 50 123456", False)),
        ("13800000001>", None),
        ("hello", None),
        ("１３８００> 1", None),  # a phone number is ASCII digits
        ("١٣٨٠٠> 1", None),
    ],
)
def test_console_lines(line: str, parsed: tuple[str, str, bool] | None) -> None:
    assert parse_line(line) == parsed


def test_describe_ussd() -> None:
    message = Received("1380", "10001", "再见", ("1",), 8, 1, 17, b"\xc8\x01")
    assert describe(message) == "< 1380 from 10001: 再见  [ussd op=17 session=200 end]"


def test_console_json_line() -> None:
    import json

    from smsmenu.smpp.console import as_json_line

    message = Received("1380", "10001", "再见", ("1",), 8, 1, 17, b"\xc8\x01")
    assert json.loads(as_json_line(message)) == {
        "phone": "1380",
        "source": "10001",
        "text": "再见",
        "parts": 1,
        "message_ids": ["1"],
        "ussd_service_op": 17,
        "ussd_session": 200,
        "ussd_end": True,
    }
