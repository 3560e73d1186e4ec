"""Two-factor sign-in pages: the code asked after the password, enrolment with a QR
code, the recovery codes shown once, and signing out everywhere.

A session whose second factor is due reaches only these pages (and logging out):
:func:`tuition.web.admin_session.signed_in` sends it here from every other one.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import segno
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from tuition.api.deps import get_container
from tuition.domain.errors import TuitionError
from tuition.domain.operators import Permission
from tuition.services import operators as operator_service
from tuition.services import two_factor
from tuition.web.admin_roles import requires
from tuition.web.admin_session import (
    SESSION_COOKIE,
    Operator,
    OperatorDep,
    actor,
    csrf_ok,
    half_signed_in,
    refused,
    safe_next,
    signed_out,
)
from tuition.web.i18n import N_, gettext_for, negotiate
from tuition.web.pages import render, secure

router = APIRouter(tags=["admin console"], include_in_schema=False)

HalfDep = Annotated[Operator, Depends(half_signed_in)]
Next = Annotated[str, Query(max_length=500)]
CODE_REFUSED = N_("That code is wrong or was already used. Try the next code.")


def _to(target: str) -> Response:
    return secure(RedirectResponse(target, status_code=303))


def _code_form(
    request: Request, operator: Operator, *, next: str, error: str | None = None
) -> Response:
    return render(
        request,
        "admin/two_factor_code.html",
        {"csrf_token": operator.csrf_token, "next": next, "error": error},
        status_code=401 if error else 200,
    )


@router.get("/admin/login/two-factor")
async def code_page(request: Request, operator: HalfDep, next: Next = "/admin") -> Response:
    target = safe_next(next)
    if not operator.session.second_factor_pending:
        return _to(target)
    if operator.user.totp_enabled_at is None:  # required of everyone, not yet enrolled
        return _to(f"/admin/two-factor?next={quote(target, safe='')}")
    return _code_form(request, operator, next=target)


@router.post("/admin/login/two-factor")
async def check_code(
    request: Request,
    operator: HalfDep,
    code: Annotated[str, Form(max_length=40)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=500)] = "/admin",
) -> Response:
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    container = get_container(request)
    target = safe_next(next)
    if not operator.session.second_factor_pending:
        return _to(target)
    try:
        await two_factor.verify(
            container.uow(),
            request.cookies.get(SESSION_COOKIE, ""),
            operator.user,
            code,
            signing_key=container.settings.signing_key,
            clock=container.clock,
        )
    except two_factor.SecondFactorRefused:
        message = gettext_for(negotiate(request), CODE_REFUSED)
        return _code_form(request, operator, next=target, error=message)
    return _to(target)


@router.get("/admin/two-factor")
async def enrol_page(request: Request, operator: HalfDep, next: Next = "/admin") -> Response:
    """Two-factor of the signed-in operator: on (and how many recovery codes are left),
    or the enrolment: a QR code, the secret to type in, and the first code."""
    return await _enrol_page(request, operator, next=safe_next(next))


async def _enrol_page(
    request: Request, operator: Operator, *, next: str, problem: TuitionError | None = None
) -> Response:
    container = get_container(request)
    context: dict[str, object] = {
        "csrf_token": operator.csrf_token,
        "next": next,
        "problem": problem,
        "user": operator.user,
        "pending": operator.session.second_factor_pending,
    }
    if operator.user.totp_enabled_at is None:
        enrolment = await two_factor.start_enrolment(
            container.uow(), operator.user, signing_key=container.settings.signing_key
        )
        context["secret"] = enrolment.secret
        context["qr"] = segno.make(enrolment.uri, error="m").svg_data_uri(scale=5, border=2)
    status = problem.status if problem is not None else 200
    return render(request, "admin/two_factor_enrol.html", context, status_code=status)


@router.post("/admin/two-factor")
async def confirm(
    request: Request,
    operator: HalfDep,
    code: Annotated[str, Form(max_length=40)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=500)] = "/admin",
) -> Response:
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    container = get_container(request)
    try:
        codes = await two_factor.confirm_enrolment(
            container.uow(),
            operator.user.id,
            code,
            signing_key=container.settings.signing_key,
            clock=container.clock,
            session_token=request.cookies.get(SESSION_COOKIE, ""),
            actor=actor(request, operator),
        )
    except TuitionError as exc:
        return await _enrol_page(request, operator, next=safe_next(next), problem=exc)
    return render(request, "admin/two_factor_codes.html", {"codes": codes, "next": safe_next(next)})


@router.post("/admin/sessions/end-all")
@requires(Permission.READ)
async def end_all_sessions(
    request: Request, operator: OperatorDep, csrf_token: Annotated[str, Form(max_length=100)] = ""
) -> Response:
    """Sign out everywhere: every session of this operator ends, this one included."""
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    container = get_container(request)
    await operator_service.sign_out_everywhere(
        container.uow(), operator.user.email, clock=container.clock, actor=actor(request, operator)
    )
    return signed_out()
