"""A paid order's receipt: what was bought, the amounts with tax, how and when it was
paid, and what was refunded since. Read-only: the numbers are the order's own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from tuition.domain.errors import Conflict, NotFound
from tuition.domain.orders import OrderStatus
from tuition.domain.payments import PaymentStatus, RefundStatus
from tuition.store.orders import OrderRecord
from tuition.store.payments import PaymentFilter, PaymentRecord
from tuition.store.refunds import RefundRecord
from tuition.store.uow import UnitOfWork

RECEIPTED = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED})
_MAX_PAYMENTS = 100


@dataclass(frozen=True, slots=True)
class Receipt:
    merchant_name: str
    order: OrderRecord
    payments: list[PaymentRecord]  # the succeeded payments that paid the order
    refunds: list[RefundRecord]  # every refund asked, failed ones included
    zone: tzinfo

    @property
    def paid_at_local(self) -> datetime | None:
        paid = self.order.paid_at
        return None if paid is None else paid.astimezone(self.zone)

    @property
    def refunded(self) -> int:
        """Refunded so far: the succeeded refunds, which is the order's own figure."""
        return self.order.amount_refunded

    @property
    def net(self) -> int:
        return self.order.total - self.order.amount_refunded


async def receipt_of(
    uow: UnitOfWork, order_id: str, *, merchant_name: str, zone: tzinfo
) -> Receipt:
    """The receipt of a paid order; NotFound for an unknown one and Conflict
    ``order_not_paid`` for one that was never paid (it has no receipt)."""
    async with uow:
        order = await uow.orders.get(order_id)
        if order is None:
            raise NotFound(f"no order {order_id}", param="order_id")
        if order.status not in RECEIPTED:
            raise Conflict(
                f"order {order_id} is {order.status}: only a paid order has a receipt",
                code="order_not_paid",
                param="order_id",
            )
        found, _ = await uow.payments.find(
            PaymentFilter(order_id=order_id, status=PaymentStatus.SUCCEEDED),
            limit=_MAX_PAYMENTS,
            starting_after=None,
        )
        refunds = await uow.refunds.of_order(order_id)
    paid = sorted(
        (p for p in found if p.duplicate_of is None), key=lambda p: (p.succeeded_at, p.id)
    )
    return Receipt(
        merchant_name=merchant_name,
        order=order,
        payments=paid,
        refunds=sorted(refunds, key=lambda r: r.id),
        zone=zone,
    )


def refund_done(refund: RefundRecord) -> bool:
    return RefundStatus(refund.status) is RefundStatus.SUCCEEDED
