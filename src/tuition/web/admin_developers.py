"""Developers: the API keys (owners). Create a key, full or restricted to scopes (the
secret is shown once, on the answer to the form, never again), revoke one. Both are
audited as the operator's changes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from tuition.api.deps import get_container
from tuition.domain.api_scopes import Scope
from tuition.domain.errors import TuitionError
from tuition.domain.operators import Permission
from tuition.services import api_keys
from tuition.web.admin_dashboard import page
from tuition.web.admin_session import Operator, actor, csrf_ok, refused, require_role
from tuition.web.pages import secure

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
