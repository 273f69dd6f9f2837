from __future__ import annotations

import pytest

from smsmenu.smpp import text
from smsmenu.smpp.text import Alphabet


@pytest.mark.parametrize(
    ("data", "coding", "alphabet", "expected"),
    [
        (b"Hello 1", 0, Alphabet.GSM, "Hello 1"),
        (b"\x00\x02\x11", 0, Alphabet.GSM, "@$_"),
        (b"\x1b\x65\x1b\x3c", 0, Alphabet.GSM, "€["),
        (b"a@$", 0, Alphabet.ASCII, "a@$"),
        ("主菜单".encode("utf-16-be"), 8, Alphabet.GSM, "主菜单"),
        ("😀".encode("utf-16-be"), 8, Alphabet.GSM, "😀"),
        ("中".encode("utf-16-be"), 0x18, Alphabet.GSM, "中"),  # general group, UCS2, class 0
        ("中".encode("utf-16-be"), 0xE0, Alphabet.GSM, "中"),
        (b"abc", 0xF0, Alphabet.GSM, "abc"),
        (b"caf\xe9", 3, Alphabet.GSM, "café"),
        (b"\xff\x00", 4, Alphabet.GSM, "\xff\x00"),
        (b"odd\x00", 0x99, Alphabet.GSM, "odd\x00"),  # reserved coding: kept as Latin-1
        (b"\x4e\x2d\x00", 8, Alphabet.GSM, "中"),  # odd trailing octet dropped
    ],
)
def test_decode_never_loses_a_message(
    data: bytes, coding: int, alphabet: Alphabet, expected: str
) -> None:
    assert text.decode(data, coding, alphabet) == expected


@pytest.mark.parametrize(
    ("value", "alphabet", "coding"),
    [
        ("CZ 2 13800000001 50 135790", Alphabet.GSM, 0),
        ("price £5 é", Alphabet.GSM, 0),
        ("price £5", Alphabet.ASCII, 8),
        ("{json}", Alphabet.ASCII, 0),
        ("主菜单 1 天翼", Alphabet.GSM, 8),
        ("abc😀", Alphabet.GSM, 8),
    ],
)
def test_outbound_coding(value: str, alphabet: Alphabet, coding: int) -> None:
    assert text.choose_coding(value, alphabet) == coding
    assert text.decode(text.encode(value, coding, alphabet), coding, alphabet) == value


def test_gsm_encode_refuses_what_it_lacks() -> None:
    with pytest.raises(ValueError):
        text.gsm_encode("中")
