"""Ledger anchors: the chain head, signed and kept outside the database.

The hash chain makes an edited entry visible, but its head lives in the same database:
someone able to rewrite the whole chain could rewrite the head too. An anchor is the head
(chain index + hash + time) signed with a key the database never sees, written as a JSON
file to a directory (ideally one that is backed up elsewhere or append-only) and
optionally POSTed to a URL. ``tuition ledger verify --anchors DIR`` then proves that the
chain still holds, at every anchored index, the anchored hash.

The key is an Ed25519 private key (PEM; verification needs only its public key) or, for
anything else, the bytes of an HMAC-SHA256 secret. It is read when needed and never
logged or written anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tuition.config import ConfigError, Settings
from tuition.domain.ledger import SealedEntry
from tuition.store.uow import UnitOfWork

VERSION = 1
_PATTERN = "anchor-*.json"
Algorithm = Literal["ed25519", "hmac-sha256"]


@dataclass(frozen=True, slots=True)
class AnchorKey:
    """Signs and checks anchors. ``repr`` shows only the algorithm and key id."""

    algorithm: Algorithm
    key_id: str
    _private: Ed25519PrivateKey | None = field(default=None, repr=False)
    _public: Ed25519PublicKey | None = field(default=None, repr=False)
    _secret: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_bytes(cls, data: bytes) -> AnchorKey:
        """An Ed25519 key from PEM (private, or public for checking only); otherwise the
        bytes (surrounding whitespace removed) as an HMAC secret."""
        if b"-----BEGIN" in data:
            try:
                loaded: Any = (
                    serialization.load_pem_public_key(data)
                    if b"PUBLIC KEY" in data
                    else serialization.load_pem_private_key(data, password=None)
                )
            except (ValueError, TypeError):
                raise ValueError("the PEM is not a key this can read") from None
            if isinstance(loaded, Ed25519PrivateKey):
                return cls._ed25519(loaded.public_key(), loaded)
            if isinstance(loaded, Ed25519PublicKey):
                return cls._ed25519(loaded, None)
            raise ValueError("a PEM anchor key must be Ed25519")
        secret = data.strip()
        if len(secret) < 16:
            raise ValueError("an HMAC anchor key needs at least 16 bytes")
        key_id = hashlib.sha256(b"tuition-anchor-key\x00" + secret).hexdigest()[:16]
        return cls("hmac-sha256", key_id, _secret=secret)

    @classmethod
    def _ed25519(cls, public: Ed25519PublicKey, private: Ed25519PrivateKey | None) -> AnchorKey:
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls("ed25519", hashlib.sha256(raw).hexdigest()[:16], private, public)

    @property
    def can_sign(self) -> bool:
        return self._private is not None or self._secret is not None

    def sign(self, message: bytes) -> str:
        if self._private is not None:
            return base64.b64encode(self._private.sign(message)).decode()
        if self._secret is not None:
            return hmac.new(self._secret, message, hashlib.sha256).hexdigest()
        raise ValueError("this anchor key is a public key: it can check anchors, not sign")

    def verify(self, message: bytes, signature: str) -> bool:
        if self._public is not None:
            try:
                self._public.verify(base64.b64decode(signature, validate=True), message)
            except (InvalidSignature, ValueError):
                return False
            return True
        assert self._secret is not None
        expected = hmac.new(self._secret, message, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)


def anchor_key(settings: Settings) -> AnchorKey:
    """The key from ``TUITION_LEDGER_ANCHOR_KEY_FILE`` or ``TUITION_LEDGER_ANCHOR_KEY``."""
    if settings.ledger_anchor_key_file:
        path = Path(settings.ledger_anchor_key_file)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"TUITION_LEDGER_ANCHOR_KEY_FILE: cannot read {path}: {exc.strerror}"
            ) from None
        name = "TUITION_LEDGER_ANCHOR_KEY_FILE"
    elif settings.ledger_anchor_key:
        data, name = settings.ledger_anchor_key.encode(), "TUITION_LEDGER_ANCHOR_KEY"
    else:
        raise ConfigError(
            "TUITION_LEDGER_ANCHOR_KEY_FILE (an Ed25519 private key PEM) or "
            "TUITION_LEDGER_ANCHOR_KEY (an HMAC secret) must be set to sign or check anchors"
        )
    try:
        return AnchorKey.from_bytes(data)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Anchor:
    chain_index: int
    hash: str
    anchored_at: datetime
    algorithm: Algorithm
    key_id: str
    signature: str
    source: str = field(default="", compare=False)  # the file it was read from

    def signed_part(self) -> bytes:
        """The canonical bytes the signature covers."""
        return _canonical(
            {
                "version": VERSION,
                "chain_index": self.chain_index,
                "hash": self.hash,
                "anchored_at": _iso(self.anchored_at),
                "algorithm": self.algorithm,
                "key_id": self.key_id,
            }
        )

    def to_json(self) -> bytes:
        return _canonical({**json.loads(self.signed_part()), "signature": self.signature})


def _canonical(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sign_head(chain_index: int, head_hash: str, at: datetime, key: AnchorKey) -> Anchor:
    unsigned = Anchor(chain_index, head_hash, at, key.algorithm, key.key_id, "")
    return Anchor(
        chain_index, head_hash, at, key.algorithm, key.key_id, key.sign(unsigned.signed_part())
    )


class AnchorProblemKind(StrEnum):
    ANCHOR_INVALID = "anchor_invalid"  # unreadable, or its signature does not verify
    ANCHOR_MISSING = "anchor_missing"  # the chain no longer reaches the anchored index
    ANCHOR_MISMATCH = "anchor_mismatch"  # the entry at that index has another hash


@dataclass(frozen=True, slots=True)
class AnchorProblem:
    kind: AnchorProblemKind
    ref: str  # the anchor's file name
    detail: str


def write_anchor(anchor: Anchor, directory: Path) -> Path:
    """Write ``anchor`` as a new file (never over another), atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = anchor.anchored_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"anchor-{stamp}-{anchor.chain_index + 1:012d}.json"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".anchor-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(anchor.to_json() + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.link(tmp, path)  # fails if the name exists: an anchor is never replaced
    finally:
        os.unlink(tmp)
    return path


