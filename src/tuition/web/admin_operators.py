"""The operators page (owners only): every operator with their role and two-factor
state; add one, change a role, sign one out everywhere, reset their two-factor.

Every route here needs :attr:`Permission.OPERATORS`, which only owners hold; the check
is the console's one (:mod:`tuition.web.admin_roles`), so another role gets a 403 for
the page and for each action alike.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from tuition.api.deps import get_container
from tuition.domain.errors import TuitionError
from tuition.domain.operators import Permission, Role
from tuition.services import admin as admin_service
from tuition.services import operators as operator_service
from tuition.services import two_factor
from tuition.web.admin_dashboard import page
from tuition.web.admin_session import Operator, actor, csrf_ok, refused, require_role
from tuition.web.pages import secure

router = APIRouter(tags=["admin console"], include_in_schema=False)

OwnerDep = Annotated[Operator, require_role(Permission.OPERATORS)]
Field = Annotated[str, Form(max_length=254)]


@router.get("/admin/operators")
async def operators_page(
    request: Request,
    operator: OwnerDep,
    done: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    return await _page(request, operator, done=done)


async def _page(
    request: Request,
    operator: Operator,
    *,
    done: str = "",
    problem: TuitionError | None = None,
    email: str = "",
) -> Response:
    container = get_container(request)
    users = await operator_service.list_operators(container.uow())
    required = await two_factor.required_for_everyone(container.uow())
    return page(
        request,
        "admin/operators.html",
        operator,
        "operators",
        status_code=problem.status if problem is not None else 200,
        users=users,
        roles=list(Role),
        done=done,
        problem=problem,
        email=email,
        two_factor_required=required,
    )


def _back(done: str) -> Response:
    return secure(RedirectResponse(f"/admin/operators?done={done}", status_code=303))


@router.post("/admin/operators")
async def create_operator(
    request: Request,
    operator: OwnerDep,
    email: Field = "",
    role: Annotated[str, Form(max_length=20)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    container = get_container(request)
    try:
        await admin_service.create_admin_user(
            container.uow(),
            email,
            password,
            container.clock,
            role=role,
            actor=actor(request, operator),
        )
    except TuitionError as exc:
        return await _page(request, operator, problem=exc, email=email)
    return _back("created")


@router.post("/admin/operators/{user_email}/role")
async def change_role(
    request: Request,
    operator: OwnerDep,
    user_email: str,
    role: Annotated[str, Form(max_length=20)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    container = get_container(request)
    try:
        await operator_service.set_role(
            container.uow(), user_email, role, clock=container.clock, actor=actor(request, operator)
        )
    except TuitionError as exc:
        return await _page(request, operator, problem=exc)
    return _back("role")


@router.post("/admin/operators/{user_email}/sign-out")
async def sign_out(
    request: Request,
    operator: OwnerDep,
    user_email: str,
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    container = get_container(request)
    try:
        await operator_service.sign_out_everywhere(
            container.uow(), user_email, clock=container.clock, actor=actor(request, operator)
        )
    except TuitionError as exc:
        return await _page(request, operator, problem=exc)
    return _back("signed_out")


@router.post("/admin/operators/{user_email}/reset-2fa")
async def reset_two_factor(
    request: Request,
    operator: OwnerDep,
    user_email: str,
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    container = get_container(request)
    try:
        await operator_service.reset_two_factor(
            container.uow(), user_email, clock=container.clock, actor=actor(request, operator)
        )
    except TuitionError as exc:
        return await _page(request, operator, problem=exc)
    return _back("two_factor_reset")


@router.post("/admin/settings/two-factor-required")
async def require_two_factor(
    request: Request,
    operator: OwnerDep,
    required: Annotated[str, Form(max_length=5)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Require two-factor of every operator (from their next sign-in), or stop."""
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    container = get_container(request)
    await operator_service.require_two_factor(
        container.uow(), required == "true", clock=container.clock, actor=actor(request, operator)
    )
    return _back("settings")
