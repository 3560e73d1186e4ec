from __future__ import annotations

import pytest

from tuition.config import ConfigError, load_settings


def test_malformed_database_url_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="TUITION_DATABASE_URL"):
        load_settings(database_url="not a url")


def test_unsupported_driver_is_refused_with_the_supported_ones() -> None:
    with pytest.raises(ConfigError, match="postgresql\\+asyncpg"):
        load_settings(database_url="mysql://root@localhost/db")


def test_plain_postgresql_url_gets_the_async_driver() -> None:
    settings = load_settings(database_url="postgresql://u:p@db:5432/t")
    assert settings.database_url == "postgresql+asyncpg://u:p@db:5432/t"


def test_out_of_range_port_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUITION_PORT", "70000")
    with pytest.raises(ConfigError, match="TUITION_PORT"):
        load_settings()
