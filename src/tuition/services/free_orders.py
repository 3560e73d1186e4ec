"""Completing a free order: a total of 0 (a 100 % coupon) needs no channel and no money.

It takes the one paid path all the same (services/settlement.py ``settle_free_order``):
the order turns paid, entitlements are granted and ``order.paid`` is sent, in one
transaction held on the order at total 0 (so a coupon removed meanwhile makes it fail
rather than give away what now costs money). No payment, no gateway call, no ledger
entry: nothing moved.
"""

from __future__ import annotations

from tuition.clock import Clock
from tuition.domain.catalog import ProductKind
from tuition.domain.errors import Conflict, NotFound
from tuition.domain.orders import OrderStatus
from tuition.services.payments import hold_payable
from tuition.services.settlement import settle_free_order
from tuition.store.orders import OrderRecord
from tuition.store.uow import UnitOfWork


async def complete_free_order(order_id: str, uow: UnitOfWork, *, clock: Clock) -> OrderRecord:
    """Pay an order whose total is 0. Asked again for an order it already completed, it
    answers the paid order and changes nothing (a second click, a retried request).

    Refused: an order that costs something (409 ``order_not_free``), a top-up (409
    ``topup_not_free``: a balance is credited only for money received), and an order
    that is not payable (409 ``order_not_payable``)."""
    now = clock.now()
    try:
        async with uow:
            order = await uow.orders.get(order_id)
            if order is None:
                raise NotFound(f"no order {order_id!r}", code="order_not_found", param="order_id")
            if _completed(order):
                return order
            if order.status is OrderStatus.PENDING_PAYMENT and order.total != 0:
                raise Conflict(
                    f"order {order.id} costs {order.total} {order.currency}: pay it through "
                    "a channel",
                    code="order_not_free",
                )
            if any(line.kind == ProductKind.TOPUP.value for line in order.lines):
                raise Conflict(
                    "a top-up credits the balance only with money received; it cannot be free",
                    code="topup_not_free",
                )
            await hold_payable(uow, order, at=now)
            await settle_free_order(uow, order, at=now)
            await uow.commit()
    except Conflict as exc:
        # A racing completion committed between our read and our hold: it did the work.
        if exc.code != "order_changed":
            raise
        async with uow:
            raced = await uow.orders.get(order_id)
        if raced is None or not _completed(raced):
            raise
        return raced
    async with uow:
        done = await uow.orders.get(order_id)
    assert done is not None
    return done


def _completed(order: OrderRecord) -> bool:
    return order.status is OrderStatus.PAID and order.total == 0
