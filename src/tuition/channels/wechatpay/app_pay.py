"""WeChat Pay for the platform's own apps: APP pay (iOS / Android, ``PayReq`` of the
OpenSDK) and mini-programs (``wx.requestPayment``).

Both open the trade on the server first (``POST /v3/pay/transactions/app``, or
``/v3/pay/transactions/jsapi`` with the mini-program's appid and the buyer's openid
under it), which answers a ``prepay_id``; the client then needs fields signed with the
merchant API key (RSA-SHA256, base64), each signature over its lines, each ending ``\\n``:

- APP: ``appid``, ``partnerid`` (the mchid), ``prepayid``, ``package=Sign=WXPay``,
  ``noncestr``, ``timestamp``, ``sign`` over ``appid\\ntimestamp\\nnoncestr\\nprepayid\\n``;
- mini-program: ``timeStamp``, ``nonceStr``, ``package=prepay_id=…``, ``signType=RSA``,
  ``paySign`` over ``appId\\ntimeStamp\\nnonceStr\\npackage\\n`` (the mini-program's appid).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import rsa

from tuition.channels.alipay.config import rsa_sign

APP_PACKAGE = "Sign=WXPay"


def signed_lines(*lines: str) -> bytes:
    """What the client signatures cover: each value on its own line, ``\\n``-terminated."""
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def app_params(
    *, appid: str, mchid: str, prepay_id: str, key: rsa.RSAPrivateKey, timestamp: str, nonce: str
) -> dict[str, str]:
    """The OpenSDK ``PayReq`` fields for APP pay."""
    return {
        "appid": appid,
        "partnerid": mchid,
        "prepayid": prepay_id,
        "package": APP_PACKAGE,
        "noncestr": nonce,
        "timestamp": timestamp,
        "sign": rsa_sign(key, signed_lines(appid, timestamp, nonce, prepay_id)),
    }


def request_payment_params(
    *, appid: str, prepay_id: str, key: rsa.RSAPrivateKey, timestamp: str, nonce: str
) -> dict[str, str]:
    """The ``wx.requestPayment`` fields for a mini-program (``appid``: the mini-program's)."""
    package = f"prepay_id={prepay_id}"
    return {
        "timeStamp": timestamp,
        "nonceStr": nonce,
        "package": package,
        "signType": "RSA",
        "paySign": rsa_sign(key, signed_lines(appid, timestamp, nonce, package)),
    }
