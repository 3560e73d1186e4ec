"""WeChat Pay's half of the API v3 protocol, for the simulator and for tests.

With *its* key WeChat Pay signs responses and notifications (``Wechatpay-*`` headers)
and encrypts notification resources with the merchant's APIv3 key; with the
*merchant's* certificate it checks our ``Authorization`` header. The interop tests hold
these to the independent ``wechatpayv3`` SDK.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tuition.channels.alipay.config import rsa_sign, rsa_verify
from tuition.channels.wechatpay.notifications import ALGORITHM, SIGNATURE_TYPE
from tuition.channels.wechatpay.transformers import encode

AUTH_SCHEME = "WECHATPAY2-SHA256-RSA2048"
AUTH_FIELDS = ("mchid", "nonce_str", "signature", "timestamp", "serial_no")
_AUTH_PARAM = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*')


def sign_message(private_key: rsa.RSAPrivateKey, timestamp: int, nonce: str, body: bytes) -> str:
    return rsa_sign(private_key, f"{timestamp}\n{nonce}\n".encode() + body + b"\n")


def signature_headers(
    body: bytes,
    *,
    private_key: rsa.RSAPrivateKey,
    serial: str,
    timestamp: int,
    nonce: str | None = None,
) -> dict[str, str]:
    """The ``Wechatpay-*`` headers of a response or notification carrying ``body``."""
    nonce = nonce or secrets.token_hex(16).upper()
    return {
        "Wechatpay-Timestamp": str(timestamp),
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": sign_message(private_key, timestamp, nonce, body),
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": SIGNATURE_TYPE,
    }


def encrypt_resource(
    plaintext: bytes,
    apiv3_key: bytes,
    *,
    original_type: str,
    associated_data: str = "transaction",
    nonce: str | None = None,
) -> dict[str, str]:
    """An AEAD_AES_256_GCM ``resource`` object as WeChat Pay puts in a notification."""
    nonce = nonce or secrets.token_hex(6)  # 12 characters, as WeChat Pay's nonces are
    sealed = AESGCM(apiv3_key).encrypt(nonce.encode(), plaintext, associated_data.encode())
    return {
        "original_type": original_type,
        "algorithm": ALGORITHM,
        "ciphertext": base64.b64encode(sealed).decode("ascii"),
        "associated_data": associated_data,
        "nonce": nonce,
    }


def sign_notification(
    event_type: str,
    resource: Mapping[str, object],
    *,
    apiv3_key: bytes,
    private_key: rsa.RSAPrivateKey,
    serial: str,
    timestamp: int,
    notification_id: str,
    create_time: str,
    summary: str = "",
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a notification, encrypted and signed as WeChat Pay does.

    ``event_type`` is e.g. ``TRANSACTION.SUCCESS`` (``resource`` a transaction) or
    ``REFUND.SUCCESS`` (``resource`` a refund).
    """
    original_type, default_summary = (
        ("transaction", "支付成功")
        if event_type.startswith("TRANSACTION.")
        else ("mch_payment", "商家转账单据终态通知")
        if event_type.startswith("MCHTRANSFER.")
        else ("refund", "退款状态变更")
    )
    body = encode(
        {
            "id": notification_id,
            "create_time": create_time,
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary or default_summary,
            "resource": encrypt_resource(
                encode(resource),
                apiv3_key,
                original_type=original_type,
                associated_data=original_type,
            ),
        }
    )
    headers = signature_headers(body, private_key=private_key, serial=serial, timestamp=timestamp)
    headers["Content-Type"] = "application/json"
    return headers, body


@dataclass(frozen=True, slots=True)
class Authorization:
    mchid: str
    nonce_str: str
    signature: str
    timestamp: int
    serial_no: str


def parse_authorization(header: str) -> Authorization:
    """Split an ``Authorization: WECHATPAY2-SHA256-RSA2048 k="v",...`` header; ValueError."""
    scheme, _, rest = header.partition(" ")
    if scheme != AUTH_SCHEME:
        raise ValueError(f"expected the {AUTH_SCHEME} scheme")
    params: dict[str, str] = {}
    for part in rest.split(","):
        match = _AUTH_PARAM.fullmatch(part)
        if match is None or match.group(1) in params:
            raise ValueError("malformed Authorization parameters")
        params[match.group(1)] = match.group(2)
    if set(params) != set(AUTH_FIELDS) or not params["timestamp"].isdigit():
        raise ValueError(f"Authorization needs exactly {', '.join(AUTH_FIELDS)}")
    return Authorization(
        mchid=params["mchid"],
        nonce_str=params["nonce_str"],
        signature=params["signature"],
        timestamp=int(params["timestamp"]),
        serial_no=params["serial_no"],
    )


def verify_authorization(
    method: str, target: str, body: bytes, header: str, merchant_public_key: rsa.RSAPublicKey
) -> Authorization:
    """Check a merchant request's signature (``target`` = path and query); ValueError."""
    auth = parse_authorization(header)
    message = f"{method.upper()}\n{target}\n{auth.timestamp}\n{auth.nonce_str}\n".encode()
    if not rsa_verify(merchant_public_key, message + body + b"\n", auth.signature):
        raise ValueError("request signature does not verify")
    return auth
