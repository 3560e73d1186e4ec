"""Verifying WeChat Pay's signatures (responses and notifications) and its notifications.

WeChat Pay signs ``"<timestamp>\\n<nonce>\\n<body>\\n"`` with SHA256withRSA and sends::

    Wechatpay-Timestamp, Wechatpay-Nonce, Wechatpay-Signature (base64),
    Wechatpay-Serial (PUB_KEY_ID_… for the WeChat Pay public key, else a platform
    certificate's hex serial), Wechatpay-Signature-Type (WECHATPAY2-SHA256-RSA2048)

A notification is verified *before* anything in it is read: the serial must name a
configured key, the timestamp must be within five minutes of our clock, the signature
must verify. Only then is ``resource`` decrypted with AEAD_AES_256_GCM (the APIv3 key,
its nonce and associated_data) and mapped.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tuition.channels.alipay.config import rsa_verify
from tuition.channels.base import (
    Ack,
    NotificationRejected,
    VerifiedAgreementNotification,
    VerifiedNotification,
)
from tuition.channels.wechatpay import transfers, transformers
from tuition.clock import Clock

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
TIMESTAMP_HEADER = "wechatpay-timestamp"
NONCE_HEADER = "wechatpay-nonce"
SIGNATURE_HEADER = "wechatpay-signature"
SERIAL_HEADER = "wechatpay-serial"
SIGNATURE_TYPE_HEADER = "wechatpay-signature-type"
MAX_SKEW = timedelta(minutes=5)
ALGORITHM = "AEAD_AES_256_GCM"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_NONCE = re.compile(r"[\x21-\x7e]{1,64}")  # printable ASCII: nothing that could split lines


class SignatureRejected(ValueError):
    """A WeChat Pay signature failed a check; the message says which."""


def unix_seconds(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(seconds=1)


class SignatureVerifier:
    """Checks ``Wechatpay-*`` signatures against the configured keys, by serial."""

    def __init__(
        self, keys: Mapping[str, rsa.RSAPublicKey], clock: Clock, max_skew: timedelta = MAX_SKEW
    ) -> None:
        # Certificate serials are hex, compared upper-case; PUB_KEY_ID_… ids exactly.
        self._keys = {
            serial if serial.startswith("PUB_KEY_ID_") else serial.upper(): key
            for serial, key in keys.items()
        }
        self._clock = clock
        self._max_skew = max_skew

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise SignatureRejected unless ``body`` carries a fresh, valid signature."""
        lowered = {name.lower(): value for name, value in headers.items()}
        missing = [
            name
            for name in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER, SERIAL_HEADER)
            if not lowered.get(name)
        ]
        if missing:
            raise SignatureRejected(f"missing header(s): {', '.join(missing)}")
        signature_type = lowered.get(SIGNATURE_TYPE_HEADER, SIGNATURE_TYPE)
        if signature_type != SIGNATURE_TYPE:
            raise SignatureRejected(f"unsupported signature type {signature_type!r}")
        serial = lowered[SERIAL_HEADER]
        key = self._keys.get(serial if serial.startswith("PUB_KEY_ID_") else serial.upper())
        if key is None:
            # A rotated or foreign key: we cannot verify it, so we must not trust it.
            raise SignatureRejected(f"unknown Wechatpay-Serial {serial!r}")
        timestamp, nonce = lowered[TIMESTAMP_HEADER], lowered[NONCE_HEADER]
        if _TIMESTAMP.fullmatch(timestamp) is None:
            raise SignatureRejected("malformed Wechatpay-Timestamp")
        skew = abs(unix_seconds(self._clock.now()) - int(timestamp))
        if skew > self._max_skew // timedelta(seconds=1):
            raise SignatureRejected(f"stale Wechatpay-Timestamp ({skew} s from now)")
        if _NONCE.fullmatch(nonce) is None:
            raise SignatureRejected("malformed Wechatpay-Nonce")
        message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
        if not rsa_verify(key, message, lowered[SIGNATURE_HEADER]):
            raise SignatureRejected(f"signature does not verify with key {serial!r}")


