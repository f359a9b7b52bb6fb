"""The environment's settings: each variable's default and check declared once on Settings, and
every error a ConfigError that names the variable, however the settings were made."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config.settings import ConfigError, Settings


def test_defaults_from_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.database_url == "sqlite:///var/paybot.sqlite3"
    assert settings.redis_url is None and settings.migrate_on_start
    assert settings.is_default("secret_key") and not settings.production


def test_an_empty_variable_is_unset_and_the_database_follows_the_data_dir() -> None:
    settings = Settings.from_env({"SECRET_KEY": "", "PAYBOT_DATA_DIR": "/srv/paybot",
                                  "PUBLIC_BASE_URL": "https://pay.example.com/"})
    assert settings.is_default("secret_key")
    assert settings.data_dir == Path("/srv/paybot")
    assert settings.database_url == "sqlite:////srv/paybot/paybot.sqlite3"
    assert settings.public_base_url == "https://pay.example.com"


@pytest.mark.parametrize(("value", "expected"), [
    ("1", True), ("yes", True), (" ON ", True), ("0", False), ("no", False), ("maybe", False),
])
def test_a_switch_is_on_only_for_a_word_for_yes(value: str, expected: bool) -> None:
    assert Settings.from_env({"PAYBOT_MIGRATE_ON_START": value}).migrate_on_start is expected


def test_settings_made_by_name_name_the_variable_too() -> None:
    with pytest.raises(ConfigError, match=r"^REDIS_URL must be redis://"):
        Settings(redis_url="localhost:6379")
    with pytest.raises(ConfigError, match=r"^PAYBOT_BRAND: "):
        Settings(brand=7)
    with pytest.raises(ConfigError, match="PAYBOT_SMS_TURNS_IN_FLIGHT must be a whole number"):
        Settings().replace(sms_turns_in_flight=0)


def test_every_bad_variable_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"DATABASE_URL": "mysql://db", "PUBLIC_BASE_URL": "pay.example.com"})
    assert str(refused.value) == ("DATABASE_URL must be sqlite:///PATH or postgresql://...; "
                                  "PUBLIC_BASE_URL must start with http:// or https://")
