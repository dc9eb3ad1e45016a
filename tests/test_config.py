"""Settings precedence, secrets only from the environment, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.config import ConfigError, load_settings


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_yaml_overrides_defaults_and_env_overrides_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write(tmp_path / "c.yaml", "api:\n  port: 9001\n  host: 0.0.0.0\n")
    monkeypatch.setenv("PASSSYNC_CONFIG", str(cfg))
    monkeypatch.setenv("PASSSYNC_API__PORT", "9002")
    settings = load_settings()
    assert settings.api.port == 9002
    assert settings.api.host == "0.0.0.0"
    assert settings.database_url == "sqlite:///.passsync/passsync.db"


def test_nested_secrets_come_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write(
        tmp_path / "c.yaml",
        "sources:\n  crm: {}\nadmin_tokens:\n  ops:\n    scopes: [read, write]\n",
    )
    monkeypatch.setenv("PASSSYNC_CONFIG", str(cfg))
    monkeypatch.setenv("PASSSYNC_SOURCES__CRM__SECRET", "whsec_abc")
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__OPS__SECRET", "tok")
    monkeypatch.setenv("PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY", "key-123")
    settings = load_settings()
    assert settings.sources["crm"].secret is not None
    assert settings.sources["crm"].secret.get_secret_value() == "whsec_abc"
    assert settings.admin_tokens["ops"].scopes == ["read", "write"]
    api_key = getattr(settings.providers["passcreator"], "api_key", None)
    assert api_key is not None
    assert api_key.get_secret_value() == "key-123"
    assert "key-123" not in repr(settings)
    assert "whsec_abc" not in str(settings.model_dump())


def test_secret_in_yaml_is_refused_with_the_env_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write(tmp_path / "c.yaml", "sources:\n  crm:\n    secret: oops\n")
    monkeypatch.setenv("PASSSYNC_CONFIG", str(cfg))
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "PASSSYNC_SOURCES__CRM__SECRET" in str(err.value)
    assert "oops" not in str(err.value)


def test_invalid_value_names_the_setting_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSSYNC_API__PORT", "not-a-port")
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert "api.port" in message and "PASSSYNC_API__PORT" in message
    assert "\n" not in message


def test_unknown_setting_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path / "c.yaml", "api:\n  prot: 1\n")
    monkeypatch.setenv("PASSSYNC_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match=r"api\.prot"):
        load_settings()


def test_missing_config_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSSYNC_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        load_settings()


def test_previous_secrets_in_yaml_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write(tmp_path / "c.yaml", "sources:\n  crm:\n    previous_secrets: whsec_old\n")
    monkeypatch.setenv("PASSSYNC_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match="PASSSYNC_SOURCES__CRM__PREVIOUS_SECRETS"):
        load_settings()


def test_ratelimit_adaptive_ceiling_defaults_to_four_times_the_start() -> None:
    from worker.config import RateLimitSettings

    assert RateLimitSettings(mode="adaptive", per_minute=300).ceiling_per_minute == 1200
    assert RateLimitSettings(mode="adaptive", max_per_minute=900).ceiling_per_minute == 900
    assert RateLimitSettings(mode="fixed", max_per_minute=900).ceiling_per_minute == 600


def test_ratelimit_max_per_minute_below_the_start_is_refused() -> None:
    import pydantic

    from worker.config import RateLimitSettings

    with pytest.raises(pydantic.ValidationError, match="max_per_minute must be at least"):
        RateLimitSettings(per_minute=600, max_per_minute=300)
