"""The console's subscriptions: a list with MRR and churn (searched, filtered, sorted,
paged with a total and exported as filtered, as the orders list is), and a subscription's page
(its periods and renewal orders, dunning attempts, cancel and resume).

Cancel and resume are CSRF-checked POSTs through the same use cases as the API; a
refused one shows the page again with the error's code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response

from tuition.api.deps import get_container
from tuition.domain.errors import TuitionError
from tuition.domain.money import format_amount, get_currency
from tuition.domain.operators import Permission
from tuition.domain.subscriptions import SubscriptionStatus, churn_rate, monthly_recurring_revenue
from tuition.services import subscriptions as subscription_service
from tuition.store.admin_lists import SUBSCRIPTION_SORTS, AdminLists, SubscriptionSearch, Window
from tuition.store.subscriptions import SubscriptionRecord
from tuition.store.uow import UnitOfWork
from tuition.web.admin_dashboard import page
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
from tuition.web.admin_roles import requires
from tuition.web.admin_session import Operator, OperatorDep, audited, csrf_ok, refused
from tuition.web.pages import secure

router = APIRouter(tags=["admin console"], include_in_schema=False)

SubscriptionPath = Annotated[str, Path(max_length=40)]
CHURN_WINDOW = timedelta(days=30)
_PAYING = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)


async def subscription_kpis(uow: UnitOfWork, now: datetime) -> dict[str, Any]:
    """MRR per currency, paying subscriptions and churn over the last 30 days."""
    async with uow:
        facts = await uow.subscriptions.facts()
    churn = churn_rate(facts, start=now - CHURN_WINDOW, end=now)
    return {
        "any": bool(facts),
        "mrr": monthly_recurring_revenue(facts),
        "churn": None if churn is None else float(churn),
        "live": sum(1 for f in facts if f.status in _PAYING),
    }


def _subscription_search(
    request: Request, q: str, status: str, channel: str, customer: str, start: str, end: str
) -> tuple[SubscriptionSearch, dict[str, str]]:
    container = get_container(request)
    errors: dict[str, str] = {}
    created_gte, created_lt = checked_days(start, end, container.settings.zone, errors)
    if channel and channel not in {c.slug for c in container.registry}:
        errors["channel"] = BAD_CHOICE
    search = SubscriptionSearch(
        text=q.strip() or None,
        status=checked_choice(SubscriptionStatus, status, "status", errors),
        channel=channel or None,
        customer_id=customer.strip() or None,
        window=Window(created_gte, created_lt),
    )
    return search, errors


@router.get("/admin/subscriptions")
async def subscriptions(
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
    now = container.clock.now()
    search, errors = _subscription_search(request, q, status, channel, customer, start, end)
    sort = checked_sort(sort, SUBSCRIPTION_SORTS, errors)
    found: list[Any] = []
    total = 0
    if not errors:
        async with container.uow() as uow:
            found, total = await AdminLists(uow.conn).subscriptions_page(
                search, sort=sort, limit=PAGE, offset=offset
            )
    kpis = await subscription_kpis(container.uow(), now)
    filters = {
        "q": q,
        "status": status,
        "channel": channel,
        "customer": customer,
        "from": start,
        "to": end,
        "sort": sort,
    }
    return page(
        request,
        "admin/subscriptions.html",
        operator,
        "subscriptions",
        status_code=422 if errors else 200,
        subscriptions=found,
        filters=filters,
        errors=errors,
        sorts=SUBSCRIPTION_SORTS,
        statuses=list(SubscriptionStatus),
        channels=[c.slug for c in container.registry],
        mrr=kpis["mrr"],
        churn=kpis["churn"],
        live=kpis["live"],
        **paging(request, "/admin/subscriptions.csv", offset=offset, shown=len(found), total=total),
    )


SUBSCRIPTIONS_CSV = [
    "subscription",
    "customer",
    "membership",
    "status",
    "channel",
    "method",
    "currency",
    "credit",
    "auto_renew",
    "cancel_at_period_end",
    "period_start",
    "period_end",
    "canceled",
    "created",
]


@router.get("/admin/subscriptions.csv")
@requires(Permission.EXPORT)
async def subscriptions_csv(
    request: Request,
    operator: OperatorDep,
    q: Text = "",
    status: Text = "",
    channel: Text = "",
    customer: Text = "",
    start: Day = "",
    end: UntilDay = "",
) -> Response:
    """Every subscription as filtered on the page, streamed; times in the platform's zone."""
    container = get_container(request)
    search, errors = _subscription_search(request, q, status, channel, customer, start, end)
    if errors:
        return csv_refused(errors)
    zone = container.settings.zone

    def row(s: SubscriptionRecord) -> list[str]:
        return [
            s.id,
            s.customer_id,
            s.product_id,
            s.status.value,
            s.channel,
            s.method,
            s.currency,
            format_amount(s.credit_balance, get_currency(s.currency)),
            "yes" if s.auto_renew else "no",
            "yes" if s.cancel_at_period_end else "no",
            local_time(s.current_period_start, zone),
            local_time(s.current_period_end, zone),
            local_time(s.canceled_at, zone),
            local_time(s.created_at, zone),
        ]

    async def records() -> AsyncIterator[list[str]]:
        async with container.uow() as uow:
            async for sub in AdminLists(uow.conn).stream_subscriptions(search):
                yield row(sub)

    return csv_response("subscriptions.csv", SUBSCRIPTIONS_CSV, records())


async def _subscription_page(
    request: Request,
    operator: Operator,
    subscription_id: str,
    *,
    problem: str | None = None,
    status_code: int = 200,
) -> Response:
    container = get_container(request)
    uow = container.uow()
    try:
        sub = await subscription_service.get_subscription(uow, subscription_id)
    except TuitionError:
        return page(request, "admin/not_found.html", operator, "subscriptions", status_code=404)
    links = await subscription_service.subscription_orders(uow, sub.id)
    async with container.uow() as reading:
        agreements = await reading.agreements.of_subscription(sub.id)
    return page(
        request,
        "admin/subscription.html",
        operator,
        "subscriptions",
        sub=sub,
        links=links,
        agreements=agreements,
        problem=problem,
        status_code=status_code,
    )


@router.get("/admin/subscriptions/{subscription_id}")
async def subscription(
    request: Request, operator: OperatorDep, subscription_id: SubscriptionPath
) -> Response:
    return await _subscription_page(request, operator, subscription_id)


@router.post("/admin/subscriptions/{subscription_id}/{action}")
@requires(Permission.SUBSCRIPTIONS)
async def act(
    request: Request,
    operator: OperatorDep,
    subscription_id: SubscriptionPath,
    action: Annotated[str, Path(pattern="^(cancel|cancel_now|resume)$")],
) -> Response:
    form = await request.form()
    token = form.get("csrf_token")
    if not csrf_ok(operator.csrf_token, token if isinstance(token, str) else None):
        return refused(request)
    container = get_container(request)
    try:
        if action == "resume":
            await subscription_service.resume_subscription(
                audited(request, operator, "subscription.resumed", subscription_id),
                subscription_id,
                clock=container.clock,
            )
        else:
            await subscription_service.cancel_subscription(
                audited(request, operator, f"subscription.{action}", subscription_id),
                subscription_id,
                at_period_end=action == "cancel",
                clock=container.clock,
            )
    except TuitionError as exc:
        return await _subscription_page(
            request, operator, subscription_id, problem=exc.code, status_code=exc.status
        )
    return secure(RedirectResponse(f"/admin/subscriptions/{subscription_id}", status_code=303))
