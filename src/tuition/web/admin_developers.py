"""Developers: the events sent to the platform with their webhook deliveries and a
resend button (every role reads; support, finance and owners resend), and the API keys
(owners). Create a key, full or restricted to scopes (the
secret is shown once, on the answer to the form, never again), revoke one. Both are
audited as the operator's changes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response

from tuition.api.deps import get_container
from tuition.domain.api_scopes import Scope
from tuition.domain.errors import TuitionError
from tuition.domain.operators import Permission
from tuition.services import api_keys, audit
from tuition.services.webhooks import EVENT_TYPES, EXCERPT_CHARS
from tuition.store.work import Attempt, Delivery
from tuition.web.admin_dashboard import page
from tuition.web.admin_filters import BAD_CHOICE, PAGE, next_url
from tuition.web.admin_roles import requires
from tuition.web.admin_session import (
    Operator,
    OperatorDep,
    actor,
    audited,
    csrf_ok,
    refused,
    require_role,
)
from tuition.web.pages import render, secure

router = APIRouter(tags=["admin console"], include_in_schema=False)

DeveloperDep = Annotated[Operator, require_role(Permission.DEVELOPERS)]


async def _keys_page(
    request: Request,
    operator: Operator,
    *,
    created: api_keys.CreatedKey | None = None,
    problem: TuitionError | None = None,
) -> Response:
    keys = await api_keys.list_keys(get_container(request).uow())
    return page(
        request,
        "admin/api_keys.html",
        operator,
        "developers",
        status_code=problem.status if problem is not None else (201 if created else 200),
        keys=sorted(keys, key=lambda k: k.id, reverse=True),
        scopes=list(Scope),
        created=created,
        problem=problem,
    )


@router.get("/admin/developers/keys")
async def keys_page(request: Request, operator: DeveloperDep) -> Response:
    return await _keys_page(request, operator)


@router.post("/admin/developers/keys")
async def create(
    request: Request,
    operator: DeveloperDep,
    name: Annotated[str, Form(max_length=200)] = "",
    mode: Annotated[str, Form(max_length=8)] = "test",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    form = await request.form()
    chosen = [v for v in form.getlist("scope") if isinstance(v, str)][:10]
    container = get_container(request)
    try:
        made = await api_keys.create_key(
            container.uow(),
            name=name,
            mode=mode,  # type: ignore[arg-type]  # checked by create_key
            clock=container.clock,
            scopes=chosen,
            actor=actor(request, operator),
        )
    except TuitionError as exc:
        return await _keys_page(request, operator, problem=exc)
    return await _keys_page(request, operator, created=made)


@router.post("/admin/developers/keys/{key_id}/revoke")
async def revoke(
    request: Request,
    operator: DeveloperDep,
    key_id: str,
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    container = get_container(request)
    try:
        await api_keys.revoke_key(
            container.uow(), key_id, clock=container.clock, actor=actor(request, operator)
        )
    except TuitionError as exc:
        return await _keys_page(request, operator, problem=exc)
    return secure(RedirectResponse("/admin/developers/keys", status_code=303))


@router.get("/admin/developers/events")
async def events_page(
    request: Request,
    operator: OperatorDep,
    type: Annotated[str, Query(max_length=64)] = "",
    after: Annotated[str, Query(max_length=40)] = "",
    done: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    """Events sent to the platform, newest first, each with its deliveries: status,
    attempts, next retry, every attempt's answer (code, latency, response excerpt)."""
    container = get_container(request)
    errors: dict[str, str] = {}
    if type and type not in EVENT_TYPES:
        errors["type"] = BAD_CHOICE
    rows: list[dict[str, object]] = []
    more = False
    deliveries: dict[str, list[tuple[Delivery, list[Attempt]]]] = {}
    if not errors:
        async with container.uow() as uow:
            rows, more = await uow.work.events(
                type_=type or None, limit=PAGE, starting_after=after or None
            )
            for row in rows:
                deliveries[str(row["id"])] = await uow.work.deliveries_of(str(row["id"]))
    return page(
        request,
        "admin/events.html",
        operator,
        "events",
        status_code=422 if errors else 200,
        events=rows,
        deliveries=deliveries,
        types=sorted(EVENT_TYPES),
        filters={"type": type},
        errors=errors,
        done=done,
        excerpt_chars=EXCERPT_CHARS,
        next_url=next_url(request, str(rows[-1]["id"])) if more and rows else None,
    )


@router.post("/admin/developers/events/{event_id}/resend")
@requires(Permission.WEBHOOKS)
async def resend(
    request: Request,
    operator: OperatorDep,
    event_id: Annotated[str, PathParam(max_length=40)],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Queue the event again for every endpoint that wants it; audited."""
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    container = get_container(request)
    uow = audited(request, operator, "event.resent", event_id)
    async with uow:
        if await uow.work.event(event_id) is None:
            return render(
                request,
                "admin/not_found.html",
                {"operator": operator, "csrf_token": operator.csrf_token, "section": "developers"},
                status_code=404,
            )
        await uow.work.resend(event_id, None, now=container.clock.now())
        await uow.commit()
    await audit.seal(container.uow())
    return secure(
        RedirectResponse(f"/admin/developers/events?done={event_id}#{event_id}", status_code=303)
    )
