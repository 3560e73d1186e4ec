"""Customer wallets: balances held for customers, spent lot by lot.

A balance is a liability of the platform (never revenue): a top-up credits it, spending
it on an order recognises the order's revenue and creator shares then. Each credit is a
**lot**; spending takes from the oldest lots first (FIFO), so what a refund or an audit
sees is which credits paid for what. Pure logic, no I/O; amounts are ``int`` minor
units of one currency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from tuition.domain.errors import Conflict

# The channel slug of payments made from balance.
WALLET_CHANNEL = "wallet"


class LotKind(StrEnum):
    TOPUP = "topup"
    BONUS = "bonus"  # a coin pack's bonus coins: worth nothing, spent like the rest
    REFUND = "refund"  # a refund of a payment made from balance comes back as a lot
    ADJUSTMENT = "adjustment"


class TransactionCause(StrEnum):
    TOPUP = "topup"
    ORDER = "order"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"
    RELEASE = "release"  # a split payment's held part, given back when the payment ends


class InsufficientBalance(Conflict):
    default_code = "insufficient_balance"


@dataclass(frozen=True, slots=True)
class Lot:
    id: str
    remaining: int


def consume_fifo(lots: Sequence[Lot], amount: int) -> list[tuple[str, int]]:
    """Take ``amount`` from ``lots`` (oldest first): ``[(lot id, taken)]``.

    Raises InsufficientBalance when the lots hold less than ``amount``: the caller's
    conditional UPDATE of the balance already refused that, so it means lots and balance
    disagree, and nothing may be written.
    """
    if type(amount) is not int or amount <= 0:
        raise ValueError("an amount to spend is a positive int")
    taken: list[tuple[str, int]] = []
    left = amount
    for lot in lots:
        if left == 0:
            break
        take = min(lot.remaining, left)
        if take > 0:
            taken.append((lot.id, take))
            left -= take
    if left:
        raise InsufficientBalance(f"the wallet's lots hold {amount - left} of {amount}")
    return taken
