"""Alipay settings and the RSA key handling both real channels share.

Keys arrive in whatever shape the merchant's tools produced: PKCS#8 PEM (``BEGIN PRIVATE
KEY``), PKCS#1 PEM (``BEGIN RSA PRIVATE KEY``), a PEM squashed onto one line or with
literal ``\\n`` escapes (environment variables), or the bare base64 body that Alipay's
key tool prints. All of them are normalised to PKCS#8 / SubjectPublicKeyInfo PEM here,
once, at start-up; a key that is missing, unparseable, encrypted, not RSA or shorter
than 2048 bits raises a ``ValueError`` naming the setting. Key material never appears
in a message or a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tuition.channels.base import RefundFeePolicy

PRODUCTION_GATEWAY = "https://openapi.alipay.com/gateway.do"
MIN_KEY_BITS = 2048

KeySource = str | bytes | os.PathLike[str]

_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_WHITESPACE = re.compile(r"\s+")


def _text(value: str | bytes, setting: str) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"{setting}: not a PEM or base64 key (non-ASCII bytes)") from None
    # Keys pasted into environment variables often carry "\n" as two characters.
    return value.replace("\\n", "\n").strip()


def _der(value: str | bytes, setting: str) -> tuple[str | None, bytes]:
    """Split a key into its PEM label (None for a bare base64 body) and DER bytes."""
    text = _text(value, setting)
    if not text:
        raise ValueError(f"{setting}: is empty; give a PEM key or its base64 body")
    match = _PEM.search(text)
    label = match.group(1) if match else None
    body = match.group(2) if match else text
    if label is None and "-----" in text:
        raise ValueError(f"{setting}: malformed PEM (BEGIN/END lines do not match)")
    try:
        return label, base64.b64decode(_WHITESPACE.sub("", body), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{setting}: not a PEM or base64 key (bad base64)") from None


def _check_size(key: rsa.RSAPrivateKey | rsa.RSAPublicKey, setting: str) -> None:
    if key.key_size < MIN_KEY_BITS:
        raise ValueError(
            f"{setting}: RSA key is {key.key_size} bits; at least {MIN_KEY_BITS} are required"
        )


def load_rsa_private_key(value: str | bytes, *, setting: str) -> rsa.RSAPrivateKey:
    """Parse a PKCS#8 or PKCS#1 RSA private key (PEM or bare base64 DER)."""
    if "Proc-Type: 4,ENCRYPTED" in _text(value, setting):  # legacy encrypted PKCS#1 PEM
        raise ValueError(f"{setting}: the private key is encrypted; give an unencrypted one")
    label, der = _der(value, setting)
    if (label is not None and "PUBLIC KEY" in label) or label == "CERTIFICATE":
        raise ValueError(f"{setting}: expected a private key, got a {label.lower()}")
    if label == "ENCRYPTED PRIVATE KEY":
        raise ValueError(f"{setting}: the private key is encrypted; give an unencrypted one")
    try:
        key = serialization.load_der_private_key(der, password=None)
    except TypeError:  # cryptography's way of saying "this one needs a password"
        raise ValueError(
            f"{setting}: the private key is encrypted; give an unencrypted one"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(
            f"{setting}: not a parseable private key (expected PKCS#8 or PKCS#1 RSA)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{setting}: expected an RSA private key, got {type(key).__name__}")
    _check_size(key, setting)
    return key


def load_rsa_public_key(
    value: str | bytes, *, setting: str, allow_certificate: bool = False
) -> rsa.RSAPublicKey:
    """Parse an RSA public key (SPKI or PKCS#1, PEM or bare base64 DER).

    With ``allow_certificate`` an X.509 certificate PEM is accepted and its key returned.
    """
    label, der = _der(value, setting)
    key: object
    if label is not None and "PRIVATE KEY" in label:
        # Refuse loudly: a private key pasted here would otherwise end up in plain config.
        raise ValueError(f"{setting}: expected a public key, got a private key")
    try:
        if label == "CERTIFICATE":
            if not allow_certificate:
                raise ValueError
            key = x509.load_der_x509_certificate(der).public_key()
        else:
            key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(
            f"{setting}: not a parseable public key (expected SPKI or PKCS#1 RSA)"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"{setting}: expected an RSA public key, got {type(key).__name__}")
    _check_size(key, setting)
    return key


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def rsa_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    """SHA256withRSA (PKCS#1 v1.5) over ``message``, base64 encoded."""
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(key: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    """True if ``signature`` (base64) is a SHA256withRSA signature of ``message``."""
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


def read_key_source(value: KeySource | None, *, setting: str) -> str | bytes:
    """Key text as given, or read from a file when ``value`` is a path."""
    if value is None or value in ("", b""):
        raise ValueError(f"{setting}: is not set; give a PEM key, its base64 body or a path")
    if isinstance(value, str | bytes):
        return value
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        raise ValueError(
            f"{setting}: cannot read key file {os.fspath(value)!r}: {exc.strerror}"
        ) from None


def check_url(url: str, setting: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{setting}: expected an http(s) URL, got {url!r}")


def check_refund_fee_policy(policy: object, prefix: str) -> None:
    if not isinstance(policy, RefundFeePolicy):
        known = ", ".join(p.value for p in RefundFeePolicy)
        raise ValueError(f"{prefix}refund_fee_policy: must be one of {known}, got {policy!r}")


def check_common(fee_rate: Decimal, timeout_seconds: int, prefix: str) -> None:
    if not isinstance(fee_rate, Decimal) or not Decimal(0) <= fee_rate < Decimal(1):
        raise ValueError(f"{prefix}fee_rate: must be a Decimal in [0, 1), got {fee_rate!r}")
    if type(timeout_seconds) is not int or not 0 < timeout_seconds <= 120:
        raise ValueError(f"{prefix}timeout_seconds: must be an int in 1..120")


@dataclass(frozen=True, slots=True)
class AlipayConfig:
    """One Alipay open-platform app in public-key mode (RSA2).

    ``app_private_key`` signs our requests; ``alipay_public_key`` (from the open platform
    console, *not* the app's own public key) verifies responses and notifications. Both
    are normalised to PEM on construction.
    """

    app_id: str
    app_private_key: bytes = field(repr=False)
    alipay_public_key: bytes
    gateway_url: str = PRODUCTION_GATEWAY
    notify_url: str | None = None
    fee_rate: Decimal = Decimal("0.006")
    timeout_seconds: int = 10
    # Alipay returns its service fee in proportion to what is refunded (docs/channels.md).
    refund_fee_policy: RefundFeePolicy = RefundFeePolicy.PRO_RATA

    def __post_init__(self) -> None:
        prefix = "alipay."
        if not isinstance(self.app_id, str) or not re.fullmatch(r"[0-9A-Za-z_]{1,32}", self.app_id):
            raise ValueError(
                f"{prefix}app_id: expected the open-platform app id, e.g. 2021000000000000"
            )
        private = load_rsa_private_key(self.app_private_key, setting=f"{prefix}app_private_key")
        public = load_rsa_public_key(self.alipay_public_key, setting=f"{prefix}alipay_public_key")
        if public.public_numbers() == private.public_key().public_numbers():
            # The most common Alipay misconfiguration: pasting the app's own public key.
            raise ValueError(
                f"{prefix}alipay_public_key: this is the app's own public key; use the "
                "Alipay public key shown in the open platform console"
            )
        check_url(self.gateway_url, f"{prefix}gateway_url")
        if self.notify_url is not None:
            check_url(self.notify_url, f"{prefix}notify_url")
        check_common(self.fee_rate, self.timeout_seconds, prefix)
        check_refund_fee_policy(self.refund_fee_policy, prefix)
        object.__setattr__(self, "app_private_key", private_key_pem(private))
        object.__setattr__(self, "alipay_public_key", public_key_pem(public))

    def private_key(self) -> rsa.RSAPrivateKey:
        return load_rsa_private_key(self.app_private_key, setting="alipay.app_private_key")

    def public_key(self) -> rsa.RSAPublicKey:
        return load_rsa_public_key(self.alipay_public_key, setting="alipay.alipay_public_key")


def load_alipay_config(
    *,
    app_id: str,
    app_private_key: KeySource | None,
    alipay_public_key: KeySource | None,
    gateway_url: str = PRODUCTION_GATEWAY,
    notify_url: str | None = None,
    fee_rate: Decimal = Decimal("0.006"),
    timeout_seconds: int = 10,
    refund_fee_policy: RefundFeePolicy = RefundFeePolicy.PRO_RATA,
) -> AlipayConfig:
    """Build an :class:`AlipayConfig`; keys may be PEM/base64 text or paths to key files."""
    return AlipayConfig(
        app_id=app_id,
        app_private_key=_bytes(read_key_source(app_private_key, setting="alipay.app_private_key")),
        alipay_public_key=_bytes(
            read_key_source(alipay_public_key, setting="alipay.alipay_public_key")
        ),
        gateway_url=gateway_url,
        notify_url=notify_url,
        fee_rate=fee_rate,
        timeout_seconds=timeout_seconds,
        refund_fee_policy=refund_fee_policy,
    )


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")
