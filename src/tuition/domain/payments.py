"""Payment and refund statuses, their state machines, and the payment formulas.

The transition functions are the only sanctioned way to change a status: services call
them before the compare-and-set ``UPDATE`` so an illegal move fails loudly instead of
silently overwriting a terminal state. A move to the same status is illegal too; a
duplicate notification is detected by the caller (the row already has that status),
not waved through here.

All amounts are ``int`` minor units; rates are ``Decimal``. Only :func:`channel_fee`
rounds to minor units, half-up via :func:`tuition.domain.money.apply_rate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, localcontext
from enum import StrEnum

from tuition.domain.errors import IllegalTransition, ValidationFailed
from tuition.domain.money import Rounding, apply_rate, check_amount

__all__ = [
    "PAYMENT_TRANSITIONS",
    "REFUND_TRANSITIONS",
    "PaymentStatus",
    "RefundStatus",
    "channel_fee",
    "exceeds_risk_threshold",
    "net_to_platform",
    "payment_transition",
    "refund_transition",
    "risk_score",
    "success_rate",
    "surcharged_amount",
]

# Wide enough that products and quotients of any storable amount stay exact.
_PRECISION = 60


class PaymentStatus(StrEnum):
    CREATED = "created"
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CLOSED = "closed"


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


PAYMENT_TRANSITIONS: Mapping[PaymentStatus, frozenset[PaymentStatus]] = {
    # A channel may report success or failure without ever reporting "pending".
    PaymentStatus.CREATED: frozenset(
        {
            PaymentStatus.PENDING,
            PaymentStatus.SUCCEEDED,
            PaymentStatus.FAILED,
            PaymentStatus.CLOSED,
        }
    ),
    PaymentStatus.PENDING: frozenset(
        {PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CLOSED}
    ),
    PaymentStatus.SUCCEEDED: frozenset(),
    PaymentStatus.FAILED: frozenset(),
    # An attempt closed on our side (expiry, cancel, an orphan the gateway said it never
    # saw) while the buyer was paying it: the money is real, so it is taken and, the
    # order having moved on, refunded. Ignoring it would keep the buyer's money.
    PaymentStatus.CLOSED: frozenset({PaymentStatus.SUCCEEDED}),
}

REFUND_TRANSITIONS: Mapping[RefundStatus, frozenset[RefundStatus]] = {
    RefundStatus.PENDING: frozenset({RefundStatus.SUCCEEDED, RefundStatus.FAILED}),
    RefundStatus.SUCCEEDED: frozenset(),
    RefundStatus.FAILED: frozenset(),
}


def payment_transition(current: PaymentStatus, target: PaymentStatus) -> PaymentStatus:
    """Return ``target`` if a payment may move there from ``current``, else raise."""
    if target not in PAYMENT_TRANSITIONS[current]:
        raise IllegalTransition(
            f"payment cannot move from '{current}' to '{target}'", code="payment_illegal_transition"
        )
    return target


def refund_transition(current: RefundStatus, target: RefundStatus) -> RefundStatus:
    """Return ``target`` if a refund may move there from ``current``, else raise."""
    if target not in REFUND_TRANSITIONS[current]:
        raise IllegalTransition(
            f"refund cannot move from '{current}' to '{target}'", code="refund_illegal_transition"
        )
    return target


def _check_amount(value: int, param: str) -> None:
    # bool is an int subclass; True cents is a bug, not an amount.
    if type(value) is not int or value < 0:
        raise ValidationFailed(f"{param} must be a non-negative integer", param=param)
    check_amount(value, param=param)


def _check_rate(rate: Decimal, param: str) -> None:
    if not isinstance(rate, Decimal) or not rate.is_finite() or rate < 0:
        raise ValidationFailed(f"{param} must be a finite non-negative Decimal", param=param)


def channel_fee(amount: int, fee_rate: Decimal) -> int:
    """The channel's fee on ``amount``: ``amount * fee_rate`` rounded half-up."""
    _check_amount(amount, "amount")
    _check_rate(fee_rate, "fee_rate")
    if fee_rate >= 1:
        raise ValidationFailed("fee_rate must be below 1", param="fee_rate")
    return apply_rate(amount, fee_rate, Rounding.HALF_UP)


def surcharged_amount(amount: int, fee_rate: Decimal) -> int:
    """What the buyer pays in surcharge mode: ``amount * (1 + fee_rate)``.

    Computed as ``amount + channel_fee(amount, fee_rate)`` (equal, since ``amount`` is
    whole) so the surcharge always equals the fee the channel is expected to take.
    """
    return amount + channel_fee(amount, fee_rate)


def success_rate(succeeded: int, attempted: int) -> Decimal:
    """``succeeded / attempted`` as an unrounded Decimal in [0, 1]; 0 when nothing was tried."""
    _check_amount(succeeded, "succeeded")
    _check_amount(attempted, "attempted")
    if succeeded > attempted:
        raise ValidationFailed("succeeded cannot exceed attempted", param="succeeded")
    if attempted == 0:
        return Decimal(0)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return Decimal(succeeded) / Decimal(attempted)


def risk_score(amount: int, coefficient: Decimal) -> Decimal:
    """``amount * coefficient``, exact (amount in minor units)."""
    _check_amount(amount, "amount")
    _check_rate(coefficient, "coefficient")
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return Decimal(amount) * coefficient


def exceeds_risk_threshold(amount: int, coefficient: Decimal, threshold: Decimal) -> bool:
    """True when the risk score is strictly above ``threshold`` (equal passes)."""
    if not isinstance(threshold, Decimal) or not threshold.is_finite():
        raise ValidationFailed("threshold must be a finite Decimal", param="threshold")
    return risk_score(amount, coefficient) > threshold


def net_to_platform(paid: int, fee: int, creator_share: int, tax: int) -> int:
    """``paid - fee - creator_share - tax``.

    May be negative (a loss-making sale, e.g. a fee above a tiny platform cut); the
    caller decides whether that is allowed.
    """
    for value, param in (
        (paid, "paid"),
        (fee, "fee"),
        (creator_share, "creator_share"),
        (tax, "tax"),
    ):
        _check_amount(value, param)
    return paid - fee - creator_share - tax
