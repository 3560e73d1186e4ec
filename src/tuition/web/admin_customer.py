"""The console's customer page: a customer's wallet (balances per currency, the lots
they are made of, every credit and debit with what caused it), their latest orders, and
the form that credits or debits the wallet by hand, and their subscriptions (status,
period, a link to each).

An adjustment is a CSRF-checked POST recorded as made by ``admin:<operator email>``; the
amount is typed in major units with a sign (``12.50`` credits, ``-3.00`` debits). A
refused one (a debit the balance does not cover, a bad amount) writes nothing and shows
the page again with the code; one made redirects to the page, which reads the
transaction back from the store.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from tuition.api.deps import get_container
from tuition.api.fields import CUSTOMER_ID_PATTERN
from tuition.api.payments import payment_deps
from tuition.domain.errors import TuitionError, ValidationFailed
from tuition.domain.ids import Prefix
from tuition.domain.money import get_currency, parse_decimal_amount
from tuition.domain.operators import Permission
from tuition.services import admin as admin_service
from tuition.services import audit
from tuition.services import wallet as wallet_service
from tuition.store.admin import AdminRepository, OrderSearch
from tuition.store.admin_lists import AdminLists, SubscriptionSearch
from tuition.web.admin_dashboard import page
from tuition.web.admin_filters import PAGE, Text, next_url
from tuition.web.admin_order import Problem
from tuition.web.admin_roles import requires
from tuition.web.admin_session import Operator, OperatorDep, actor, csrf_ok, refused
from tuition.web.pages import render, secure

router = APIRouter(tags=["admin console"], include_in_schema=False)

_CUSTOMER_ID = re.compile(CUSTOMER_ID_PATTERN)
CustomerPath = Annotated[str, Path(max_length=200)]
RECENT_ORDERS = 10
_FIELD = 40  # longest form value kept for re-filling the form
MAX_REASON = 300


@dataclass(frozen=True, slots=True)
class AdjustmentForm:
    currency: str
    amount: int  # minor units, signed
    reason: str


def _text(form: FormData, name: str, limit: int = 200) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def parse_adjustment(form: FormData) -> AdjustmentForm:
    """The adjustment form, checked; ValidationFailed names the wrong field. The amount
    is major units with an optional sign: ``12.50`` credits, ``-3.00`` debits."""
    code = _text(form, "currency").upper()
    if not code:
        raise ValidationFailed("choose a currency", code="currency_unknown", param="currency")
    currency = get_currency(code)
    text = _text(form, "amount").replace(" ", "").removeprefix("+")
    if not text:
        raise ValidationFailed("enter an amount such as 12.50 or -3.00", param="amount")
    amount = parse_decimal_amount(text, currency, param="amount")
    if amount == 0:
        raise ValidationFailed("an adjustment must not be zero", param="amount")
    value = form.get("reason")
    reason = value.strip() if isinstance(value, str) else ""
    if not reason:
        raise ValidationFailed(
            "an adjustment needs a reason", code="reason_missing", param="reason"
        )
    if len(reason) > MAX_REASON or "\x00" in reason:
        raise ValidationFailed(
            f"a reason has at most {MAX_REASON} characters", code="reason_invalid", param="reason"
        )
    return AdjustmentForm(currency.code, amount, reason)


def _valid(customer_id: str) -> bool:
    return _CUSTOMER_ID.fullmatch(customer_id) is not None


def customer_url(customer_id: str) -> str:
    return f"/admin/customers/{quote(customer_id, safe='')}"


@router.get("/admin/customers")
async def find(request: Request, operator: OperatorDep, q: Text = "") -> Response:
    """Find customers by the start of their id, in any case; an id that is the only
    match (or matches nobody yet) goes straight to its page."""
    wanted = q.strip()
    found: list[str] = []
    if wanted and _valid(wanted):
        async with get_container(request).uow() as uow:
            found = await AdminRepository(uow.conn).customers_starting(wanted, limit=PAGE + 1)
        if not found or found == [wanted]:
            return secure(RedirectResponse(customer_url(wanted), status_code=303))
    return page(
        request,
        "admin/customers.html",
        operator,
        "customers",
        q=wanted,
        found=found[:PAGE],
        more=len(found) > PAGE,
        invalid=bool(wanted) and not _valid(wanted),
        status_code=404 if wanted and not _valid(wanted) else 200,
    )


@router.get("/admin/customers/{customer_id}")
async def customer(
    request: Request,
    operator: OperatorDep,
    customer_id: CustomerPath,
    after: Text = "",
    adjusted: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    return await customer_page(
        request, operator, customer_id, after=after, adjusted=adjusted or None
    )


async def customer_page(
    request: Request,
    operator: Operator,
    customer_id: str,
    *,
    after: str = "",
    adjusted: str | None = None,
    problem: Problem | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    """The customer page; ``problem`` explains a refused adjustment, ``adjusted`` names a
    transaction just made (read from the store, never taken from the request)."""
    if not _valid(customer_id):
        return render(
            request,
            "admin/not_found.html",
            {"operator": operator, "csrf_token": operator.csrf_token, "section": "customers"},
            status_code=404,
        )
    container = get_container(request)
    wallet = await wallet_service.wallet_of(container.uow(), customer_id)
    cursor = after if after.startswith(f"{Prefix.WALLET_TRANSACTION.value}_") else None
    transactions, more = await wallet_service.transactions_of(
        container.uow(), customer_id, limit=PAGE, starting_after=cursor
    )
    causes = await admin_service.wallet_cause_orders(container.uow(), transactions)
    async with container.uow() as uow:
        orders, more_orders = await AdminRepository(uow.conn).search_orders(
            OrderSearch(customer_id=customer_id), limit=RECENT_ORDERS, starting_after=None
        )
        subscriptions, subscription_count = await AdminLists(uow.conn).subscriptions_page(
            SubscriptionSearch(customer_id=customer_id),
            sort="newest",
            limit=RECENT_ORDERS,
            offset=0,
        )
    just_made = next((t for t in transactions if adjusted and t.id == adjusted), None)
    currencies = list(wallet.balances)
    default_currency = currencies[0] if currencies else (orders[0].currency if orders else "CNY")
    return page(
        request,
        "admin/customer.html",
        operator,
        "customers",
        customer_id=customer_id,
        wallet=wallet,
        open_lots=[lot for lot in wallet.lots if lot.remaining > 0],
        transactions=transactions,
        causes=causes,
        paged=cursor is not None,
        next_url=next_url(request, transactions[-1].id) if more and transactions else None,
        orders=orders,
        more_orders=more_orders,
        orders_url=f"/admin/orders?customer={quote(customer_id, safe='')}",
        subscriptions=subscriptions,
        subscription_count=subscription_count,
        subscriptions_url=f"/admin/subscriptions?customer={quote(customer_id, safe='')}",
        just_made=just_made,
        problem=problem,
        form=form or {"currency": default_currency, "amount": "", "reason": ""},
        # A double-clicked or re-sent form makes its adjustment once.
        adjustment_key=(form or {}).get("adjustment_key") or secrets.token_urlsafe(16),
        currencies=currencies,
        status_code=status_code,
    )


@router.post("/admin/customers/{customer_id}/adjustments")
@requires(Permission.WALLET)
async def adjust(request: Request, operator: OperatorDep, customer_id: CustomerPath) -> Response:
    form = await request.form()
    if not csrf_ok(operator.csrf_token, _text(form, "csrf_token")):
        return refused(request)
    if not _valid(customer_id):
        return await customer_page(request, operator, customer_id)
    container = get_container(request)
    try:
        asked = parse_adjustment(form)
        tx = await wallet_service.adjust(
            wallet_service.Adjustment(
                customer_id=customer_id,
                currency=asked.currency,
                amount=asked.amount,
                reason=asked.reason,
                created_by=f"admin:{operator.user.email}",
                key=(_text(form, "adjustment_key") or None),
            ),
            audit.AuditedUnitOfWork(
                container.engine,
                actor=actor(request, operator),
                action="wallet.adjusted",
                subject=customer_id,
                clock=container.clock,
                details={
                    "currency": asked.currency,
                    "amount": asked.amount,
                    "reason": asked.reason,
                },
            ),
            deps=payment_deps(container),
        )
        await audit.seal(container.uow())
    except TuitionError as exc:
        return await customer_page(
            request,
            operator,
            customer_id,
            problem=Problem(exc.code, exc.message),
            form=_form_values(form),
            status_code=exc.status,
        )
    url = f"{customer_url(customer_id)}?adjusted={quote(tx.id, safe='')}#adjust"
    return secure(RedirectResponse(url, status_code=303))


def _form_values(form: FormData) -> dict[str, str]:
    """What the operator typed, to fill the form again after a refusal (escaped when
    shown, like everything on the pages)."""
    return {
        "currency": _text(form, "currency")[:3],
        "amount": _text(form, "amount")[:_FIELD],
        "reason": _text(form, "reason", MAX_REASON),
    }
