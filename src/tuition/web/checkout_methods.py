"""Which way to pay the checkout page offers, by where the buyer is.

One row per channel, its method chosen from the device the page is opened on (read from
the user agent): a desktop browser pays by the gateway's page or a QR code, a phone
browser by the gateway's mobile site, WeChat's in-app browser by WeChat JSAPI only (no
other gateway opens there), the Alipay app by Alipay's mobile site. The buyer can switch
to a QR code to pay with another device. The sandbox channel is never first and never
chosen for the buyer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from tuition.channels.base import Channel


class Device(StrEnum):
    DESKTOP = "desktop"
    PHONE = "phone"
    WECHAT = "wechat"  # WeChat's in-app browser (公众号 pages, chats, mini-program web views)
    ALIPAY_APP = "alipay_app"  # the Alipay app's browser


# Each device's methods, best first: a channel is offered with the first one it has, and
# not at all when it has none (Alipay inside WeChat, WeChat Pay inside the Alipay app).
METHODS_BY_DEVICE: dict[Device, tuple[str, ...]] = {
    Device.DESKTOP: ("page", "native", "qr"),
    Device.PHONE: ("wap", "h5", "page"),
    Device.WECHAT: ("jsapi",),
    Device.ALIPAY_APP: ("wap",),
}
# "Pay on another device": a QR code to scan with the phone's app.
QR_METHODS = ("native", "qr")
SANDBOX = "sandbox"

_PHONE = re.compile(r"Mobile|Android|iPhone|iPad|iPod|HarmonyOS|Windows Phone", re.IGNORECASE)


def device_of(user_agent: str) -> Device:
    """The device a user agent names. WeChat's browser says ``MicroMessenger`` (also
    on desktop WeChat, whose browser offers JSAPI too); the Alipay app ``AlipayClient``."""
    if "MicroMessenger" in user_agent:
        return Device.WECHAT
    if "AlipayClient" in user_agent:
        return Device.ALIPAY_APP
    if _PHONE.search(user_agent):
        return Device.PHONE
    return Device.DESKTOP


@dataclass(frozen=True, slots=True)
class Method:
    channel: str
    method: str

    @property
    def value(self) -> str:
        return f"{self.channel}:{self.method}"


def methods_for(channels: Iterable[Channel], device: Device, *, qr: bool = False) -> list[Method]:
    """One method per channel for ``device`` (or a QR code each, for another device), in
    the deployment's channel order with the sandbox last."""
    wanted = QR_METHODS if qr else METHODS_BY_DEVICE[device]
    found = []
    for channel in channels:
        method = next((m for m in wanted if m in channel.methods), None)
        if method is not None:
            found.append(Method(channel.slug, method))
    return sorted(found, key=lambda m: m.channel == SANDBOX)  # stable: the rest keep order


def default_choice(methods: list[Method]) -> str | None:
    """The method chosen for the buyer: the first real channel's, never the sandbox's."""
    return next((m.value for m in methods if m.channel != SANDBOX), None)


def has_qr(channels: Iterable[Channel]) -> bool:
    return any(m in channel.methods for channel in channels for m in QR_METHODS)
