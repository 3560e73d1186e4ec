"""The agreement step of a subscription's checkout: ``GET /pay/{order_id}/agreement?sig=…``
(from its order's checkout page) and ``GET /subscriptions/{id}/agreement?sig=…`` (the
API's ``agreement_sign_url``, which works before any order, e.g. during a trial).

Linked from the checkout page of an order of a subscription that renews automatically
through a channel that can debit by agreement (Alipay periodic deduction, WeChat Pay
papay). It opens (or reuses) the subscription's pending agreement and sends the buyer to
the gateway's sign page, which brings them back to the checkout page. The signed link's
signature is required, as on every checkout route; a wrong one looks like no order.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from tuition.api.deps import get_container
from tuition.api.payments import payment_deps
from tuition.domain.errors import TuitionError
from tuition.services.agreements import start_signing
from tuition.web.links import (
    agreement_signature_ok,
    checkout_url,
    signature_ok,
    signing_key,
)
from tuition.web.pages import render, secure

router = APIRouter(tags=["checkout page"], include_in_schema=False)


@router.get("/pay/{order_id}/agreement")
async def sign_agreement(
    order_id: str, request: Request, sig: Annotated[str | None, Query(max_length=64)] = None
) -> Response:
    container = get_container(request)
    if not signature_ok(signing_key(container.settings), order_id, sig):
        return render(request, "checkout/not_found.html", {}, status_code=404)
    async with container.uow() as uow:
        link = await uow.subscriptions.order_by_order_id(order_id)
    if link is None:
        return render(request, "checkout/not_found.html", {}, status_code=404)
    back = checkout_url(container.settings, order_id)
    try:
        started = await start_signing(
            container.uow(), link.subscription_id, deps=payment_deps(container), return_url=back
        )
    except TuitionError:
        # Nothing to sign (already signed, renewal by hand): back to the page.
        return secure(RedirectResponse(back, status_code=303))
    url = started.next_action.url or back
    return secure(RedirectResponse(url, status_code=303))


@router.get("/subscriptions/{subscription_id}/agreement")
async def sign_subscription_agreement(
    subscription_id: str,
    request: Request,
    sig: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    container = get_container(request)
    if not agreement_signature_ok(signing_key(container.settings), subscription_id, sig):
        return render(request, "checkout/not_found.html", {}, status_code=404)
    try:
        started = await start_signing(
            container.uow(), subscription_id, deps=payment_deps(container), return_url=None
        )
    except TuitionError:
        return render(request, "checkout/not_found.html", {}, status_code=404)
    if started.next_action.url is None:
        return render(request, "checkout/not_found.html", {}, status_code=404)
    return secure(RedirectResponse(started.next_action.url, status_code=303))
