"""UnionPay 5.1.0 signatures (``signMethod=01``) and the trust check of its certificate.

Signing, as the 全渠道 specification describes it for version 5.1.0:

1. every field but ``signature``, sorted by name (ASCII), joined as ``k=v&k=v``
   (values as they are, not URL-encoded);
2. SHA-256 of that string (UTF-8), written as *lower-case hex*;
3. SHA256withRSA (PKCS#1 v1.5) over the bytes of that hex string, with the signing
   certificate's private key; base64 of the result is ``signature``.

Verifying a message from UnionPay: its ``signPubKeyCert`` (PEM) must be issued by the
configured middle certificate, which the root issued; all three must be valid now; and
the signing certificate's CN, split on ``@``, must name UnionPay in its third part
(``中国银联股份有限公司`` in production). Only then is the signature checked with that
certificate's key. Each refusal raises :class:`SignatureRefused` saying why.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

UNSIGNED_FIELDS = frozenset({"signature"})


class SignatureRefused(Exception):
    """A message whose certificate or signature is not UnionPay's; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def canonical_string(params: Mapping[str, str]) -> str:
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in UNSIGNED_FIELDS)


def digest(params: Mapping[str, str]) -> bytes:
    """Step 2: the lower-case hex SHA-256 of the canonical string, as bytes."""
    return hashlib.sha256(canonical_string(params).encode("utf-8")).hexdigest().encode("ascii")


def sign(params: Mapping[str, str], key: rsa.RSAPrivateKey) -> str:
    return base64.b64encode(key.sign(digest(params), padding.PKCS1v15(), hashes.SHA256())).decode()


def signature_matches(params: Mapping[str, str], key: rsa.RSAPublicKey) -> bool:
    try:
        raw = base64.b64decode(params.get("signature", ""), validate=True)
        key.verify(raw, digest(params), padding.PKCS1v15(), hashes.SHA256())
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


def certificate_cn_part(certificate: x509.Certificate) -> str | None:
    """The third ``@``-separated part of the CN (where UnionPay names itself), if any."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        return None
    value = names[0].value
    parts = (value if isinstance(value, str) else value.decode("utf-8", "replace")).split("@")
    return parts[2] if len(parts) > 2 else None


def _valid_at(certificate: x509.Certificate, now: datetime) -> bool:
    return certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc


def trusted_certificate(
    pem: str,
    *,
    root: x509.Certificate,
    middle: x509.Certificate,
    expected_cn: str,
    now: datetime,
) -> x509.Certificate:
    """UnionPay's signing certificate from ``signPubKeyCert``, once it proved trustworthy."""
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise SignatureRefused("signPubKeyCert is not a PEM certificate") from None
    try:
        certificate.verify_directly_issued_by(middle)
    except (ValueError, TypeError, InvalidSignature):
        raise SignatureRefused(
            "signPubKeyCert is not issued by the configured middle certificate"
        ) from None
    try:
        middle.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):  # pragma: no cover - checked at start-up
        raise SignatureRefused("the middle certificate is not issued by the root") from None
    for name, cert in (("signPubKeyCert", certificate), ("middle", middle), ("root", root)):
        if not _valid_at(cert, now):
            raise SignatureRefused(
                f"the {name} certificate is not valid now (valid "
                f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})"
            )
    if certificate_cn_part(certificate) != expected_cn:
        raise SignatureRefused("signPubKeyCert's CN does not name UnionPay")
    if not isinstance(certificate.public_key(), rsa.RSAPublicKey):
        raise SignatureRefused("signPubKeyCert does not hold an RSA key")
    return certificate


def verify(
    params: Mapping[str, str],
    *,
    root: x509.Certificate,
    middle: x509.Certificate,
    expected_cn: str,
    now: datetime,
) -> None:
    """Raise SignatureRefused unless ``params`` are signed by a trusted UnionPay certificate."""
    if params.get("signMethod") != "01":
        raise SignatureRefused(f"signMethod {params.get('signMethod')!r} is not 01 (RSA-SHA256)")
    if not params.get("signature"):
        raise SignatureRefused("missing signature")
    pem = params.get("signPubKeyCert")
    if not pem:
        raise SignatureRefused("missing signPubKeyCert")
    certificate = trusted_certificate(
        pem, root=root, middle=middle, expected_cn=expected_cn, now=now
    )
    key = certificate.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    if not signature_matches(params, key):
        raise SignatureRefused("signature does not verify with signPubKeyCert")
