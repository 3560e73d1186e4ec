"""The console's payees: every payee by name with its balances, and a payee's page with
its earnings (and their holds), payouts and monthly statements; a failed payout can be
sent again from there (a new payout of the money it gave back)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response

from tuition.api.deps import get_container
from tuition.api.payouts import payout_deps
from tuition.domain.earnings import mask_account
from tuition.domain.errors import TuitionError
from tuition.domain.operators import Permission
from tuition.services import earnings as earnings_service
from tuition.services import payouts as payout_service
from tuition.services.payouts import tax_month
from tuition.web.admin_dashboard import page
from tuition.web.admin_roles import requires
from tuition.web.admin_session import OperatorDep, audited, csrf_ok, refused
from tuition.web.pages import secure

router = APIRouter(tags=["admin console"], include_in_schema=False)

PayeePath = Annotated[str, Path(max_length=40, pattern=r"^[a-z]{1,8}_[0-9A-Z]{26}$")]
RECENT = 20


@router.get("/admin/payees")
async def payees_page(request: Request, operator: OperatorDep) -> Response:
    container = get_container(request)
    uow = container.uow()
    async with uow:
        payees = await uow.earnings.list_payees()
    rows = []
    for payee in payees:
        _payee, balances = await earnings_service.balance_of(container.uow(), payee.id)
        rows.append((payee, balances))
    return page(request, "admin/payees.html", operator, "payees", rows=rows)


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
