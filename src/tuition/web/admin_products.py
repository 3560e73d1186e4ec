"""Catalog: products. Every role reads the list (search by title or id, filters, pages)
and a product's page; owners (``catalog``) create products, change their prices and
promotion, archive and unarchive them. Each change is the API's use case
(services/catalog.py) with the operator as the audited actor; a refused change shows its
problem on the page and writes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response

from tuition.api.deps import get_container
from tuition.domain.catalog import MembershipPeriod, ProductKind, ProductStatus, Promotion
from tuition.domain.errors import TuitionError, ValidationFailed
from tuition.domain.operators import Permission
from tuition.services import catalog
from tuition.services.catalog import PageQuery
from tuition.store.catalog import CreatorRecord, ProductFilter, ProductRecord
from tuition.web import admin_catalog_forms as forms
from tuition.web.admin_dashboard import page
from tuition.web.admin_filters import BAD_CHOICE, PAGE, Text, checked_choice, cursor_links
from tuition.web.admin_session import Operator, OperatorDep, actor, csrf_ok, refused, require_role
from tuition.web.i18n import N_
from tuition.web.pages import render, secure

router = APIRouter(tags=["admin console"], include_in_schema=False)

CatalogDep = Annotated[Operator, require_role(Permission.CATALOG)]
ProductPath = Annotated[str, PathParam(max_length=40)]
Field = Annotated[str, Form(max_length=2000)]
LongField = Annotated[str, Form(max_length=20_000)]

STATUSES = {"active": N_("Active"), "archived": N_("Archived")}
PERIODS = {"month": N_("Monthly"), "quarter": N_("Quarterly"), "year": N_("Yearly")}
PROMOTION_KINDS = {"": N_("No promotion"), "percent": N_("Percent off"), "amount": N_("Amount off")}


def not_found(request: Request, operator: Operator) -> Response:
    return render(
        request,
        "admin/not_found.html",
        {"operator": operator, "csrf_token": operator.csrf_token, "section": "catalog"},
        status_code=404,
    )


async def creator_names(request: Request, ids: set[str]) -> dict[str, CreatorRecord]:
    """Creators by id, for showing their names wherever a creator id would be."""
    async with get_container(request).uow() as uow:
        return await uow.catalog.creators_by_ids(ids)


async def all_creators(request: Request) -> list[CreatorRecord]:
    found, _ = await catalog.list_creators(PageQuery(100), get_container(request).uow())
    return sorted(found, key=lambda r: r.creator.name)


@router.get("/admin/catalog/products")
async def products_page(
    request: Request,
    operator: OperatorDep,
    q: Text = "",
    kind: Text = "",
    status: Text = "",
    creator: Text = "",
    after: Annotated[str, Query(max_length=40)] = "",
    before: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    errors: dict[str, str] = {}
    where = ProductFilter(
        kind=checked_choice(ProductKind, kind, "kind", errors),
        status=checked_choice(ProductStatus, status, "status", errors),
        creator_id=creator.strip() or None,
        text=q.strip() or None,
    )
    found: catalog.Browse[ProductRecord] = catalog.Browse([], newer=False, older=False, total=0)
    if not errors:
        try:
            found = await catalog.browse_products(
                where,
                get_container(request).uow(),
                limit=PAGE,
                after=after or None,
                before=before or None,
            )
        except ValidationFailed:
            errors["after"] = BAD_CHOICE
    rows = found.items
    names = await creator_names(request, {r.product.creator_id for r in rows})
    return page(
        request,
        "admin/products.html",
        operator,
        "catalog",
        status_code=422 if errors else 200,
        products=rows,
        total=found.total,
        names=names,
        creators=await all_creators(request),
        filters={"q": q, "kind": kind, "status": status, "creator": creator},
        errors=errors,
        kinds=list(ProductKind),
        statuses=STATUSES,
        **cursor_links(request, found, lambda r: r.product.id),
    )


async def _new_form(
    request: Request,
    operator: Operator,
    *,
    values: Mapping[str, str] | None = None,
    problem: TuitionError | None = None,
) -> Response:
    return page(
        request,
        "admin/product_new.html",
        operator,
        "catalog",
        status_code=problem.status if problem else 200,
        creators=await all_creators(request),
        kinds=list(ProductKind),
        periods=PERIODS,
        values=values or {},
        problem=problem,
    )


@router.get("/admin/catalog/products/new")
async def new_product_page(request: Request, operator: CatalogDep) -> Response:
    return await _new_form(request, operator)


@router.post("/admin/catalog/products")
async def create_product(
    request: Request,
    operator: CatalogDep,
    creator_id: Annotated[str, Form(max_length=40)] = "",
    kind: Annotated[str, Form(max_length=20)] = "",
    title: Annotated[str, Form(max_length=300)] = "",
    description: LongField = "",
    prices: Field = "",
    revenue_share: Annotated[str, Form(max_length=20)] = "",
    period: Annotated[str, Form(max_length=20)] = "",
    topup_credit: Annotated[str, Form(max_length=40)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    values = {
        "creator_id": creator_id,
        "kind": kind,
        "title": title,
        "description": description,
        "prices": prices,
        "revenue_share": revenue_share,
        "period": period,
        "topup_credit": topup_credit,
    }
    container = get_container(request)
    try:
        chosen = _kind(kind)
        priced = forms.amounts(prices, param="prices")
        credit = None
        if topup_credit.strip():
            credit_in = forms.amounts(topup_credit, param="topup_credit")
            if len(credit_in) != 1:
                raise ValidationFailed(
                    "topup_credit: give one currency and amount",
                    code="amount_invalid",
                    param="topup_credit",
                )
            credit = next(iter(credit_in.values()))
        command = catalog.NewProduct(
            creator_id=creator_id.strip(),
            kind=chosen,
            title=title,
            prices=priced,
            description=description,
            revenue_share=forms.percent(revenue_share, param="revenue_share")
            if revenue_share.strip()
            else None,
            period=_period(period) if chosen is ProductKind.MEMBERSHIP else None,
            topup_credit=credit,
        )
        record = await catalog.create_product(
            command, container.uow(), clock=container.clock, actor=actor(request, operator)
        )
    except TuitionError as exc:
        return await _new_form(request, operator, values=values, problem=exc)
    return secure(
        RedirectResponse(f"/admin/catalog/products/{record.product.id}?done=created", 303)
    )


def _kind(text: str) -> ProductKind:
    try:
        return ProductKind(text)
    except ValueError:
        raise ValidationFailed("kind: choose one of the listed kinds", param="kind") from None


def _period(text: str) -> MembershipPeriod:
    try:
        return MembershipPeriod(text)
    except ValueError:
        raise ValidationFailed(
            "period: a membership needs a period (month, quarter or year)", param="period"
        ) from None


def _edit_values(record: ProductRecord, zone: Any) -> dict[str, str]:
    p = record.product
    promo = p.promotion
    return {
        "title": p.title,
        "description": record.description,
        "prices": forms.amounts_text(p.prices),
        "revenue_share": forms.percent_text(p.revenue_share),
        "promotion": "" if promo is None else ("percent" if promo.percent_off else "amount"),
        "promotion_percent": forms.percent_text(promo.percent_off) if promo else "",
        "promotion_amount": forms.amounts_text(promo.amount_off) if promo else "",
        "promotion_starts": forms.local_time_text(promo.starts_at, zone) if promo else "",
        "promotion_ends": forms.local_time_text(promo.ends_at, zone) if promo else "",
    }


async def _product_page(
    request: Request,
    operator: Operator,
    record: ProductRecord,
    *,
    values: Mapping[str, str] | None = None,
    problem: TuitionError | None = None,
    done: str = "",
) -> Response:
    container = get_container(request)
    names = await creator_names(request, {record.product.creator_id})
    return page(
        request,
        "admin/product.html",
        operator,
        "catalog",
        status_code=problem.status if problem else 200,
        record=record,
        product=record.product,
        creator=names.get(record.product.creator_id),
        values=values or _edit_values(record, container.settings.zone),
        statuses=STATUSES,
        periods=PERIODS,
        promotion_kinds=PROMOTION_KINDS,
        problem=problem,
        done=done,
    )


@router.get("/admin/catalog/products/{product_id}")
async def product_page(
    request: Request,
    operator: OperatorDep,
    product_id: ProductPath,
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    try:
        record = await catalog.get_product(product_id, get_container(request).uow())
    except TuitionError:
        return not_found(request, operator)
    return await _product_page(request, operator, record, done=done)


@router.post("/admin/catalog/products/{product_id}")
async def update_product(
    request: Request,
    operator: CatalogDep,
    product_id: ProductPath,
    title: Annotated[str, Form(max_length=300)] = "",
    description: LongField = "",
    prices: Field = "",
    revenue_share: Annotated[str, Form(max_length=20)] = "",
    promotion: Annotated[str, Form(max_length=20)] = "",
    promotion_percent: Annotated[str, Form(max_length=20)] = "",
    promotion_amount: Field = "",
    promotion_starts: Annotated[str, Form(max_length=40)] = "",
    promotion_ends: Annotated[str, Form(max_length=40)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Change the title, description, prices, share and promotion in one use case: all
    of it is written, or (on any problem) none of it."""
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    container = get_container(request)
    try:
        record = await catalog.get_product(product_id, container.uow())
    except TuitionError:
        return not_found(request, operator)
    values = {
        "title": title,
        "description": description,
        "prices": prices,
        "revenue_share": revenue_share,
        "promotion": promotion,
        "promotion_percent": promotion_percent,
        "promotion_amount": promotion_amount,
        "promotion_starts": promotion_starts,
        "promotion_ends": promotion_ends,
    }
    zone = container.settings.zone
    try:
        command = catalog.ProductChanges(
            product_id=product_id,
            title=title,
            description=description,
            prices=forms.amounts(prices, param="prices"),
            revenue_share=forms.percent(revenue_share, param="revenue_share"),
            promotion=_promotion(
                promotion,
                promotion_percent,
                promotion_amount,
                promotion_starts,
                promotion_ends,
                zone,
            ),
        )
        record = await catalog.update_product(
            command, container.uow(), clock=container.clock, actor=actor(request, operator)
        )
    except TuitionError as exc:
        return await _product_page(request, operator, record, values=values, problem=exc)
    return secure(RedirectResponse(f"/admin/catalog/products/{product_id}?done=saved", 303))


