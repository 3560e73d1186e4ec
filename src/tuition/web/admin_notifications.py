"""Developers: the channel notifications log. Every notification a gateway sent, as
received: channel, time, verdict (applied, duplicate, ignored, refused) and reason, with
filters (channel, verdict, business days, payment) and pages both ways with the total;
one notification's page shows its headers and body decoded (JSON pretty-printed, a form
split into its fields, secrets masked) and links its payment. Every role reads it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from tuition.api.deps import get_container
from tuition.logs import mask
from tuition.store.events import NotificationFilter, NotificationRecord
from tuition.web import labels
from tuition.web.admin_dashboard import page
from tuition.web.admin_filters import BAD_CHOICE, PAGE, Text, checked_days
from tuition.web.admin_payment import decoded
from tuition.web.admin_session import Operator, OperatorDep
from tuition.web.i18n import N_
from tuition.web.pages import render

router = APIRouter(tags=["admin console"], include_in_schema=False)

VERDICTS = {
    "applied": N_("Applied"),
    "duplicate": N_("Duplicate"),
    "ignored": N_("Ignored"),
    "rejected": N_("Refused"),
}
Day = Annotated[str, Query(alias="from", max_length=10)]
UntilDay = Annotated[str, Query(alias="to", max_length=10)]


def _channels(request: Request) -> list[str]:
    """Every channel that may have notified: the configured ones and the known names."""
    configured = {c.slug for c in get_container(request).registry}
    return sorted(configured | set(labels.CHANNELS) - {"wallet"})


@router.get("/admin/developers/notifications")
async def notifications_page(
    request: Request,
    operator: OperatorDep,
    channel: Text = "",
    verdict: Text = "",
    payment: Annotated[str, Query(max_length=40)] = "",
    start: Day = "",
    end: UntilDay = "",
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    container = get_container(request)
    errors: dict[str, str] = {}
    channels = _channels(request)
    if channel and channel not in channels:
        errors["channel"] = BAD_CHOICE
    if verdict and verdict not in VERDICTS:
        errors["verdict"] = BAD_CHOICE
    received_gte, received_lt = checked_days(start, end, container.settings.zone, errors)
    found: list[NotificationRecord] = []
    total = 0
    if not errors:
        where = NotificationFilter(
            channel=channel or None,
            verdict=verdict or None,
            payment_id=payment.strip() or None,
            received_gte=received_gte,
            received_lt=received_lt,
        )
        async with container.uow() as uow:
            found, total = await uow.events.notifications_page(where, limit=PAGE, offset=offset)

    def at(n: int) -> str:
        return str(request.url.include_query_params(offset=n))

    return page(
        request,
        "admin/notifications.html",
        operator,
        "notifications",
        status_code=422 if errors else 200,
        notifications=found,
        total=total,
        first=offset + 1 if found else 0,
        last=offset + len(found),
        previous_url=at(max(0, offset - PAGE)) if offset > 0 else None,
        next_url=at(offset + PAGE) if offset + PAGE < total else None,
        filters={
            "channel": channel,
            "verdict": verdict,
            "payment": payment,
            "from": start,
            "to": end,
        },
        errors=errors,
        channels=channels,
        verdicts=VERDICTS,
    )


def _not_found(request: Request, operator: Operator) -> Response:
    return render(
        request,
        "admin/not_found.html",
        {"operator": operator, "csrf_token": operator.csrf_token, "section": "notifications"},
        status_code=404,
    )


@router.get("/admin/developers/notifications/{notification_id}")
async def notification_page(
    request: Request,
    operator: OperatorDep,
    notification_id: Annotated[str, PathParam(max_length=40)],
) -> Response:
    async with get_container(request).uow() as uow:
        found = await uow.events.notification(notification_id)
    if found is None:
        return _not_found(request, operator)
    headers = sorted((str(k), mask(str(v))) for k, v in (found.headers or {}).items())
    return page(
        request,
        "admin/notification.html",
        operator,
        "notifications",
        notification=found,
        body=decoded(found.body),
        headers=headers,
        verdicts=VERDICTS,
    )
