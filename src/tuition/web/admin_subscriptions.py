"""The console's subscriptions: a list with MRR and churn, and a subscription's page
(its periods and renewal orders, dunning attempts, cancel and resume).

Cancel and resume are CSRF-checked POSTs through the same use cases as the API; a
refused one shows the page again with the error's code.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response

from tuition.api.deps import get_container
from tuition.domain.errors import TuitionError
from tuition.domain.ids import Prefix
from tuition.domain.operators import Permission
from tuition.domain.subscriptions import SubscriptionStatus, churn_rate, monthly_recurring_revenue
from tuition.services import subscriptions as subscription_service
from tuition.store.subscriptions import SubscriptionFilter
from tuition.store.uow import UnitOfWork
from tuition.web.admin_dashboard import page
from tuition.web.admin_filters import PAGE, Text, choice, next_url
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


@router.get("/admin/subscriptions")
async def subscriptions(
    request: Request,
    operator: OperatorDep,
    status: Text = "",
    customer: Text = "",
    after: Text = "",
) -> Response:
    container = get_container(request)
    now = container.clock.now()
    cursor = after if after.startswith(f"{Prefix.SUBSCRIPTION.value}_") else None
    filt = SubscriptionFilter(
        customer_id=customer.strip() or None, status=choice(SubscriptionStatus, status)
    )
    async with container.uow() as uow:
        found, more = await uow.subscriptions.find(filt, limit=PAGE, starting_after=cursor)
    kpis = await subscription_kpis(container.uow(), now)
    return page(
        request,
        "admin/subscriptions.html",
        operator,
        "subscriptions",
        subscriptions=found,
        filters={"status": status, "customer": customer},
        statuses=list(SubscriptionStatus),
        mrr=kpis["mrr"],
        churn=kpis["churn"],
        live=kpis["live"],
        next_url=next_url(request, found[-1].id) if more and found else None,
    )


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
