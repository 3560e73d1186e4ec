"""The admin console: dashboard, orders, payments, refunds, customers, the ledger.

The pages read the same services as the API; the actions (refund, retry a refund, verify
the ledger) are CSRF-checked POSTs. The order page is :mod:`tuition.web.admin_order`,
refunds are :mod:`tuition.web.admin_refunds`, a customer's wallet is
:mod:`tuition.web.admin_customer`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from tuition.api.deps import get_container
from tuition.domain.ledger import AccountType, display_balance
from tuition.domain.money import format_amount, get_currency
from tuition.domain.operators import Permission
from tuition.domain.orders import OrderStatus
from tuition.domain.payments import PaymentStatus
from tuition.services import admin as admin_service
from tuition.services.ledger import verify_ledger
from tuition.store.admin import ORDER_SORTS, AdminRepository, OrderSearch, PaymentSearch
from tuition.web import admin_dashboard, admin_session
from tuition.web.admin_audit import router as audit_router
from tuition.web.admin_bank_transfers import router as bank_transfers_router
from tuition.web.admin_catalog import routers as catalog_routers
from tuition.web.admin_customer import router as customer_router
from tuition.web.admin_dashboard import page as _page
from tuition.web.admin_developers import router as developers_router
from tuition.web.admin_filters import (
    BAD_CHOICE,
    PAGE,
    Day,
    Offset,
    Text,
    UntilDay,
    checked_choice,
    checked_days,
    checked_sort,
    csv_refused,
    csv_response,
    local_time,
    paging,
)
from tuition.web.admin_notifications import router as notifications_router
from tuition.web.admin_operators import router as operators_router
from tuition.web.admin_order import router as order_router
from tuition.web.admin_payment import router as payment_router
from tuition.web.admin_payout_runs import router as payout_runs_router
from tuition.web.admin_payouts import router as payouts_router
from tuition.web.admin_promoters import router as promoters_router
from tuition.web.admin_reconciliation import router as reconciliation_router
from tuition.web.admin_refunds import router as refunds_router
from tuition.web.admin_roles import requires
from tuition.web.admin_session import Operator, OperatorDep, csrf_ok, refused
from tuition.web.admin_subscriptions import router as subscriptions_router
from tuition.web.admin_two_factor import router as two_factor_router
from tuition.web.admin_webhooks import router as webhooks_router

router = APIRouter(tags=["admin console"], include_in_schema=False)
routers = [
    admin_session.router,
    two_factor_router,
    admin_dashboard.router,
    refunds_router,
    bank_transfers_router,
    reconciliation_router,
    order_router,
    customer_router,
    payouts_router,
    promoters_router,
    payout_runs_router,
    subscriptions_router,
    operators_router,
    audit_router,
    payment_router,
    developers_router,
    webhooks_router,
    notifications_router,
    *catalog_routers,
    router,
]


def _order_search(
    request: Request, q: str, status: str, channel: str, customer: str, start: str, end: str
) -> tuple[OrderSearch, dict[str, str]]:
    container = get_container(request)
    errors: dict[str, str] = {}
    created_gte, created_lt = checked_days(start, end, container.settings.zone, errors)
    if channel and channel not in {c.slug for c in container.registry}:
        errors["channel"] = BAD_CHOICE
    search = OrderSearch(
        text=q.strip() or None,
        status=checked_choice(OrderStatus, status, "status", errors),
        channel=channel or None,
        customer_id=customer.strip() or None,
        created_gte=created_gte,
        created_lt=created_lt,
    )
    return search, errors


@router.get("/admin/orders")
async def orders(
    request: Request,
    operator: OperatorDep,
    q: Text = "",
    status: Text = "",
    channel: Text = "",
    customer: Text = "",
    start: Day = "",
    end: UntilDay = "",
    sort: Text = "newest",
    offset: Offset = 0,
) -> Response:
    container = get_container(request)
    search, errors = _order_search(request, q, status, channel, customer, start, end)
    sort = checked_sort(sort, ORDER_SORTS, errors)
    found: list[Any] = []
    total = 0
    if not errors:
        async with container.uow() as uow:
            found, total = await AdminRepository(uow.conn).orders_page(
                search, sort=sort, limit=PAGE, offset=offset
            )
    filters = {
        "q": q,
        "status": status,
        "channel": channel,
        "customer": customer,
        "from": start,
        "to": end,
        "sort": sort,
    }
    return _page(
        request,
        "admin/orders.html",
        operator,
        "orders",
        status_code=422 if errors else 200,
        orders=found,
        filters=filters,
        errors=errors,
        sorts=ORDER_SORTS,
        statuses=list(OrderStatus),
        channels=[c.slug for c in container.registry],
        **paging(request, "/admin/orders.csv", offset=offset, shown=len(found), total=total),
    )


ORDERS_CSV = [
    "order",
    "customer",
    "status",
    "currency",
    "total",
    "discount",
    "tax",
    "coupon",
    "created",
    "paid",
]


@router.get("/admin/orders.csv")
@requires(Permission.EXPORT)
async def orders_csv(
    request: Request,
    operator: OperatorDep,
    q: Text = "",
    status: Text = "",
    channel: Text = "",
    customer: Text = "",
    start: Day = "",
    end: UntilDay = "",
) -> Response:
    """Every order as filtered on the page, streamed: amounts in major units with their
    currency, times in the platform's time zone."""
    container = get_container(request)
    search, errors = _order_search(request, q, status, channel, customer, start, end)
    if errors:
        return csv_refused(errors)
    zone = container.settings.zone

    def row(o: Any) -> list[str]:
        unit = get_currency(o.currency)
        return [
            o.id,
            o.customer_id,
            o.status.value,
            o.currency,
            format_amount(o.total, unit),
            format_amount(o.discount_total, unit),
            format_amount(o.tax_total, unit),
            o.coupon_code or "",
            local_time(o.created_at, zone),
            local_time(o.paid_at, zone),
        ]

    async def records() -> AsyncIterator[list[str]]:
        async with container.uow() as uow:
            async for order in AdminRepository(uow.conn).stream_orders(search):
                yield row(order)

    return csv_response("orders.csv", ORDERS_CSV, records())


