"""The ``sandbox`` channel: Tuition's client for the offline simulator's plain protocol."""

from __future__ import annotations

from tuition.channels.sandbox.client import GatewayRefused, SandboxChannel, SandboxConfig

__all__ = ["GatewayRefused", "SandboxChannel", "SandboxConfig"]
