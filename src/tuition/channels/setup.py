"""Build the enabled channels from settings: the one place that names each channel.

Each real channel's settings are loaded here, at start-up: key files are read, parsed
(PKCS#8 or PKCS#1, at least 2048 bits) and cross-checked, and any problem raises a
:class:`~tuition.config.ConfigError` whose message names the ``TUITION_…`` variable and
never contains key material.

In simulator mode (``TUITION_SIMULATOR=true``) the simulator plays Alipay, WeChat Pay and
UnionPay: their channels are configured against it with keys (and UnionPay's test CA)
made once and kept beside ``simulator_key_file`` (see :mod:`tuition.simulator.keyfiles`);
real credentials are not used. See docs/channels.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from cryptography import x509

from tuition.channels.alipay.client import AlipayChannel
from tuition.channels.alipay.config import (
    AlipayConfig,
    load_alipay_config,
    load_rsa_private_key,
    public_key_pem,
)
from tuition.channels.apple.client import AppleChannel
from tuition.channels.apple.config import AppleConfig, load_apple_config
from tuition.channels.bank_transfer.client import BankTransferChannel, BankTransferConfig
from tuition.channels.base import RefundFeePolicy
from tuition.channels.registry import ChannelRegistry
from tuition.channels.sandbox.client import SandboxChannel, SandboxConfig
from tuition.channels.unionpay.client import UnionPayChannel
from tuition.channels.unionpay.config import UnionPayConfig, load_unionpay_config
from tuition.channels.wechatpay.client import WechatPayChannel
from tuition.channels.wechatpay.config import WechatPayConfig, load_wechatpay_config
from tuition.channels.wechatpay.oauth import WebOAuth, WebOAuthConfig
from tuition.clock import Clock
from tuition.config import ConfigError, Settings
from tuition.domain.modes import MODES, Mode
from tuition.simulator.app import Simulator
from tuition.simulator.keyfiles import kept, kept_apiv3_key, kept_rsa_key, sibling
from tuition.simulator.signing import key_serial
from tuition.simulator.unionpay_ca import MERCHANT_PFX_PASSWORD, TestCA

# The merchant the simulator knows (sample ids in the gateways' own formats).
SIMULATED_ALIPAY_APP_ID = "2021000000000000"
SIMULATED_MCHID = "1900000109"
SIMULATED_APPID = "wxd678efh567hg6787"
SIMULATED_MER_ID = "777290058110048"
SIMULATED_PAPAY_PLAN_ID = 12535
SIMULATED_APP_APPID = "wx8888888888888888"  # the platform's own mobile app
SIMULATED_MINIPROGRAM_APPID = "wx9999999999999999"

# The names the channel configs use in their messages -> the variables that set them.
_VARIABLES = {
    "alipay.app_id": "TUITION_ALIPAY_APP_ID",
    "alipay.app_private_key": "TUITION_ALIPAY_PRIVATE_KEY_FILE",
    "alipay.alipay_public_key": "TUITION_ALIPAY_PUBLIC_KEY_FILE",
    "alipay.gateway_url": "TUITION_ALIPAY_GATEWAY_URL",
    "alipay.notify_url": "TUITION_PUBLIC_URL",
    "alipay.fee_rate": "TUITION_CHANNEL_FEE_RATES",
    "wechatpay.mchid": "TUITION_WECHATPAY_MCHID",
    "wechatpay.appid": "TUITION_WECHATPAY_APPID",
    "wechatpay.app_appid": "TUITION_WECHATPAY_APP_APPID",
    "wechatpay.miniprogram_appid": "TUITION_WECHATPAY_MINIPROGRAM_APPID",
    "wechatpay.merchant_private_key": "TUITION_WECHATPAY_PRIVATE_KEY_FILE",
    "wechatpay.merchant_serial_no": "TUITION_WECHATPAY_SERIAL_NO",
    "wechatpay.apiv3_key": "TUITION_WECHATPAY_APIV3_KEY",
    "wechatpay.wechatpay_public_key": "TUITION_WECHATPAY_PUBLIC_KEY_FILE",
    "wechatpay.wechatpay_public_key_id": "TUITION_WECHATPAY_PUBLIC_KEY_ID",
    "wechatpay.platform_certificates": "TUITION_WECHATPAY_PLATFORM_CERT_FILES",
    "wechatpay.base_url": "TUITION_WECHATPAY_BASE_URL",
    "wechatpay.notify_url": "TUITION_PUBLIC_URL",
    "wechatpay.fee_rate": "TUITION_CHANNEL_FEE_RATES",
    "apple.bundle_id": "TUITION_APPLE_BUNDLE_ID",
    "apple.environment": "TUITION_APPLE_ENVIRONMENT",
    "apple.app_apple_id": "TUITION_APPLE_APP_APPLE_ID",
    "apple.root_certificates": "TUITION_APPLE_ROOT_CERTIFICATE_FILES",
    "apple.products": "TUITION_APPLE_PRODUCTS",
    "unionpay.mer_id": "TUITION_UNIONPAY_MER_ID",
    "unionpay.signing_pfx": "TUITION_UNIONPAY_SIGN_CERT_FILE",
    "unionpay.signing_certificate": "TUITION_UNIONPAY_SIGN_CERT_FILE",
    "unionpay.root_certificate": "TUITION_UNIONPAY_ROOT_CERT_FILE",
    "unionpay.middle_certificate": "TUITION_UNIONPAY_MIDDLE_CERT_FILE",
    "unionpay.certificate_cn": "TUITION_UNIONPAY_CERT_CN",
    "unionpay.gateway_url": "TUITION_UNIONPAY_GATEWAY_URL",
    "unionpay.file_url": "TUITION_UNIONPAY_FILE_URL",
    "unionpay.notify_url": "TUITION_PUBLIC_URL",
    "unionpay.fee_rate": "TUITION_CHANNEL_FEE_RATES",
    "wechatpay.papay_plan_id": "TUITION_WECHATPAY_PAPAY_PLAN_ID",
}


def simulator_key(settings: Settings) -> bytes:
    """The simulator's sandbox RSA key, made once and kept in a file every process can read."""
    return kept_rsa_key(Path(settings.simulator_key_file))


