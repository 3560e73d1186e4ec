"""The App Store channel's settings: refused with the variable named, never half-loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.app_store import TestAppStore
from tuition.channels.setup import apple_config
from tuition.config import ConfigError, load_settings


def _settings(tmp_path: Path, **overrides: object):  # type: ignore[no-untyped-def]
    root = tmp_path / "root.cer"
    root.write_bytes(TestAppStore().root_der())
    values: dict[str, object] = {
        "apple_bundle_id": "com.example.tuition",
        "apple_environment": "Sandbox",
        "apple_root_certificate_files": [str(root)],
        "apple_products": {"com.example.coins": {"product_id": "prod_1", "commission": "0.15"}},
        **overrides,
    }
    return load_settings(**values)


def test_a_complete_configuration_loads_roots_as_der_and_products_with_commission(
    tmp_path: Path,
) -> None:
    config = apple_config(_settings(tmp_path))
    assert config.root_certificates[0].startswith(b"\x30")  # DER
    assert str(config.products["com.example.coins"].commission) == "0.15"
    assert "root" not in repr(config)


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"apple_bundle_id": ""}, "TUITION_APPLE_BUNDLE_ID"),
        ({"apple_environment": "Production"}, "TUITION_APPLE_APP_APPLE_ID"),
        ({"apple_root_certificate_files": []}, "TUITION_APPLE_ROOT_CERTIFICATE_FILES"),
        (
            {"apple_root_certificate_files": ["/nonexistent.cer"]},
            "TUITION_APPLE_ROOT_CERTIFICATE_FILES",
        ),
        ({"apple_products": {"x": {"commission": "0.3"}}}, "TUITION_APPLE_PRODUCTS"),
        (
            {"apple_products": {"x": {"product_id": "p", "commission": "1.5"}}},
            "TUITION_APPLE_PRODUCTS",
        ),
    ],
)
def test_a_bad_setting_is_refused_naming_its_variable(
    tmp_path: Path, overrides: dict[str, object], variable: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        apple_config(_settings(tmp_path, **overrides))


def test_unsigned_environments_cannot_be_configured(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"apple_environment|Production|Sandbox"):
        _settings(tmp_path, apple_environment="Xcode")


def test_a_file_that_is_no_certificate_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cer"
    bad.write_bytes(b"not a certificate")
    with pytest.raises(ConfigError, match=r"not an X\.509 certificate"):
        apple_config(_settings(tmp_path, apple_root_certificate_files=[str(bad)]))
