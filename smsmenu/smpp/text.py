"""Text in SMPP: the data_coding octet, the GSM 03.38 default alphabet, UCS2.

Pure functions. Inbound decoding never fails: an unknown data_coding is read by its coding
group (GSM 03.38 section 4) and, failing that, as Latin-1, so a message is never dropped for
its coding (aiosmpplib defect 7). Outbound text goes as data_coding 0 when every character is
in the default alphabet, else as UCS2 (data_coding 8); Chinese therefore always goes as UCS2.

data_coding 0 means "the SMSC's default alphabet": GSM 03.38 (one septet per octet, unpacked,
as SMPP carries it) on most SMSCs, plain ASCII on some. ``Alphabet`` chooses, per SMSC.
"""

from __future__ import annotations

from enum import StrEnum

DC_DEFAULT = 0x00
DC_IA5 = 0x01
DC_BINARY = 0x02
DC_LATIN1 = 0x03
DC_BINARY_2 = 0x04
DC_UCS2 = 0x08


class Alphabet(StrEnum):
    GSM = "gsm"
    ASCII = "ascii"


# GSM 03.38 default alphabet, index = septet value.
_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
assert len(_GSM_BASIC) == 128
_GSM_ENCODE: dict[str, bytes] = {ch: bytes([i]) for i, ch in enumerate(_GSM_BASIC) if i != 0x1B}
_GSM_ENCODE.update({ch: bytes([0x1B, code]) for code, ch in _GSM_EXTENSION.items()})


def gsm_decode(data: bytes) -> str:
    """Unpacked GSM 03.38 septets (one per octet) to text; octets >= 0x80 read as Latin-1."""
    out: list[str] = []
    escape = False
    for octet in data:
        if escape:
            out.append(_GSM_EXTENSION.get(octet, _GSM_BASIC[octet] if octet < 0x80 else " "))
            escape = False
        elif octet == 0x1B:
            escape = True
        elif octet < 0x80:
            out.append(_GSM_BASIC[octet])
        else:
            out.append(bytes([octet]).decode("latin-1"))
    return "".join(out)


def gsm_encode(text: str) -> bytes:
    """Text to unpacked GSM 03.38 septets; ValueError if a character is not in the alphabet."""
    try:
        return b"".join(_GSM_ENCODE[ch] for ch in text)
    except KeyError as exc:
        raise ValueError(f"{exc.args[0]!r} is not in the GSM 03.38 default alphabet") from None


def default_encodable(text: str, alphabet: Alphabet) -> bool:
    """True when ``text`` can go as data_coding 0 in this SMSC's default alphabet."""
    if alphabet is Alphabet.ASCII:
        return text.isascii()
    return all(ch in _GSM_ENCODE for ch in text)


def encode_default(text: str, alphabet: Alphabet) -> bytes:
    if alphabet is Alphabet.ASCII:
        return text.encode("ascii")
    return gsm_encode(text)


def decode_default(data: bytes, alphabet: Alphabet) -> str:
    if alphabet is Alphabet.ASCII:
        return data.decode("latin-1")
    return gsm_decode(data)


def ucs2_decode(data: bytes) -> str:
    """UCS2/UTF-16BE (surrogate pairs allowed); an odd trailing octet is dropped."""
    return data[: len(data) & ~1].decode("utf-16-be", errors="replace")


def choose_coding(text: str, alphabet: Alphabet) -> int:
    """data_coding for outbound ``text``: 0 if the default alphabet has it all, else UCS2."""
    return DC_DEFAULT if default_encodable(text, alphabet) else DC_UCS2


def encode(text: str, data_coding: int, alphabet: Alphabet) -> bytes:
    if data_coding == DC_UCS2:
        return text.encode("utf-16-be")
    if data_coding == DC_DEFAULT:
        return encode_default(text, alphabet)
    raise ValueError(f"no outbound text encoding for data_coding {data_coding:#x}")


def _family(data_coding: int) -> str:
    """The character family of a data_coding octet: 'default', 'ucs2', 'latin1', '8bit'."""
    if data_coding in (DC_DEFAULT,):
        return "default"
    if data_coding == DC_IA5:
        return "ascii"
    if data_coding == DC_LATIN1:
        return "latin1"
    if data_coding == DC_UCS2:
        return "ucs2"
    group = data_coding >> 4
    if group <= 0x3 or 0x4 <= group <= 0x7:  # general data coding (+ auto-deletion)
        if data_coding & 0x20:  # compressed: we cannot read it, keep the octets
            return "8bit"
        return {0: "default", 1: "8bit", 2: "ucs2", 3: "8bit"}[(data_coding >> 2) & 0x3]
    if group in (0xC, 0xD):  # message waiting, default alphabet
        return "default"
    if group == 0xE:  # message waiting, UCS2
        return "ucs2"
    if group == 0xF:
        return "8bit" if data_coding & 0x04 else "default"
    return "8bit"


def decode(data: bytes, data_coding: int, alphabet: Alphabet) -> str:
    """Inbound octets to text for any data_coding value; never raises."""
    family = _family(data_coding)
    if family == "default":
        return decode_default(data, alphabet)
    if family == "ucs2":
        return ucs2_decode(data)
    if family == "ascii":
        return data.decode("ascii", errors="replace")
    return data.decode("latin-1")
