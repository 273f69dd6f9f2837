"""The product's one secret (``SECRET_KEY``, SPEC §10) and the keys derived from it.

Nothing the product logs or stores may let anyone recover a password or a message text
without a secret kept outside the database and the logs. Every keyed hash the product makes
uses a key derived here, one per purpose (HMAC-SHA256 of the secret and the purpose's name),
so that a key leaked from one use says nothing of another:

* ``pin-pepper``   trade/management password hashes are argon2 of an HMAC of the PIN;
* ``session-seal`` passwords a dialogue carries between messages, sealed in the session;
* ``inbound``      a message's content, where it must be matched (a redelivered copy);
* ``card-pin``     recharge card PINs, kept as HMAC-SHA256 of a salt and the PIN;
* ``closing-code`` the verification codes of a subscriber closing its account.

Where the secret comes from (``SecretKeys.from_settings``):

* ``SMSMENU_SECRET_KEY`` when set (at least 16 characters); several workers share one;
* else, for the embedded default only (a SQLite file and no Redis), a random key kept in a
  file beside the database (``<database>.key``, mode 0600), made on first use;
* else (Redis or a shared database without a secret) ``SecretMissing``: workers that did
  not share a secret could not verify each other's password hashes nor match messages.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from sqlalchemy.engine import make_url

from smsmenu.settings import Settings

MIN_SECRET_LENGTH = 16


class SecretMissing(RuntimeError):
    """No ``SECRET_KEY`` where one is required; the message is one line for the operator."""


class SecretKeys:
    """Keys derived from one secret; ``derive(purpose)`` is stable for the same secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"a secret key needs at least {MIN_SECRET_LENGTH} bytes")
        self._secret = secret
        self._derived: dict[str, bytes] = {}

    def derive(self, purpose: str) -> bytes:
        key = self._derived.get(purpose)
        if key is None:
            key = hmac.digest(self._secret, b"smsmenu/" + purpose.encode(), hashlib.sha256)
            self._derived[purpose] = key
        return key

    def mac(self, purpose: str, *parts: str) -> str:
        """A hex HMAC of ``parts`` (joined unambiguously) under the key of ``purpose``."""
        message = "\x1f".join(parts).encode("utf-8", "surrogatepass")
        return hmac.digest(self.derive(purpose), message, hashlib.sha256).hex()

    @classmethod
    def random(cls) -> SecretKeys:
        """A throwaway secret (tests, an in-memory database)."""
        return cls(secrets.token_bytes(32))

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretKeys:
        """The keys of ``settings`` (see the module notes); raises ``SecretMissing``."""
        configured = settings.secret_key.get_secret_value()
        if configured:
            return cls(configured.encode())
        path = key_file(settings)
        if path is None:
            raise SecretMissing(
                "SMSMENU_SECRET_KEY is not set: with Redis or a shared database every worker"
                " needs the same secret (make one with `smsmenu secret new`)"
            )
        if path == Path(":memory:"):
            return cls.random()
        return cls(_read_or_create(path))


def key_file(settings: Settings) -> Path | None:
    """Where the embedded default keeps its secret: beside its SQLite file (``:memory:`` for
    an in-memory database); None when a configured secret is required instead."""
    if settings.redis_url:
        return None
    url = make_url(settings.database_url)
    if not url.drivername.startswith("sqlite"):
        return None
    if not url.database or url.database == ":memory:":
        return Path(":memory:")
    return Path(url.database + ".key")


def _read_or_create(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_bytes().strip()
        if len(secret) < MIN_SECRET_LENGTH:
            raise SecretMissing(f"the secret key file {path} is damaged (too short)") from None
        return secret
    with os.fdopen(fd, "wb") as handle:
        secret = secrets.token_hex(32).encode()
        handle.write(secret + b"\n")
    return secret


def new_secret() -> str:
    """A fresh value for ``SMSMENU_SECRET_KEY``."""
    return secrets.token_urlsafe(32)
