"""The secret key and the keys derived from it (SPEC §10)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from smsmenu.keys import SecretKeys, SecretMissing, key_file
from smsmenu.settings import Settings


def test_derived_keys_differ_by_purpose_and_are_stable() -> None:
    keys = SecretKeys(b"0123456789abcdef0123")
    again = SecretKeys(b"0123456789abcdef0123")
    assert keys.derive("pin-pepper") == again.derive("pin-pepper")
    assert keys.derive("pin-pepper") != keys.derive("inbound")
    assert keys.mac("inbound", "a", "b") == again.mac("inbound", "a", "b")
    assert keys.mac("inbound", "a", "b") != keys.mac("inbound", "ab")  # unambiguous joining
    assert keys.mac("inbound", "a") != SecretKeys(b"another secret key!!").mac("inbound", "a")


def test_a_configured_secret_is_used() -> None:
    settings = Settings(secret_key="a shared secret of workers")
    assert SecretKeys.from_settings(settings).derive("x") == SecretKeys(
        b"a shared secret of workers"
    ).derive("x")


def test_a_short_secret_is_refused_naming_the_key() -> None:
    with pytest.raises(ValidationError, match="secret_key"):
        Settings(secret_key="short")


def test_the_embedded_default_keeps_its_secret_beside_the_database(tmp_path: Path) -> None:
    settings = Settings(secret_key="", database_url=f"sqlite:///{tmp_path / 'x.db'}")
    path = key_file(settings)
    assert path == tmp_path / "x.db.key"
    first = SecretKeys.from_settings(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SecretKeys.from_settings(settings).derive("p") == first.derive("p")  # kept


@pytest.mark.parametrize(
    "values",
    [
        {"database_url": "sqlite:///x.db", "redis_url": "redis://127.0.0.1:6379/0"},
        {"database_url": "postgresql+asyncpg://u@h/db"},
    ],
)
def test_redis_or_a_shared_database_needs_a_configured_secret(values: dict[str, str]) -> None:
    with pytest.raises(SecretMissing, match="SMSMENU_SECRET_KEY is not set"):
        SecretKeys.from_settings(Settings(secret_key="", **values))
