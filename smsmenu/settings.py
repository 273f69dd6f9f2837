"""One typed Settings object, read once from config/settings.toml and SMSMENU_* variables.

The packaged defaults are found wherever the command runs from: next to the package in a
source checkout (``config/``), inside it in a wheel (``smsmenu/_config``), or wherever
``SMSMENU_CONFIG_DIR`` points.
"""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


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


class Settings(BaseSettings):
    """Every setting of the product; see config/settings.toml for what each one means."""

    model_config = SettingsConfigDict(env_prefix="SMSMENU_", extra="forbid", frozen=True)

    database_url: str = "sqlite+aiosqlite:///smsmenu.db"
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
