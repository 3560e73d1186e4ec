"""How a paid order's parts are booked over the money that paid it.

An order is usually paid by one payment and booked by one entry. Two cases split it:
a split-tender order is paid partly from the buyer's balance and partly through a
channel, one entry per payment; a coin-priced order is paid in coins, and its revenue is
the money value of the coin lots spent, not its price in coins. In both, each funding
amount takes its portion of the order's tax and of every line's creator share, by
largest remainder over ``[tax, share of line 0, …, the platform's rest]``, so the
portions of all fundings add up to the order's parts exactly. Pure logic, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from tuition.domain.errors import ValidationFailed
from tuition.domain.ledger import JournalEntry, build_entry
from tuition.domain.money import allocate


def _weights(total: int, tax: int, shares: Sequence[int]) -> list[int]:
    rest = total - tax - sum(shares)
    if total <= 0 or rest < 0 or tax < 0 or any(type(s) is not int or s < 0 for s in shares):
        raise ValidationFailed("an order's tax and shares must fit its total", param="total")
    return [tax, *shares, rest]


def scaled(value: int, total: int, tax: int, shares: Sequence[int]) -> tuple[int, list[int]]:
    """The order's tax and per-line shares (of ``total``) for money ``value`` standing
    in for it (coins spent, worth ``value``): ``(tax part, [share part per line])``."""
    if type(value) is not int or value < 0:
        raise ValidationFailed("a value is a non-negative int", param="value")
    parts = allocate(value, _weights(total, tax, shares)) if value else [0] * (len(shares) + 2)
    return parts[0], parts[1:-1]


def portion(
    total: int, tax: int, shares: Sequence[int], amounts: Sequence[int]
) -> list[tuple[int, list[int]]]:
    """Split the order's tax and per-line shares over funding ``amounts`` that add up to
    ``total``: one ``(tax part, [share part per line])`` per amount. Each amount but the
    last takes its largest-remainder part of every column; the last takes what is left,
    so every column adds up exactly and no part exceeds its amount."""
    weights = _weights(total, tax, shares)
    if sum(amounts) != total or any(type(a) is not int or a <= 0 for a in amounts):
        raise ValidationFailed("funding amounts are positive and add up to the total")
    left = list(weights)
    result: list[tuple[int, list[int]]] = []
    for index, amount in enumerate(amounts):
        parts = list(left) if index == len(amounts) - 1 else allocate(amount, weights)
        left = [have - took for have, took in zip(left, parts, strict=True)]
        if any(part < 0 for part in left):  # only possible with three or more fundings
            raise ValidationFailed("the fundings cannot split this order exactly")
        result.append((parts[0], parts[1:-1]))
    return result


def merged(entries: Sequence[JournalEntry]) -> JournalEntry:
    """One entry of the postings of ``entries`` (the same source, one per money
    currency): a coin payment spending lots worth money of several currencies."""
    if len(entries) == 1:
        return entries[0]
    first = entries[0]
    return build_entry(
        first.source,
        first.description,
        [posting for entry in entries for posting in entry.postings],
        first.occurred_at,
        entry_id=first.id,
    )