def decrypt_resource(resource: Mapping[str, object], apiv3_key: bytes) -> bytes:
    """Decrypt a notification ``resource``; ValueError if it is malformed or forged."""
    if resource.get("algorithm") != ALGORITHM:
        raise ValueError(f"unsupported resource algorithm {resource.get('algorithm')!r}")
    nonce, ciphertext = resource.get("nonce"), resource.get("ciphertext")
    associated_data = resource.get("associated_data") or ""
    if not (isinstance(nonce, str) and isinstance(ciphertext, str)) or not isinstance(
        associated_data, str
    ):
        raise ValueError("resource needs string nonce, ciphertext and associated_data")
    try:
        return AESGCM(apiv3_key).decrypt(
            nonce.encode("utf-8"),
            base64.b64decode(ciphertext, validate=True),
            associated_data.encode("utf-8"),
        )
    except (InvalidTag, binascii.Error):
        raise ValueError("resource does not decrypt (wrong APIv3 key or tampered)") from None


def verify_notification(
    headers: Mapping[str, str],
    body: bytes,
    *,
    verifier: SignatureVerifier,
    apiv3_key: bytes,
    appid: str | frozenset[str],
) -> VerifiedNotification:
    """Return the verified, decrypted notification or raise NotificationRejected."""
    try:
        verifier.verify(headers, body)
    except SignatureRejected as exc:
        raise NotificationRejected(str(exc)) from None
    try:
        envelope = transformers.decode(body)
        if envelope.get("resource_type") != "encrypt-resource":
            raise ValueError(f"unexpected resource_type {envelope.get('resource_type')!r}")
        resource = envelope.get("resource")
        if not isinstance(resource, dict):
            raise ValueError("missing resource")
        plain = transformers.decode(decrypt_resource(resource, apiv3_key))
        event_type = transformers.text_field(envelope, "event_type")
        if event_type == transfers.FINISHED_EVENT:
            return transfers.notification(plain)
        return transformers.notification(event_type, plain, appid=appid)
    except ValueError as exc:  # bad JSON/UTF-8, decryption, mapping, UnknownWireStatus
        raise NotificationRejected(f"malformed notification: {exc}") from None


def verify_agreement_notification(
    headers: Mapping[str, str],
    body: bytes,
    *,
    verifier: SignatureVerifier,
    apiv3_key: bytes,
    mchid: str,
    appid: str,
) -> VerifiedAgreementNotification:
    """A ``PAPAY.SIGN`` / ``PAPAY.TERMINATE`` notification, verified and decrypted first."""
    from tuition.channels.wechatpay import papay

    try:
        verifier.verify(headers, body)
    except SignatureRejected as exc:
        raise NotificationRejected(str(exc)) from None
    try:
        envelope = transformers.decode(body)
        if envelope.get("resource_type") != "encrypt-resource":
            raise ValueError(f"unexpected resource_type {envelope.get('resource_type')!r}")
        resource = envelope.get("resource")
        if not isinstance(resource, dict):
            raise ValueError("missing resource")
        plain = transformers.decode(decrypt_resource(resource, apiv3_key))
        event_type = transformers.text_field(envelope, "event_type")
        verified = papay.notification(event_type, plain, mchid=mchid, appid=appid)
    except ValueError as exc:
        raise NotificationRejected(f"malformed contract notification: {exc}") from None
    return verified


def ack(accepted: bool) -> Ack:
    if accepted:
        # Current v3 docs: 200 or 204 with no body means received.
        return Ack(204, b"", "application/json")
    # 4xx/5xx with {"code": "FAIL", ...} makes WeChat Pay re-deliver (15 times over ~24 h).
    body = json.dumps({"code": "FAIL", "message": "notification rejected"}).encode()
    return Ack(400, body, "application/json")
