"""The ``alipay`` channel: Alipay open platform (RSA2, public-key mode)."""

from __future__ import annotations

from tuition.channels.alipay.client import AlipayChannel, AlipayRefused
from tuition.channels.alipay.config import AlipayConfig, load_alipay_config

__all__ = ["AlipayChannel", "AlipayConfig", "AlipayRefused", "load_alipay_config"]
