"""The hosted checkout page, ``/pay/{order_id}?sig=…``: what the buyer sees and does.

Every route needs the link's signature (see :mod:`tuition.web.links`); a wrong one looks
exactly like an unknown order. Forms post and redirect back (post/redirect/get), carrying
only a message code, so nothing typed by anyone is reflected into the page. The page polls
``/pay/{order_id}/status`` every two seconds and turns to "paid" by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

import segno
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from tuition.api.deps import Container, get_container
from tuition.api.payments import payment_deps
from tuition.channels.base import ChannelTimeout
from tuition.domain.catalog import ProductKind
from tuition.domain.errors import Conflict, NotFound, TuitionError
from tuition.domain.money import get_currency
from tuition.domain.payments import PaymentStatus
from tuition.domain.wallet import WALLET_CHANNEL
from tuition.services import admin as admin_service
from tuition.services import checkout as checkout_service
from tuition.services import free_orders
from tuition.services import payments as payment_service
from tuition.services import wallet as wallet_service
from tuition.services.channel_choice import channel_ranking
from tuition.services.checkout import CheckoutView
from tuition.services.receipts import receipt_of
from tuition.store.payments import PaymentFilter, PaymentRecord
from tuition.web import labels
from tuition.web.checkout_brand import brand_of
from tuition.web.checkout_brand import router as brand_router
from tuition.web.checkout_methods import Device, default_choice, device_of, has_qr, methods_for
from tuition.web.checkout_subscription import subscription_terms
from tuition.web.checkout_wechat import (
    authorize_redirect,
    oauth_of,
    order_openid,
    simulator_bridge,
    state_ok,
)
from tuition.web.i18n import Formatter, gettext_for, negotiate
from tuition.web.links import checkout_path, receipt_url, signature_ok, signing_key
from tuition.web.pages import render, secure

router = APIRouter(tags=["checkout page"], include_in_schema=False)

router.include_router(brand_router)  # /assets/brand/style.css, /assets/brand/logo

Sig = Annotated[str | None, Query(max_length=64)]
FormSig = Annotated[str, Form(max_length=64)]
WALLET_OPTION = f"{WALLET_CHANNEL}:balance"


@dataclass(frozen=True, slots=True)
class WalletOffer:
    """The buyer's balance in the order's currency, offered as a way to pay when it
    covers the total (else shown with the shortfall, not choosable)."""

    balance: int
    total: int
    coins: bool = False  # a coin-priced order: the only way to pay it

    @property
    def covers(self) -> bool:
        return self.balance >= self.total

    @property
    def shortfall(self) -> int:
        return max(0, self.total - self.balance)

    @property
    def split(self) -> bool:
        """Whether the balance can pay part and a channel the rest (split tender)."""
        return 0 < self.balance < self.total and not self.coins


@router.get("/pay/{order_id}")
async def page(
    order_id: str,
    request: Request,
    sig: Sig = None,
    error: Annotated[str | None, Query(max_length=64)] = None,
    notice: Annotated[str | None, Query(max_length=64)] = None,
    qr: Annotated[str | None, Query(max_length=1)] = None,
) -> Response:
    container = get_container(request)
    view = await _view(container, order_id, sig)
    if view is None:
        return _not_found(request)
    locale = negotiate(request)
    message = None
    if error:
        message = labels.CHECKOUT_ERRORS.get(error, labels.GENERIC_ERROR)
    elif view.payable and view.attempt and view.attempt.status is PaymentStatus.FAILED:
        message = labels.CHECKOUT_ERRORS["payment_failed"]
    shown = labels.NOTICES.get(notice or "")
    wallet = await _wallet_offer(container, view)
    ranking = await channel_ranking(  # channel-choice hook: the buyer's best channel first
        container.uow(),
        container.registry,
        order_id,
        policy=container.choice_policy(),
        now=container.clock.now(),
    )
    failed = view.attempt if view.attempt and view.attempt.status is PaymentStatus.FAILED else None
    device = device_of(request.headers.get("user-agent", ""))
    context = _context(
        container, view, sig or "", wallet, device=device, qr=qr == "1", ranking=ranking
    )
    await _channel_totals(container, view, context["options"], locale)
    context.update(
        error=gettext_for(locale, message) if message else None,
        notice=gettext_for(locale, shown) if shown else None,
        extra_payments=await _extra_payments(container, order_id),
        topup_credit=await admin_service.topup_credit(container.uow(), view.order),
        subscription=await subscription_terms(
            container.uow(), view.order, registry=container.registry
        ),
        brand=brand_of(container.settings),
        receipt=await _receipt(container, view),
        decline_reason=None
        if failed is None or not view.payable
        else gettext_for(locale, labels.decline_reason(failed.failure_code)),
    )
    return render(request, "checkout/page.html", context, locale=locale)


@router.post("/pay/{order_id}")
async def page_after_gateway(order_id: str, request: Request, sig: Sig = None) -> Response:
    """A gateway that sends the buyer back with a form POST (UnionPay's ``frontUrl``):
    the page is shown by GET. What the form says is not read; only the signed
    notification or the recovery query decides the payment."""
    container = get_container(request)
    if await _view(container, order_id, sig) is None:
        return _not_found(request)
    return _back(container, order_id)


@router.get("/pay/{order_id}/status")
async def status(order_id: str, request: Request, sig: Sig = None) -> Response:
    """The order's status for the page's poll: nothing but states and the expiry."""
    view = await _view(get_container(request), order_id, sig)
    if view is None:
        return secure(JSONResponse({"error": "not_found"}, status_code=404))
    attempt = view.attempt
    return secure(
        JSONResponse(
            {
                "status": view.status,
                "attempt": None if attempt is None else attempt.status.value,
                # As the API writes times: UTC with a Z.
                "expires_at": view.order.expires_at.isoformat().replace("+00:00", "Z"),
            }
        )
    )


@router.post("/pay/{order_id}/coupon")
async def coupon(
    order_id: str,
    request: Request,
    sig: FormSig,
    code: Annotated[str, Form(max_length=64)] = "",
    action: Annotated[str, Form(max_length=16)] = "apply",
) -> Response:
    container = get_container(request)
    if await _view(container, order_id, sig) is None:
        return _not_found(request)
    wanted = None if action == "remove" else code.strip()
    if wanted == "":
        return _back(container, order_id, error="coupon_code_missing")
    try:
        await checkout_service.change_coupon(
            container.uow(), order_id, wanted, clock=container.clock
        )
    except TuitionError as exc:
        return _back(container, order_id, error=exc.code)
    return _back(
        container, order_id, notice="coupon_removed" if wanted is None else "coupon_applied"
    )


@router.post("/pay/{order_id}/attempts")
async def start_payment(
    order_id: str,
    request: Request,
    sig: FormSig,
    option: Annotated[str, Form(max_length=80)] = "",
    use_balance: Annotated[str, Form(max_length=1)] = "",
) -> Response:
    """Start a payment attempt with the chosen channel and method, then send the buyer
    on: to the gateway's page for page flows, back here (showing the QR code) for QR.
    Paying from balance is done at once, and back here the page shows it paid."""
    container = get_container(request)
    view = await _view(container, order_id, sig)
    if view is None:
        return _not_found(request)
    if option == WALLET_OPTION:
        try:
            await wallet_service.pay_with_wallet(
                order_id, container.uow(), deps=payment_deps(container)
            )
        except TuitionError as exc:
            return _back(container, order_id, error=exc.code)
        return _back(container, order_id)
    channel, _, method = option.partition(":")
    if not _offerable(container, channel, method):
        return _back(container, order_id, error="option_unknown")
    wallet_amount = None
    if use_balance == "1":  # split tender: all of the balance, the rest by the channel
        offer = await _wallet_offer(container, view)
        if offer is not None and offer.split:
            wallet_amount = offer.balance
    payer_id = None
    if method == "jsapi":
        payer_id = order_openid(view.order)
        oauth = oauth_of(container, channel)
        if payer_id is None and oauth is None:
            return _back(container, order_id, error="payer_id_required")
        if payer_id is None and oauth is not None:
            # WeChat sends the buyer back to wechat_oauth below, with a code for the openid.
            if wallet_amount is not None:
                return _back(container, order_id, error="split_needs_openid")
            return secure(
                RedirectResponse(authorize_redirect(container, oauth, order_id), status_code=303)
            )
    return await _start(
        container,
        request,
        order_id,
        channel,
        method,
        payer_id=payer_id,
        wallet_amount=wallet_amount,
    )


@router.get("/pay/{order_id}/wechat-oauth")
async def wechat_oauth(
    order_id: str,
    request: Request,
    sig: Sig = None,
    code: Annotated[str | None, Query(max_length=256)] = None,
    state: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """WeChat's return from web OAuth (snsapi_base): trade the code for the buyer's openid
    and start the JSAPI payment with it; the page then hands its parameters to WeChat."""
    container = get_container(request)
    view = await _view(container, order_id, sig)
    if view is None or not state_ok(signing_key(container.settings), order_id, state):
        return _not_found(request)
    oauth = oauth_of(container, "wechatpay")
    if oauth is None or not code:
        return _back(container, order_id, error="wechat_oauth_failed")
    try:
        openid = await oauth.openid(code)
    except ChannelTimeout:
        return _back(container, order_id, error="channel_timeout")
    except TuitionError as exc:
        return _back(container, order_id, error=exc.code)
    return await _start(container, request, order_id, "wechatpay", "jsapi", payer_id=openid)


async def _start(
    container: Container,
    request: Request,
    order_id: str,
    channel: str,
    method: str,
    *,
    payer_id: str | None = None,
    wallet_amount: int | None = None,
) -> Response:
    expected_total = None
    try:
        order = (
            await checkout_service.checkout_view(container.uow(), order_id, clock=container.clock)
        ).order
        if checkout_service.surcharge_mode(order):  # the total follows the channel
            repriced = await checkout_service.change_surcharge(
                container.uow(), order_id, _fee_rate(container, channel), clock=container.clock
            )
            expected_total = repriced.total
    except TuitionError as exc:
        return _back(container, order_id, error=exc.code)
    try:
        payment = await payment_service.create_payment(
            payment_service.CreatePayment(
                order_id=order_id,
                channel=channel,
                method=method,
                client_ip=request.client.host if request.client else None,
                payer_id=payer_id,
                return_url=container.settings.base_url
                + checkout_path(container.settings, order_id),
                wallet_amount=wallet_amount,
                expected_total=expected_total,
            ),
            container.uow(),
            deps=payment_deps(container),
        )
    except ChannelTimeout:
        return _back(container, order_id, error="channel_timeout")
    except TuitionError as exc:
        return _back(container, order_id, error=exc.code)
    action = payment.next_action or {}
    if action.get("type") == "redirect" and action.get("url"):
        return RedirectResponse(str(action["url"]), status_code=303)
    if action.get("type") == "form_post" and action.get("url"):
        # UnionPay's front consumption: the browser must POST the signed form itself.
        context = {
            "url": str(action["url"]),
            "params": dict(action.get("params") or {}),
            "channel": labels.CHANNELS.get(channel, channel),
        }
        return render(request, "checkout/form_post.html", context)
    return _back(container, order_id)


@router.post("/pay/{order_id}/complete")
async def complete_free(order_id: str, request: Request, sig: FormSig) -> Response:
    """A free order (total 0) completes with this one action: no channel, no gateway."""
    container = get_container(request)
    if await _view(container, order_id, sig) is None:
        return _not_found(request)
    try:
        await free_orders.complete_free_order(order_id, container.uow(), clock=container.clock)
    except TuitionError as exc:
        return _back(container, order_id, error=exc.code)
    return _back(container, order_id)


def _fee_rate(container: Container, channel: str) -> Decimal:
    """The rate surcharge mode adds for ``channel``, as order placement reads it."""
    rate = container.settings.channel_fee_rates.get(channel)
    return container.registry.get(channel).fee_rate if rate is None else rate


async def _channel_totals(
    container: Container, view: CheckoutView, options: list[dict[str, Any]], locale: str
) -> None:
    """In surcharge mode, each option's own total (the page shows it before paying)."""
    if not view.payable or not checkout_service.surcharge_mode(view.order):
        return
    fmt = Formatter(locale)
    for option in options:
        channel = option["value"].partition(":")[0]
        total = await checkout_service.quote_for_rate(
            container.uow(), view.order, _fee_rate(container, channel)
        )
        option["total"] = fmt.money(total, view.order.currency)


async def _receipt(container: Container, view: CheckoutView) -> dict[str, Any] | None:
    """What the paid page shows as the receipt: what was bought, the amount, when (in the
    platform's time zone), how, and our and the gateway's references."""
    if view.status not in ("paid", "partially_refunded"):
        return None
    settings = container.settings
    try:
        receipt = await receipt_of(
            container.uow(), view.order.id, merchant_name=settings.merchant_name, zone=settings.zone
        )
    except (NotFound, Conflict):
        return None
    local = receipt.paid_at_local
    return {
        "paid_at": None if local is None else local.strftime("%Y-%m-%d %H:%M"),
        "time_zone": settings.time_zone,
        "payments": [
            {
                "channel": labels.CHANNELS.get(p.channel, p.channel),
                "amount": p.amount,
                "currency": p.currency,
                "reference": p.channel_trade_no,
            }
            for p in receipt.payments
        ],
        "url": receipt_url(settings, view.order.id),
    }


async def _view(container: Container, order_id: str, sig: str | None) -> CheckoutView | None:
    if not signature_ok(signing_key(container.settings), order_id, sig):
        return None
    try:
        return await checkout_service.checkout_view(
            container.uow(), order_id, clock=container.clock
        )
    except NotFound:
        return None


async def _wallet_offer(container: Container, view: CheckoutView) -> WalletOffer | None:
    """The balance option of an unpaid order, if the buyer has a balance in its currency.
    Never for a top-up: it is paid through a channel, not from what it credits."""
    order = view.order
    if not view.payable or any(line.kind == ProductKind.TOPUP.value for line in order.lines):
        return None
    async with container.uow() as uow:
        balance = (await uow.wallets.balances(order.customer_id)).get(order.currency, 0)
    coins = get_currency(order.currency).virtual
    if balance <= 0 and not coins:
        return None
    return WalletOffer(balance, order.total, coins)


async def _extra_payments(container: Container, order_id: str) -> list[PaymentRecord]:
    """Payments that came after the order was settled (the buyer paid twice, or paid a
    closed order); each is refunded automatically, and the page says so."""
    async with container.uow() as uow:
        found, _ = await uow.payments.find(
            PaymentFilter(order_id=order_id), limit=20, starting_after=None
        )
    return [p for p in found if p.duplicate_of is not None]


def _back(container: Container, order_id: str, **message: str) -> Response:
    url = checkout_path(container.settings, order_id)
    if message:
        url += "&" + urlencode(message)
    return secure(RedirectResponse(url, status_code=303))


def _not_found(request: Request) -> Response:
    return render(request, "checkout/not_found.html", {}, status_code=404)


def _offerable(container: Container, channel: str, method: str) -> bool:
    """Whether a posted choice is an enabled channel's buyer-facing method (the page
    offers one per channel by device, but a buyer may have switched devices since)."""
    return (
        channel in container.registry
        and method in labels.METHODS
        and method in container.registry.get(channel).methods
    )


def _context(
    container: Container,
    view: CheckoutView,
    sig: str,
    wallet: WalletOffer | None,
    *,
    device: Device,
    qr: bool,
    ranking: list[str] | None = None,
) -> dict[str, Any]:
    order = view.order
    attempt = view.open_attempt
    action = (attempt.next_action if attempt else None) or {}
    qr_svg = None
    if action.get("type") == "qr_code" and action.get("qr_payload"):
        qr_svg = segno.make(str(action["qr_payload"]), error="m").svg_inline(
            scale=1, border=2, omitsize=True, svgclass="qr-code", lineclass=None
        )
    channels = list(container.registry)
    if ranking:  # channel choice's order; unsuitable and broken channels left out
        by_slug = {c.slug: c for c in channels}
        channels = [by_slug[slug] for slug in ranking if slug in by_slug]
    methods = methods_for(channels, device, qr=qr)
    if wallet is not None and wallet.coins:
        methods = []  # coins are paid from the wallet only
    options = [
        {
            "value": m.value,
            "channel_label": labels.CHANNELS.get(m.channel, m.channel),
            "method_label": labels.METHODS[m.method],
        }
        for m in methods
    ]
    chosen = f"{attempt.channel}:{attempt.method}" if attempt else None
    if attempt is None and wallet is not None and wallet.covers:
        chosen = WALLET_OPTION  # the buyer's own money, no gateway in between
    elif chosen not in {o["value"] for o in options}:
        chosen = default_choice(methods)
    page_url = checkout_path(container.settings, order.id)
    path, _, query = page_url.partition("?")
    return {
        "view": view,
        "order": order,
        "sig": sig,
        "breakdown": _breakdown(order.pricing),
        "options": options,
        "chosen": chosen,
        "wallet": wallet,
        "wallet_option": WALLET_OPTION,
        "paid_from_balance": view.attempt is not None
        and view.attempt.channel == WALLET_CHANNEL
        and view.attempt.status is PaymentStatus.SUCCEEDED,
        "attempt": attempt,
        "redirect_url": action.get("url") if action.get("type") == "redirect" else None,
        "jsapi_params": action.get("params")
        if action.get("type") == "app_params" and attempt is not None and attempt.method == "jsapi"
        else None,
        "wechat_bridge": simulator_bridge(container) if device is Device.WECHAT else None,
        "qr_svg": qr_svg,
        "labels": labels,
        "page_url": page_url,
        "status_url": f"{path}/status?{query}",
        "coupon_url": f"{path}/coupon",
        "attempts_url": f"{path}/attempts",
        "complete_url": f"{path}/complete",
        "device": device.value,
        "qr_mode": qr,
        "qr_switch": (page_url if qr else f"{page_url}&qr=1")
        if has_qr(container.registry) and not (wallet is not None and wallet.coins)
        else None,
        "free": order.total == 0,
    }


def _breakdown(pricing: dict[str, Any]) -> dict[str, Any]:
    steps = pricing.get("steps", [])
    by_name: dict[str, int] = {}
    for step in steps:
        by_name[step["name"]] = by_name.get(step["name"], 0) + int(step["amount"])
    coupon = next((s["detail"] for s in steps if s["name"] == "coupon"), None)
    tax = next((s["detail"] for s in steps if s["name"] == "tax"), None)
    return {
        "promotion": by_name.get("promotion", 0),
        "coupon": by_name.get("coupon", 0),
        "coupon_code": coupon and coupon.get("code"),
        "tax": tax and int(tax["tax"]),
        "tax_inclusive": bool(tax and tax.get("mode") == "inclusive"),
        "tax_rate": tax and tax.get("rate"),
        "surcharge": by_name.get("surcharge", 0),
    }
