"""How many sign-in attempts the admin console takes, from whom, before it stops checking.

Three counters, all counted *before* a password is checked (so concurrent guesses cannot
run ahead of the count) and kept in the database (so every API process shares them):

- per IP and account: ``per_ip_and_account`` attempts in ``window``, then that IP is
  refused for that account for ``lock_for``. This is the lockout a guesser hits, and it
  locks only the guesser: the operator signing in from elsewhere is not locked out.
- per IP, whatever the account: ``per_ip``, against spraying many accounts.
- per account, from any IP: ``per_account``, against a guesser with many addresses. A
  determined crowd can lock an account this way; ``tuition admin set-password`` lifts it.

Unknown emails are counted exactly like known ones, so neither the answer nor its timing
tells which accounts exist. IPv6 clients are counted per /64, which one subscriber holds.
A successful sign-in gives its IP attempt back and clears the account's counters.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class SignInThrottle:
    per_ip_and_account: int = 5
    per_ip: int = 20
    per_account: int = 50
    window: timedelta = timedelta(minutes=15)
    lock_for: timedelta = timedelta(minutes=15)


DEFAULT_THROTTLE = SignInThrottle()


@dataclass(frozen=True, slots=True)
class AttemptKeys:
    """The hashed counter keys of one attempt, and the account's hash (``subject``)."""

    pair: str
    ip: str
    account: str
    subject: str


def client_network(client_ip: str | None) -> str:
    """What an attempt is counted against: the IPv4 address, or the IPv6 /64."""
    try:
        address = ipaddress.ip_address(client_ip or "")
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def attempt_keys(email: str, client_ip: str | None) -> AttemptKeys:
    network = client_network(client_ip)
    return AttemptKeys(
        pair=_digest("ip+account", network, email),
        ip=_digest("ip", network),
        account=_digest("account", email),
        subject=subject_of(email),
    )


def subject_of(email: str) -> str:
    return _digest("subject", email)
