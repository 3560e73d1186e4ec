"""The admin console: dashboard, orders and their timelines, payments, the ledger.

Read-only pages over the same services as the API; the one action (verify the ledger)
is a CSRF-checked POST. Filters come from query strings and are parsed leniently: an
empty or malformed value means "no filter", never an error page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from tuition.api.deps import get_container
from tuition.domain.errors import NotFound
from tuition.domain.ledger import AccountType, display_balance
from tuition.domain.orders import OrderStatus
from tuition.domain.payments import PaymentStatus
from tuition.services import admin as admin_service
from tuition.services.ledger import verify_ledger
from tuition.store.admin import AdminRepository, OrderSearch
from tuition.store.payments import PaymentFilter
from tuition.web import admin_dashboard, admin_session, labels
from tuition.web.admin_session import Operator, OperatorDep, csrf_ok, refused
from tuition.web.pages import render

router = APIRouter(tags=["admin console"], include_in_schema=False)
routers = [admin_session.router, admin_dashboard.router, router]

PAGE = 50
Text = Annotated[str, Query(max_length=200)]


def _page(
    request: Request, template: str, operator: Operator, section: str, **ctx: Any
) -> Response:
    context = {"operator": operator, "csrf_token": operator.csrf_token, "section": section}
    return render(request, template, {**context, "labels": labels, **ctx})


def _day(text: str) -> datetime | None:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _enum(kind: type[OrderStatus] | type[PaymentStatus], text: str) -> Any:
    try:
        return kind(text) if text else None
    except ValueError:
        return None


@router.get("/admin/orders")
async def orders(
    request: Request,
    operator: OperatorDep,
    q: Text = "",
    status: Text = "",
    channel: Text = "",
    customer: Text = "",
    start: Annotated[str, Query(alias="from", max_length=10)] = "",
    end: Annotated[str, Query(alias="to", max_length=10)] = "",
    after: Text = "",
) -> Response:
    container = get_container(request)
    last_day = _day(end)
    search = OrderSearch(
        text=q.strip() or None,
        status=_enum(OrderStatus, status),
        channel=channel or None,
        customer_id=customer.strip() or None,
        created_gte=_day(start),
        created_lt=last_day + timedelta(days=1) if last_day else None,
    )
    async with container.uow() as uow:
        found, more = await AdminRepository(uow.conn).search_orders(
            search, limit=PAGE, starting_after=after or None
        )
    filters = {
        "q": q,
        "status": status,
        "channel": channel,
        "customer": customer,
        "from": start,
        "to": end,
    }
    return _page(
        request,
        "admin/orders.html",
        operator,
        "orders",
        orders=found,
        more=more,
        filters=filters,
        statuses=list(OrderStatus),
        channels=[c.slug for c in container.registry],
        next_url=_next(request, found[-1].id) if more and found else None,
    )


def _next(request: Request, last_id: str) -> str:
    return str(request.url.include_query_params(after=last_id))


@router.get("/admin/orders/{order_id}")
async def order(request: Request, operator: OperatorDep, order_id: str) -> Response:
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
    return _page(
        request,
        "admin/order.html",
        operator,
        "orders",
        t=timeline,
        order=timeline.order,
        items=_timeline_items(timeline),
    )


@dataclass(frozen=True, slots=True)
class Item:
    at: datetime
    kind: str
    obj: Any
    extra: Any = None


def _timeline_items(t: admin_service.OrderTimeline) -> list[Item]:
    o = t.order
    items = [Item(o.created_at, "placed", o)]
    for trail in t.payments:
        p = trail.payment
        items.append(Item(p.created_at, "attempt", p))
        items += [Item(n.received_at, "notification", n, p) for n in trail.notifications]
        if p.succeeded_at:
            items.append(Item(p.succeeded_at, "payment_succeeded", p))
        items += [Item(r.created_at, "refund", r) for r in trail.refunds]
    items += [Item(e.occurred_at, "entry", e) for e in t.entries]
    items += [Item(e.event.created_at, "event", e) for e in t.events]
    if o.paid_at:
        items.append(Item(o.paid_at, "paid", o))
    if o.closed_at:
        items.append(Item(o.closed_at, "closed", o))
    order = {
        "placed": 0,
        "attempt": 1,
        "notification": 2,
        "payment_succeeded": 3,
        "paid": 4,
        "entry": 5,
        "refund": 6,
        "closed": 7,
        "event": 8,
    }
    # Times show to the second; within one, list causes before their effects (a
    # notification is stamped when its audit row is written, after what it caused).
    return sorted(items, key=lambda i: (i.at.replace(microsecond=0), order[i.kind]))


@router.get("/admin/payments")
async def payments(
    request: Request,
    operator: OperatorDep,
    status: Text = "",
    channel: Text = "",
    customer: Text = "",
    start: Annotated[str, Query(alias="from", max_length=10)] = "",
    end: Annotated[str, Query(alias="to", max_length=10)] = "",
    after: Text = "",
) -> Response:
    container = get_container(request)
    last_day = _day(end)
    filt = PaymentFilter(
        customer_id=customer.strip() or None,
        status=_enum(PaymentStatus, status),
        channel=channel or None,
        created_gte=_day(start),
        created_lt=last_day + timedelta(days=1) if last_day else None,
    )
    async with container.uow() as uow:
        found, more = await uow.payments.find(filt, limit=PAGE, starting_after=after or None)
    filters = {"status": status, "channel": channel, "customer": customer, "from": start, "to": end}
    return _page(
        request,
        "admin/payments.html",
        operator,
        "payments",
        payments=found,
        more=more,
        filters=filters,
        statuses=list(PaymentStatus),
        channels=[c.slug for c in container.registry],
        next_url=_next(request, found[-1].id) if more and found else None,
    )


@router.get("/admin/ledger")
async def ledger(request: Request, operator: OperatorDep) -> Response:
    return await _ledger(request, operator, report=None)


@router.post("/admin/ledger/verify")
async def ledger_verify(
    request: Request, operator: OperatorDep, csrf_token: Annotated[str, Form(max_length=100)] = ""
) -> Response:
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    report = await verify_ledger(get_container(request).uow())
    return await _ledger(request, operator, report=report)


async def _ledger(request: Request, operator: Operator, *, report: Any) -> Response:
    async with get_container(request).uow() as uow:
        accounts = await AdminRepository(uow.conn).account_balances()
    rows = [
        {"account": a, "shown": display_balance(AccountType(a.type), a.balance)} for a in accounts
    ]
    totals: dict[str, int] = {}
    for a in accounts:
        totals[a.currency] = totals.get(a.currency, 0) + a.balance
    return _page(
        request,
        "admin/ledger.html",
        operator,
        "ledger",
        rows=rows,
        totals=totals,
        report=report,
        zero=Decimal(0),
    )