def check_channels(settings: Settings) -> None:
    """Load every enabled channel's settings now, of both modes; raises ConfigError
    naming the variable."""
    for mode in MODES:
        mode_settings = settings.for_mode(mode)
        for slug in settings.mode_channels(mode):
            if slug == "alipay":
                alipay_config(mode_settings)
            elif slug == "wechatpay":
                wechatpay_config(mode_settings)
            elif slug == "apple":
                apple_config(mode_settings)
            elif slug == "bank_transfer":
                bank_transfer_config(mode_settings)
            elif slug == "unionpay":
                unionpay_config(mode_settings)


def build_registry(
    settings: Settings,
    *,
    clock: Clock,
    simulator: Simulator | None = None,
    mode: Mode = "live",
) -> ChannelRegistry:
    """``mode``'s channels (``settings.mode_channels``: never the sandbox live), in
    checkout order, each configured by ``settings.for_mode(mode)``.

    With the simulator in this process the channels reach it without a network hop (and
    it learns the simulated merchants' keys); otherwise they call it over HTTP at
    ``sandbox_url`` (default: this deployment's /simulator), or call the real gateways.
    """
    registry = ChannelRegistry()
    transport = simulator.transport if simulator is not None else None
    slugs = settings.mode_channels(mode)
    settings = settings.for_mode(mode)
    for slug in slugs:
        match slug:
            case "sandbox":
                registry.add(_sandbox(settings, clock=clock, simulator=simulator))
            case "alipay":
                alipay = alipay_config(settings, simulator=simulator)
                registry.add(AlipayChannel(alipay, transport=transport, clock=clock))
            case "wechatpay":
                wechatpay = wechatpay_config(settings, simulator=simulator)
                oauth = web_oauth(settings, wechatpay.appid, simulator=simulator)
                registry.add(
                    WechatPayChannel(wechatpay, transport=transport, clock=clock, web_oauth=oauth)
                )
            case "apple":
                registry.add(AppleChannel(apple_config(settings)))
            case "bank_transfer":
                registry.add(BankTransferChannel(bank_transfer_config(settings)))
            case "unionpay":
                unionpay = unionpay_config(settings, simulator=simulator)
                registry.add(UnionPayChannel(unionpay, transport=transport, clock=clock))
            case _:
                raise ConfigError(f"TUITION_CHANNELS: unknown channel {slug!r}")
    return registry


# -- Alipay ------------------------------------------------------------------------------


