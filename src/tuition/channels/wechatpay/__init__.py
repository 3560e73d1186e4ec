"""The ``wechatpay`` channel: WeChat Pay API v3 (SHA256-RSA2048, AEAD_AES_256_GCM)."""

from __future__ import annotations

from tuition.channels.wechatpay.client import WechatPayChannel, WechatPayRefused
from tuition.channels.wechatpay.config import WechatPayConfig, load_wechatpay_config

__all__ = ["WechatPayChannel", "WechatPayConfig", "WechatPayRefused", "load_wechatpay_config"]
