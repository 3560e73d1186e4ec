"""Catalog: coupons. Every role reads the list and a coupon's page with its redemptions
(the orders that used it, paged); owners (``catalog``) create coupons, change their end
and limit, disable and enable them, through the API's use cases (services/coupons.py),
audited as the operator's changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response

from tuition.api.deps import get_container
from tuition.domain.coupons import CouponKind
from tuition.domain.errors import TuitionError, ValidationFailed
from tuition.services import coupons
from tuition.services.catalog import KEEP, Browse
from tuition.store.catalog import CouponRecord
from tuition.web import admin_catalog_forms as forms
from tuition.web.admin_dashboard import page
from tuition.web.admin_filters import PAGE, cursor_links
from tuition.web.admin_products import CatalogDep, not_found
from tuition.web.admin_session import Operator, OperatorDep, actor, csrf_ok, refused
from tuition.web.pages import secure

router = APIRouter(tags=["admin console"], include_in_schema=False)

CodePath = Annotated[str, PathParam(max_length=64)]
Small = Annotated[str, Form(max_length=200)]


async def _coupons_page(
    request: Request,
    operator: Operator,
    *,
    after: str = "",
    before: str = "",
    values: Mapping[str, str] | None = None,
    problem: TuitionError | None = None,
) -> Response:
    found: Browse[CouponRecord] = Browse([], newer=False, older=False, total=0)
    bad = False
    try:
        found = await coupons.browse_coupons(
            get_container(request).uow(), limit=PAGE, after=after or None, before=before or None
        )
    except ValidationFailed:
        bad = True
    rows = found.items
    return page(
        request,
        "admin/coupons.html",
        operator,
        "catalog",
        status_code=problem.status if problem else (422 if bad else 200),
        coupons=rows,
        total=found.total,
        values=values or {"kind": "percent"},
        problem=problem,
        **cursor_links(request, found, lambda r: r.id),
    )


@router.get("/admin/catalog/coupons")
async def coupons_page(
    request: Request,
    operator: OperatorDep,
    after: Annotated[str, Query(max_length=40)] = "",
    before: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    return await _coupons_page(request, operator, after=after, before=before)


@router.post("/admin/catalog/coupons")
async def create_coupon(
    request: Request,
    operator: CatalogDep,
    code: Annotated[str, Form(max_length=64)] = "",
    kind: Annotated[str, Form(max_length=20)] = "percent",
    percent_off: Small = "",
    amount_off: Small = "",
    min_spend: Small = "",
    starts_at: Small = "",
    ends_at: Small = "",
    max_redemptions: Small = "",
    max_per_customer: Small = "",
    stacks_with_promotions: Small = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    values = {
        "code": code,
        "kind": kind,
        "percent_off": percent_off,
        "amount_off": amount_off,
        "min_spend": min_spend,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "max_redemptions": max_redemptions,
        "max_per_customer": max_per_customer,
        "stacks_with_promotions": stacks_with_promotions,
    }
    container = get_container(request)
    zone = container.settings.zone
    try:
        if kind not in ("percent", "amount"):
            raise ValidationFailed("kind: choose percent or amount", param="kind")
        command = coupons.NewCoupon(
            code=code,
            kind=CouponKind(kind),
            percent_off=forms.percent(percent_off, param="percent_off")
            if kind == "percent"
            else None,
            amount_off=forms.amounts(amount_off, param="amount_off") if kind == "amount" else None,
            min_spend=forms.amounts(min_spend, param="min_spend") or None,
            starts_at=forms.local_time(starts_at, zone, param="starts_at"),
            ends_at=forms.local_time(ends_at, zone, param="ends_at"),
            max_redemptions=forms.whole_number(max_redemptions, param="max_redemptions"),
            max_per_customer=forms.whole_number(max_per_customer, param="max_per_customer"),
            stacks_with_promotions=bool(stacks_with_promotions),
        )
        record = await coupons.create_coupon(
            command, container.uow(), clock=container.clock, actor=actor(request, operator)
        )
    except TuitionError as exc:
        return await _coupons_page(request, operator, values=values, problem=exc)
    return secure(
        RedirectResponse(f"/admin/catalog/coupons/{record.coupon.code}?done=created", 303)
    )


async def _coupon_page(
    request: Request,
    operator: Operator,
    code: str,
    *,
    offset: int = 0,
    values: Mapping[str, str] | None = None,
    problem: TuitionError | None = None,
    done: str = "",
) -> Response:
    container = get_container(request)
    try:
        record, used, total = await coupons.redemptions(
            code, container.uow(), limit=PAGE, offset=offset
        )
    except TuitionError:
        return not_found(request, operator)
    zone = container.settings.zone
    c = record.coupon

    def at(n: int) -> str:
        return str(request.url.include_query_params(offset=n))

    return page(
        request,
        "admin/coupon.html",
        operator,
        "catalog",
        status_code=problem.status if problem else 200,
        record=record,
        coupon=c,
        redemptions=used,
        total=total,
        first=offset + 1 if used else 0,
        last=offset + len(used),
        previous_url=at(max(0, offset - PAGE)) if offset > 0 else None,
        next_url=at(offset + PAGE) if offset + PAGE < total else None,
        values=values
        or {
            "ends_at": forms.local_time_text(c.ends_at, zone),
            "max_redemptions": "" if c.max_redemptions is None else str(c.max_redemptions),
        },
        amounts_text=forms.amounts_text,
        percent_text=forms.percent_text,
        problem=problem,
        done=done,
    )


@router.get("/admin/catalog/coupons/{code}")
async def coupon_page(
    request: Request,
    operator: OperatorDep,
    code: CodePath,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    return await _coupon_page(request, operator, code, offset=offset, done=done)


@router.post("/admin/catalog/coupons/{code}")
async def update_coupon(
    request: Request,
    operator: CatalogDep,
    code: CodePath,
    ends_at: Small = "",
    max_redemptions: Small = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Change the end and the redemption limit (empty removes them)."""
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    container = get_container(request)
    values = {"ends_at": ends_at, "max_redemptions": max_redemptions}
    try:
        command = coupons.CouponChanges(
            code=code,
            ends_at=forms.local_time(ends_at, container.settings.zone, param="ends_at"),
            max_redemptions=forms.whole_number(max_redemptions, param="max_redemptions"),
        )
        await coupons.update_coupon(
            command, container.uow(), clock=container.clock, actor=actor(request, operator)
        )
    except TuitionError as exc:
        return await _coupon_page(request, operator, code, values=values, problem=exc)
    return secure(RedirectResponse(f"/admin/catalog/coupons/{code}?done=saved", 303))


@router.post("/admin/catalog/coupons/{code}/{change}")
async def switch(
    request: Request,
    operator: CatalogDep,
    code: CodePath,
    change: Annotated[str, PathParam(max_length=20)],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Disable (no new redemptions; orders that used it keep their discount) or enable."""
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    active = {"disable": False, "enable": True}.get(change)
    if active is None:
        return not_found(request, operator)
    container = get_container(request)
    try:
        await coupons.update_coupon(
            coupons.CouponChanges(code=code, ends_at=KEEP, max_redemptions=KEEP, active=active),
            container.uow(),
            clock=container.clock,
            actor=actor(request, operator),
        )
    except TuitionError as exc:
        return await _coupon_page(request, operator, code, problem=exc)
    return secure(RedirectResponse(f"/admin/catalog/coupons/{code}?done={change}d", 303))
