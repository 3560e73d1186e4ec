"""Split tender: part of an order paid from the buyer's balance, the rest through a
channel (``{"channel": "alipay", "method": "page", "wallet_amount": 500}``).

The balance part is a ``wallet`` payment of its own, linked from the channel payment
(``wallet_part_id``). It is **held** when the channel payment is created: the balance is
debited (the conditional UPDATE: never below zero) and the part waits ``pending``; the
ledger is not touched, so the wallet's liability still counts it (``ledger verify`` adds
held parts to the balance). When the channel payment succeeds the part is **committed**
in the same transaction (``succeeded``, and the order's entry is split over both
payments); when it fails, closes or its money arrives for an order that no longer
wants it, the part is **released**: the very lots it took are given back and it is
``closed``. Each step is a compare-and-set on the part, so it happens once.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from tuition.domain.catalog import ProductKind
from tuition.domain.errors import Conflict, ValidationFailed
from tuition.domain.ids import Prefix, new_id
from tuition.domain.money import get_currency
from tuition.domain.payments import PaymentStatus
from tuition.domain.wallet import WALLET_CHANNEL, TransactionCause
from tuition.services.balances import debit, release
from tuition.store.orders import OrderRecord
from tuition.store.payments import PaymentRecord, new_attempt
from tuition.store.uow import UnitOfWork

SPLIT_METHOD = "split"  # the method of a wallet payment that is the balance part of another


def check_split(order: OrderRecord, wallet_amount: int) -> None:
    """Refuse a balance part the order cannot take (400 naming ``wallet_amount``)."""
    if type(wallet_amount) is not int or wallet_amount <= 0:
        raise ValidationFailed("wallet_amount must be a positive integer", param="wallet_amount")
    if wallet_amount >= order.total:
        raise ValidationFailed(
            f"wallet_amount {wallet_amount} leaves nothing for the channel (the order is "
            f'{order.total}); pay it all with {{"channel": "wallet"}}',
            code="wallet_amount_too_large",
            param="wallet_amount",
        )
    if get_currency(order.currency).virtual:
        raise ValidationFailed(
            "a coin-priced order is paid in coins only", code="coins_only", param="wallet_amount"
        )
    if any(line.kind == ProductKind.TOPUP.value for line in order.lines):
        raise Conflict(
            "a top-up is paid through a payment channel, not from the balance it credits",
            code="wallet_cannot_pay_topup",
            param="wallet_amount",
        )


async def hold_wallet_part(
    uow: UnitOfWork, order: OrderRecord, wallet_amount: int, *, at: datetime
) -> PaymentRecord:
    """Inside the unit of work that creates the channel payment: debit the balance and
    store the part as a ``pending`` wallet payment. 409 ``insufficient_balance`` (naming
    the shortfall) writes nothing."""
    part = new_attempt(
        payment_id=new_id(Prefix.PAYMENT),
        order_id=order.id,
        customer_id=order.customer_id,
        channel=WALLET_CHANNEL,
        method=SPLIT_METHOD,
        app_id=WALLET_CHANNEL,
        amount=wallet_amount,
        currency=order.currency,
        at=at,
    )
    part = _pending(part)
    await uow.payments.add(part)
    await debit(
        uow,
        customer_id=order.customer_id,
        currency=order.currency,
        amount=wallet_amount,
        cause=TransactionCause.ORDER,
        cause_id=part.id,
        description=f"held for order {order.id}",
        created_by="customer",
        at=at,
    )
    return part


def _pending(part: PaymentRecord) -> PaymentRecord:
    return replace(part, status=PaymentStatus.PENDING)


async def commit_wallet_part(uow: UnitOfWork, payment: PaymentRecord, *, at: datetime) -> bool:
    """The channel payment succeeded: the part succeeds with it. False if the part was
    released before (the channel payment had ended and its money came late)."""
    if payment.wallet_part_id is None:
        return True
    return await uow.payments.set_status(
        payment.wallet_part_id,
        expected=(PaymentStatus.PENDING,),
        target=PaymentStatus.SUCCEEDED,
        at=at,
        fee=0,
        succeeded_at=at,
    )


async def release_wallet_part(
    uow: UnitOfWork,
    payment: PaymentRecord,
    *,
    at: datetime,
    reason: str,
    committed: bool = False,
) -> None:
    """The channel payment ended without paying the order: give the held part back to
    the lots it came from, once. ``committed`` undoes a commit made earlier in this same
    unit of work (the order turned out paid by another attempt meanwhile)."""
    if payment.wallet_part_id is None:
        return
    expected = PaymentStatus.SUCCEEDED if committed else PaymentStatus.PENDING
    if not await uow.payments.set_status(
        payment.wallet_part_id,
        expected=(expected,),
        target=PaymentStatus.CLOSED,
        at=at,
        closed_at=at,
        succeeded_at=None,
        failure_code=reason,
        failure_message=f"the channel payment {payment.id} did not pay the order",
    ):
        return
    held = await uow.wallets.transaction_by_cause(
        TransactionCause.ORDER.value, payment.wallet_part_id
    )
    if held is None:
        raise AssertionError(f"wallet part {payment.wallet_part_id} has no hold")
    await release(
        uow,
        held,
        cause_id=payment.wallet_part_id,
        description=f"released: payment {payment.id} did not pay order {payment.order_id}",
        at=at,
    )
    await uow.events.emit(
        "payment.closed",
        payment.wallet_part_id,
        {"id": payment.wallet_part_id, "order_id": payment.order_id, "part_of": payment.id},
        at=at,
    )


async def end_payment(
    uow: UnitOfWork,
    payment: PaymentRecord,
    target: PaymentStatus,
    *,
    at: datetime,
    emit: bool = True,
    failure_code: str | None = None,
    failure_message: str | None = None,
) -> bool:
    """Inside an open unit of work: fail or close an open channel payment (compare-and-
    set from ``created``/``pending``), release its held balance part, and emit
    ``payment.failed``/``payment.closed``. True for the one caller that moved it."""
    moved = await uow.payments.set_status(
        payment.id,
        expected=(PaymentStatus.CREATED, PaymentStatus.PENDING),
        target=target,
        at=at,
        closed_at=at,
        failure_code=failure_code,
        failure_message=None if failure_message is None else failure_message[:500],
    )
    if not moved:
        return False
    await release_wallet_part(uow, payment, at=at, reason=f"channel_payment_{target}")
    if emit:
        await uow.events.emit(f"payment.{target.value}", payment.id, payment_data(payment), at=at)
    return True


def payment_data(payment: PaymentRecord) -> dict[str, object]:
    """A payment as its events carry it."""
    return {
        "id": payment.id,
        "order_id": payment.order_id,
        "amount": payment.amount,
        "currency": payment.currency,
        "channel": payment.channel,
        "customer_id": payment.customer_id,
    }