def _payment_search(
    request: Request, q: str, status: str, channel: str, customer: str, start: str, end: str
) -> tuple[PaymentSearch, dict[str, str]]:
    container = get_container(request)
    errors: dict[str, str] = {}
    created_gte, created_lt = checked_days(start, end, container.settings.zone, errors)
    if channel and channel not in {c.slug for c in container.registry}:
        errors["channel"] = BAD_CHOICE
    chosen = checked_choice(PaymentStatus, status, "status", errors)
    search = PaymentSearch(
        text=q.strip() or None,
        status=chosen.value if chosen else None,
        channel=channel or None,
        customer_id=customer.strip() or None,
        created_gte=created_gte,
        created_lt=created_lt,
    )
    return search, errors


@router.get("/admin/payments")
async def payments(
    request: Request,
    operator: OperatorDep,
    q: Text = "",
    status: Text = "",
    channel: Text = "",
    customer: Text = "",
    start: Day = "",
    end: UntilDay = "",
    sort: Text = "newest",
    offset: Offset = 0,
) -> Response:
    container = get_container(request)
    search, errors = _payment_search(request, q, status, channel, customer, start, end)
    sort = checked_sort(sort, ORDER_SORTS, errors)
    found: list[Any] = []
    total = 0
    if not errors:
        async with container.uow() as uow:
            found, total = await AdminRepository(uow.conn).payments_page(
                search, sort=sort, limit=PAGE, offset=offset
            )
    automatic = await admin_service.automatic_refunds(container.uow(), found)
    filters = {
        "q": q,
        "status": status,
        "channel": channel,
        "customer": customer,
        "from": start,
        "to": end,
        "sort": sort,
    }
    return _page(
        request,
        "admin/payments.html",
        operator,
        "payments",
        status_code=422 if errors else 200,
        payments=found,
        automatic=automatic,
        filters=filters,
        errors=errors,
        sorts=ORDER_SORTS,
        statuses=list(PaymentStatus),
        channels=[c.slug for c in container.registry],
        **paging(request, "/admin/payments.csv", offset=offset, shown=len(found), total=total),
    )


PAYMENTS_CSV = [
    "payment",
    "order",
    "customer",
    "channel",
    "method",
    "status",
    "currency",
    "amount",
    "fee",
    "refunded",
    "trade_no",
    "created",
    "succeeded",
]


@router.get("/admin/payments.csv")
@requires(Permission.EXPORT)
async def payments_csv(
    request: Request,
    operator: OperatorDep,
    q: Text = "",
    status: Text = "",
    channel: Text = "",
    customer: Text = "",
    start: Day = "",
    end: UntilDay = "",
) -> Response:
    """Every payment as filtered on the page, streamed; amounts in major units."""
    container = get_container(request)
    search, errors = _payment_search(request, q, status, channel, customer, start, end)
    if errors:
        return csv_refused(errors)
    zone = container.settings.zone

    def row(p: Any) -> list[str]:
        unit = get_currency(p.currency)
        return [
            p.id,
            p.order_id,
            p.customer_id,
            p.channel,
            p.method,
            p.status.value,
            p.currency,
            format_amount(p.amount, unit),
            format_amount(p.fee, unit) if p.fee is not None else "",
            format_amount(p.amount_refunded, unit),
            p.channel_trade_no or "",
            local_time(p.created_at, zone),
            local_time(p.succeeded_at, zone),
        ]

    async def records() -> AsyncIterator[list[str]]:
        async with container.uow() as uow:
            async for payment in AdminRepository(uow.conn).stream_payments(search):
                yield row(payment)

    return csv_response("payments.csv", PAYMENTS_CSV, records())


@router.get("/admin/ledger")
async def ledger(request: Request, operator: OperatorDep) -> Response:
    return await _ledger(request, operator, report=None)


@router.post("/admin/ledger/verify")
@requires(Permission.LEDGER)
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
        # A creator's accounts are named by the creator's name, not only the id.
        names = await uow.catalog.creators_by_ids({a.qualifier for a in accounts if a.qualifier})
    rows = [
        {
            "account": a,
            "shown": display_balance(AccountType(a.type), a.balance),
            "name": names[a.qualifier].creator.name if a.qualifier in names else "",
        }
        for a in accounts
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
