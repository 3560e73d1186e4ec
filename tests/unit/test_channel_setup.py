"""Channel settings are checked at start-up; every problem names its TUITION_ variable."""

from __future__ import annotations

import base64
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from tuition.channels.alipay.client import AlipayChannel
from tuition.channels.setup import (
    alipay_config,
    build_registry,
    check_channels,
    wechatpay_config,
)
from tuition.channels.wechatpay.client import WechatPayChannel
from tuition.cli import app as cli
from tuition.clock import FrozenClock
from tuition.config import ConfigError, Settings, get_settings, load_settings

APIV3_KEY = "0123456789abcdef0123456789abcdef"


def _pem(key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def _public(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def merchant_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def gateway_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def keys(tmp_path: Path, merchant_key: rsa.RSAPrivateKey, gateway_key: rsa.RSAPrivateKey) -> Path:
    (tmp_path / "merchant.pem").write_bytes(_pem(merchant_key, serialization.PrivateFormat.PKCS8))
    (tmp_path / "gateway.pub").write_bytes(_public(gateway_key))
    return tmp_path


def _alipay_values(keys: Path) -> dict[str, object]:
    return {
        "alipay_app_id": "2021000000000001",
        "alipay_private_key_file": str(keys / "merchant.pem"),
        "alipay_public_key_file": str(keys / "gateway.pub"),
    }


def _wechatpay_values(keys: Path) -> dict[str, object]:
    return {
        "wechatpay_mchid": "1900000109",
        "wechatpay_appid": "wxd678efh567hg6787",
        "wechatpay_private_key_file": str(keys / "merchant.pem"),
        "wechatpay_serial_no": "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
        "wechatpay_apiv3_key": APIV3_KEY,
        "wechatpay_public_key_file": str(keys / "gateway.pub"),
        "wechatpay_public_key_id": "PUB_KEY_ID_0114232134912410000000000000",
    }


def _alipay(keys: Path, **changes: object) -> Settings:
    return load_settings(**{"channels": ["alipay"], **_alipay_values(keys), **changes})


def _wechatpay(keys: Path, **changes: object) -> Settings:
    return load_settings(**{"channels": ["wechatpay"], **_wechatpay_values(keys), **changes})


def _error(settings: Settings) -> str:
    with pytest.raises(ConfigError) as caught:
        check_channels(settings)
    return str(caught.value)


def test_well_formed_settings_build_both_channels(keys: Path) -> None:
    settings = load_settings(
        channels=["alipay", "wechatpay"], **_alipay_values(keys), **_wechatpay_values(keys)
    )
    registry = build_registry(settings, clock=FrozenClock(datetime(2026, 11, 1, tzinfo=UTC)))
    alipay, wechatpay = list(registry)
    assert isinstance(alipay, AlipayChannel)
    assert isinstance(wechatpay, WechatPayChannel)
    assert (alipay.app_id, wechatpay.app_id) == ("2021000000000001", "1900000109")


def test_a_missing_key_file_names_the_variable(keys: Path) -> None:
    message = _error(_alipay(keys, alipay_private_key_file=str(keys / "nope.pem")))
    assert message.startswith("TUITION_ALIPAY_PRIVATE_KEY_FILE: cannot read key file")
    assert "No such file" in message


@pytest.mark.parametrize(
    ("variable", "setting"),
    [
        ("TUITION_ALIPAY_APP_ID", "alipay_app_id"),
        ("TUITION_ALIPAY_PRIVATE_KEY_FILE", "alipay_private_key_file"),
        ("TUITION_ALIPAY_PUBLIC_KEY_FILE", "alipay_public_key_file"),
    ],
)
def test_an_unset_alipay_setting_is_named(keys: Path, variable: str, setting: str) -> None:
    assert _error(_alipay(keys, **{setting: ""})).startswith(f"{variable}: is not set")


@pytest.mark.parametrize(
    ("variable", "setting"),
    [
        ("TUITION_WECHATPAY_MCHID", "wechatpay_mchid"),
        ("TUITION_WECHATPAY_APPID", "wechatpay_appid"),
        ("TUITION_WECHATPAY_PRIVATE_KEY_FILE", "wechatpay_private_key_file"),
        ("TUITION_WECHATPAY_SERIAL_NO", "wechatpay_serial_no"),
        ("TUITION_WECHATPAY_APIV3_KEY", "wechatpay_apiv3_key"),
    ],
)
def test_an_unset_wechatpay_setting_is_named(keys: Path, variable: str, setting: str) -> None:
    assert _error(_wechatpay(keys, **{setting: ""})).startswith(f"{variable}: is not set")


def test_a_pkcs1_private_key_is_accepted(keys: Path, merchant_key: rsa.RSAPrivateKey) -> None:
    pkcs1 = _pem(merchant_key, serialization.PrivateFormat.TraditionalOpenSSL)
    assert pkcs1.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    (keys / "pkcs1.pem").write_bytes(pkcs1)
    config = alipay_config(_alipay(keys, alipay_private_key_file=str(keys / "pkcs1.pem")))
    # Normalised once at start-up: the channel works with PKCS#8 from then on.
    assert config.private_key().private_numbers() == merchant_key.private_numbers()
    wechat = wechatpay_config(_wechatpay(keys, wechatpay_private_key_file=str(keys / "pkcs1.pem")))
    assert wechat.private_key().private_numbers() == merchant_key.private_numbers()


def test_a_bare_base64_key_body_is_accepted(keys: Path, merchant_key: rsa.RSAPrivateKey) -> None:
    der = merchant_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (keys / "bare.txt").write_bytes(base64.b64encode(der))
    alipay_config(_alipay(keys, alipay_private_key_file=str(keys / "bare.txt")))


def test_a_1024_bit_key_is_refused_naming_the_variable(keys: Path) -> None:
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (keys / "short.pem").write_bytes(_pem(short, serialization.PrivateFormat.PKCS8))
    message = _error(_wechatpay(keys, wechatpay_private_key_file=str(keys / "short.pem")))
    assert message == (
        "TUITION_WECHATPAY_PRIVATE_KEY_FILE: RSA key is 1024 bits; at least 2048 are required"
    )


def test_keys_in_the_wrong_files_are_refused_without_showing_them(
    keys: Path, merchant_key: rsa.RSAPrivateKey
) -> None:
    (keys / "own.pub").write_bytes(_public(merchant_key))
    own = _error(_alipay(keys, alipay_public_key_file=str(keys / "own.pub")))
    assert own.startswith("TUITION_ALIPAY_PUBLIC_KEY_FILE: this is the app's own public key")
    swapped = _error(_alipay(keys, alipay_public_key_file=str(keys / "merchant.pem")))
    assert swapped == "TUITION_ALIPAY_PUBLIC_KEY_FILE: expected a public key, got a private key"
    garbage = _error(_alipay(keys, alipay_private_key_file=str(keys / "gateway.pub")))
    assert garbage.startswith("TUITION_ALIPAY_PRIVATE_KEY_FILE: expected a private key")
    body = (keys / "merchant.pem").read_text().splitlines()[1]
    for message in (own, swapped, garbage):
        assert "BEGIN" not in message
        assert body not in message


def test_the_wechat_pay_public_key_needs_its_id(keys: Path) -> None:
    message = _error(_wechatpay(keys, wechatpay_public_key_id=""))
    assert "TUITION_WECHATPAY_PUBLIC_KEY_FILE and TUITION_WECHATPAY_PUBLIC_KEY_ID" in message
    neither = _error(_wechatpay(keys, wechatpay_public_key_id="", wechatpay_public_key_file=""))
    assert neither.startswith("TUITION_WECHATPAY_PUBLIC_KEY_FILE: is not set")


def test_a_wrong_length_apiv3_key_is_named_but_not_shown(keys: Path) -> None:
    message = _error(_wechatpay(keys, wechatpay_apiv3_key="short-secret-value"))
    assert message.startswith("TUITION_WECHATPAY_APIV3_KEY: must be exactly 32 bytes")
    assert "short-secret-value" not in message
    assert APIV3_KEY not in repr(_wechatpay(keys))


def test_platform_certificates_are_read_from_files_by_serial(
    keys: Path, gateway_key: rsa.RSAPrivateKey
) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(gateway_key.public_key())
        .serial_number(0x5157F09EFDC096DE)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(gateway_key, hashes.SHA256())
    )
    (keys / "platform.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    config = wechatpay_config(
        _wechatpay(
            keys,
            wechatpay_public_key_file="",
            wechatpay_public_key_id="",
            wechatpay_platform_cert_files=[str(keys / "platform.pem")],
        )
    )
    assert list(config.platform_certificates) == ["5157F09EFDC096DE"]
    unreadable = _error(_wechatpay(keys, wechatpay_platform_cert_files=[str(keys / "gone.pem")]))
    assert unreadable.startswith("TUITION_WECHATPAY_PLATFORM_CERT_FILES:")
    not_a_cert = _error(_wechatpay(keys, wechatpay_platform_cert_files=[str(keys / "gateway.pub")]))
    assert not_a_cert.endswith("not a PEM X.509 certificate")


def test_build_registry_raises_a_config_error_for_a_misconfigured_channel(keys: Path) -> None:
    settings = _alipay(keys, alipay_gateway_url="openapi.alipay.com/gateway.do")
    with pytest.raises(ConfigError, match=r"^TUITION_ALIPAY_GATEWAY_URL: expected an http"):
        build_registry(settings, clock=FrozenClock(datetime(2026, 11, 1, tzinfo=UTC)))


def test_simulator_mode_enables_every_channel_unless_channels_are_set() -> None:
    assert load_settings().enabled_channels == ["sandbox"]
    assert load_settings(simulator=True).enabled_channels == ["sandbox", "alipay", "wechatpay"]
    chosen = load_settings(simulator=True, channels=["wechatpay"])
    assert chosen.enabled_channels == ["wechatpay"]


def test_simulator_mode_keeps_its_keys_in_private_files(tmp_path: Path) -> None:
    settings = load_settings(simulator=True, simulator_key_file=str(tmp_path / "sim.pem"))
    clock = FrozenClock(datetime(2026, 11, 1, tzinfo=UTC))
    first = build_registry(settings, clock=clock, mode="test")
    assert [c.slug for c in first] == ["sandbox", "alipay", "wechatpay"]
    # Live mode plays the same gateways, never the sandbox.
    assert [c.slug for c in build_registry(settings, clock=clock)] == ["alipay", "wechatpay"]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [
        "sim-alipay-app.pem",
        "sim-alipay.pem",
        "sim-wechat-oauth.key",  # the simulated official account's AppSecret
        "sim-wechatpay-apiv3.key",
        "sim-wechatpay-merchant.pem",
        "sim-wechatpay.pem",
        "sim.pem",
    ]
    for path in tmp_path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    contents = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert (
        alipay_config(settings).gateway_url == "http://127.0.0.1:8000/simulator/alipay/gateway.do"
    )
    assert wechatpay_config(settings).base_url == "http://127.0.0.1:8000/simulator/wechatpay"
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == contents


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_the_cli_refuses_to_start_with_a_misconfigured_channel(
    monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setenv("TUITION_CHANNELS", '["sandbox", "alipay"]')
    monkeypatch.setenv("TUITION_ALIPAY_APP_ID", "2021000000000001")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, [command])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert "TUITION_ALIPAY_PRIVATE_KEY_FILE: is not set" in result.output


def test_a_channels_refund_fee_policy_comes_from_the_settings(tmp_path: Path) -> None:
    from tuition.channels.base import RefundFeePolicy
    from tuition.channels.setup import build_registry
    from tuition.clock import FrozenClock
    from tuition.config import load_settings

    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 't.db'}",
        simulator=True,
        simulator_key_file=str(tmp_path / "sim.pem"),
        refund_fee_policies={"alipay": "kept"},
    )
    registry = build_registry(settings, clock=FrozenClock())
    assert registry.get("alipay").refund_fee_policy is RefundFeePolicy.KEPT
    assert registry.get("wechatpay").refund_fee_policy is RefundFeePolicy.PRO_RATA
