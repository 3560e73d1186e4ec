"""A test App Store: a CA standing in for Apple Root CA - G3 (with Apple's certificate
OIDs on the intermediate and the leaf), JWS signed as Apple signs transactions and
App Store Server Notifications V2. Its root is configured in place of Apple's."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

BUNDLE_ID = "com.example.tuition"
APP_APPLE_ID = 1234567890
_LEAF_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.11.1")
_INTERMEDIATE_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.2.1")
_START = datetime(2020, 1, 1, tzinfo=UTC)
_END = datetime(2040, 1, 1, tzinfo=UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
    oid: x509.ObjectIdentifier | None,
) -> x509.Certificate:
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_START)
        .not_valid_after(_END)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if oid is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(oid, b"\x05\x00"), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


class TestAppStore:
    """Signs as the App Store does, under its own root."""

    __test__ = False

    def __init__(self, name: str = "Test Apple Root CA - G3") -> None:
        root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = _cert(name, root_key, None, ca=True, oid=None)
        inter_key = ec.generate_private_key(ec.SECP256R1())
        self.intermediate = _cert(
            "Test Apple WWDR CA G6",
            inter_key,
            (self.root.subject, root_key),
            ca=True,
            oid=_INTERMEDIATE_OID,
        )
        self.leaf_key = ec.generate_private_key(ec.SECP256R1())
        self.leaf = _cert(
            "Test Prod ECC Mac App Store and iTunes Store Receipt Signing",
            self.leaf_key,
            (self.intermediate.subject, inter_key),
            ca=False,
            oid=_LEAF_OID,
        )

    def root_der(self) -> bytes:
        return self.root.public_bytes(Encoding.DER)

    def sign(self, payload: dict[str, Any]) -> str:
        chain = [
            base64.b64encode(c.public_bytes(Encoding.DER)).decode()
            for c in (self.leaf, self.intermediate, self.root)
        ]
        return jwt.encode(payload, self.leaf_key, algorithm="ES256", headers={"x5c": chain})

    def transaction(
        self,
        transaction_id: str,
        product_id: str,
        *,
        at: datetime,
        price: int,
        currency: str = "CNY",
        original: str | None = None,
        bundle_id: str = BUNDLE_ID,
        environment: str = "Sandbox",
        **fields: Any,
    ) -> str:
        millis = int(at.timestamp() * 1000)
        payload = {
            "transactionId": transaction_id,
            "originalTransactionId": original or transaction_id,
            "bundleId": bundle_id,
            "productId": product_id,
            "purchaseDate": millis,
            "originalPurchaseDate": millis,
            "quantity": 1,
            "type": "Consumable",
            "inAppOwnershipType": "PURCHASED",
            "signedDate": millis,
            "environment": environment,
            "transactionReason": "PURCHASE",
            "storefront": "CHN",
            "price": price,
            "currency": currency,
            **fields,
        }
        return self.sign(payload)

    def notification(
        self,
        notification_type: str,
        signed_transaction: str,
        *,
        at: datetime,
        subtype: str | None = None,
        bundle_id: str = BUNDLE_ID,
        notification_uuid: str | None = None,
    ) -> bytes:
        payload: dict[str, Any] = {
            "notificationType": notification_type,
            "notificationUUID": notification_uuid or str(uuid.uuid4()),
            "version": "2.0",
            "signedDate": int(at.timestamp() * 1000),
            "data": {
                "bundleId": bundle_id,
                "appAppleId": APP_APPLE_ID,
                "environment": "Sandbox",
                "signedTransactionInfo": signed_transaction,
            },
        }
        if subtype is not None:
            payload["subtype"] = subtype
        return json.dumps({"signedPayload": self.sign(payload)}).encode()


def later(at: datetime, **delta: float) -> datetime:
    return at + timedelta(**delta)