def alipay_config(settings: Settings, *, simulator: Simulator | None = None) -> AlipayConfig:
    fee_rate = settings.channel_fee_rates.get("alipay", Decimal("0.006"))
    if settings.simulator:
        app_key = kept_rsa_key(sibling(settings.simulator_key_file, "alipay-app"))
        gateway_key = kept_rsa_key(sibling(settings.simulator_key_file, "alipay"))
        with _naming_variables():
            config = load_alipay_config(
                app_id=SIMULATED_ALIPAY_APP_ID,
                app_private_key=app_key,
                alipay_public_key=_public_pem(gateway_key),
                gateway_url=f"{_simulator_url(settings, simulator)}/alipay/gateway.do",
                fee_rate=fee_rate,
                refund_fee_policy=_refund_fee_policy(settings, "alipay"),
            )
        if simulator is not None:
            simulator.alipay.key.use(gateway_key)
            simulator.alipay.add_app(config.app_id, _public_pem(app_key))
        return config
    _require(settings.alipay_app_id, "TUITION_ALIPAY_APP_ID", "the open-platform app id")
    _require(settings.alipay_private_key_file, "TUITION_ALIPAY_PRIVATE_KEY_FILE", "a key file")
    _require(settings.alipay_public_key_file, "TUITION_ALIPAY_PUBLIC_KEY_FILE", "a key file")
    with _naming_variables():
        return load_alipay_config(
            app_id=settings.alipay_app_id,
            app_private_key=Path(settings.alipay_private_key_file),
            alipay_public_key=Path(settings.alipay_public_key_file),
            gateway_url=settings.alipay_gateway_url,
            fee_rate=fee_rate,
            refund_fee_policy=_refund_fee_policy(settings, "alipay"),
        )


# -- WeChat Pay --------------------------------------------------------------------------


def wechatpay_config(settings: Settings, *, simulator: Simulator | None = None) -> WechatPayConfig:
    fee_rate = settings.channel_fee_rates.get("wechatpay", Decimal("0.006"))
    if settings.simulator:
        merchant_key = kept_rsa_key(sibling(settings.simulator_key_file, "wechatpay-merchant"))
        platform_key = kept_rsa_key(sibling(settings.simulator_key_file, "wechatpay"))
        apiv3_file = sibling(settings.simulator_key_file, "wechatpay-apiv3").with_suffix(".key")
        apiv3_key = kept_apiv3_key(apiv3_file)
        with _naming_variables():
            config = load_wechatpay_config(
                mchid=SIMULATED_MCHID,
                appid=SIMULATED_APPID,
                merchant_private_key=merchant_key,
                merchant_serial_no=_serial(merchant_key),
                apiv3_key=apiv3_key,
                wechatpay_public_key=_public_pem(platform_key),
                wechatpay_public_key_id=f"PUB_KEY_ID_{_serial(platform_key)}",
                base_url=f"{_simulator_url(settings, simulator)}/wechatpay",
                fee_rate=fee_rate,
                refund_fee_policy=_refund_fee_policy(settings, "wechatpay"),
                papay_plan_id=settings.wechatpay_papay_plan_id or SIMULATED_PAPAY_PLAN_ID,
                app_appid=SIMULATED_APP_APPID,
                miniprogram_appid=SIMULATED_MINIPROGRAM_APPID,
            )
        if simulator is not None:
            simulator.wechatpay.use_key(platform_key, config.wechatpay_public_key_id)
            for appid in (config.appid, SIMULATED_APP_APPID, SIMULATED_MINIPROGRAM_APPID):
                simulator.wechatpay.add_merchant(
                    config.mchid,
                    appid=appid,
                    public_key_pem=_public_pem(merchant_key),
                    serial_no=config.merchant_serial_no,
                    apiv3_key=config.apiv3_key,
                )
        return config
    _require(settings.wechatpay_mchid, "TUITION_WECHATPAY_MCHID", "the merchant id")
    _require(settings.wechatpay_appid, "TUITION_WECHATPAY_APPID", "the app id")
    _require(settings.wechatpay_private_key_file, "TUITION_WECHATPAY_PRIVATE_KEY_FILE", "a file")
    _require(settings.wechatpay_serial_no, "TUITION_WECHATPAY_SERIAL_NO", "the serial number")
    _require(settings.wechatpay_apiv3_key, "TUITION_WECHATPAY_APIV3_KEY", "the APIv3 key")
    public_key_file = settings.wechatpay_public_key_file
    certificates = _certificates(settings.wechatpay_platform_cert_files)
    with _naming_variables():
        return load_wechatpay_config(
            mchid=settings.wechatpay_mchid,
            appid=settings.wechatpay_appid,
            merchant_private_key=Path(settings.wechatpay_private_key_file),
            merchant_serial_no=settings.wechatpay_serial_no,
            apiv3_key=settings.wechatpay_apiv3_key,
            wechatpay_public_key=Path(public_key_file) if public_key_file else None,
            wechatpay_public_key_id=settings.wechatpay_public_key_id or None,
            papay_plan_id=settings.wechatpay_papay_plan_id,
            platform_certificates=certificates,
            base_url=settings.wechatpay_base_url,
            fee_rate=fee_rate,
            refund_fee_policy=_refund_fee_policy(settings, "wechatpay"),
            app_appid=settings.wechatpay_app_appid or None,
            miniprogram_appid=settings.wechatpay_miniprogram_appid or None,
        )


