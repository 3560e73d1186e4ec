"""Alipay App pay (``alipay.trade.app.pay``): the signed order string a native app hands
to the Alipay app SDK (``payV2`` / ``payOrder``).

No call to Alipay is made when the payment starts: the string carries the request, and
Alipay opens the trade when the app SDK submits it. It is the common request parameters
(``app_id``, ``method``, ``format``, ``charset``, ``sign_type=RSA2``, ``timestamp``,
``version``, ``notify_url``, ``biz_content`` with ``product_code=QUICK_MSECURITY_PAY``)
signed as every Alipay request is (RSA-SHA256 over the parameters sorted by name, joined
``k=v`` with ``&``, values not encoded), then written out in the same order with ``sign``
last and every value URL-encoded (UTF-8, ``+`` for a space), as the server SDKs write it.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote_plus

METHOD = "alipay.trade.app.pay"
PRODUCT_CODE = "QUICK_MSECURITY_PAY"


def order_string(signed: Mapping[str, str]) -> str:
    """``signed`` (the parameters with their ``sign``) as the order string."""
    items = sorted((k, v) for k, v in signed.items() if k != "sign" and v)
    items.append(("sign", signed["sign"]))
    return "&".join(f"{key}={quote_plus(value)}" for key, value in items)
