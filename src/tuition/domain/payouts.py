"""Payouts: money leaving a payee's available balance for its bank, Alipay or WeChat.

Statuses (the only way one changes is :func:`transition`)::

    pending ──▶ processing ──▶ paid ──▶ returned
       │             │
       └─────────────┴──────▶ failed

Ledger, for a payout of ``gross`` with ``tax`` withheld (``net = gross - tax``):

    created   creator_payable +gross, creator_in_payout -net, tax_payable -tax
    paid      creator_in_payout +net, cash -net
    failed    the creation reversed: the money is available again, the tax not withheld
    returned  cash +net, creator_payable -gross, tax_payable +tax (the bank sent it back)

The payout's id is the transfer's ``out_biz_no`` at the channel, so a payout asked twice
is one transfer; each entry's source (``payout:{id}:{step}``) is UNIQUE.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from tuition.domain.errors import IllegalTransition, ValidationFailed
from tuition.domain.ledger import AccountKind, AccountRef, JournalEntry, Posting, build_entry


class PayoutStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    PAID = "paid"
    FAILED = "failed"
    RETURNED = "returned"


class PayoutMethod(StrEnum):
    ALIPAY = "alipay"
    WECHATPAY = "wechatpay"
    BANK = "bank"  # a bank batch file; finance marks it paid with the bank's reference


PAYOUT_TRANSITIONS: dict[PayoutStatus, frozenset[PayoutStatus]] = {
    PayoutStatus.PENDING: frozenset({PayoutStatus.PROCESSING, PayoutStatus.FAILED}),
    PayoutStatus.PROCESSING: frozenset({PayoutStatus.PAID, PayoutStatus.FAILED}),
    PayoutStatus.PAID: frozenset({PayoutStatus.RETURNED}),
    PayoutStatus.FAILED: frozenset(),
    PayoutStatus.RETURNED: frozenset(),
}

# A payout's money is back in available in these statuses.
GIVEN_BACK = frozenset({PayoutStatus.FAILED, PayoutStatus.RETURNED})


def transition(current: PayoutStatus, target: PayoutStatus) -> PayoutStatus:
    if target not in PAYOUT_TRANSITIONS[current]:
        raise IllegalTransition(
            f"a payout cannot go from {current} to {target}", code="payout_not_" + target.value
        )
    return target


def payout_source(payout_id: str, step: str) -> str:
    return f"payout:{payout_id}:{step}"


def _accounts(payee_id: str, currency: str) -> tuple[AccountRef, AccountRef, AccountRef]:
    return (
        AccountRef(AccountKind.CREATOR_PAYABLE, currency, payee_id),
        AccountRef(AccountKind.CREATOR_IN_PAYOUT, currency, payee_id),
        AccountRef(AccountKind.TAX_PAYABLE, currency),
    )


def _check(gross: int, tax: int) -> None:
    if type(gross) is not int or gross <= 0:
        raise ValidationFailed("a payout's amount must be a positive int", param="amount")
    if type(tax) is not int or not 0 <= tax <= gross:
        raise ValidationFailed("tax withheld must be within 0..amount", param="tax")


def _entry(
    source: str, description: str, lines: list[tuple[AccountRef, int]], at: datetime
) -> JournalEntry:
    return build_entry(source, description, (Posting(a, v) for a, v in lines if v), at)


def created_entry(
    payout_id: str, payee_id: str, currency: str, gross: int, tax: int, *, at: datetime
) -> JournalEntry:
    _check(gross, tax)
    payable, in_payout, tax_payable = _accounts(payee_id, currency)
    return _entry(
        payout_source(payout_id, "created"),
        f"payout {payout_id} to {payee_id}",
        [(payable, gross), (in_payout, -(gross - tax)), (tax_payable, -tax)],
        at,
    )


def paid_entry(
    payout_id: str, payee_id: str, currency: str, gross: int, tax: int, *, at: datetime
) -> JournalEntry:
    _check(gross, tax)
    _payable, in_payout, _tax = _accounts(payee_id, currency)
    cash = AccountRef(AccountKind.CASH, currency)
    return _entry(
        payout_source(payout_id, "paid"),
        f"payout {payout_id} paid",
        [(in_payout, gross - tax), (cash, -(gross - tax))],
        at,
    )


def failed_entry(
    payout_id: str, payee_id: str, currency: str, gross: int, tax: int, *, at: datetime
) -> JournalEntry:
    _check(gross, tax)
    payable, in_payout, tax_payable = _accounts(payee_id, currency)
    return _entry(
        payout_source(payout_id, "failed"),
        f"payout {payout_id} failed: the money is available again",
        [(payable, -gross), (in_payout, gross - tax), (tax_payable, tax)],
        at,
    )


def returned_entry(
    payout_id: str, payee_id: str, currency: str, gross: int, tax: int, *, at: datetime
) -> JournalEntry:
    _check(gross, tax)
    payable, _in_payout, tax_payable = _accounts(payee_id, currency)
    cash = AccountRef(AccountKind.CASH, currency)
    return _entry(
        payout_source(payout_id, "returned"),
        f"payout {payout_id} returned by the bank: the money is available again",
        [(cash, gross - tax), (payable, -gross), (tax_payable, tax)],
        at,
    )


def payout_amount(available: int, requested: int | None, minimum: int) -> int:
    """What a payout takes: ``requested``, or everything available; never below the
    minimum and never more than available (raises ValidationFailed naming ``amount``)."""
    amount = available if requested is None else requested
    if requested is not None and (type(requested) is not int or requested <= 0):
        raise ValidationFailed("amount must be a positive int", param="amount")
    if amount < minimum:
        raise ValidationFailed(
            f"a payout must be at least {minimum}; {amount} is asked or available",
            code="payout_below_minimum",
            param="amount",
        )
    return amount
