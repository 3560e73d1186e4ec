"""The console's dashboard: the figures of :mod:`tuition.services.dashboard` as charts
people would rather look at than read, each with its numbers one click away."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tuition.api.deps import get_container
from tuition.services import dashboard as dashboard_service
from tuition.web import charts, labels
from tuition.web.admin_session import Operator, OperatorDep
from tuition.web.i18n import Formatter, gettext_for, negotiate, zone_name
from tuition.web.pages import render

router = APIRouter(tags=["admin console"], include_in_schema=False)


def page(
    request: Request,
    template: str,
    operator: Operator,
    section: str,
    *,
    status_code: int = 200,
    **ctx: Any,
) -> Response:
    """Render a console page with what the layout needs (operator, CSRF token, section,
    the business time zone its times are shown in)."""
    container = get_container(request)
    context = {
        "operator": operator,
        "csrf_token": operator.csrf_token,
        "section": section,
        "time_zone": zone_name(container.settings.zone, container.clock.now()),
    }
    return render(request, template, {**context, "labels": labels, **ctx}, status_code=status_code)


@router.get("/admin")
async def dashboard(request: Request, operator: OperatorDep, days: int = 14) -> Response:
    container = get_container(request)
    days = days if days in (7, 14, 30) else 14
    board = await dashboard_service.dashboard(
        container.uow(), clock=container.clock, zone=container.settings.zone, days=days
    )
    from tuition.web.admin_subscriptions import subscription_kpis  # it imports page()

    subs = await subscription_kpis(container.uow(), container.clock.now())
    locale = negotiate(request)
    return page(
        request,
        "admin/dashboard.html",
        operator,
        "dashboard",
        board=board,
        days=days,
        subs=subs,
        charts=[_charts(locale, c, board.days) for c in board.currencies],
    )


def _charts(locale: str, figures: dashboard_service.CurrencyFigures, days: list[date]) -> Any:
    fmt, cur = Formatter(locale), figures.currency
    labels_ = [d.strftime("%m-%d") for d in days]

    def tick(v: int) -> str:
        return fmt.money_rounded(v, cur)

    channels = figures.channels
    names = [gettext_for(locale, labels.CHANNELS.get(c.channel, c.channel)) for c in channels]
    return {
        "currency": cur,
        "gmv": charts.bar_chart(
            labels_,
            [p.value for p in figures.gmv],
            title=gettext_for(locale, "GMV per day (%(currency)s)", currency=cur),
            tick=tick,
            value=lambda v: fmt.money(v, cur),
        ),
        "net": charts.line_chart(
            labels_,
            [p.value for p in figures.net_revenue],
            title=gettext_for(locale, "Net revenue per day (%(currency)s)", currency=cur),
            tick=tick,
            value=lambda v: fmt.money(v, cur),
        ),
        "rates": charts.hbar_chart(
            names,
            [float(c.success_rate or 0) for c in channels],
            title=gettext_for(locale, "Payment success rate per channel"),
            maximum=1.0,
            value_labels=[
                f"{fmt.percent(c.success_rate)} ({c.succeeded}/{c.attempted})" for c in channels
            ],
        ),
        "fees": charts.hbar_chart(
            names,
            [float(c.fees) for c in channels],
            title=gettext_for(locale, "Channel fees (%(currency)s)", currency=cur),
            value_labels=[fmt.money(c.fees, cur) for c in channels],
        ),
    }
