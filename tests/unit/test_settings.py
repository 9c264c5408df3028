"""Settings come from CBDC_* variables and refuse values the engine cannot run with."""

from __future__ import annotations

from pathlib import Path

import pytest

from cbdc.errors import CbdcError, ConfigError
from cbdc.settings import Settings, load_settings

pytestmark = pytest.mark.usefixtures("clean_env")


def test_defaults() -> None:
    settings = load_settings()
    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.data_dir == Path(".cbdc")
    assert settings.timezone == "Asia/Shanghai"
    assert settings.batch_max_events == 8190
    assert settings.batch_max_wait_ms == 0.0


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CBDC_DATABASE_URL", "postgresql://u@db.example/ledger")
    monkeypatch.setenv("CBDC_REDIS_URL", "unix:///run/redis.sock")
    monkeypatch.setenv("CBDC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CBDC_TIMEZONE", "UTC")
    monkeypatch.setenv("CBDC_BATCH_MAX_EVENTS", "1000")
    monkeypatch.setenv("CBDC_BATCH_MAX_WAIT_MS", "2.5")
    monkeypatch.setenv("BATCH_MAX_EVENTS", "7")  # unprefixed: not ours
    assert load_settings() == Settings(
        database_url="postgresql://u@db.example/ledger",
        redis_url="unix:///run/redis.sock",
        data_dir=tmp_path,
        timezone="UTC",
        batch_max_events=1000,
        batch_max_wait_ms=2.5,
    )


def test_empty_url_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CBDC_DATABASE_URL", "")
    monkeypatch.setenv("CBDC_REDIS_URL", " ")
    settings = load_settings()
    assert settings.database_url is None
    assert settings.redis_url is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CBDC_BATCH_MAX_EVENTS", "1"),
        ("CBDC_BATCH_MAX_EVENTS", "65535"),
        ("CBDC_BATCH_MAX_WAIT_MS", "0"),
        ("CBDC_BATCH_MAX_WAIT_MS", "1000"),
    ],
)
def test_range_limits_are_inclusive(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    load_settings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CBDC_BATCH_MAX_EVENTS", "0"),
        ("CBDC_BATCH_MAX_EVENTS", "65536"),
        ("CBDC_BATCH_MAX_EVENTS", "many"),
        ("CBDC_BATCH_MAX_WAIT_MS", "-0.5"),
        ("CBDC_BATCH_MAX_WAIT_MS", "1000.1"),
        ("CBDC_BATCH_MAX_WAIT_MS", "nan"),
        ("CBDC_BATCH_MAX_WAIT_MS", "inf"),
        ("CBDC_TIMEZONE", "Mars/Olympus_Mons"),
        ("CBDC_TIMEZONE", "../../etc/passwd"),
        ("CBDC_DATABASE_URL", "mysql://root@localhost/db"),
        ("CBDC_REDIS_URL", "memcached://localhost"),
    ],
)
def test_bad_values_are_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.setting == variable
    assert str(caught.value).startswith(f"{variable}: ")
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, CbdcError)


def test_a_bad_url_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CBDC_DATABASE_URL", "mysql://root:hunter2@localhost/db")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)


def test_overrides_are_validated_too() -> None:
    with pytest.raises(ConfigError, match="CBDC_BATCH_MAX_EVENTS"):
        load_settings(batch_max_events=70_000)
