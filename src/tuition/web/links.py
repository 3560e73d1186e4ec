"""Signed links to the hosted checkout page: ``/pay/{order_id}?sig=…``.

The signature is an HMAC-SHA256 of the order id under ``settings.signing_key``, cut to
128 bits: a link can only be made by this deployment, and order ids alone (which sort by
time and appear in webhooks) open nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from urllib.parse import quote

from tuition.config import Settings

_PURPOSE = b"tuition.checkout.v1:"


_keys: dict[tuple[str, str], bytes] = {}


def signing_key(settings: Settings) -> bytes:
    """``settings.signing_key``, remembered per secret or key file (it reads a file)."""
    cache_key = (settings.secret_key, str(Path(settings.secret_key_file).resolve()))
    key = _keys.get(cache_key)
    if key is None:
        key = _keys[cache_key] = settings.signing_key
    return key


def order_signature(key: bytes, order_id: str) -> str:
    return hmac.new(key, _PURPOSE + order_id.encode(), hashlib.sha256).hexdigest()[:32]


def signature_ok(key: bytes, order_id: str, sig: str | None) -> bool:
    return sig is not None and hmac.compare_digest(order_signature(key, order_id), sig)


def checkout_path(settings: Settings, order_id: str) -> str:
    sig = order_signature(signing_key(settings), order_id)
    return f"/pay/{quote(order_id, safe='')}?sig={sig}"


def checkout_url(settings: Settings, order_id: str) -> str:
    """The buyer's link to pay ``order_id`` on this deployment's checkout page."""
    return settings.base_url + checkout_path(settings, order_id)


_RECEIPT_PURPOSE = b"tuition.receipt.v1:"


def receipt_signature(key: bytes, order_id: str) -> str:
    """A receipt link's signature: its own purpose, so a checkout link opens no receipt."""
    return hmac.new(key, _RECEIPT_PURPOSE + order_id.encode(), hashlib.sha256).hexdigest()[:32]


def receipt_signature_ok(key: bytes, order_id: str, sig: str | None) -> bool:
    return sig is not None and hmac.compare_digest(receipt_signature(key, order_id), sig)


def receipt_url(settings: Settings, order_id: str) -> str:
    """The buyer's link to the printable receipt of ``order_id``."""
    sig = receipt_signature(signing_key(settings), order_id)
    return f"{settings.base_url}/receipts/{quote(order_id, safe='')}?sig={sig}"


_AGREEMENT_PURPOSE = b"tuition.agreement.v1:"


def agreement_signature(key: bytes, subscription_id: str) -> str:
    """A subscription's sign link: its own purpose, so it opens nothing else."""
    message = _AGREEMENT_PURPOSE + subscription_id.encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def agreement_signature_ok(key: bytes, subscription_id: str, sig: str | None) -> bool:
    return sig is not None and hmac.compare_digest(agreement_signature(key, subscription_id), sig)


def agreement_url(settings: Settings, subscription_id: str) -> str:
    """The buyer's link to sign ``subscription_id``'s debit agreement (no order needed,
    so a trial can sign before its first charge)."""
    sig = agreement_signature(signing_key(settings), subscription_id)
    return (
        f"{settings.base_url}/subscriptions/{quote(subscription_id, safe='')}/agreement?sig={sig}"
    )
