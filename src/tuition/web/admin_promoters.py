"""The console's promoters (分销): every promoter by name with its referral code, its
recruiter (its level 2) and its balances, and a promoter's page with its earnings, its
commissions per referred order and its payouts. Read-only, seen by every signed-in
operator like the payees pages; payouts are made and retried from the payee's page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from tuition.api.deps import get_container
from tuition.domain.earnings import mask_account
from tuition.services import commissions as commission_service
from tuition.services import earnings as earnings_service
from tuition.web.admin_dashboard import page
from tuition.web.admin_session import OperatorDep

router = APIRouter(tags=["admin console"], include_in_schema=False)

PromoterPath = Annotated[str, Path(max_length=40, pattern=r"^[a-z]{1,8}_[0-9A-Z]{26}$")]
LISTED = 200
RECENT = 20


@router.get("/admin/promoters")
async def promoters_page(request: Request, operator: OperatorDep) -> Response:
    container = get_container(request)
    promoters, more = await commission_service.list_promoters(
        container.uow(), limit=LISTED, starting_after=None
    )
    names = {payee.id: payee.name for payee, _ in promoters}
    rows = []
    for payee, promoter in promoters:
        _payee, balances = await earnings_service.balance_of(container.uow(), payee.id)
        recruiter = promoter.recruited_by
        if recruiter is not None and recruiter not in names:
            other, _ = await commission_service.promoter_of(container.uow(), recruiter)
            names[recruiter] = other.name
        rows.append((payee, promoter, balances))
    return page(
        request, "admin/promoters.html", operator, "payees", rows=rows, names=names, more=more
    )


@router.get("/admin/promoters/{promoter_id}")
async def promoter_page(
    request: Request, operator: OperatorDep, promoter_id: PromoterPath
) -> Response:
    container = get_container(request)
    payee, promoter = await commission_service.promoter_of(container.uow(), promoter_id)
    _payee, balances = await earnings_service.balance_of(container.uow(), promoter_id)
    earnings, more_earnings = await earnings_service.earnings_of(
        container.uow(), promoter_id, limit=RECENT, starting_after=None
    )
    uow = container.uow()
    async with uow:
        commissions = await uow.commissions.of_promoter(promoter_id, limit=RECENT)
        recruits = await uow.commissions.recruits(promoter_id)
        recruiter = (
            None
            if promoter.recruited_by is None
            else await uow.earnings.payee(promoter.recruited_by)
        )
        payouts, more_payouts = await uow.payouts.listing(
            payee_id=promoter_id, status=None, limit=RECENT, starting_after=None
        )
        names = {r.payee_id: (await uow.earnings.payee(r.payee_id)) for r in recruits}
        for line in commissions:
            for other in (line.level1_id, line.level2_id):
                if other is not None and other not in names:
                    names[other] = await uow.earnings.payee(other)
        currencies = {
            line.order_id: await uow.orders.get(line.order_id, with_lines=False)
            for line in commissions
        }
    return page(
        request,
        "admin/promoter.html",
        operator,
        "payees",
        payee=payee,
        promoter=promoter,
        recruiter=recruiter,
        recruits=recruits,
        account=mask_account(payee.payout_account),
        balances=balances,
        earnings=earnings,
        more_earnings=more_earnings,
        commissions=commissions,
        orders={k: v for k, v in currencies.items() if v is not None},
        names={k: v.name for k, v in names.items() if v is not None},
        payouts=payouts,
        more_payouts=more_payouts,
    )