def _certificates(files: list[str]) -> dict[str, bytes]:
    """Platform certificate files by their serial number, as WeChat Pay names them."""
    certificates = {}
    for name in files:
        setting = f"TUITION_WECHATPAY_PLATFORM_CERT_FILES: {name!r}"
        try:
            pem = Path(name).read_bytes()
        except OSError as exc:
            raise ConfigError(f"{setting}: cannot read the file: {exc.strerror}") from None
        try:
            serial = x509.load_pem_x509_certificate(pem).serial_number
        except ValueError:
            raise ConfigError(f"{setting}: not a PEM X.509 certificate") from None
        certificates[f"{serial:X}"] = pem
    return certificates


# -- Apple App Store --------------------------------------------------------------------


def apple_config(settings: Settings) -> AppleConfig:
    """The App Store channel's settings; the simulator does not play Apple (the app
    talks to the App Store), so the same settings hold in simulator mode."""
    with _naming_variables():
        return load_apple_config(
            bundle_id=settings.apple_bundle_id,
            environment=settings.apple_environment,
            root_certificate_files=settings.apple_root_certificate_files,
            app_apple_id=settings.apple_app_apple_id,
            products=settings.apple_products,
            online_checks=settings.apple_online_checks,
        )


# -- bank transfer ----------------------------------------------------------------------


def bank_transfer_config(settings: Settings) -> BankTransferConfig:
    """The account buyers transfer to; the same in simulator mode (no gateway)."""
    _require(settings.bank_transfer_account_name, "TUITION_BANK_TRANSFER_ACCOUNT_NAME", "a name")
    _require(settings.bank_transfer_bank_name, "TUITION_BANK_TRANSFER_BANK_NAME", "the bank")
    _require(
        settings.bank_transfer_account_number, "TUITION_BANK_TRANSFER_ACCOUNT_NUMBER", "a number"
    )
    return BankTransferConfig(
        account_name=settings.bank_transfer_account_name,
        bank_name=settings.bank_transfer_bank_name,
        account_number=settings.bank_transfer_account_number,
        expiry=timedelta(days=settings.bank_transfer_expiry_days),
    )


# -- UnionPay ----------------------------------------------------------------------------


def unionpay_config(settings: Settings, *, simulator: Simulator | None = None) -> UnionPayConfig:
    fee_rate = settings.channel_fee_rates.get("unionpay", Decimal("0.006"))
    if settings.simulator:
        ca_file = sibling(settings.simulator_key_file, "unionpay-ca").with_suffix(".json")
        ca = TestCA.load(kept(ca_file, lambda: TestCA.create().dump()))
        merchant_key = load_rsa_private_key(
            kept_rsa_key(sibling(settings.simulator_key_file, "unionpay-merchant")),
            setting="simulator key",
        )
        pfx_file = sibling(settings.simulator_key_file, "unionpay-merchant").with_suffix(".pfx")
        pfx = kept(pfx_file, lambda: ca.merchant_pfx(SIMULATED_MER_ID, merchant_key))
        base = _simulator_url(settings, simulator)
        with _naming_variables():
            config = load_unionpay_config(
                mer_id=SIMULATED_MER_ID,
                signing_pfx=pfx,
                signing_pfx_password=MERCHANT_PFX_PASSWORD,
                root_certificate=ca.pem("root"),
                middle_certificate=ca.pem("middle"),
                gateway_url=f"{base}/unionpay",
                file_url=f"{base}/unionpay/file",
                fee_rate=fee_rate,
                refund_fee_policy=_refund_fee_policy(settings, "unionpay"),
            )
        if simulator is not None:
            simulator.unionpay.use_ca(ca)
            simulator.unionpay.add_merchant(config.mer_id, config.certificate())
        return config
    _require(settings.unionpay_mer_id, "TUITION_UNIONPAY_MER_ID", "the merchant code (merId)")
    _require(settings.unionpay_sign_cert_file, "TUITION_UNIONPAY_SIGN_CERT_FILE", "a .pfx file")
    _require(settings.unionpay_root_cert_file, "TUITION_UNIONPAY_ROOT_CERT_FILE", "a .cer file")
    _require(settings.unionpay_middle_cert_file, "TUITION_UNIONPAY_MIDDLE_CERT_FILE", "a .cer file")
    with _naming_variables():
        return load_unionpay_config(
            mer_id=settings.unionpay_mer_id,
            signing_pfx=Path(settings.unionpay_sign_cert_file),
            signing_pfx_password=settings.unionpay_sign_cert_password,
            root_certificate=Path(settings.unionpay_root_cert_file),
            middle_certificate=Path(settings.unionpay_middle_cert_file),
            certificate_cn=settings.unionpay_cert_cn,
            gateway_url=settings.unionpay_gateway_url,
            file_url=settings.unionpay_file_url,
            fee_rate=fee_rate,
            refund_fee_policy=_refund_fee_policy(settings, "unionpay"),
        )


