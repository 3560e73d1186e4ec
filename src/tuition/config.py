"""Settings, read once from ``TUITION_*`` environment variables (and ``.env``)."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TUITION_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = "sqlite+aiosqlite:///./tuition.db"
    environment: Literal["test", "live"] = "test"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str = ""
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    order_ttl_seconds: int = Field(default=15 * 60, ge=60, le=7 * 24 * 3600)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    # What each channel charges, as a fraction of the amount (for fees and surcharge mode).
    channel_fee_rates: dict[str, Decimal] = Field(
        default_factory=lambda: {
            "sandbox": Decimal("0.006"),
            "alipay": Decimal("0.006"),
            "wechatpay": Decimal("0.006"),
        }
    )

    @field_validator("channel_fee_rates")
    @classmethod
    def _rates_in_range(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for channel, rate in value.items():
            if not Decimal(0) <= rate < Decimal(1):
                raise ValueError(f"fee rate of {channel!r} must be in [0, 1), got {rate}")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(
                f"not a database URL: {value!r}; expected e.g. "
                "'sqlite+aiosqlite:///./tuition.db' or "
                "'postgresql+asyncpg://user:pass@host:5432/db'"
            ) from None
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+asyncpg")
        if url.drivername not in SUPPORTED_DRIVERS:
            raise ValueError(
                f"unsupported driver {url.drivername!r}; use one of {', '.join(SUPPORTED_DRIVERS)}"
            )
        return url.render_as_string(hide_password=False)

    @property
    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning pydantic's report into one line per bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "TUITION_" + "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
