"""Alipay's half of the protocol, for the simulator and for tests.

What the real gateway does with *its* private key: sign synchronous responses and
asynchronous notifications; and what it does with the *app's* public key: check the
signature of a merchant request. Kept beside the client so both halves of the
protocol are read together; the interop tests hold both to the independent
``python-alipay-sdk``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric import rsa

from tuition.channels.alipay.config import rsa_sign, rsa_verify
from tuition.channels.alipay.notifications import UNSIGNED_FIELDS
from tuition.channels.alipay.transformers import canonical_string


def response_node_name(method: str) -> str:
    """``alipay.trade.query`` -> ``alipay_trade_query_response``."""
    return method.replace(".", "_") + "_response"


def sign_response(
    method: str,
    payload: Mapping[str, object],
    private_key: rsa.RSAPrivateKey,
    *,
    error_node: bool = False,
) -> bytes:
    """A synchronous response body: ``{"<node>": payload, "sign": "..."}``.

    The signature covers the exact text of the node value, as Alipay's does; with
    ``error_node`` the node is ``error_response`` (how the gateway answers requests it
    could not route, e.g. a bad signature).
    """
    node = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    name = "error_response" if error_node else response_node_name(method)
    sign = rsa_sign(private_key, node.encode("utf-8"))
    return f'{{"{name}":{node},"sign":{json.dumps(sign)}}}'.encode()


def unsigned_response(method: str, payload: Mapping[str, object]) -> bytes:
    """A response without ``sign``, as the gateway sends when it rejects our signature."""
    node = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f'{{"{response_node_name(method)}":{node}}}'.encode()


def sign_notification(params: Mapping[str, str], private_key: rsa.RSAPrivateKey) -> bytes:
    """A form-encoded notification body signed as Alipay signs one (``sign_type=RSA2``)."""
    unsigned = {k: v for k, v in params.items() if k not in UNSIGNED_FIELDS}
    sign = rsa_sign(private_key, canonical_string(unsigned).encode("utf-8"))
    return urlencode({**unsigned, "sign_type": "RSA2", "sign": sign}).encode("ascii")


def verify_request(params: Mapping[str, str], app_public_key: rsa.RSAPublicKey) -> bool:
    """Check a merchant request's ``sign`` the way the gateway does.

    Signed: every parameter except ``sign`` (``sign_type`` included), empty values
    dropped, sorted by name.
    """
    signature = params.get("sign")
    if not signature or params.get("sign_type") != "RSA2":
        return False
    signed = {k: v for k, v in params.items() if k != "sign" and v != ""}
    return rsa_verify(app_public_key, canonical_string(signed).encode("utf-8"), signature)
