"""The ``unionpay`` channel: UnionPay online payments (全渠道 5.1.0, RSA-SHA256 certificates)."""

from __future__ import annotations

from tuition.channels.unionpay.client import UnionPayChannel, UnionPayRefused
from tuition.channels.unionpay.config import UnionPayConfig, load_unionpay_config

__all__ = ["UnionPayChannel", "UnionPayConfig", "UnionPayRefused", "load_unionpay_config"]
