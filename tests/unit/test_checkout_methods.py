"""Which method the checkout page offers per channel, by the buyer's device."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tuition.channels.base import Channel
from tuition.web.checkout_methods import Device, default_choice, device_of, has_qr, methods_for

DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
WECHAT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50(0x1800323a) NetType/WIFI "
    "Language/zh_CN"
)
ALIPAY_APP = (
    "Mozilla/5.0 (Linux; U; Android 14; zh-CN; V2309A) AppleWebKit/537.36 (KHTML, like "
    "Gecko) Version/4.0 Chrome/69.0.3497.100 Mobile Safari/537.36 AlipayClient/10.6.10.8000"
)


@dataclass
class _Channel:
    slug: str
    methods: frozenset[str]


ALIPAY = _Channel("alipay", frozenset({"page", "wap", "qr"}))
WECHATPAY = _Channel("wechatpay", frozenset({"native", "jsapi", "h5"}))
SANDBOX = _Channel("sandbox", frozenset({"page", "qr"}))


def _offered(device: Device, *, qr: bool = False) -> list[str]:
    channels: list[Channel] = [SANDBOX, ALIPAY, WECHATPAY]  # type: ignore[list-item]
    return [m.value for m in methods_for(channels, device, qr=qr)]


@pytest.mark.parametrize(
    ("agent", "device"),
    [
        (DESKTOP, Device.DESKTOP),
        (IPHONE, Device.PHONE),
        (ANDROID, Device.PHONE),
        (WECHAT, Device.WECHAT),
        (ALIPAY_APP, Device.ALIPAY_APP),
        ("", Device.DESKTOP),
    ],
)
def test_the_device_is_read_from_the_user_agent(agent: str, device: Device) -> None:
    assert device_of(agent) is device


def test_one_method_per_channel_by_device_with_the_sandbox_last() -> None:
    assert _offered(Device.DESKTOP) == ["alipay:page", "wechatpay:native", "sandbox:page"]
    assert _offered(Device.PHONE) == ["alipay:wap", "wechatpay:h5", "sandbox:page"]
    assert _offered(Device.WECHAT) == ["wechatpay:jsapi"]  # nothing else opens in WeChat
    assert _offered(Device.ALIPAY_APP) == ["alipay:wap"]
    assert _offered(Device.PHONE, qr=True) == ["alipay:qr", "wechatpay:native", "sandbox:qr"]


def test_the_sandbox_is_never_chosen_for_the_buyer() -> None:
    channels: list[Channel] = [SANDBOX, WECHATPAY]  # type: ignore[list-item]
    assert default_choice(methods_for(channels, Device.DESKTOP)) == "wechatpay:native"
    only: list[Channel] = [SANDBOX]  # type: ignore[list-item]
    assert default_choice(methods_for(only, Device.DESKTOP)) is None
    assert has_qr(only)
    assert not has_qr([_Channel("x", frozenset({"page"}))])  # type: ignore[list-item]
