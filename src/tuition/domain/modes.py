"""Test and live modes: every object belongs to one, and a key sees only its own.

Each mode keeps its data in a store of its own (docs/api.md, "Test and live modes"), so
no query can mix them; test mode alone may use the sandbox channel.
"""

from __future__ import annotations

from typing import Literal

Mode = Literal["test", "live"]
MODES: tuple[Mode, ...] = ("live", "test")


def mode_of_key(secret: str) -> Mode | None:
    """The mode an API key's secret names (``sk_test_…``, ``sk_live_…``), or None."""
    if secret.startswith("sk_test_"):
        return "test"
    if secret.startswith("sk_live_"):
        return "live"
    return None


def notify_url(base_url: str, mode: Mode, channel: str) -> str:
    """Where ``channel`` notifies ``mode``'s payments: the path names the mode, so each
    notification is verified with that mode's channel and applied in its store."""
    prefix = "/v1/notify/test" if mode == "test" else "/v1/notify"
    return f"{base_url.rstrip('/')}{prefix}/{channel}"
