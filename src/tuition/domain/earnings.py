"""Payees and their earnings: who is owed a share, how long it is held, and the entry
that makes it available.

An order's earnings are *pending* while its refund hold runs: the longest refund window
of the order's products (their refund policy), else the platform's default hold. When
the hold ends, one entry per payment moves every payee's remaining pending share to
*available* (``creator_pending`` debited, ``creator_payable`` credited). A refund during
the hold takes the line's share back from pending; after it, from available, which may
go negative and is netted against later earnings (domain/refund_entries.py posts both).

Earnings only grow by a payment's entry and shrink by refunds: nothing here edits a
posted amount.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from tuition.domain.errors import IllegalTransition, ValidationFailed
from tuition.domain.ledger import (
    AccountKind,
    AccountRef,
    JournalEntry,
    Posting,
    build_entry,
)

DEFAULT_HOLD_DAYS = 7  # the default refund window (TUITION_REFUND_POLICY's window_days)
MAX_HOLD_DAYS = 3650


class PayeeKind(StrEnum):
    CREATOR = "creator"
    PROMOTER = "promoter"
    PARTNER = "partner"


class TaxProfile(StrEnum):
    INDIVIDUAL = "individual"  # income tax withheld on labour remuneration
    COMPANY = "company"  # invoices its own tax: nothing withheld


class EarningRole(StrEnum):
    """Why a payee earned from an order line (one earning per line, payee and role)."""

    CREATOR = "creator"
    PROMOTER_L1 = "promoter_l1"
    PROMOTER_L2 = "promoter_l2"
    PARTNER = "partner"


class HoldStatus(StrEnum):
    PENDING = "pending"  # in the refund hold: refunds take back from pending
    RELEASED = "released"  # available: refunds take back from available


HOLD_TRANSITIONS: dict[HoldStatus, frozenset[HoldStatus]] = {
    HoldStatus.PENDING: frozenset({HoldStatus.RELEASED}),
    HoldStatus.RELEASED: frozenset(),
}


def hold_transition(current: HoldStatus, target: HoldStatus) -> HoldStatus:
    """The only way a hold changes status; an illegal move raises."""
    if target not in HOLD_TRANSITIONS[current]:
        raise IllegalTransition(
            f"an earnings hold cannot go from {current} to {target}", code="hold_not_pending"
        )
    return target


def hold_days(window_days: Iterable[int | None], default_days: int = DEFAULT_HOLD_DAYS) -> int:
    """How long an order's earnings are held: the longest refund window among its lines
    (a line without a window of its own counts the default), never below zero."""
    if type(default_days) is not int or not 0 <= default_days <= MAX_HOLD_DAYS:
        raise ValidationFailed(
            f"the earnings hold must be within 0..{MAX_HOLD_DAYS} days", param="hold_days"
        )
    days = [default_days if d is None else min(max(d, 0), MAX_HOLD_DAYS) for d in window_days]
    return max(days, default=default_days)


@dataclass(frozen=True, slots=True)
class HoldRule:
    """How long a paid order's earnings are held.

    ``default_days``: the hold of a product without a refund window of its own, the
    platform's refund window (TUITION_REFUND_POLICY's ``window_days``); ``fixed_days``,
    when set (TUITION_PAYOUT_HOLD_DAYS), is every order's hold whatever its products'
    windows say.
    """

    default_days: int = DEFAULT_HOLD_DAYS
    fixed_days: int | None = None

    def __post_init__(self) -> None:
        for name in ("default_days", "fixed_days"):
            value = getattr(self, name)
            if value is None and name == "fixed_days":
                continue
            if type(value) is not int or not 0 <= value <= MAX_HOLD_DAYS:
                raise ValidationFailed(
                    f"the earnings hold must be within 0..{MAX_HOLD_DAYS} days", param=name
                )

    @classmethod
    def of(cls, refund_window_days: int | None, hold_days: int | None) -> HoldRule:
        """The rule from the platform's refund window (None: no window, the usual
        7 days) and the payout hold setting (None: follow the windows)."""
        default = DEFAULT_HOLD_DAYS if refund_window_days is None else refund_window_days
        return cls(min(default, MAX_HOLD_DAYS), hold_days)


def release_at(paid_at: datetime, days: int) -> datetime:
    return paid_at + timedelta(days=days)


def release_source(payment_id: str) -> str:
    return f"earnings_release:{payment_id}"


@dataclass(frozen=True, slots=True)
class HeldEarning:
    """What is left in the hold of one earning when the hold ends."""

    payee_id: str
    amount: int  # the share earned
    clawed_back: int  # taken back by refunds during the hold

    @property
    def remaining(self) -> int:
        return self.amount - self.clawed_back


def release_entry(
    payment_id: str,
    currency: str,
    earnings: Sequence[HeldEarning],
    *,
    occurred_at: datetime,
) -> JournalEntry | None:
    """The entry that makes a payment's held earnings available, per payee; ``None``
    when refunds took everything back during the hold (nothing is left to move)."""
    per_payee: dict[str, int] = defaultdict(int)
    for earning in earnings:
        if not 0 <= earning.clawed_back <= earning.amount:
            raise ValidationFailed(
                f"earning of {earning.payee_id}: clawed back {earning.clawed_back} "
                f"is outside 0..{earning.amount}",
                param="clawed_back",
            )
        per_payee[earning.payee_id] += earning.remaining
    lines: list[Posting] = []
    for payee_id, amount in sorted(per_payee.items()):
        if amount:
            lines.append(
                Posting(AccountRef(AccountKind.CREATOR_PENDING, currency, payee_id), amount)
            )
            lines.append(
                Posting(AccountRef(AccountKind.CREATOR_PAYABLE, currency, payee_id), -amount)
            )
    if not lines:
        return None
    return build_entry(
        release_source(payment_id),
        f"earnings of payment {payment_id} released from their refund hold",
        lines,
        occurred_at,
    )


def mask_account(account: str | None) -> str | None:
    """A payout account as every view and log shows it: its last four characters (an
    e-mail keeps its first letter and domain)."""
    if not account:
        return None
    name, at, domain = account.partition("@")
    if at:
        return f"{name[:1]}***@{domain}"
    return "*" * max(len(account) - 4, 2) + account[-4:] if len(account) > 4 else "****"


DEFAULT_HOLD = HoldRule()  # the usual refund window, 7 days, for a product without one