# -- sandbox -----------------------------------------------------------------------------


def _sandbox(settings: Settings, *, clock: Clock, simulator: Simulator | None) -> SandboxChannel:
    key = load_rsa_private_key(simulator_key(settings), setting="TUITION_SIMULATOR_KEY_FILE")
    config = SandboxConfig(
        # In-process the transport goes straight to the simulator app, whose routes start
        # at its root; over HTTP it is wherever the simulator is served.
        base_url="http://simulator.internal"
        if simulator is not None
        else settings.sandbox_url or f"{settings.base_url}/simulator",
        app_id=settings.sandbox_app_id,
        secret=settings.sandbox_secret,
        gateway_public_key_pem=public_key_pem(key.public_key()).decode(),
        gateway_serial=key_serial(key.public_key()),
        fee_rate=settings.channel_fee_rates.get("sandbox", Decimal("0.006")),
        refund_fee_policy=_refund_fee_policy(settings, "sandbox"),
    )
    return SandboxChannel(config, transport=simulator.transport if simulator else None, clock=clock)


# -- helpers -----------------------------------------------------------------------------


def _refund_fee_policy(settings: Settings, slug: str) -> RefundFeePolicy:
    return RefundFeePolicy(settings.refund_fee_policies.get(slug, RefundFeePolicy.PRO_RATA.value))


def web_oauth(
    settings: Settings, appid: str, *, simulator: Simulator | None = None
) -> WebOAuth | None:
    """WeChat web OAuth for JSAPI inside WeChat (channels/wechatpay/oauth.py), when the
    official account's secret is configured; the simulator plays it in simulator mode."""
    if settings.simulator:
        secret = kept_apiv3_key(
            sibling(settings.simulator_key_file, "wechat-oauth").with_suffix(".key")
        ).decode("ascii")
        root = _simulator_url(settings, simulator)
        if simulator is not None:
            simulator.wechat_oauth.add_app(appid, secret)
        config = WebOAuthConfig(
            appid=appid,
            secret=secret,
            authorize_url=f"{root}/wechat/connect/oauth2/authorize",
            api_url=f"{root}/wechat/api",
        )
        return WebOAuth(config, transport=None if simulator is None else simulator.transport)
    if not settings.wechatpay_app_secret:
        return None
    try:
        config = WebOAuthConfig(
            appid=appid,
            secret=settings.wechatpay_app_secret,
            authorize_url=settings.wechatpay_oauth_url,
            api_url=settings.wechatpay_api_url,
        )
    except ValueError as exc:
        raise ConfigError(f"TUITION_WECHATPAY_APP_SECRET: {exc}") from None
    return WebOAuth(config)


def _simulator_url(settings: Settings, simulator: Simulator | None) -> str:
    """Where browsers (and, over HTTP, other processes) reach the simulator.

    In-process the simulator's transport accepts these URLs too, so the Alipay page-pay
    link a channel builds works both for the browser and for the channel itself.
    """
    if simulator is not None:
        return simulator.config.public_base_url.rstrip("/")
    return (settings.sandbox_url or f"{settings.base_url}/simulator").rstrip("/")


def _public_pem(private_pem: bytes) -> bytes:
    return public_key_pem(load_rsa_private_key(private_pem, setting="simulator key").public_key())


def _serial(private_pem: bytes) -> str:
    return key_serial(load_rsa_private_key(private_pem, setting="simulator key").public_key())


def _require(value: str, variable: str, what: str) -> None:
    if not value.strip():
        raise ConfigError(f"{variable}: is not set; give {what} (the channel is enabled)")


@contextmanager
def _naming_variables() -> Iterator[None]:
    """Turn a channel config's ValueError into a ConfigError naming the variables."""
    try:
        yield
    except ValueError as exc:
        message = str(exc)
        # Longest first: "wechatpay.wechatpay_public_key_id" before its prefix.
        for name in sorted(_VARIABLES, key=len, reverse=True):
            message = message.replace(name, _VARIABLES[name])
        raise ConfigError(message) from None
