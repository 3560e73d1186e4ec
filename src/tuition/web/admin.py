"""The admin console: dashboard, orders, payments, refunds, customers, the ledger.

The pages read the same services as the API; the actions (refund, retry a refund, verify
the ledger) are CSRF-checked POSTs. The order page is :mod:`tuition.web.admin_order`,
refunds are :mod:`tuition.web.admin_refunds`, a customer's wallet is
:mod:`tuition.web.admin_customer`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from tuition.api.deps import get_container
from tuition.domain.ledger import AccountType, display_balance
from tuition.domain.operators import Permission
from tuition.domain.orders import OrderStatus
from tuition.domain.payments import PaymentStatus
from tuition.services import admin as admin_service
from tuition.services.ledger import verify_ledger
from tuition.store.admin import AdminRepository, OrderSearch
from tuition.store.payments import PaymentFilter
from tuition.web import admin_dashboard, admin_session
from tuition.web.admin_audit import router as audit_router
from tuition.web.admin_customer import router as customer_router
from tuition.web.admin_dashboard import page as _page
from tuition.web.admin_filters import PAGE, Text, choice, day_range, next_url
from tuition.web.admin_operators import router as operators_router
from tuition.web.admin_order import router as order_router
from tuition.web.admin_payouts import router as payouts_router
from tuition.web.admin_reconciliation import router as reconciliation_router
from tuition.web.admin_refunds import router as refunds_router
from tuition.web.admin_roles import requires
from tuition.web.admin_session import Operator, OperatorDep, csrf_ok, refused
from tuition.web.admin_subscriptions import router as subscriptions_router
from tuition.web.admin_two_factor import router as two_factor_router

router = APIRouter(tags=["admin console"], include_in_schema=False)
routers = [
    admin_session.router,
    two_factor_router,
    admin_dashboard.router,
    refunds_router,
    reconciliation_router,
    order_router,
    customer_router,
    payouts_router,
    subscriptions_router,
    operators_router,
    audit_router,
    router,
]

Day = Annotated[str, Query(alias="from", max_length=10)]
UntilDay = Annotated[str, Query(alias="to", max_length=10)]


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
    after: Text = "",
) -> Response:
    container = get_container(request)
    created_gte, created_lt = day_range(start, end, container.settings.zone)
    search = OrderSearch(
        text=q.strip() or None,
        status=choice(OrderStatus, status),
        channel=channel or None,
        customer_id=customer.strip() or None,
        created_gte=created_gte,
        created_lt=created_lt,
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
        next_url=next_url(request, found[-1].id) if more and found else None,
    )


@router.get("/admin/payments")
async def payments(
    request: Request,
    operator: OperatorDep,
    status: Text = "",
    channel: Text = "",
    customer: Text = "",
    start: Day = "",
    end: UntilDay = "",
    after: Text = "",
) -> Response:
    container = get_container(request)
    created_gte, created_lt = day_range(start, end, container.settings.zone)
    filt = PaymentFilter(
        customer_id=customer.strip() or None,
        status=choice(PaymentStatus, status),
        channel=channel or None,
        created_gte=created_gte,
        created_lt=created_lt,
    )
    async with container.uow() as uow:
        found, more = await uow.payments.find(filt, limit=PAGE, starting_after=after or None)
    automatic = await admin_service.automatic_refunds(container.uow(), found)
    filters = {"status": status, "channel": channel, "customer": customer, "from": start, "to": end}
    return _page(
        request,
        "admin/payments.html",
        operator,
        "payments",
        payments=found,
        automatic=automatic,
        more=more,
        filters=filters,
        statuses=list(PaymentStatus),
        channels=[c.slug for c in container.registry],
        next_url=next_url(request, found[-1].id) if more and found else None,
    )


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
