"""Developers: webhook endpoints. Every role reads the list and an endpoint's page (never
its secret); owners (``developers``) register an endpoint, change its URL, events and
description, disable and enable it, and rotate its signing secret. A new secret is shown
on the answer to the form only, never again. The changes are the API's use cases
(services/webhooks.py, the URL checked by services/webhook_targets.py), audited as the
operator's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response

from tuition.api.deps import get_container
from tuition.domain.errors import TuitionError
from tuition.domain.operators import Permission
from tuition.services import webhooks
from tuition.store.work import Endpoint
from tuition.web.admin_dashboard import page
from tuition.web.admin_session import (
    Operator,
    OperatorDep,
    actor,
    csrf_ok,
    refused,
    require_role,
)
from tuition.web.pages import render, secure

router = APIRouter(tags=["admin console"], include_in_schema=False)

DeveloperDep = Annotated[Operator, require_role(Permission.DEVELOPERS)]
EndpointPath = Annotated[str, PathParam(max_length=40)]
Url = Annotated[str, Form(max_length=2000)]
Description = Annotated[str, Form(max_length=500)]


def _not_found(request: Request, operator: Operator) -> Response:
    return render(
        request,
        "admin/not_found.html",
        {"operator": operator, "csrf_token": operator.csrf_token, "section": "webhooks"},
        status_code=404,
    )


async def _chosen_events(request: Request) -> list[str]:
    form = await request.form()
    return [v for v in form.getlist("event") if isinstance(v, str)][:100]


async def _list_page(
    request: Request,
    operator: Operator,
    *,
    created: Endpoint | None = None,
    values: Mapping[str, object] | None = None,
    problem: TuitionError | None = None,
) -> Response:
    async with get_container(request).uow() as uow:
        endpoints = await uow.work.endpoints()
    return page(
        request,
        "admin/webhooks.html",
        operator,
        "webhooks",
        status_code=problem.status if problem else (201 if created else 200),
        endpoints=sorted(endpoints, key=lambda e: e.id, reverse=True),
        event_types=sorted(webhooks.EVENT_TYPES),
        created=created,
        values=values or {"events": []},
        problem=problem,
    )


@router.get("/admin/developers/webhooks")
async def webhooks_page(request: Request, operator: OperatorDep) -> Response:
    return await _list_page(request, operator)


@router.post("/admin/developers/webhooks")
async def create(
    request: Request,
    operator: DeveloperDep,
    url: Url = "",
    description: Description = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    events = await _chosen_events(request)
    container = get_container(request)
    try:
        made = await webhooks.create_endpoint(
            container.uow(),
            url=url.strip(),
            events=events,
            description=description,
            clock=container.clock,
            allowed_hosts=container.settings.webhook_allowed_hosts,
            actor=actor(request, operator),
        )
    except TuitionError as exc:
        values = {"url": url, "description": description, "events": events}
        return await _list_page(request, operator, values=values, problem=exc)
    return await _list_page(request, operator, created=made)


async def _endpoint_page(
    request: Request,
    operator: Operator,
    endpoint_id: str,
    *,
    secret: str | None = None,
    values: Mapping[str, object] | None = None,
    problem: TuitionError | None = None,
    done: str = "",
) -> Response:
    async with get_container(request).uow() as uow:
        endpoint = await uow.work.endpoint(endpoint_id)
    if endpoint is None:
        return _not_found(request, operator)
    shown: Mapping[str, object] = values or {
        "url": endpoint.url,
        "description": endpoint.description,
        "events": endpoint.events,
    }
    return page(
        request,
        "admin/webhook.html",
        operator,
        "webhooks",
        status_code=problem.status if problem else 200,
        endpoint=endpoint,
        event_types=["*", *sorted(webhooks.EVENT_TYPES)],
        values=shown,
        secret=secret,
        problem=problem,
        done=done,
    )


@router.get("/admin/developers/webhooks/{endpoint_id}")
async def endpoint_page(
    request: Request,
    operator: OperatorDep,
    endpoint_id: EndpointPath,
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    return await _endpoint_page(request, operator, endpoint_id, done=done)


@router.post("/admin/developers/webhooks/{endpoint_id}")
async def update(
    request: Request,
    operator: DeveloperDep,
    endpoint_id: EndpointPath,
    url: Url = "",
    description: Description = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Change the URL, events and description together: all or nothing."""
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    events = await _chosen_events(request)
    container = get_container(request)
    try:
        await webhooks.update_endpoint(
            container.uow(),
            endpoint_id,
            url=url.strip(),
            events=events,
            description=description,
            clock=container.clock,
            allowed_hosts=container.settings.webhook_allowed_hosts,
            actor=actor(request, operator),
        )
    except TuitionError as exc:
        values: dict[str, object] = {"url": url, "description": description, "events": events}
        return await _endpoint_page(request, operator, endpoint_id, values=values, problem=exc)
    return secure(
        RedirectResponse(f"/admin/developers/webhooks/{endpoint_id}?done=saved", status_code=303)
    )


@router.post("/admin/developers/webhooks/{endpoint_id}/rotate")
async def rotate(
    request: Request,
    operator: DeveloperDep,
    endpoint_id: EndpointPath,
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """A new signing secret, shown once on this answer; the old one stops at once."""
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    container = get_container(request)
    try:
        endpoint = await webhooks.rotate_secret(
            container.uow(), endpoint_id, clock=container.clock, actor=actor(request, operator)
        )
    except TuitionError:
        return _not_found(request, operator)
    return await _endpoint_page(request, operator, endpoint_id, secret=endpoint.secret)


@router.post("/admin/developers/webhooks/{endpoint_id}/{change}")
async def switch(
    request: Request,
    operator: DeveloperDep,
    endpoint_id: EndpointPath,
    change: Annotated[str, PathParam(max_length=20)],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Disable (no more deliveries to it) or enable an endpoint."""
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    enabled = {"disable": False, "enable": True}.get(change)
    if enabled is None:
        return _not_found(request, operator)
    container = get_container(request)
    try:
        await webhooks.update_endpoint(
            container.uow(),
            endpoint_id,
            enabled=enabled,
            clock=container.clock,
            actor=actor(request, operator),
        )
    except TuitionError:
        return _not_found(request, operator)
    return secure(
        RedirectResponse(
            f"/admin/developers/webhooks/{endpoint_id}?done={change}d", status_code=303
        )
    )
