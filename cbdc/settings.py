"""Settings read from `CBDC_*` environment variables, validated once at start-up.

    CBDC_DATABASE_URL      PostgreSQL DSN; unset: an embedded PostgreSQL in the data folder
    CBDC_REDIS_URL         redis:// or unix:// URL; unset: an embedded Redis in the data folder
    CBDC_DATA_DIR          where embedded stores and keys live (default .cbdc)
    CBDC_TIMEZONE          IANA zone that decides a "day" for daily limits (Asia/Shanghai)
    CBDC_BATCH_MAX_EVENTS  most transfers one ledger batch commits (1..65535, default 8190)
    CBDC_BATCH_MAX_WAIT_MS longest a batch waits to fill, in ms (0..1000, default 0)
    CBDC_CENTRAL_BANK_HOST address the central bank listens on (127.0.0.1)
    CBDC_CENTRAL_BANK_PORT its port (8100)
    CBDC_ADMIN_TOKEN       bearer token for the central bank's admin calls; unset: one is
                           generated into the data folder (central-bank-admin-token)
    CBDC_OPERATOR_RATE     signed requests per second one operator may send (20000)
    CBDC_BANKS             the commercial banks `cbdc up` runs, CODE:PORT,... (BANKA:8201,
                           BANKB:8202)
    CBDC_LIMIT_PRESET      wallet class limits: "2020" (published agreement) or "later"
    CBDC_FLOAT_TARGET      e-CNY float a bank keeps in hand, in fen (10000000 = 100,000 CNY)
    CBDC_DATABASE_PREFIX   services' databases on the server are <prefix>central_bank and
                           <prefix>bank_<code> (cbdc_), so several systems can share one
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cbdc.errors import ConfigError

ENV_PREFIX = "CBDC_"
_DATABASE_SCHEMES = ("postgresql://", "postgres://")
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_URL_FIELDS = ("database_url", "redis_url")


class Settings(BaseSettings):
    """Everything a `cbdc` process is configured by; see the module docstring."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path(".cbdc")
    timezone: str = "Asia/Shanghai"
    batch_max_events: int = Field(default=8190, ge=1, le=65535)
    batch_max_wait_ms: float = Field(default=0.0, ge=0, le=1000, allow_inf_nan=False)
    central_bank_host: str = "127.0.0.1"
    central_bank_port: int = Field(default=8100, ge=1, le=65535)
    admin_token: str | None = Field(default=None, min_length=16)
    operator_rate: float = Field(default=20_000, gt=0, allow_inf_nan=False)
    banks: str = Field(default="BANKA:8201,BANKB:8202",
                       pattern=r"^[A-Z0-9]{2,12}:[0-9]{1,5}(,[A-Z0-9]{2,12}:[0-9]{1,5})*$")
    limit_preset: str = Field(default="2020", pattern=r"^(2020|later)$")
    float_target: int = Field(default=10_000_000, ge=0, lt=1 << 62)
    database_prefix: str = Field(default="cbdc_", pattern=r"^[a-z][a-z0-9_]{0,30}$")

    def service_database(self, service: str) -> str:
        """The database a service keeps on the server: central_bank, or bank_<code>."""
        return f"{self.database_prefix}{service.lower()}"

    def bank_ports(self) -> dict[str, int]:
        """The banks `cbdc up` runs: code -> port."""
        return {code: int(port) for code, port in
                (item.split(":") for item in self.banks.split(","))}

    @field_validator("database_url", "redis_url", mode="before")
    @classmethod
    def _empty_means_unset(cls, value: Any) -> Any:
        # `CBDC_DATABASE_URL=` in a shell or .env file means "not configured".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(_DATABASE_SCHEMES):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(_REDIS_SCHEMES):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a known IANA time zone like Asia/Shanghai") from None
        return value


def load_settings(**overrides: Any) -> Settings:
    """`Settings` from the environment (and `overrides`), or a one-sentence `ConfigError`."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        setting = ENV_PREFIX + field.upper() if field else None
        message = str(first["msg"]).removeprefix("Value error, ")
        if field not in _URL_FIELDS:  # URLs may hold a password: never echo them
            message += f" (got {first['input']!r})"
        raise ConfigError(f"{setting or 'settings'}: {message}", setting=setting) from None
