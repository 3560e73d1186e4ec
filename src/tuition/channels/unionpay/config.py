"""UnionPay online-payment (全渠道) settings, validated once at start-up.

The merchant signs with the private key of its *signing certificate*, issued by
UnionPay as a PKCS#12 file (``.pfx``, with a password); the certificate's serial number
in decimal is sent as ``certId``. UnionPay signs answers and notifications with its own
signing certificate, which it sends in each message (``signPubKeyCert``); it is trusted
only if it chains to the configured *root* and *intermediate* (middle) certificates,
is valid now, and its CN names UnionPay (:data:`UNIONPAY_CN`). Every problem raises a
``ValueError`` naming the setting; key material never appears in a message or a ``repr``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from tuition.channels.alipay.config import (
    KeySource,
    check_common,
    check_refund_fee_policy,
    check_url,
    private_key_pem,
    read_key_source,
)
from tuition.channels.base import RefundFeePolicy

PRODUCTION_GATEWAY_URL = "https://gateway.95516.com"
PRODUCTION_FILE_URL = "https://filedownload.95516.com"
# The CN part UnionPay's production signing certificate carries; its test environment
# uses "00040000:SIGN" instead.
UNIONPAY_CN = "中国银联股份有限公司"
MIN_KEY_BITS = 2048

_P = "unionpay."
_MER_ID = re.compile(r"[0-9A-Z]{15}")


def load_pfx(
    data: bytes, password: str, *, setting: str
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """The signing key and certificate from a PKCS#12 file, or ValueError naming ``setting``."""
    try:
        key, certificate, _ = pkcs12.load_key_and_certificates(
            data, password.encode("utf-8") if password else None
        )
    except ValueError:
        raise ValueError(
            f"{setting}: not a readable PKCS#12 (.pfx) file, or the password is wrong"
        ) from None
    if key is None or certificate is None:
        raise ValueError(f"{setting}: the PKCS#12 file must hold the key and its certificate")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{setting}: expected an RSA key, got {type(key).__name__}")
    if key.key_size < MIN_KEY_BITS:
        raise ValueError(f"{setting}: RSA key is {key.key_size} bits; at least {MIN_KEY_BITS}")
    public = certificate.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or (
        public.public_numbers() != key.public_key().public_numbers()
    ):
        raise ValueError(f"{setting}: the certificate is not the key's")
    return key, certificate


def load_certificate(data: bytes, *, setting: str) -> x509.Certificate:
    """A PEM (or DER) X.509 certificate, as UnionPay ships its ``.cer`` files."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise ValueError(f"{setting}: not a PEM or DER X.509 certificate") from None


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


@dataclass(frozen=True, slots=True)
class UnionPayConfig:
    """One UnionPay merchant (``mer_id``, 15 characters) and its trust anchors.

    ``signing_key`` / ``signing_certificate`` come from the merchant's PFX;
    ``root_certificate`` and ``middle_certificate`` (PEM) verify UnionPay's signing
    certificate; ``certificate_cn`` is what that certificate's CN must name.
    """

    mer_id: str
    signing_key: bytes = field(repr=False)  # PKCS#8 PEM, from the PFX
    signing_certificate: bytes  # PEM
    root_certificate: bytes
    middle_certificate: bytes
    certificate_cn: str = UNIONPAY_CN
    gateway_url: str = PRODUCTION_GATEWAY_URL
    file_url: str = PRODUCTION_FILE_URL
    notify_url: str | None = None
    fee_rate: Decimal = Decimal("0.006")
    timeout_seconds: int = 10
    refund_fee_policy: RefundFeePolicy = RefundFeePolicy.PRO_RATA

    def __post_init__(self) -> None:
        if not isinstance(self.mer_id, str) or _MER_ID.fullmatch(self.mer_id) is None:
            raise ValueError(f"{_P}mer_id: expected a 15-character UnionPay merchant code")
        root = load_certificate(self.root_certificate, setting=f"{_P}root_certificate")
        middle = load_certificate(self.middle_certificate, setting=f"{_P}middle_certificate")
        if not _is_ca(root):
            raise ValueError(f"{_P}root_certificate: is not a CA certificate")
        if not _is_ca(middle):
            raise ValueError(f"{_P}middle_certificate: is not a CA certificate")
        if middle.subject == middle.issuer:
            raise ValueError(
                f"{_P}middle_certificate: is a self-signed root; give the middle certificate"
            )
        try:
            middle.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise ValueError(
                f"{_P}middle_certificate: is not issued by the root certificate "
                f"({type(exc).__name__})"
            ) from None
        pem = serialization.Encoding.PEM
        object.__setattr__(self, "root_certificate", root.public_bytes(pem))
        object.__setattr__(self, "middle_certificate", middle.public_bytes(pem))
        signing = load_certificate(self.signing_certificate, setting=f"{_P}signing_certificate")
        object.__setattr__(self, "signing_certificate", signing.public_bytes(pem))
        if not self.certificate_cn.strip():
            raise ValueError(f"{_P}certificate_cn: must not be empty")
        for name in ("gateway_url", "file_url"):
            check_url(getattr(self, name), f"{_P}{name}")
            object.__setattr__(self, name, getattr(self, name).rstrip("/"))
        if self.notify_url is not None:
            check_url(self.notify_url, f"{_P}notify_url")
        check_common(self.fee_rate, self.timeout_seconds, _P)
        check_refund_fee_policy(self.refund_fee_policy, _P)

    @property
    def cert_id(self) -> str:
        """``certId``: the signing certificate's serial number, in decimal."""
        return str(self.certificate().serial_number)

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.signing_certificate)

    def private_key(self) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key(self.signing_key, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def trust_anchors(self) -> tuple[x509.Certificate, x509.Certificate]:
        """(root, middle)."""
        return (
            x509.load_pem_x509_certificate(self.root_certificate),
            x509.load_pem_x509_certificate(self.middle_certificate),
        )


def load_unionpay_config(
    *,
    mer_id: str,
    signing_pfx: KeySource | None,
    signing_pfx_password: str,
    root_certificate: KeySource | None,
    middle_certificate: KeySource | None,
    certificate_cn: str = UNIONPAY_CN,
    gateway_url: str = PRODUCTION_GATEWAY_URL,
    file_url: str = PRODUCTION_FILE_URL,
    notify_url: str | None = None,
    fee_rate: Decimal = Decimal("0.006"),
    timeout_seconds: int = 10,
    refund_fee_policy: RefundFeePolicy = RefundFeePolicy.PRO_RATA,
) -> UnionPayConfig:
    """Build a :class:`UnionPayConfig`; the PFX and certificates may be bytes or paths."""
    pfx = _bytes(read_key_source(signing_pfx, setting=f"{_P}signing_pfx"))
    key, certificate = load_pfx(pfx, signing_pfx_password, setting=f"{_P}signing_pfx")
    return UnionPayConfig(
        mer_id=mer_id,
        signing_key=private_key_pem(key),
        signing_certificate=certificate.public_bytes(serialization.Encoding.PEM),
        root_certificate=_bytes(read_key_source(root_certificate, setting=f"{_P}root_certificate")),
        middle_certificate=_bytes(
            read_key_source(middle_certificate, setting=f"{_P}middle_certificate")
        ),
        certificate_cn=certificate_cn,
        gateway_url=gateway_url,
        file_url=file_url,
        notify_url=notify_url,
        fee_rate=fee_rate,
        timeout_seconds=timeout_seconds,
        refund_fee_policy=refund_fee_policy,
    )


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")
