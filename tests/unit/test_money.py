import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsmenu.money import format_yuan, parse_whole_yuan, parse_yuan


@pytest.mark.parametrize(
    ("fen", "text"), [(5000, "50.00元"), (1, "0.01元"), (0, "0.00元"), (-1250, "-12.50元")]
)
def test_format_yuan(fen: int, text: str) -> None:
    assert format_yuan(fen) == text


@pytest.mark.parametrize(
    ("text", "fen"),
    [("50", 5000), (" 10 ", 1000), ("1.5", None), ("", None), ("-5", None), ("５０", None)],
)
def test_parse_whole_yuan(text: str, fen: int | None) -> None:
    assert parse_whole_yuan(text) == fen


@pytest.mark.parametrize(("text", "fen"), [("12.5", 1250), ("12.05", 1205), ("12.345", None)])
def test_parse_yuan(text: str, fen: int | None) -> None:
    assert parse_yuan(text) == fen


@given(st.integers(min_value=0, max_value=10**11 - 1))
def test_format_then_parse_is_identity(fen: int) -> None:
    assert parse_yuan(format_yuan(fen).removesuffix("元")) == fen
