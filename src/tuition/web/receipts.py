"""The printable receipt page, ``/receipts/{order_id}?sig=…``: what the buyer keeps.

Opened without an API key by its signed link (:func:`tuition.web.links.receipt_url`); a
wrong signature looks exactly like an unknown order. The page is in Simplified Chinese or
English (``?lang=``), and shows the paid time in the platform's time zone.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from tuition.api.deps import get_container
from tuition.domain.errors import Conflict, NotFound
from tuition.services.receipts import receipt_of, refund_done
from tuition.web.links import receipt_signature_ok, signing_key
from tuition.web.pages import render

router = APIRouter(tags=["receipt page"], include_in_schema=False)

Sig = Annotated[str | None, Query(max_length=64)]


@router.get("/receipts/{order_id}")
async def receipt_page(order_id: str, request: Request, sig: Sig = None) -> Response:
    container = get_container(request)
    settings = container.settings
    if len(order_id) > 40 or not receipt_signature_ok(signing_key(settings), order_id, sig):
        return render(request, "receipts/not_found.html", {}, status_code=404)
    try:
        receipt = await receipt_of(
            container.uow(), order_id, merchant_name=settings.merchant_name, zone=settings.zone
        )
    except (NotFound, Conflict):
        return render(request, "receipts/not_found.html", {}, status_code=404)
    local = receipt.paid_at_local
    return render(
        request,
        "receipts/page.html",
        {
            "receipt": receipt,
            "order": receipt.order,
            "paid_at_local": None if local is None else local.strftime("%Y-%m-%d %H:%M:%S"),
            "time_zone": settings.time_zone,
            "refund_done": refund_done,
        },
    )


routers: list[APIRouter] = [router]
