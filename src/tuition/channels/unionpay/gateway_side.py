"""UnionPay's half of the protocol, for the simulator and for tests.

What the real gateway does with *its* signing certificate: sign answers and
notifications, sending the certificate along in ``signPubKeyCert``; and what it does
with the *merchant's* certificate (known to it by ``certId``): check a request's
signature. Kept beside the client so both halves of the protocol are read together.
"""

from __future__ import annotations

from collections.abc import Mapping

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tuition.channels.unionpay import signatures


def sign_message(
    params: Mapping[str, str], key: rsa.RSAPrivateKey, certificate: x509.Certificate
) -> dict[str, str]:
    """``params`` with ``signMethod``, ``signPubKeyCert`` and ``signature`` added."""
    signed = {k: v for k, v in params.items() if k != "signature"}
    signed["signMethod"] = "01"
    signed["signPubKeyCert"] = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    signed["signature"] = signatures.sign(signed, key)
    return signed


def verify_request(params: Mapping[str, str], merchant_key: rsa.RSAPublicKey) -> bool:
    """Check a merchant request's ``signature`` the way the gateway does."""
    if params.get("signMethod") != "01" or not params.get("signature"):
        return False
    return signatures.signature_matches(params, merchant_key)
