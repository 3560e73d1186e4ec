"""Key material a simulated deployment keeps on disk, so that every local process agrees.

In demo mode the API process hosts the simulator and a worker process may call it over
HTTP; both build their channels from the same settings. The simulated gateways' keys
(the "Alipay" and "WeChat Pay" keys), the merchant keys that talk to them and the APIv3
key are therefore made once, in files beside ``simulator_key_file``, and read from there
by every process after. Files are created readable by their owner only.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def sibling(key_file: str | Path, name: str) -> Path:
    """``.tuition-simulator-key.pem`` + ``alipay`` -> ``.tuition-simulator-key-alipay.pem``."""
    path = Path(key_file)
    return path.with_name(f"{path.stem}-{name}{path.suffix or '.pem'}")


def kept(path: Path, make: Callable[[], bytes]) -> bytes:
    """The file's content, made by ``make`` first if there is no such file yet.

    The new file is written aside and linked into place, so two processes starting at
    once end up with the same content (the second's link fails and it reads the first's).
    """
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, aside = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(make())
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    finally:
        os.unlink(aside)
    return path.read_bytes()


def new_rsa_key() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def kept_rsa_key(path: Path) -> bytes:
    """An RSA-2048 private key (PKCS#8 PEM) kept in ``path``."""
    return kept(path, new_rsa_key)


def kept_apiv3_key(path: Path) -> bytes:
    """A 32-character APIv3 key kept in ``path``."""
    return kept(path, lambda: secrets.token_hex(16).encode("ascii")).strip()
