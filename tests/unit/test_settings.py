from pathlib import Path

import pytest
from pydantic import ValidationError

from smsmenu.settings import Settings, config_dir


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
