"""Verifying Alipay's asynchronous notifications and answering them.

Alipay POSTs a form-encoded body (``application/x-www-form-urlencoded``) and signs, with
its own key, the sorted ``k=v&...`` string of every parameter except ``sign`` and
``sign_type``, values un-escaped. Only after the signature verifies is anything read;
matching ``app_id``, amount and currency against our payment is the service's job.
Alipay stops re-delivering when the body of our answer is exactly ``success``.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric import rsa

from tuition.channels.alipay import transformers
from tuition.channels.alipay.config import rsa_verify
from tuition.channels.base import Ack, NotificationRejected, VerifiedNotification

UNSIGNED_FIELDS = frozenset({"sign", "sign_type"})
_MAX_BODY = 64 * 1024  # real notifications are a few hundred bytes


def parse_form(body: bytes) -> dict[str, str]:
    """Decode a form body strictly: UTF-8, well formed, no repeated field."""
    if len(body) > _MAX_BODY:
        raise NotificationRejected("body too large for an Alipay notification")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, errors="strict"
        )
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise NotificationRejected(f"malformed form body: {type(exc).__name__}") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise NotificationRejected(f"field {key!r} repeated")
        params[key] = value
    return params


def signed_content(params: Mapping[str, str]) -> str:
    return transformers.canonical_string(
        {k: v for k, v in params.items() if k not in UNSIGNED_FIELDS}
    )


def verify_notification(body: bytes, alipay_public_key: rsa.RSAPublicKey) -> VerifiedNotification:
    """Return the verified notification or raise NotificationRejected saying why."""
    params = parse_form(body)
    signature = params.get("sign")
    if not signature:
        raise NotificationRejected("missing sign")
    if params.get("sign_type") != "RSA2":
        # RSA (SHA1) is weaker and was never configured; refusing it prevents a downgrade.
        raise NotificationRejected(f"sign_type {params.get('sign_type')!r} is not RSA2")
    if not rsa_verify(alipay_public_key, signed_content(params).encode("utf-8"), signature):
        raise NotificationRejected("signature does not verify with the Alipay public key")
    try:
        return transformers.notification(params)
    except ValueError as exc:  # includes UnknownWireStatus
        raise NotificationRejected(f"malformed notification: {exc}") from None


def ack(accepted: bool) -> Ack:
    if accepted:
        return Ack(200, b"success", "text/plain")
    # Anything but "success" makes Alipay re-deliver (8 times over ~25 hours).
    return Ack(400, b"fail", "text/plain")
