"""Posting rules for refunds of order lines: each party's part comes back as the refund
split it (see domain/refunds.py), and the channel's fee as its refund policy says.

A duplicate payment's refund, which has no lines, is :func:`tuition.domain.ledger.
refund_entry` (pro rata over what the payment's entry credited).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from tuition.domain.errors import ValidationFailed
from tuition.domain.ledger import (
    AccountKind,
    AccountRef,
    JournalEntry,
    Posting,
    build_entry,
    funding_account,
    refund_source,
)


@dataclass(frozen=True, slots=True)
class RefundedPart:
    """What a refund takes back from one order line's parties (see domain/refunds.py)."""

    creator_id: str
    creator_amount: int
    tax_amount: int
    platform_amount: int  # may be below zero only beside a wallet part (a generous pack)
    wallet_amount: int = 0  # a top-up's credit, taken back from the buyer's wallet
    # The creator amount per payee (the creator and a referred line's promoters), as
    # the refund took it back from their earnings; empty: all of it the creator's.
    payees: tuple[tuple[str, int], ...] = ()

    def by_payee(self) -> tuple[tuple[str, int], ...]:
        return self.payees or ((self.creator_id, self.creator_amount),)


def order_refund_entry(
    original: JournalEntry,
    *,
    refund_id: str,
    parts: Sequence[RefundedPart],
    occurred_at: datetime,
    fee_returned: int = 0,
    customer_id: str = "",
    pay_to: AccountRef | None = None,
    entry_id: str | None = None,
    pending_creators: Collection[str] = (),
) -> JournalEntry:
    """Post a refund of order lines: each line's creator share, tax and platform part
    come back as the refund split them (creator payable debited, tax payable debited,
    revenue reversed into ``refunds``), and clearing pays the buyer. ``fee_returned`` is
    what the channel gave back of its fee. A creator already paid out may go negative:
    the debit is carried, never dropped; a referred line's creator amount is split over
    its payees (``RefundedPart.payees``). ``pay_to`` pays the buyer somewhere else than
    where the payment came from (the buyer's wallet). A creator in ``pending_creators``
    gives back from earnings still in their refund hold (``creator_pending``), any other
    from what is available (``creator_payable``)."""
    clearing = funding_account(original)
    currency = clearing.currency
    amount = sum(
        p.creator_amount + p.tax_amount + p.platform_amount + p.wallet_amount for p in parts
    )
    if amount <= 0 or any(
        min(p.creator_amount, p.tax_amount, p.wallet_amount) < 0
        or (p.platform_amount < 0 and not p.wallet_amount)
        for p in parts
    ):
        raise ValidationFailed("a refund takes back non-negative parts", param="parts")
    wallet = sum(p.wallet_amount for p in parts)
    if wallet and not customer_id:
        raise ValidationFailed("a top-up refund names the customer", param="customer_id")
    creators: dict[str, int] = defaultdict(int)
    for part in parts:
        split = part.by_payee()
        if sum(value for _, value in split) != part.creator_amount:
            raise ValidationFailed("a line's payee parts must sum to its creator amount")
        for payee_id, value in split:
            creators[payee_id] += value
    lines = [
        (pay_to or clearing, -amount),
        *(
            (
                AccountRef(
                    AccountKind.CREATOR_PENDING
                    if c in pending_creators
                    else AccountKind.CREATOR_PAYABLE,
                    currency,
                    c,
                ),
                v,
            )
            for c, v in creators.items()
        ),
        (AccountRef(AccountKind.TAX_PAYABLE, currency), sum(p.tax_amount for p in parts)),
        (AccountRef(AccountKind.REFUNDS, currency), sum(p.platform_amount for p in parts)),
        *(
            [(AccountRef(AccountKind.CUSTOMER_WALLET, currency, customer_id), wallet)]
            if wallet
            else []
        ),
        (AccountRef(AccountKind.CHANNEL_FEES, currency), -fee_returned),
        (clearing, fee_returned),
    ]
    return build_entry(
        refund_source(refund_id),
        f"refund {refund_id} of {original.source}",
        (Posting(account, value) for account, value in lines if value),
        occurred_at,
        entry_id=entry_id,
    )


def pro_rata_fee(fee: int, payment_amount: int, refunded_before: int, amount: int) -> int:
    """The part of the fee a channel returns with a refund when it returns fees pro rata:
    ``round(fee x refunded after / paid) - round(fee x refunded before / paid)``, half-up,
    so the parts of any sequence of refunds add up to the whole fee at a full refund."""
    if (
        payment_amount <= 0
        or not 0 <= refunded_before <= refunded_before + amount <= payment_amount
    ):
        raise ValidationFailed("refunded amounts must lie within the payment", param="amount")

    def share(refunded: int) -> int:
        return (2 * fee * refunded + payment_amount) // (2 * payment_amount)

    return share(refunded_before + amount) - share(refunded_before)
