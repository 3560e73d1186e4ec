"""A payment's page: the attempt (channel, method, status, amount, fee, the gateway's
trade number, times, failure), every notification received for it with its verdict,
reason and body decoded, its refunds, and its order."""

from __future__ import annotations

import json
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from tuition.api.deps import get_container
from tuition.logs import mask
from tuition.web.admin_dashboard import page
from tuition.web.admin_session import OperatorDep
from tuition.web.pages import render

router = APIRouter(tags=["admin console"], include_in_schema=False)

PaymentPath = Annotated[str, Path(max_length=40)]


def decoded(body: str) -> list[tuple[str, str]] | str:
    """A notification body as people read it: the fields of a form (Alipay's) or JSON
    (WeChat Pay's), secrets masked; anything else as it came, masked."""
    text = body.strip()
    if text.startswith(("{", "[")):
        try:
            return mask(json.dumps(json.loads(text), ensure_ascii=False, indent=2, sort_keys=True))
        except ValueError:
            return mask(text)
    if "=" in text and "\n" not in text:
        fields = parse_qsl(text, keep_blank_values=True)
        if fields:
            return [(key, mask(value)) for key, value in fields]
    return mask(text)


@router.get("/admin/payments/{payment_id}")
async def payment_page(
    request: Request, operator: OperatorDep, payment_id: PaymentPath
) -> Response:
    container = get_container(request)
    async with container.uow() as uow:
        payment = await uow.payments.get(payment_id)
        notifications = await uow.events.notifications_for(payment_id) if payment else []
        refunds = await uow.refunds.of_payment(payment_id) if payment else []
    if payment is None:
        return render(
            request,
            "admin/not_found.html",
            {"operator": operator, "csrf_token": operator.csrf_token, "section": "payments"},
            status_code=404,
        )
    return page(
        request,
        "admin/payment.html",
        operator,
        "payments",
        payment=payment,
        notifications=[(n, decoded(n.body)) for n in notifications],
        refunds=refunds,
    )
