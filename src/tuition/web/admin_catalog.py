"""Catalog: creators (by name, with their products) and tax rates, and the catalog's
routers. Every role reads; owners (``catalog``) create and rename creators and set a
region's tax rate (create or replace, as ``PUT /v1/tax_rates/{region}`` does), through
the API's use cases, audited as the operator's changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response

from tuition.api.deps import get_container
from tuition.domain.errors import TuitionError, ValidationFailed
from tuition.services import catalog
from tuition.services.catalog import Browse, PageQuery
from tuition.store.catalog import CreatorRecord, ProductFilter
from tuition.web import admin_catalog_forms as forms
from tuition.web.admin_coupons import router as coupons_router
from tuition.web.admin_dashboard import page
from tuition.web.admin_filters import PAGE, cursor_links
from tuition.web.admin_products import CatalogDep, not_found
from tuition.web.admin_products import router as products_router
from tuition.web.admin_session import Operator, OperatorDep, actor, csrf_ok, refused
from tuition.web.pages import secure

router = APIRouter(tags=["admin console"], include_in_schema=False)

Small = Annotated[str, Form(max_length=200)]


# --- creators ---------------------------------------------------------------------------


async def _creators_page(
    request: Request,
    operator: Operator,
    *,
    after: str = "",
    before: str = "",
    values: Mapping[str, str] | None = None,
    problem: TuitionError | None = None,
) -> Response:
    found: Browse[CreatorRecord] = Browse([], newer=False, older=False, total=0)
    bad = False
    try:
        found = await catalog.browse_creators(
            get_container(request).uow(), limit=PAGE, after=after or None, before=before or None
        )
    except ValidationFailed:
        bad = True
    rows = found.items
    return page(
        request,
        "admin/creators.html",
        operator,
        "catalog",
        status_code=problem.status if problem else (422 if bad else 200),
        creators=rows,
        total=found.total,
        values=values or {"default_revenue_share": "70"},
        problem=problem,
        percent_text=forms.percent_text,
        **cursor_links(request, found, lambda r: r.creator.id),
    )


@router.get("/admin/catalog/creators")
async def creators_page(
    request: Request,
    operator: OperatorDep,
    after: Annotated[str, Query(max_length=40)] = "",
    before: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    return await _creators_page(request, operator, after=after, before=before)


@router.post("/admin/catalog/creators")
async def create_creator(
    request: Request,
    operator: CatalogDep,
    name: Small = "",
    default_revenue_share: Small = "",
    external_id: Small = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    values = {
        "name": name,
        "default_revenue_share": default_revenue_share,
        "external_id": external_id,
    }
    container = get_container(request)
    try:
        if not name.strip():
            raise ValidationFailed("name: a creator needs a name", param="name")
        command = catalog.NewCreator(
            name=name,
            default_revenue_share=forms.percent(
                default_revenue_share, param="default_revenue_share"
            ),
            external_id=external_id.strip() or None,
        )
        record = await catalog.create_creator(
            command, container.uow(), clock=container.clock, actor=actor(request, operator)
        )
    except TuitionError as exc:
        return await _creators_page(request, operator, values=values, problem=exc)
    return secure(
        RedirectResponse(f"/admin/catalog/creators/{record.creator.id}?done=created", 303)
    )


async def _creator_page(
    request: Request,
    operator: Operator,
    creator_id: str,
    *,
    values: Mapping[str, str] | None = None,
    problem: TuitionError | None = None,
    done: str = "",
) -> Response:
    container = get_container(request)
    try:
        record = await catalog.get_creator(creator_id, container.uow())
    except TuitionError:
        return not_found(request, operator)
    products, more = await catalog.list_products(
        ProductFilter(creator_id=creator_id), PageQuery(PAGE), container.uow()
    )
    return page(
        request,
        "admin/creator.html",
        operator,
        "catalog",
        status_code=problem.status if problem else 200,
        record=record,
        creator=record.creator,
        products=products,
        more_products=more,
        values=values
        or {
            "name": record.creator.name,
            "default_revenue_share": forms.percent_text(record.creator.default_revenue_share),
            "external_id": record.external_id or "",
        },
        percent_text=forms.percent_text,
        problem=problem,
        done=done,
    )


@router.get("/admin/catalog/creators/{creator_id}")
async def creator_page(
    request: Request,
    operator: OperatorDep,
    creator_id: Annotated[str, PathParam(max_length=40)],
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    return await _creator_page(request, operator, creator_id, done=done)


@router.post("/admin/catalog/creators/{creator_id}")
async def update_creator(
    request: Request,
    operator: CatalogDep,
    creator_id: Annotated[str, PathParam(max_length=40)],
    name: Small = "",
    default_revenue_share: Small = "",
    external_id: Small = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    values = {
        "name": name,
        "default_revenue_share": default_revenue_share,
        "external_id": external_id,
    }
    container = get_container(request)
    try:
        if not name.strip():
            raise ValidationFailed("name: a creator needs a name", param="name")
        command = catalog.CreatorChanges(
            creator_id=creator_id,
            name=name,
            default_revenue_share=forms.percent(
                default_revenue_share, param="default_revenue_share"
            ),
            external_id=external_id.strip() or None,
        )
        await catalog.update_creator(
            command, container.uow(), clock=container.clock, actor=actor(request, operator)
        )
    except TuitionError as exc:
        return await _creator_page(request, operator, creator_id, values=values, problem=exc)
    return secure(RedirectResponse(f"/admin/catalog/creators/{creator_id}?done=saved", 303))


# --- tax rates --------------------------------------------------------------------------


async def _tax_rates_page(
    request: Request,
    operator: Operator,
    *,
    values: Mapping[str, str] | None = None,
    problem: TuitionError | None = None,
    done: str = "",
) -> Response:
    rates = await catalog.list_tax_rates(get_container(request).uow())
    return page(
        request,
        "admin/tax_rates.html",
        operator,
        "catalog",
        status_code=problem.status if problem else 200,
        rates=rates,
        values=values or {},
        percent_text=forms.percent_text,
        problem=problem,
        done=done,
    )


@router.get("/admin/catalog/tax_rates")
async def tax_rates_page(
    request: Request, operator: OperatorDep, done: Annotated[str, Query(max_length=20)] = ""
) -> Response:
    return await _tax_rates_page(request, operator, done=done)


@router.post("/admin/catalog/tax_rates")
async def put_tax_rate(
    request: Request,
    operator: CatalogDep,
    region: Annotated[str, Form(max_length=40)] = "",
    rate: Small = "",
    inclusive: Small = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Set a region's rate: a new region is created, a known one replaced (orders priced
    earlier keep the rate they got)."""
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    values = {"region": region, "rate": rate, "inclusive": inclusive}
    container = get_container(request)
    try:
        command = catalog.TaxRateInput(
            region=region.strip(),
            rate=forms.percent(rate, param="rate"),
            inclusive=bool(inclusive),
        )
        await catalog.put_tax_rate(
            command, container.uow(), clock=container.clock, actor=actor(request, operator)
        )
    except TuitionError as exc:
        return await _tax_rates_page(request, operator, values=values, problem=exc)
    return secure(RedirectResponse(f"/admin/catalog/tax_rates?done={region.strip()}", 303))


routers = [products_router, coupons_router, router]