def _promotion(
    kind: str, percent: str, amount: str, starts: str, ends: str, zone: Any
) -> Promotion | None:
    if not kind:
        return None
    if kind not in ("percent", "amount"):
        raise ValidationFailed("promotion: choose one of the listed kinds", param="promotion")
    starts_at = forms.local_time(starts, zone, param="promotion_starts")
    ends_at = forms.local_time(ends, zone, param="promotion_ends")
    if starts_at is None or ends_at is None:
        raise ValidationFailed(
            "a promotion needs a start and an end", code="promotion_invalid", param="promotion_ends"
        )
    return Promotion(
        starts_at=starts_at,
        ends_at=ends_at,
        percent_off=forms.percent(percent, param="promotion_percent")
        if kind == "percent"
        else None,
        amount_off=forms.amounts(amount, param="promotion_amount") if kind == "amount" else None,
    )


@router.post("/admin/catalog/products/{product_id}/{change}")
async def set_status(
    request: Request,
    operator: CatalogDep,
    product_id: ProductPath,
    change: Annotated[str, PathParam(max_length=20)],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Archive (no longer on sale) or unarchive a product; audited."""
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    wanted = {"archive": ProductStatus.ARCHIVED, "unarchive": ProductStatus.ACTIVE}.get(change)
    if wanted is None:
        return not_found(request, operator)
    container = get_container(request)
    try:
        await catalog.set_product_status(
            product_id,
            wanted,
            container.uow(),
            clock=container.clock,
            actor=actor(request, operator),
        )
    except TuitionError:
        return not_found(request, operator)
    return secure(RedirectResponse(f"/admin/catalog/products/{product_id}?done={change}d", 303))
