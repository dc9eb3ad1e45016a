"""Mistyped PASSSYNC_ variables stop start-up; a base URL without a key is an error."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from worker.config import ConfigError, Settings, check_environment, load_settings


@pytest.mark.parametrize(
    ("variable", "suggestion"),
    [
        ("PASSSYNC_DATABSE_URL", "PASSSYNC_DATABASE_URL (setting database_url)"),
        (
            "PASSSYNC_PROVIDER__PASSCREATOR__API_KEY",
            "PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY (setting providers)",
        ),
        ("PASSSYNC_RATE_LIMIT__PER_MINUTE", "PASSSYNC_RATELIMIT__PER_MINUTE (setting ratelimit)"),
        ("PASSSYNC_SOURCE__CRM__SECRET", "PASSSYNC_SOURCES__CRM__SECRET (setting sources)"),
    ],
)
def test_a_variable_naming_no_setting_stops_start_up_with_the_closest_one(
    monkeypatch: pytest.MonkeyPatch, variable: str, suggestion: str
) -> None:
    monkeypatch.setenv(variable, "x")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value) == (
        f"environment variable {variable} names no setting; did you mean {suggestion}?"
    )


def test_a_variable_close_to_nothing_is_named_without_a_guess() -> None:
    with pytest.raises(ConfigError) as error:
        check_environment({"PASSSYNC_ZZZQQQ": "1"})
    assert str(error.value) == "environment variable PASSSYNC_ZZZQQQ names no setting"


def test_real_settings_and_the_non_setting_variables_pass() -> None:
    check_environment(
        {
            "PASSSYNC_DATABASE_URL": "sqlite://",
            "PASSSYNC_SYNC__CLAIM_SECONDS": "10",
            "passsync_log_level": "INFO",
            "PASSSYNC_CONFIG": "config.yaml",
            "PASSSYNC_TOKEN": "t",
            "PASSSYNC_ACCOUNT": "a",
            "PASSSYNC_TEST_REDIS_URL": "redis://",
            "PASSSYNC_BENCH_PG": "postgresql://",
            "PASSSYNC_REQUIRE_SERVICES": "1",
            "OTHER_DATABSE": "ignored",
        }
    )


def test_a_base_url_without_a_key_is_an_error_not_the_sandbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PASSSYNC_PROVIDERS__PASSCREATOR__BASE_URL", "https://app.passcreator.com")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value) == (
        "setting providers.passcreator.base_url (PASSSYNC_PROVIDERS__PASSCREATOR__BASE_URL): "
        "is set but the account has no API key "
        "(PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY): set the key, or remove the base URL to "
        "use the local sandbox"
    )


def test_a_base_url_with_a_key_or_neither_is_fine(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    assert make_settings().providers["passcreator"].model_dump()["api_key"] is None
    monkeypatch.setenv("PASSSYNC_PROVIDERS__PASSCREATOR__BASE_URL", "https://app.passcreator.com")
    monkeypatch.setenv("PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY", "k")
    assert load_settings().providers["passcreator"].model_dump()["base_url"] == (
        "https://app.passcreator.com"
    )


def test_the_shipped_config_without_a_key_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSSYNC_CONFIG", "config.yaml")
    settings = load_settings()
    assert "base_url" not in settings.providers["passcreator"].model_fields_set
