"""Verifying UnionPay's asynchronous notifications (backUrl) and answering them.

UnionPay POSTs a URL-encoded form carrying the same fields as its answers, signed the
same way, with its signing certificate in ``signPubKeyCert``. Nothing is read before the
certificate proved itself (chain to the configured root and middle certificates,
validity, the CN) and the signature verified. UnionPay stops re-delivering once the
merchant answers HTTP 200; any other status makes it try again later.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509

from tuition.channels.alipay.notifications import parse_form
from tuition.channels.base import Ack, NotificationRejected, VerifiedNotification
from tuition.channels.unionpay import signatures, transformers


def verify_notification(
    body: bytes,
    *,
    root: x509.Certificate,
    middle: x509.Certificate,
    expected_cn: str,
    now: datetime,
) -> VerifiedNotification:
    """Return the verified notification or raise NotificationRejected saying why."""
    params = parse_form(body)
    try:
        signatures.verify(params, root=root, middle=middle, expected_cn=expected_cn, now=now)
    except signatures.SignatureRefused as exc:
        raise NotificationRejected(exc.reason) from None
    try:
        reserved = transformers.parse_reserved(params.get("reqReserved"))
        return transformers.notification(params, reserved, now)
    except ValueError as exc:  # includes UnknownWireStatus
        raise NotificationRejected(f"malformed notification: {exc}") from None


def ack(accepted: bool) -> Ack:
    if accepted:
        return Ack(200, b"ok", "text/plain")
    return Ack(400, b"fail", "text/plain")
