"""Paying inside WeChat: JSAPI needs the buyer's openid under the merchant's official
account. It comes from the order (``payer.wechat_openid``, or
``metadata["wechat_openid"]``, set by a platform that already knows it) or, failing that,
from WeChat web OAuth with ``snsapi_base`` (channels/wechatpay/oauth.py): the page sends
the buyer to WeChat, WeChat sends them back to ``/pay/{order}/wechat-oauth`` with a code,
and the code buys the openid.

The round trip carries the checkout link's signature in the return address and an HMAC
of the order id (its own purpose) as ``state``, so a code is only ever traded for the
order it was asked for.
"""

from __future__ import annotations

import hashlib
import hmac

from tuition.api.deps import Container
from tuition.channels.wechatpay.oauth import WebOAuth
from tuition.store.orders import OrderRecord
from tuition.web.links import checkout_path, signing_key

OPENID_KEY = "wechat_openid"
_PURPOSE = b"tuition.wechat-oauth.v1:"


def order_openid(order: OrderRecord) -> str | None:
    """``payer.wechat_openid`` as the order was placed with, else its metadata's."""
    for value in ((order.payer or {}).get(OPENID_KEY), order.metadata.get(OPENID_KEY)):
        if isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return None


def oauth_of(container: Container, channel: str) -> WebOAuth | None:
    if channel not in container.registry:
        return None
    oauth = getattr(container.registry.get(channel), "web_oauth", None)
    return oauth if isinstance(oauth, WebOAuth) else None


def oauth_state(key: bytes, order_id: str) -> str:
    return hmac.new(key, _PURPOSE + order_id.encode(), hashlib.sha256).hexdigest()[:32]


def state_ok(key: bytes, order_id: str, state: str | None) -> bool:
    return state is not None and hmac.compare_digest(oauth_state(key, order_id), state)


def authorize_redirect(container: Container, oauth: WebOAuth, order_id: str) -> str:
    """WeChat's authorize URL, returning to this order's OAuth callback."""
    path, _, query = checkout_path(container.settings, order_id).partition("?")
    back = f"{container.settings.base_url}{path}/wechat-oauth?{query}"
    return oauth.authorize_url(back, oauth_state(signing_key(container.settings), order_id))


def simulator_bridge(container: Container) -> str | None:
    """The simulator's stand-in for WeChat's JS bridge, in simulator mode only."""
    settings = container.settings
    if not settings.simulator:
        return None
    return f"{settings.sandbox_url.rstrip('/') or '/simulator'}/wechatpay/bridge.js"
