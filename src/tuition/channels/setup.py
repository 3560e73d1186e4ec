"""Build the enabled channels from settings: the one place that names each channel."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tuition.channels.registry import ChannelRegistry
from tuition.channels.sandbox.client import SandboxChannel, SandboxConfig
from tuition.clock import Clock
from tuition.config import Settings
from tuition.simulator.app import Simulator
from tuition.simulator.signing import key_serial


def simulator_key(settings: Settings) -> bytes:
    """The simulator's RSA key, made once and kept in a file every process can read."""
    path = Path(settings.simulator_key_file)
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.touch(mode=0o600)
        path.write_bytes(pem)
    return path.read_bytes()


def build_registry(
    settings: Settings, *, clock: Clock, simulator: Simulator | None = None
) -> ChannelRegistry:
    """Channels named in ``settings.channels``.

    With the simulator in this process the sandbox channel reaches it without a network
    hop; otherwise it calls ``sandbox_url`` (default: this deployment's /simulator).
    """
    registry = ChannelRegistry()
    for slug in settings.channels:
        if slug == "sandbox":
            registry.add(_sandbox(settings, clock=clock, simulator=simulator))
        else:
            raise ValueError(
                f"TUITION_CHANNELS: channel {slug!r} needs its keys configured; "
                "see docs/channels.md"
            )
    return registry


def _sandbox(settings: Settings, *, clock: Clock, simulator: Simulator | None) -> SandboxChannel:
    key = serialization.load_pem_private_key(simulator_key(settings), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    config = SandboxConfig(
        # In-process the transport goes straight to the simulator app, whose routes start
        # at its root; over HTTP it is wherever the simulator is served.
        base_url="http://simulator.internal"
        if simulator is not None
        else settings.sandbox_url or f"{settings.base_url}/simulator",
        app_id=settings.sandbox_app_id,
        secret=settings.sandbox_secret,
        gateway_public_key_pem=public_pem.decode(),
        gateway_serial=key_serial(key.public_key()),
        fee_rate=settings.channel_fee_rates.get("sandbox", Decimal("0.006")),
    )
    return SandboxChannel(config, transport=simulator.transport if simulator else None, clock=clock)