def read_anchors(directory: Path, key: AnchorKey) -> tuple[list[Anchor], list[AnchorProblem]]:
    """Every anchor file in ``directory`` whose signature verifies, and a problem for
    each one that does not (or cannot be read)."""
    anchors: list[Anchor] = []
    problems: list[AnchorProblem] = []
    for path in sorted(directory.glob(_PATTERN)):
        try:
            raw = json.loads(path.read_bytes())
            anchor = Anchor(
                chain_index=int(raw["chain_index"]),
                hash=str(raw["hash"]),
                anchored_at=datetime.fromisoformat(str(raw["anchored_at"])),
                algorithm=raw["algorithm"],
                key_id=str(raw["key_id"]),
                signature=str(raw["signature"]),
                source=path.name,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            detail = f"unreadable anchor: {type(exc).__name__}"
            problems.append(AnchorProblem(AnchorProblemKind.ANCHOR_INVALID, path.name, detail))
            continue
        if (anchor.algorithm, anchor.key_id) != (key.algorithm, key.key_id):
            detail = f"signed with {anchor.algorithm} key {anchor.key_id}, not {key.key_id}"
            problems.append(AnchorProblem(AnchorProblemKind.ANCHOR_INVALID, path.name, detail))
        elif not key.verify(anchor.signed_part(), anchor.signature):
            detail = "signature does not verify: the anchor was altered"
            problems.append(AnchorProblem(AnchorProblemKind.ANCHOR_INVALID, path.name, detail))
        else:
            anchors.append(anchor)
    return anchors, problems


def check_anchors(anchors: list[Anchor], sealed: list[SealedEntry]) -> list[AnchorProblem]:
    """Each anchored head must still be in the chain: the entry at its chain index (the
    ``chain_index``-th sealed entry, in chain order) carries the anchored hash."""
    problems = []
    for anchor in anchors:
        ref = anchor.source or f"#{anchor.chain_index}"
        if anchor.chain_index < 0:
            continue  # anchored before the first entry: nothing to prove
        if anchor.chain_index >= len(sealed):
            detail = (
                f"anchored chain index {anchor.chain_index}, but the chain has only "
                f"{len(sealed)} entries"
            )
            problems.append(AnchorProblem(AnchorProblemKind.ANCHOR_MISSING, ref, detail))
        elif sealed[anchor.chain_index].hash != anchor.hash:
            entry = sealed[anchor.chain_index].entry.id
            detail = (
                f"entry {entry} at chain index {anchor.chain_index} has hash "
                f"{sealed[anchor.chain_index].hash}, anchored {anchor.hash}"
            )
            problems.append(AnchorProblem(AnchorProblemKind.ANCHOR_MISMATCH, ref, detail))
    return problems


async def anchor_ledger(
    uow: UnitOfWork,
    key: AnchorKey,
    directory: Path,
    *,
    now: datetime,
    url: str = "",
    client: httpx.AsyncClient | None = None,
) -> tuple[Anchor, Path]:
    """Sign the current chain head, write it to ``directory`` and POST it to ``url``.

    Seal first (``seal_ledger``) for the head to cover everything posted. A failed POST
    raises ``httpx.HTTPError`` after the file is written.
    """
    async with uow:
        head = await uow.ledger.head()
    anchor = sign_head(head.chain_index, head.hash, now, key)
    path = write_anchor(anchor, directory)
    if url:
        own = client is None
        http = httpx.AsyncClient(timeout=10.0) if client is None else client
        try:
            response = await http.post(
                url, content=anchor.to_json(), headers={"Content-Type": "application/json"}
            )
            response.raise_for_status()
        finally:
            if own:
                await http.aclose()
    return anchor, path


def anchored_today(directory: Path, now: datetime) -> bool:
    """Whether an anchor file of ``now``'s UTC day is in ``directory`` already."""
    day = now.astimezone(UTC).strftime("%Y%m%d")
    return any(directory.glob(f"anchor-{day}T*.json"))


async def anchor_daily(uow: UnitOfWork, settings: Settings, now: datetime) -> Path | None:
    """The worker's daily anchor: once per UTC day into ``TUITION_LEDGER_ANCHOR_DIR``
    (nothing when it is unset). Call after sealing; returns the file written, if any."""
    if not settings.ledger_anchor_dir:
        return None
    directory = Path(settings.ledger_anchor_dir)
    if anchored_today(directory, now):
        return None
    _, path = await anchor_ledger(
        uow, anchor_key(settings), directory, now=now, url=settings.ledger_anchor_url
    )
    return path
