"""One ASCII-digit rule for all text from a phone, the SMSC or a command line."""

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import smsmenu
from smsmenu.digits import is_digits, to_int


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("007", 7), ("123", 123), ("", None), (" 1", None), ("+1", None), ("1_0", None)],
)
def test_ascii_digits_only(text: str, value: int | None) -> None:
    assert to_int(text, 3) == value
    assert is_digits(text) is (value is not None)


@pytest.mark.parametrize("text", ["²", "①", "１", "٣", "৩", "1²", "12³", "⑩", "½"])
def test_digits_of_other_scripts_are_not_digits(text: str) -> None:
    assert text.isdigit() or text.isnumeric()  # what makes them a trap
    assert not is_digits(text)
    assert to_int(text, 10) is None


def test_too_many_digits_is_no_number() -> None:
    assert to_int("1" * 5000, 38) is None  # int() would raise past 4300 digits
    assert to_int("9" * 38, 38) == int("9" * 38)


@given(st.text())
def test_any_text(text: str) -> None:
    value = to_int(text, 40)
    assert value is None or (is_digits(text) and value == int(text))


# Every digit test in the package goes through smsmenu.digits or an explicit [0-9].
_OTHER_RULES = re.compile(r"\.is(?:digit|decimal|numeric)\(|(?<!\\)\\d")


def test_no_other_digit_rule_in_the_package() -> None:
    package = Path(smsmenu.__file__).parent
    found = [
        f"{path.relative_to(package)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "digits.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _OTHER_RULES.search(line)
    ]
    assert found == []
