from pathlib import Path

import pytest
from pydantic import ValidationError

from smsmenu.settings import BadSetting, Settings, config_dir, load_settings


def test_packaged_defaults_are_found_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert (config_dir() / "settings.toml").is_file()
    assert settings.session_timeout_s == 180
    assert settings.default_commission_bp == 200
    assert settings.rate_limit_per_min == 30
    assert settings.timezone == "Asia/Shanghai"
    assert settings.redis_url == ""


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSMENU_SESSION_TIMEOUT_S", "60")
    monkeypatch.setenv("SMSMENU_REDIS_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("SMSMENU_SMSC_PASSWORD", "hunter2")
    settings = Settings()
    assert settings.session_timeout_s == 60
    assert settings.redis_url == "redis://127.0.0.1:6379/3"
    assert "hunter2" not in repr(settings)
    assert settings.smsc_password.get_secret_value() == "hunter2"


def test_a_malformed_setting_fails_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSMENU_SMSC_PORT", "not-a-port")
    with pytest.raises(ValidationError, match="smsc_port"):
        Settings()


def test_an_unknown_timezone_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSMENU_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ValidationError, match="timezone"):
        Settings()


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite:////var/lib/smsmenu/x.db", "sqlite+aiosqlite:////var/lib/smsmenu/x.db"),
        ("sqlite://", "sqlite+aiosqlite://"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://user@host/db", "postgresql+asyncpg://user@host/db"),
        ("postgres://user:p%40ss@host:5433/db", "postgresql+asyncpg://user:p%40ss@host:5433/db"),
        ("PostgreSQL://user@host/db", "postgresql+asyncpg://user@host/db"),
        (
            "postgresql+asyncpg://user@host/db?ssl=require",
            "postgresql+asyncpg://user@host/db?ssl=require",
        ),
    ],
)
def test_plain_database_urls_get_the_async_driver(url: str, normal: str) -> None:
    assert Settings(database_url=url).database_url == normal


def test_every_consumer_sees_the_driver_qualified_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSMENU_DATABASE_URL", "postgres://smsmenu@db/smsmenu")
    assert Settings().database_url == "postgresql+asyncpg://smsmenu@db/smsmenu"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql+psycopg2://user:hunter2@host/db", "synchronous driver"),
        ("sqlite+pysqlite:///x.db", "synchronous driver"),
        ("mysql://user:hunter2@host/db", "sqlite:// or postgresql://"),
        ("user:hunter2@host/db", "not a database URL"),
        ("hunter2", "not a database URL"),
        ("u:hunter2@h://x", "sqlite:// or postgresql://"),
        ("postgresql://user:hunter2@host:port/db", "malformed"),
    ],
)
def test_other_database_urls_are_refused_naming_the_key(
    url: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMSMENU_DATABASE_URL", url)
    with pytest.raises(BadSetting) as caught:
        load_settings()
    line = str(caught.value)
    assert line.startswith("bad setting SMSMENU_DATABASE_URL: ") and reason in line, line
    assert "hunter2" not in line and "\n" not in line


def test_a_bad_setting_is_one_line_naming_each_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSMENU_SMSC_PORT", "not-a-port")
    monkeypatch.setenv("SMSMENU_SECRET_KEY", "short-secret")
    with pytest.raises(BadSetting) as caught:
        load_settings()
    line = str(caught.value)
    assert "\n" not in line and "short-secret" not in line and "not-a-port" not in line
    assert "bad setting SMSMENU_SMSC_PORT: Input should be a valid integer" in line
    assert "bad setting SMSMENU_SECRET_KEY: a secret key needs at least 16 characters" in line
