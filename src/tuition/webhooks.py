"""Sign and verify Tuition webhooks. Receivers may import just this module.

Each delivery carries ``Tuition-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
HMAC-SHA256 of ``"<t>.<raw body>"`` keyed with the endpoint's secret. Verify against the
raw bytes you received (not re-serialised JSON), reject stale timestamps to stop replays,
and de-duplicate by the ``id`` in the body (also sent as ``Tuition-Event-Id``): delivery is
at least once.

Example (any framework)::

    from tuition.webhooks import verify, WebhookVerificationError

    try:
        event = verify(raw_body, headers["Tuition-Signature"], secret="whsec_…")
    except WebhookVerificationError:
        return 400
    if already_seen(event["id"]):
        return 200
    handle(event["type"], event["data"])
    return 200
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

HEADER = "Tuition-Signature"
DEFAULT_TOLERANCE = 300


class WebhookVerificationError(Exception):
    """The payload is not an authentic, fresh Tuition webhook."""


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Tuition-Signature`` header value for ``body``."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={compute_signature(secret, t, body)}"


def verify(
    body: bytes,
    header: str | None,
    secret: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: int | None = None,
) -> dict[str, Any]:
    """Check ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds.

    Returns the decoded event; raises WebhookVerificationError saying what is wrong.
    Several ``v1`` values are accepted (sent while a secret is being rotated).
    """
    if not header:
        raise WebhookVerificationError(f"missing {HEADER} header")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise WebhookVerificationError("the t= timestamp is not an integer") from None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookVerificationError(f"malformed {HEADER}: expected t=…,v1=…")
    current = int(time.time()) if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError(
            f"timestamp {timestamp} is outside the {tolerance}s tolerance (now {current})"
        )
    expected = compute_signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise WebhookVerificationError("signature does not match: wrong secret or altered body")
    try:
        event: dict[str, Any] = json.loads(body)
    except ValueError:
        raise WebhookVerificationError("body is not JSON") from None
    return event
