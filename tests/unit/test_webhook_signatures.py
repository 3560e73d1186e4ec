from __future__ import annotations

import pytest

from tuition.webhooks import WebhookVerificationError, sign, verify

BODY = b'{"id":"evt_1","type":"order.paid","data":{}}'


def test_a_signed_body_verifies_and_decodes() -> None:
    header = sign("whsec_a", BODY, timestamp=1_000)
    assert verify(BODY, header, "whsec_a", now=1_100)["id"] == "evt_1"


@pytest.mark.parametrize(
    ("body", "header", "secret", "now", "message"),
    [
        (BODY, None, "whsec_a", 1_000, "missing"),
        (BODY, "garbage", "whsec_a", 1_000, "malformed"),
        (BODY, "t=abc,v1=00", "whsec_a", 1_000, "not an integer"),
        (BODY, sign("whsec_a", BODY, timestamp=1_000), "whsec_b", 1_000, "wrong secret"),
        (BODY + b" ", sign("whsec_a", BODY, timestamp=1_000), "whsec_a", 1_000, "altered"),
        (BODY, sign("whsec_a", BODY, timestamp=1_000), "whsec_a", 1_301, "tolerance"),
        (BODY, sign("whsec_a", BODY, timestamp=1_000), "whsec_a", 699, "tolerance"),
    ],
)
def test_verification_refuses_what_is_not_authentic_and_fresh(
    body: bytes, header: str | None, secret: str, now: int, message: str
) -> None:
    with pytest.raises(WebhookVerificationError, match=message):
        verify(body, header, secret, now=now)


def test_any_of_several_signatures_is_accepted_during_secret_rotation() -> None:
    old = sign("whsec_old", BODY, timestamp=5).split("v1=")[1]
    new = sign("whsec_new", BODY, timestamp=5).split("v1=")[1]
    header = f"t=5,v1={old},v1={new}"
    assert verify(BODY, header, "whsec_new", now=5)["type"] == "order.paid"
    assert verify(BODY, header, "whsec_old", now=5)["type"] == "order.paid"


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"42." + BODY, hashlib.sha256).hexdigest()
    assert sign("k", BODY, timestamp=42) == f"t=42,v1={expected}"
