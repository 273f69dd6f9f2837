"""Sealing a password that a dialogue must carry from one message to the next.

Changing a password takes three messages (old, new, new again) and the session store may be a
shared Redis, so the old and new passwords must survive between messages without ever being
stored in clear. They are sealed with a key the session store keeps (random per process for
the in-process store, one random key shared by the workers for Redis): a random nonce, an
HMAC-SHA256 key stream and an HMAC tag, standard library only. A seal is bound to the phone
it was made for, and a tampered or foreign seal does not open.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

_NONCE = 16
_TAG = 16


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a sealing key needs at least 32 bytes")
        self._key = key

    def _stream(self, nonce: bytes, length: int) -> bytes:
        if length > 32:
            raise ValueError("only short secrets are sealed")
        return hmac.digest(self._key, b"stream" + nonce, hashlib.sha256)[:length]

    def seal(self, secret: str, context: str) -> str:
        plain = secret.encode()
        nonce = os.urandom(_NONCE)
        cipher = bytes(a ^ b for a, b in zip(plain, self._stream(nonce, len(plain)), strict=True))
        tag = hmac.digest(self._key, b"tag" + context.encode() + nonce + cipher, hashlib.sha256)
        return base64.urlsafe_b64encode(nonce + cipher + tag[:_TAG]).decode()

    def open(self, sealed: str, context: str) -> str | None:
        """The secret, or None if the seal is malformed, tampered or for another context."""
        try:
            raw = base64.urlsafe_b64decode(sealed.encode())
        except (ValueError, UnicodeEncodeError):
            return None
        if len(raw) < _NONCE + _TAG + 1:
            return None
        nonce, cipher, tag = raw[:_NONCE], raw[_NONCE:-_TAG], raw[-_TAG:]
        expected = hmac.digest(
            self._key, b"tag" + context.encode() + nonce + cipher, hashlib.sha256
        )[:_TAG]
        if not hmac.compare_digest(tag, expected) or len(cipher) > 32:
            return None
        plain = bytes(a ^ b for a, b in zip(cipher, self._stream(nonce, len(cipher)), strict=True))
        return plain.decode(errors="replace")
