"""Virtual coins (学币, 书币 …): a unit the platform configures once, sold in packs and
spent on coin-priced products.

Coins live in wallets beside money, as lots. A pack's paid coins are one lot worth what
the buyer paid for them; its bonus coins another lot worth nothing (a promotional
liability recorded at zero). Spending coins recognises revenue at the money value of
the lots consumed, so a coin bought cheaply in a promotion earns less than one bought at
list price, and a bonus coin earns nothing. Pure logic, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from tuition.domain.errors import ValidationFailed
from tuition.domain.money import CURRENCIES, Currency, get_currency
from tuition.domain.wallet import InsufficientBalance


class SpendOrder(StrEnum):
    """Which coin lots are spent first. Every order is first in, first out within a kind;
    ``bonus_last`` spends every paid coin before any bonus coin, ``bonus_first`` the
    reverse, ``fifo`` by age alone (a pack's paid lot is older than its bonus lot)."""

    FIFO = "fifo"
    BONUS_LAST = "bonus_last"
    BONUS_FIRST = "bonus_first"


@dataclass(frozen=True, slots=True)
class CoinUnit:
    """The platform's coin: ``code`` stands where a currency code would (prices, orders,
    wallets); ``currency`` is the money coin packs are sold in and revenue is booked in."""

    code: str
    name: str
    symbol: str = ""
    decimals: int = 0
    currency: str = "CNY"
    spend_order: SpendOrder = SpendOrder.FIFO

    def __post_init__(self) -> None:
        code = self.code
        if not (isinstance(code, str) and len(code) == 3 and code.isascii() and code.isupper()):
            raise ValidationFailed(
                f"a coin code is 3 upper-case letters, got {code!r}", param="coins.code"
            )
        known = CURRENCIES.get(code)
        if known is not None and not known.virtual:
            raise ValidationFailed(
                f"{code} is an ISO 4217 currency; pick a free code such as XCN",
                param="coins.code",
            )
        if not self.name.strip() or len(self.name) > 40:
            raise ValidationFailed("a coin needs a name of 1 to 40 characters", param="coins.name")
        if len(self.symbol) > 8:
            raise ValidationFailed("a coin symbol is at most 8 characters", param="coins.symbol")
        if type(self.decimals) is not int or not 0 <= self.decimals <= 4:
            raise ValidationFailed("coin decimals are an int in 0..4", param="coins.decimals")
        if get_currency(self.currency, param="coins.currency").virtual:
            raise ValidationFailed("coins are sold for money, not coins", param="coins.currency")

    @property
    def unit(self) -> Currency:
        return Currency(self.code, self.decimals, virtual=True, label=self.symbol or self.name)


@dataclass(frozen=True, slots=True)
class CoinLot:
    """A coin lot as spending sees it: coins left, and the value not yet recognised."""

    id: str
    bonus: bool
    amount: int
    remaining: int
    value: int
    value_remaining: int
    value_currency: str


@dataclass(frozen=True, slots=True)
class CoinTake:
    lot_id: str
    coins: int
    value: int  # money recognised by taking ``coins`` from the lot
    value_remaining: int  # the lot's unrecognised value after the take


def spending_order(lots: Sequence[CoinLot], order: SpendOrder) -> list[CoinLot]:
    """``lots`` (oldest first) in the order they are spent."""
    match order:
        case SpendOrder.FIFO:
            return list(lots)
        case SpendOrder.BONUS_LAST:
            return [lot for lot in lots if not lot.bonus] + [lot for lot in lots if lot.bonus]
        case SpendOrder.BONUS_FIRST:
            return [lot for lot in lots if lot.bonus] + [lot for lot in lots if not lot.bonus]


def value_left(lot: CoinLot, remaining: int) -> int:
    """The value of ``remaining`` coins of ``lot``, ``value * remaining // amount`` (rounded
    down): each take recognises exact integers, and a lot spent to the last coin has
    recognised exactly its value, however it was split."""
    return lot.value * remaining // lot.amount


def take_coins(lots: Sequence[CoinLot], coins: int) -> list[CoinTake]:
    """Take ``coins`` from ``lots`` in the given order, with the value each take
    recognises. The caller's conditional UPDATE of the balance guarantees they cover it."""
    if type(coins) is not int or coins <= 0:
        raise ValueError("coins to spend are a positive int")
    takes: list[CoinTake] = []
    left = coins
    for lot in lots:
        if left == 0:
            break
        take = min(lot.remaining, left)
        if take <= 0:
            continue
        # Never more than is left unrecognised (a lot refilled by a released hold may be
        # a unit off the formula), and all of it with the last coin.
        rest = lot.remaining - take
        after = min(value_left(lot, rest), lot.value_remaining) if rest else 0
        takes.append(CoinTake(lot.id, take, lot.value_remaining - after, after))
        left -= take
    if left:
        raise InsufficientBalance(f"the wallet's coin lots hold {coins - left} of {coins}")
    return takes
