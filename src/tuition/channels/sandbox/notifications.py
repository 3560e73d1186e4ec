"""Verifying the sandbox gateway's signed notifications.

The gateway signs ``"<timestamp>\\n<nonce>\\n<body>\\n"`` (body as the exact bytes
received) with RSA PKCS#1 v1.5 / SHA-256 and sends::

    Sandbox-Timestamp: <unix seconds>
    Sandbox-Nonce:     <random string>
    Sandbox-Signature: <base64 signature>
    Sandbox-Serial:    <which gateway key signed>

A notification is accepted only if the serial is the configured one, the timestamp is
within five minutes of our clock and the signature verifies; only then is the body
parsed. Matching the amount, currency and app id against our payment is the payment
service's job, not this module's.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import ValidationError

from tuition.channels.base import NotificationRejected, VerifiedNotification
from tuition.channels.sandbox import transformers
from tuition.clock import Clock

TIMESTAMP_HEADER = "sandbox-timestamp"
NONCE_HEADER = "sandbox-nonce"
SIGNATURE_HEADER = "sandbox-signature"
SERIAL_HEADER = "sandbox-serial"
MAX_SKEW = timedelta(minutes=5)

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_NONCE = re.compile(r"[\x21-\x7e]{1,64}")  # printable ASCII: nothing that could split lines


def load_public_key(pem: str | bytes) -> rsa.RSAPublicKey:
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        raise ValueError("the sandbox gateway key must be an RSA public key of >= 2048 bits")
    return key


class NotificationVerifier:
    def __init__(
        self,
        public_key: rsa.RSAPublicKey,
        serial: str,
        clock: Clock,
        max_skew: timedelta = MAX_SKEW,
    ) -> None:
        self._key = public_key
        self._serial = serial
        self._clock = clock
        self._max_skew = max_skew

    def verify(self, headers: Mapping[str, str], body: bytes) -> VerifiedNotification:
        """Return the parsed notification or raise NotificationRejected saying why."""
        # Header names are case-insensitive on the wire; a plain dict is not.
        lowered = {name.lower(): value for name, value in headers.items()}
        timestamp, nonce, signature = self._signed_headers(lowered)
        message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
        try:
            self._key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise NotificationRejected("signature does not verify") from None
        try:
            return transformers.notification(body)
        except ValidationError as exc:
            raise NotificationRejected(f"malformed body: {exc.errors()[0]['msg']}") from None
        except ValueError as exc:  # also UnknownWireStatus and invalid JSON/UTF-8
            raise NotificationRejected(f"malformed body: {exc}") from None

    def _signed_headers(self, headers: Mapping[str, str]) -> tuple[str, str, bytes]:
        missing = [
            name
            for name in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER, SERIAL_HEADER)
            if not headers.get(name)
        ]
        if missing:
            raise NotificationRejected(f"missing header(s): {', '.join(missing)}")
        if headers[SERIAL_HEADER] != self._serial:
            # A rotated or foreign key: we cannot verify it, so we must not trust it.
            raise NotificationRejected(f"unknown key serial {headers[SERIAL_HEADER]!r}")
        timestamp = headers[TIMESTAMP_HEADER]
        if _TIMESTAMP.fullmatch(timestamp) is None:
            raise NotificationRejected("malformed timestamp")
        skew = abs(self._clock.now().timestamp() - int(timestamp))
        if skew > self._max_skew.total_seconds():
            raise NotificationRejected(f"stale timestamp ({int(skew)} s from now)")
        nonce = headers[NONCE_HEADER]
        if _NONCE.fullmatch(nonce) is None:
            raise NotificationRejected("malformed nonce")
        try:
            signature = base64.b64decode(headers[SIGNATURE_HEADER], validate=True)
        except (binascii.Error, ValueError):
            raise NotificationRejected("signature is not base64") from None
        return timestamp, nonce, signature
