"""One typed Settings object, read once from config/settings.toml and SMSMENU_* variables.

The packaged defaults are found wherever the command runs from: next to the package in a
source checkout (``config/``), inside it in a wheel (``smsmenu/_config``), or wherever
``SMSMENU_CONFIG_DIR`` points. ``load_settings`` builds them for a command: a value that does
not fit is one line naming its key (``BadSetting``), never quoting the value (it may be a
password).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# The async driver of each database the ledger runs on, by the schemes people write.
ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")


def config_dir() -> Path:
    """The folder holding settings.toml and the text catalogue."""
    override = os.environ.get("SMSMENU_CONFIG_DIR")
    if override:
        return Path(override)
    package = Path(__file__).resolve().parent
    for candidate in (package / "_config", package.parent / "config"):
        if (candidate / "settings.toml").is_file():
            return candidate
    raise RuntimeError(f"smsmenu: no config/settings.toml next to {package}")


def async_database_url(url: str) -> str:
    """``url`` with the async driver the ledger uses: ``sqlite://`` gets aiosqlite,
    ``postgresql://`` and ``postgres://`` get asyncpg, and those driver-qualified forms stay.
    ValueError for a synchronous driver or another database; its message never quotes the URL
    (it may hold a password)."""
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if not separator:
        raise ValueError("not a database URL: write sqlite:///FILE or postgresql://USER@HOST/DB")
    driver = ASYNC_DRIVERS.get(scheme)
    if driver is None:
        database = scheme.partition("+")[0]
        if database in ASYNC_DRIVERS and _SCHEME.fullmatch(scheme):
            raise ValueError(
                f"{scheme} is a synchronous driver: write {database}:// "
                f"(the ledger uses {ASYNC_DRIVERS[database]})"
            )
        raise ValueError("the ledger runs on sqlite:// or postgresql:// only")
    qualified = f"{driver}://{rest}"
    try:
        make_url(qualified)
    except (ArgumentError, ValueError):
        raise ValueError(f"malformed {scheme}:// URL") from None
    return qualified


class Settings(BaseSettings):
    """Every setting of the product; see config/settings.toml for what each one means."""

    model_config = SettingsConfigDict(env_prefix="SMSMENU_", extra="forbid", frozen=True)

    database_url: str = "sqlite+aiosqlite:///smsmenu.db"
    database_pool_size: int = Field(32, ge=1)
    secret_key: SecretStr = SecretStr("")
    redis_url: str = ""
    redis_prefix: str = "smsmenu:"
    redis_max_connections: int = Field(64, ge=1)
    smsc_host: str = "127.0.0.1"
    smsc_port: int = Field(2775, ge=1, le=65535)
    smsc_system_id: str = "smsmenu"
    smsc_password: SecretStr = SecretStr("secret")
    smsc_system_type: str = ""
    smpp_window: int = Field(32, ge=1)
    enquire_link_s: float = Field(30, gt=0)
    service_number: str = "10001"
    session_timeout_s: int = Field(180, gt=0)
    default_commission_bp: int = Field(200, ge=0, le=10000)
    rate_limit_per_min: int = Field(30, gt=0)
    timezone: str = "Asia/Shanghai"
    language: str = "zh"
    ussd_op_open: int = Field(1, ge=0, le=255)
    ussd_op_continue: int = Field(18, ge=0, le=255)
    ussd_op_reply: int = Field(2, ge=0, le=255)
    ussd_op_final: int = Field(17, ge=0, le=255)
    log_level: str = "INFO"
    log_file: str = ""  # serve's and the commands' log lines go here (default: stderr)
    status_interval_s: float = Field(60, gt=0)
    worker_id: str = ""
    smpp_response_timeout_s: float = Field(10, gt=0)
    smpp_reconnect_max_s: float = Field(30, gt=0)
    smpp_throttle_max_s: float = Field(30, gt=0)
    outbox_lease_s: float = Field(30, gt=0)
    outbox_poll_s: float = Field(0.5, gt=0)
    outbox_retry_min_s: float = Field(1, gt=0)
    outbox_retry_max_s: float = Field(300, gt=0)
    outbox_max_attempts: int = Field(20, ge=1)
    recovery_interval_s: float = Field(60, gt=0)
    session_lock_s: float = Field(15, gt=0)
    inbound_resend_after_s: float = Field(10, gt=0)
    inbound_ack_grace_s: float = Field(2, ge=0)
    inbound_max_attempts: int = Field(3, ge=1)
    smpp_part_timeout_s: float = Field(300, gt=0)
    smpp_max_parts: int = Field(16, ge=2, le=255)
    smpp_part_bytes_per_sender: int = Field(8192, ge=140)
    smpp_max_part_sets: int = Field(10_000, ge=1)
    web_session_s: int = Field(1800, gt=0)
    web_code_ttl_s: int = Field(300, gt=0)
    web_codes_per_hour: int = Field(5, ge=1)
    web_secure_cookies: bool = False
    web_payment_provider: str = Field("", pattern="^(|sandbox)$")

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return async_database_url(value)

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if 0 < len(value.get_secret_value()) < 16:
            raise ValueError("a secret key needs at least 16 characters")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_dir() / "settings.toml")
        return (init_settings, env_settings, toml)


class BadSetting(ValueError):
    """Settings that do not fit: one line naming each key (``SMSMENU_<NAME>``), no value."""


def load_settings(**values: Any) -> Settings:
    """The Settings of config/settings.toml and SMSMENU_* (``values`` win); ``BadSetting``."""
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise BadSetting("; ".join(_bad_setting(error) for error in exc.errors())) from None


def _bad_setting(error: ErrorDetails) -> str:
    key = str(error["loc"][0]).upper() if error["loc"] else "?"
    return f"bad setting SMSMENU_{key}: {error['msg'].removeprefix('Value error, ')}"
