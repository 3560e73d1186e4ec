"""WeChat Pay API v3 settings, validated once at start-up.

Responses and notifications are signed by WeChat Pay with either the *WeChat Pay public
key* (merchants since 2024; ``Wechatpay-Serial: PUB_KEY_ID_…``) or a *platform
certificate* (older merchants, identified by the certificate's hex serial). During a
migration both may be configured. Every problem raises a ``ValueError`` naming the
setting; key material never appears in a message or a ``repr``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tuition.channels.alipay.config import (
    KeySource,
    check_common,
    check_refund_fee_policy,
    check_url,
    load_rsa_private_key,
    load_rsa_public_key,
    private_key_pem,
    public_key_pem,
    read_key_source,
)
from tuition.channels.base import RefundFeePolicy

PRODUCTION_BASE_URL = "https://api.mch.weixin.qq.com"
PUBLIC_KEY_ID_PREFIX = "PUB_KEY_ID_"
APIV3_KEY_BYTES = 32

_P = "wechatpay."
_SERIAL = re.compile(r"[0-9A-Fa-f]{1,40}")
_ID = re.compile(r"[0-9A-Za-z_]{1,32}")


def _apiv3_key(value: str | bytes) -> bytes:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if len(raw) != APIV3_KEY_BYTES:
        raise ValueError(
            f"{_P}apiv3_key: must be exactly {APIV3_KEY_BYTES} bytes (the APIv3 key set in "
            f"the merchant platform), got {len(raw)}"
        )
    return raw


def _certificate(serial: str, pem: bytes | str) -> tuple[str, bytes, rsa.RSAPublicKey]:
    setting = f"{_P}platform_certificates[{serial!r}]"
    if not isinstance(serial, str) or _SERIAL.fullmatch(serial) is None:
        raise ValueError(f"{setting}: the key must be the certificate's hex serial number")
    key = load_rsa_public_key(pem, setting=setting, allow_certificate=True)
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ValueError(f"{setting}: expected a PEM X.509 certificate") from None
    if certificate.serial_number != int(serial, 16):
        raise ValueError(f"{setting}: the certificate's serial is {certificate.serial_number:X}")
    return serial.upper(), certificate.public_bytes(serialization.Encoding.PEM), key


@dataclass(frozen=True, slots=True)
class WechatPayConfig:
    """One directly connected WeChat Pay merchant (``mchid``) and the app it sells through.

    ``merchant_private_key`` / ``merchant_serial_no`` are the merchant API certificate's
    key and serial (they sign our requests). ``apiv3_key`` decrypts notifications.
    ``wechatpay_public_key`` + ``wechatpay_public_key_id`` and/or
    ``platform_certificates`` (``{serial: PEM}``) verify WeChat Pay's signatures.
    """

    mchid: str
    appid: str
    merchant_private_key: bytes = field(repr=False)
    merchant_serial_no: str
    apiv3_key: bytes = field(repr=False)
    wechatpay_public_key: bytes | None = None
    wechatpay_public_key_id: str | None = None
    platform_certificates: Mapping[str, bytes] = field(default_factory=dict)
    base_url: str = PRODUCTION_BASE_URL
    notify_url: str | None = None
    fee_rate: Decimal = Decimal("0.006")
    timeout_seconds: int = 10
    # WeChat Pay returns refund amount x fee rate of its fee (docs/channels.md).
    refund_fee_policy: RefundFeePolicy = RefundFeePolicy.PRO_RATA
    # The 委托代扣 template (plan) renewals are signed under; None: no agreements.
    papay_plan_id: int | None = None
    # The platform's own mobile app (open platform appid) and mini-program, bound to the
    # same merchant: each enables its method ("app", "miniprogram"; app_pay.py).
    app_appid: str | None = None
    miniprogram_appid: str | None = None

    def __post_init__(self) -> None:
        for name in ("mchid", "appid", "app_appid", "miniprogram_appid"):
            value = getattr(self, name)
            if value is None and name in ("app_appid", "miniprogram_appid"):
                continue
            if not isinstance(value, str) or _ID.fullmatch(value) is None:
                raise ValueError(f"{_P}{name}: expected a WeChat Pay {name}, got {value!r}")
        private = load_rsa_private_key(
            self.merchant_private_key, setting=f"{_P}merchant_private_key"
        )
        if not isinstance(self.merchant_serial_no, str) or not _SERIAL.fullmatch(
            self.merchant_serial_no
        ):
            raise ValueError(f"{_P}merchant_serial_no: expected the certificate's hex serial")
        object.__setattr__(self, "merchant_private_key", private_key_pem(private))
        object.__setattr__(self, "merchant_serial_no", self.merchant_serial_no.upper())
        object.__setattr__(self, "apiv3_key", _apiv3_key(self.apiv3_key))
        self._check_wechatpay_keys(private)
        check_url(self.base_url, f"{_P}base_url")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        if self.notify_url is not None:
            check_url(self.notify_url, f"{_P}notify_url")
        check_common(self.fee_rate, self.timeout_seconds, _P)
        check_refund_fee_policy(self.refund_fee_policy, _P)

    def _check_wechatpay_keys(self, private: rsa.RSAPrivateKey) -> None:
        key, key_id = self.wechatpay_public_key, self.wechatpay_public_key_id
        if (key is None) != (key_id is None):
            raise ValueError(
                f"{_P}wechatpay_public_key and {_P}wechatpay_public_key_id go together; "
                "give both or neither"
            )
        if key is not None and key_id is not None:
            if not key_id.startswith(PUBLIC_KEY_ID_PREFIX) or len(key_id) > 64:
                raise ValueError(
                    f"{_P}wechatpay_public_key_id: expected {PUBLIC_KEY_ID_PREFIX}…, got {key_id!r}"
                )
            public = load_rsa_public_key(key, setting=f"{_P}wechatpay_public_key")
            if public.public_numbers() == private.public_key().public_numbers():
                raise ValueError(
                    f"{_P}wechatpay_public_key: this is the merchant's own key; use the "
                    "WeChat Pay public key downloaded from the merchant platform"
                )
            object.__setattr__(self, "wechatpay_public_key", public_key_pem(public))
        certificates = {}
        for serial, pem in dict(self.platform_certificates).items():
            normalised, cert_pem, _ = _certificate(serial, pem)
            certificates[normalised] = cert_pem
        object.__setattr__(self, "platform_certificates", MappingProxyType(certificates))
        if key is None and not certificates:
            raise ValueError(
                f"{_P}wechatpay_public_key: is not set; give the WeChat Pay public key and its "
                f"id (or, for older merchants, {_P}platform_certificates)"
            )

    def private_key(self) -> rsa.RSAPrivateKey:
        return load_rsa_private_key(self.merchant_private_key, setting=f"{_P}merchant_private_key")

    def verification_keys(self) -> dict[str, rsa.RSAPublicKey]:
        """Every key WeChat Pay may sign with, by the ``Wechatpay-Serial`` that names it."""
        keys = {
            serial: load_rsa_public_key(pem, setting=serial, allow_certificate=True)
            for serial, pem in self.platform_certificates.items()
        }
        if self.wechatpay_public_key is not None and self.wechatpay_public_key_id is not None:
            keys[self.wechatpay_public_key_id] = load_rsa_public_key(
                self.wechatpay_public_key, setting=f"{_P}wechatpay_public_key"
            )
        return keys


def load_wechatpay_config(
    *,
    mchid: str,
    appid: str,
    merchant_private_key: KeySource | None,
    merchant_serial_no: str,
    apiv3_key: str | bytes | None,
    wechatpay_public_key: KeySource | None = None,
    wechatpay_public_key_id: str | None = None,
    platform_certificates: Mapping[str, KeySource] | None = None,
    base_url: str = PRODUCTION_BASE_URL,
    notify_url: str | None = None,
    fee_rate: Decimal = Decimal("0.006"),
    timeout_seconds: int = 10,
    refund_fee_policy: RefundFeePolicy = RefundFeePolicy.PRO_RATA,
    papay_plan_id: int | None = None,
    app_appid: str | None = None,
    miniprogram_appid: str | None = None,
) -> WechatPayConfig:
    """Build a :class:`WechatPayConfig`; keys and certificates may be text or file paths."""
    if not apiv3_key:
        raise ValueError(f"{_P}apiv3_key: is not set")
    public_key = None
    if wechatpay_public_key is not None:
        public_key = _bytes(
            read_key_source(wechatpay_public_key, setting=f"{_P}wechatpay_public_key")
        )
    return WechatPayConfig(
        mchid=mchid,
        appid=appid,
        merchant_private_key=_bytes(
            read_key_source(merchant_private_key, setting=f"{_P}merchant_private_key")
        ),
        merchant_serial_no=merchant_serial_no,
        apiv3_key=_bytes(apiv3_key),
        wechatpay_public_key=public_key,
        wechatpay_public_key_id=wechatpay_public_key_id,
        platform_certificates={
            serial: _bytes(read_key_source(pem, setting=f"{_P}platform_certificates[{serial!r}]"))
            for serial, pem in (platform_certificates or {}).items()
        },
        base_url=base_url,
        notify_url=notify_url,
        fee_rate=fee_rate,
        timeout_seconds=timeout_seconds,
        refund_fee_policy=refund_fee_policy,
        papay_plan_id=papay_plan_id,
        app_appid=app_appid or None,
        miniprogram_appid=miniprogram_appid or None,
    )


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")
