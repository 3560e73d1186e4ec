"""The console's payees: every payee by name with its balances (searched by id or the
start of the name, filtered by kind, sorted, paged with a total and exported as
filtered, as the orders list is), and a payee's page with
its earnings (and their holds), payouts and monthly statements; a failed payout can be
sent again from there (a new payout of the money it gave back)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response

from tuition.api.deps import get_container
from tuition.api.payouts import payout_deps
from tuition.domain.earnings import PayeeKind, mask_account
from tuition.domain.errors import TuitionError
from tuition.domain.money import format_amount, get_currency
from tuition.domain.operators import Permission
from tuition.services import earnings as earnings_service
from tuition.services import payouts as payout_service
from tuition.services.payouts import tax_month
from tuition.store.admin_lists import PAYEE_SORTS, AdminLists, PayeeSearch
from tuition.store.earnings import PayeeRecord
from tuition.store.uow import UnitOfWork
from tuition.web.admin_dashboard import page
from tuition.web.admin_filters import (
    PAGE,
    Offset,
    Text,
    checked_choice,
    checked_sort,
    csv_refused,
    csv_response,
    local_time,
    paging,
)
from tuition.web.admin_roles import requires
from tuition.web.admin_session import OperatorDep, audited, csrf_ok, refused
from tuition.web.pages import secure

router = APIRouter(tags=["admin console"], include_in_schema=False)

PayeePath = Annotated[str, Path(max_length=40, pattern=r"^[a-z]{1,8}_[0-9A-Z]{26}$")]
RECENT = 20


def _payee_search(q: str, kind: str) -> tuple[PayeeSearch, dict[str, str]]:
    errors: dict[str, str] = {}
    chosen = checked_choice(PayeeKind, kind, "kind", errors)
    return PayeeSearch(text=q.strip() or None, kind=chosen.value if chosen else None), errors


@router.get("/admin/payees")
async def payees_page(
    request: Request,
    operator: OperatorDep,
    q: Text = "",
    kind: Text = "",
    sort: Text = "name",
    offset: Offset = 0,
) -> Response:
    container = get_container(request)
    search, errors = _payee_search(q, kind)
    sort = checked_sort(sort, PAYEE_SORTS, errors)
    payees: list[PayeeRecord] = []
    total = 0
    if not errors:
        async with container.uow() as uow:
            payees, total = await AdminLists(uow.conn).payees_page(
                search, sort=sort, limit=PAGE, offset=offset
            )
    rows = []
    for payee in payees:
        _payee, balances = await earnings_service.balance_of(container.uow(), payee.id)
        rows.append((payee, balances))
    return page(
        request,
        "admin/payees.html",
        operator,
        "payees",
        status_code=422 if errors else 200,
        rows=rows,
        filters={"q": q, "kind": kind, "sort": sort},
        errors=errors,
        kinds=[k.value for k in PayeeKind],
        sorts=PAYEE_SORTS,
        **paging(request, "/admin/payees.csv", offset=offset, shown=len(payees), total=total),
    )


PAYEES_CSV = [
    "payee",
    "name",
    "kind",
    "tax_profile",
    "payout_method",
    "payout_account",
    "currency",
    "pending",
    "available",
    "in_payout",
    "paid_out",
    "tax_withheld",
    "created",
]


@router.get("/admin/payees.csv")
@requires(Permission.EXPORT)
async def payees_csv(
    request: Request, operator: OperatorDep, q: Text = "", kind: Text = ""
) -> Response:
    """Every payee as filtered on the page with its balances, one row per currency (one
    row with empty balances before any earning), streamed; amounts in major units and the
    payout account masked as everywhere."""
    container = get_container(request)
    search, errors = _payee_search(q, kind)
    if errors:
        return csv_refused(errors)
    zone = container.settings.zone

    async def rows_of(uow: UnitOfWork, payee: PayeeRecord) -> list[list[str]]:
        balances = await earnings_service.balances_within(uow, payee.id)
        head = [
            payee.id,
            payee.name,
            payee.kind,
            payee.tax_profile,
            payee.payout_method or "",
            mask_account(payee.payout_account) or "",
        ]
        created = local_time(payee.created_at, zone)
        if not balances:
            return [[*head, "", "", "", "", "", "", created]]
        found = []
        for b in balances:
            unit = get_currency(b.currency)
            amounts = (b.pending, b.available, b.in_payout, b.paid_out, b.tax_withheld)
            found.append([*head, b.currency, *(format_amount(a, unit) for a in amounts), created])
        return found

    async def records() -> AsyncIterator[list[str]]:
        async with container.uow() as uow:
            async for payee in AdminLists(uow.conn).stream_payees(search):
                for row in await rows_of(uow, payee):
                    yield row

    return csv_response("payees.csv", PAYEES_CSV, records())


@router.get("/admin/payees/{payee_id}")
async def payee_page(
    request: Request, operator: OperatorDep, payee_id: PayeePath, problem: str | None = None
) -> Response:
    container = get_container(request)
    payee, balances = await earnings_service.balance_of(container.uow(), payee_id)
    earnings, more_earnings = await earnings_service.earnings_of(
        container.uow(), payee_id, limit=RECENT, starting_after=None
    )
    uow = container.uow()
    async with uow:
        payouts, more_payouts = await uow.payouts.listing(
            payee_id=payee_id, status=None, limit=RECENT, starting_after=None
        )
    return page(
        request,
        "admin/payee.html",
        operator,
        "payees",
        payee=payee,
        account=mask_account(payee.payout_account),
        balances=balances,
        earnings=earnings,
        more_earnings=more_earnings,
        payouts=payouts,
        more_payouts=more_payouts,
        month=tax_month(container.clock.now()),
        problem=problem,
    )


@router.post("/admin/payees/{payee_id}/payouts/{payout_id}/retry")
@requires(Permission.PAYOUTS)
async def retry_payout(
    request: Request, operator: OperatorDep, payee_id: PayeePath, payout_id: str
) -> Response:
    """Pay again what a failed payout gave back: a new payout (a new out_biz_no)."""
    form = await request.form()
    token = form.get("csrf_token")
    if not csrf_ok(operator.csrf_token, token if isinstance(token, str) else ""):
        return refused(request)
    container = get_container(request)
    url = f"/admin/payees/{quote(payee_id, safe='')}"
    try:
        failed = await payout_service.get_payout(container.uow(), payout_id)
        if failed.payee_id != payee_id or failed.status.value not in ("failed", "returned"):
            return secure(RedirectResponse(f"{url}?problem=payout_not_retryable", 303))
        deps = payout_deps(container)
        cmd = payout_service.CreatePayout(
            payee_id=payee_id,
            currency=failed.currency,
            amount=failed.amount,
            requested_by=f"admin:{operator.user.email}",
        )
        made = await payout_service.create_payout(
            cmd, audited(request, operator, "payout.retried", payout_id), deps=deps
        )
        if made.method != "bank":
            await payout_service.submit_payout(container.uow(), made.id, deps=deps)
    except TuitionError as exc:
        return secure(RedirectResponse(f"{url}?problem={quote(exc.code, safe='')}", 303))
    return secure(RedirectResponse(url, status_code=303))
