"""The gateway side of the sandbox protocol's two signatures.

Merchant → gateway requests carry an HMAC-SHA256 over the request::

    Authorization: SANDBOX-HMAC-SHA256 app_id="…",timestamp="<unix>",nonce="…",signature="<hex>"
    signature = hex(HMAC-SHA256(secret,
                                "<METHOD>\\n<path?query>\\n<timestamp>\\n<nonce>\\n<body>\\n"))

Gateway → merchant notifications carry an RSA signature (PKCS#1 v1.5, SHA-256) with the
gateway's private key over ``"<timestamp>\\n<nonce>\\n<body>\\n"``, in the headers
``Sandbox-Timestamp``, ``Sandbox-Nonce``, ``Sandbox-Signature`` (base64) and
``Sandbox-Serial`` (which gateway key signed).

This module is deliberately independent of the channel's verifier
(``tuition.channels.sandbox``): two implementations of one written protocol, so a drift
in either shows up as a failing test rather than passing silently.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections import deque

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tuition.clock import Clock
from tuition.simulator.config import SimulatorConfig
from tuition.simulator.records import GatewayError

AUTH_SCHEME = "SANDBOX-HMAC-SHA256"
_AUTH_PARAM = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*')


def load_private_key(config: SimulatorConfig) -> rsa.RSAPrivateKey:
    """The configured key (PEM bytes or path), else a fresh RSA-2048 key."""
    pem = config.private_key_pem
    if config.private_key_pem_path is not None:
        pem = config.private_key_pem_path.read_bytes()
    if pem is None:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise ValueError("the simulator key must be an RSA private key of at least 2048 bits")
    return key


def key_serial(public_key: rsa.RSAPublicKey) -> str:
    """A stable serial for a key: the first 20 hex digits of SHA-256 over its SPKI DER."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:20].upper()


class NotificationSigner:
    def __init__(self, private_key: rsa.RSAPrivateKey, serial: str | None = None) -> None:
        self._key = private_key
        self.serial = serial or key_serial(private_key.public_key())
        self.public_key_pem = (
            private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    def headers(self, body: bytes, timestamp: int, nonce: str | None = None) -> dict[str, str]:
        """The four ``Sandbox-*`` headers signing ``body`` at ``timestamp``."""
        nonce = nonce or secrets.token_hex(16)
        message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
        signature = self._key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return {
            "Sandbox-Timestamp": str(timestamp),
            "Sandbox-Nonce": nonce,
            "Sandbox-Signature": base64.b64encode(signature).decode("ascii"),
            "Sandbox-Serial": self.serial,
        }


def _unauthorized(code: str, message: str) -> GatewayError:
    return GatewayError(code, message, 401)


class RequestAuthenticator:
    """Checks merchant request signatures, their freshness and that no nonce repeats."""

    def __init__(self, merchants: dict[str, str], clock: Clock, max_skew_seconds: int) -> None:
        self._merchants = merchants
        self._clock = clock
        self._max_skew = max_skew_seconds
        self._nonces = NonceBook(max_skew_seconds)

    def authenticate(self, method: str, target: str, header: str | None, body: bytes) -> str:
        """Return the authenticated app id or raise a 401 GatewayError."""
        params = self._parse(header)
        app_id = params["app_id"]
        secret = self._merchants.get(app_id)
        if secret is None:
            raise _unauthorized("APP_NOT_FOUND", f"unknown app_id {app_id!r}")
        try:
            timestamp = int(params["timestamp"])
        except ValueError:
            raise _unauthorized("SIGNATURE_INVALID", "timestamp is not an integer") from None
        now = int(self._clock.now().timestamp())
        if abs(now - timestamp) > self._max_skew:
            raise _unauthorized("TIMESTAMP_EXPIRED", "request timestamp is too far from now")
        nonce = params["nonce"]
        message = f"{method.upper()}\n{target}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
        expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, params["signature"].lower()):
            raise _unauthorized("SIGNATURE_INVALID", "request signature does not match")
        if not self._nonces.remember((app_id, nonce), now):
            raise _unauthorized("NONCE_REUSED", "this nonce was already used")
        return app_id

    def _parse(self, header: str | None) -> dict[str, str]:
        scheme, _, rest = (header or "").partition(" ")
        if scheme != AUTH_SCHEME:
            raise _unauthorized("SIGNATURE_MISSING", f"expected Authorization: {AUTH_SCHEME} …")
        params: dict[str, str] = {}
        for part in rest.split(","):
            match = _AUTH_PARAM.fullmatch(part)
            if match is None:
                raise _unauthorized("SIGNATURE_INVALID", "malformed Authorization header")
            params[match.group(1)] = match.group(2)
        missing = {"app_id", "timestamp", "nonce", "signature"} - params.keys()
        if missing:
            raise _unauthorized("SIGNATURE_INVALID", f"missing {', '.join(sorted(missing))}")
        return params


class NonceBook:
    """Request nonces seen recently, per merchant: a replayed request is refused.

    A nonce only needs remembering while a request carrying it could still pass the
    timestamp check, so nonces older than twice the allowed skew are forgotten as time
    moves on, oldest first: constant work per request however long the simulator runs.
    """

    def __init__(self, max_skew_seconds: int) -> None:
        self._max_skew = max_skew_seconds
        self._seen: set[tuple[str, str]] = set()
        self._by_age: deque[tuple[int, tuple[str, str]]] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def remember(self, key: tuple[str, str], now: int) -> bool:
        """False if ``key`` (merchant, nonce) was seen before."""
        horizon = now - 2 * self._max_skew
        while self._by_age and self._by_age[0][0] < horizon:
            self._seen.discard(self._by_age.popleft()[1])
        if key in self._seen:
            return False
        self._seen.add(key)
        self._by_age.append((now, key))
        return True


class PlatformKey:
    """A gateway's own RSA key (Alipay's, WeChat Pay's), made on first use unless given.

    Generating RSA keys is slow, so a simulator that never plays a protocol never makes
    its key; a deployment hands in the key kept on disk so every process agrees.
    """

    def __init__(self) -> None:
        self._key: rsa.RSAPrivateKey | None = None

    def __repr__(self) -> str:
        serial = "not made yet" if self._key is None else key_serial(self._key.public_key())
        return f"PlatformKey(serial={serial!r})"

    def use(self, pem: bytes) -> None:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
            raise ValueError("a gateway key must be an RSA private key of at least 2048 bits")
        self._key = key

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        if self._key is None:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._key

    @property
    def public_key_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )
