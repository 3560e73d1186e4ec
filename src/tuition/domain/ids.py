"""Prefixed, time-ordered, URL-safe identifiers such as ``ord_01J9Z3K4QW8YV6T2N5B7C0D1EF``.

The body is a ULID: 26 Crockford base32 characters encoding a 48-bit Unix millisecond
timestamp followed by 80 random bits. Within one process ids are strictly increasing
(the random part is incremented when the millisecond repeats), so sorting ids as strings
sorts them by creation; across processes they sort by millisecond only.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from enum import StrEnum

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U; ASCII-sorted
BODY_LENGTH = 26
_RANDOM_BITS = 80
_RANDOM_LIMIT = 1 << _RANDOM_BITS
_TIME_LIMIT = 1 << 48
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_PREFIX_RE = re.compile(r"[a-z]{1,8}")
# 26 characters carry 130 bits; the top two are always zero, so the first is 0-7.
_BODY_RE = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")


class Prefix(StrEnum):
    ORDER = "ord"
    PAYMENT = "pay"
    REFUND = "re"
    PRODUCT = "prod"
    CREATOR = "cre"
    COUPON = "cpn"
    EVENT = "evt"
    WEBHOOK_ENDPOINT = "whe"
    API_KEY = "key"
    NOTIFICATION = "ntf"
    JOURNAL_ENTRY = "je"
    ENTITLEMENT = "ent"
    JOB = "job"
    ADMIN = "adm"
    WALLET_TRANSACTION = "wtx"
    WALLET_LOT = "lot"
    WALLET_ADJUSTMENT = "wadj"
    PAYEE = "pye"
    EARNING = "ern"
    PAYOUT = "po"
    PAYOUT_RUN = "prun"
    SUBSCRIPTION = "sub"
    RECONCILIATION = "rec"
    RECONCILIATION_CASE = "rcs"
    INVOICE_REQUEST = "inv"
    FX_RATE = "fxr"
    RISK_RULE = "rsk"
    RISK_DECISION = "rskd"
    RISK_ATTEMPT = "rska"
    RISK_REVIEW = "rrv"


class _Generator:
    """Per-process monotonic ULID state, guarded by a lock for threaded servers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def reset(self) -> None:
        # A forked child must not continue the parent's sequence: both would increment
        # the same random part within the same millisecond and mint identical ids.
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def next_value(self) -> int:
        with self._lock:
            now = _now_ms()
            if now > self._last_ms:
                self._last_ms, self._last_random = now, secrets.randbits(_RANDOM_BITS)
            else:
                # Same millisecond, or the wall clock stepped back: stay on the last
                # timestamp and count up so order is kept.
                self._last_random += 1
                if self._last_random == _RANDOM_LIMIT:
                    # Exhausted 2**80 values in one ms; borrow the next millisecond.
                    self._last_ms += 1
                    self._last_random = secrets.randbits(_RANDOM_BITS)
            if self._last_ms >= _TIME_LIMIT:
                raise OverflowError("timestamp does not fit in 48 bits")
            return (self._last_ms << _RANDOM_BITS) | self._last_random


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


_generator = _Generator()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_generator.reset)


def _encode(value: int) -> str:
    chars = []
    for _ in range(BODY_LENGTH):
        value, digit = divmod(value, 32)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def _decode(body: str) -> int:
    value = 0
    for char in body:
        value = value * 32 + ALPHABET.index(char)
    return value


def new_id(prefix: str) -> str:
    """Mint ``{prefix}_{ulid}``; ``prefix`` is 1-8 lower-case ASCII letters (see Prefix)."""
    if not isinstance(prefix, str) or _PREFIX_RE.fullmatch(prefix) is None:
        raise ValueError(f"id prefix must be 1-8 lower-case letters, got {prefix!r}")
    return f"{prefix}_{_encode(_generator.next_value())}"


def is_valid_id(value: object, prefix: str) -> bool:
    """Whether ``value`` is a well-formed id with exactly this prefix (for path params).

    Only the canonical upper-case spelling is accepted: ids are compared as opaque
    strings, so a second spelling of the same id would miss in lookups.
    """
    if not isinstance(value, str):
        return False
    head, sep, body = value.partition("_")
    return bool(sep) and head == prefix and _BODY_RE.fullmatch(body) is not None


def id_timestamp(value: str) -> datetime:
    """The UTC creation time, to the millisecond, encoded in an id; ValueError if malformed."""
    head, sep, body = value.partition("_") if isinstance(value, str) else ("", "", "")
    if not sep or _PREFIX_RE.fullmatch(head) is None or _BODY_RE.fullmatch(body) is None:
        raise ValueError(f"not a tuition id: {value!r}")
    return _EPOCH + timedelta(milliseconds=_decode(body) >> _RANDOM_BITS)
