"""The console's order page: the order's summary and pricing, what may still be refunded
(with the refund form), its refunds, and its timeline: every attempt, notification,
ledger entry, refund and webhook in the order they happened."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from tuition.api.deps import Container, get_container
from tuition.api.refunds import refund_deps
from tuition.domain.errors import NotFound
from tuition.domain.ledger import refund_source
from tuition.domain.orders import OrderStatus
from tuition.domain.refunds import RefundReason
from tuition.services import admin as admin_service
from tuition.services import refunds as refund_service
from tuition.web.admin_dashboard import page
from tuition.web.admin_session import Operator, OperatorDep
from tuition.web.pages import render

router = APIRouter(tags=["admin console"], include_in_schema=False)

REFUNDABLE = (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED)


@dataclass(frozen=True, slots=True)
class Problem:
    """Why an action was not done, shown at the top of the order page."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class RefundLine:
    """One order line in the refund form."""

    index: int
    title: str
    product_id: str
    total: int
    refunded: int  # held by pending and succeeded refunds
    refundable: int  # what the rules allow now
    with_override: int  # what an override allows: all that was not refunded yet
    refused_by: str | None
    message: str | None


@router.get("/admin/orders/{order_id}")
async def order(
    request: Request,
    operator: OperatorDep,
    order_id: str,
    refund: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    return await order_page(request, operator, order_id, shown_refund=refund)


async def order_page(
    request: Request,
    operator: Operator,
    order_id: str,
    *,
    problem: Problem | None = None,
    shown_refund: str | None = None,
    form: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    """The order page; ``problem`` explains a refused action, ``shown_refund`` names a
    refund just made (its status is read, never taken from the request)."""
    container = get_container(request)
    try:
        timeline = await admin_service.order_timeline(container.uow(), order_id)
    except NotFound:
        return render(
            request,
            "admin/not_found.html",
            {"operator": operator, "csrf_token": operator.csrf_token, "section": "orders"},
            status_code=404,
        )
    just_made = next((r for r in timeline.refunds if r.id == shown_refund), None)
    lines = await refund_lines(container, timeline) if timeline.order.status in REFUNDABLE else []
    return page(
        request,
        "admin/order.html",
        operator,
        "orders",
        t=timeline,
        order=timeline.order,
        items=_timeline_items(timeline),
        refund_lines=lines,
        refundable=sum(line.refundable for line in lines),
        reasons=list(RefundReason),
        problem=problem,
        just_made=just_made,
        form=form or {"mode": "all", "reason": RefundReason.REQUESTED_BY_CUSTOMER.value},
        status_code=status_code,
    )


async def refund_lines(
    container: Container, timeline: admin_service.OrderTimeline
) -> list[RefundLine]:
    preview = await refund_service.preview_refund(
        container.uow(), timeline.order.id, deps=refund_deps(container)
    )
    return [
        RefundLine(
            index=line.index,
            title=line.title,
            product_id=line.product_id,
            total=line.total,
            refunded=line.refunded,
            refundable=line.refundable,
            with_override=max(0, line.total - line.refunded),
            refused_by=line.refused_by,
            message=line.message,
        )
        for line in preview.lines
    ]


@dataclass(frozen=True, slots=True)
class Item:
    at: datetime
    kind: str
    obj: Any
    extra: Any = None


# Times show to the second; within one, list causes before their effects (a
# notification is stamped when its audit row is written, after what it caused).
_RANK = {
    "placed": 0,
    "attempt": 1,
    "notification": 2,
    "payment_succeeded": 3,
    "paid": 4,
    "entry": 5,
    "refund": 6,
    "refund_notification": 7,
    "refund_entry": 7,
    "refund_succeeded": 8,
    "refund_failed": 8,
    "closed": 9,
    "event": 10,
}


def _timeline_items(t: admin_service.OrderTimeline) -> list[Item]:
    o = t.order
    items = [Item(o.created_at, "placed", o)]
    for trail in t.payments:
        p = trail.payment
        items.append(Item(p.created_at, "attempt", p, trail.refunds[-1] if trail.refunds else None))
        for n in trail.notifications:
            # A refund's notification is its effect: list it after the refund was asked.
            kind = "refund_notification" if (n.event or "").startswith("refund") else "notification"
            items.append(Item(n.received_at, kind, n, p))
        if p.succeeded_at:
            items.append(Item(p.succeeded_at, "payment_succeeded", p))
        for r in trail.refunds:
            items.append(Item(r.created_at, "refund", r, p))
            if r.succeeded_at:
                items.append(Item(r.succeeded_at, "refund_succeeded", r))
            if r.failed_at:
                items.append(Item(r.failed_at, "refund_failed", r))
    refund_sources = {refund_source(r.id) for r in t.refunds}
    for e in t.entries:
        kind = "refund_entry" if e.source in refund_sources else "entry"
        items.append(Item(e.occurred_at, kind, e))
    items += [Item(e.event.created_at, "event", e) for e in t.events]
    if o.paid_at:
        items.append(Item(o.paid_at, "paid", o))
    if o.closed_at:
        items.append(Item(o.closed_at, "closed", o))
    return sorted(items, key=lambda i: (i.at.replace(microsecond=0), _RANK[i.kind]))
