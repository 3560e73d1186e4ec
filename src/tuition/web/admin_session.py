"""Admin console sign-in: login and logout, the session cookie, and CSRF checks.

The session cookie holds a random token (its SHA-256 is stored), is HttpOnly, SameSite
Strict, limited to ``/admin`` and Secure behind https. Every form carries the session's
CSRF token and every POST compares it in constant time; the login form, before any
session exists, uses a double-submit token (cookie == field).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response

from tuition.api.deps import Container, get_container, live_container
from tuition.domain.modes import Mode
from tuition.domain.operators import Permission, permits
from tuition.services import admin as admin_service
from tuition.services.audit import Actor, AuditedUnitOfWork
from tuition.store.admin import AdminSession, AdminUser
from tuition.web import labels
from tuition.web.admin_roles import authorize, marks, requires
from tuition.web.i18n import N_, gettext_for, negotiate
from tuition.web.pages import render, secure

router = APIRouter(tags=["admin console"], include_in_schema=False)

SESSION_COOKIE = "tuition_admin"
LOGIN_REFUSED = N_(
    "Wrong email or password, or too many attempts: wait 15 minutes before trying again."
)
LOGIN_COOKIE = "tuition_admin_login"
# Which mode's data the console shows (docs/admin.md).
MODE_COOKIE = "tuition_admin_mode"


@dataclass(frozen=True, slots=True)
class Operator:
    """The signed-in operator of a request."""

    user: AdminUser
    session: AdminSession

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token

    @property
    def role(self) -> str:
        return self.user.role

    @property
    def role_label(self) -> str:
        """The role's name in English, to be translated where shown."""
        return labels.ROLES.get(self.user.role, self.user.role)

    def may(self, permission: Permission) -> bool:
        return permits(self.user.role, permission)


def _here(request: Request) -> str:
    return quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe="")


async def half_signed_in(request: Request) -> Operator:
    """Dependency of the two-factor pages: the operator whose password was right, their
    second factor given or not; else a redirect to the login page."""
    token = request.cookies.get(SESSION_COOKIE)
    container = live_container(request)
    found = None
    if token:
        found = await admin_service.current_session(container.uow(), token, clock=container.clock)
    if found is None:
        raise HTTPException(
            status_code=303, headers={"Location": f"/admin/login?next={_here(request)}"}
        )
    # The pages show (and act on) the data of the mode the operator chose.
    request.state.mode = console_mode(request)
    return Operator(user=found[1], session=found[0])


def console_mode(request: Request) -> Mode:
    """The mode whose data the console shows: the operator's choice, else
    ``TUITION_CONSOLE_MODE`` (live unless set; ``make demo`` sets test)."""
    chosen = request.cookies.get(MODE_COOKIE)
    if chosen in ("live", "test"):
        return "test" if chosen == "test" else "live"
    return live_container(request).settings.console_mode


async def signed_in(request: Request) -> Operator:
    """Dependency: the operator, or a redirect to the login page (or to the second
    factor still due), 303 with Location; then the role check of the route."""
    operator = await half_signed_in(request)
    if operator.session.second_factor_pending:
        raise HTTPException(
            status_code=303,
            headers={"Location": f"/admin/login/two-factor?next={_here(request)}"},
        )
    authorize(request, operator.role)  # what the route needs, for every page and action
    return operator


OperatorDep = Annotated[Operator, Depends(signed_in)]


class _Requirement:
    """The dependency of :func:`require_role`: its mark says what the route needs (read
    by :func:`tuition.web.admin_roles.needed`); it returns the operator let through."""

    def __init__(self, permissions: frozenset[Permission]) -> None:
        self.__dict__.update(marks(permissions))

    async def __call__(self, operator: OperatorDep) -> Operator:
        return operator


def require_role(*permissions: Permission) -> Any:
    """``Depends(...)`` for a console route whose operator must hold ``permissions``:
    ``operator: Annotated[Operator, require_role(Permission.PAYOUTS)]``."""
    return Depends(_Requirement(frozenset(permissions)))


def actor(request: Request, operator: Operator) -> Actor:
    """Who the audit trail names for a change made on this request."""
    return Actor.operator(operator.user.email, request.client.host if request.client else None)


def audited(
    request: Request, operator: Operator, action: str, subject: str, **details: object
) -> AuditedUnitOfWork:
    """A unit of work for a console change: the service's transaction that makes it also
    writes the audit record (services/audit.py)."""
    container = get_container(request)
    return AuditedUnitOfWork(
        container.engine,
        actor=actor(request, operator),
        action=action,
        subject=subject,
        clock=container.clock,
        details=details or None,
    )


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected and given) and secrets.compare_digest(str(expected), str(given))


def refused(request: Request) -> Response:
    """The answer to a form without a valid CSRF token."""
    return render(request, "admin/forbidden.html", {}, status_code=403)


def _secure_cookies(container: Container) -> bool:
    return container.settings.base_url.startswith("https://")


def safe_next(target: str | None) -> str:
    # Only back into the console: never an open redirect to another site.
    if target and target.startswith("/admin") and not target.startswith("//"):
        return target
    return "/admin"


@router.get("/admin/login")
async def login_page(
    request: Request, next: Annotated[str | None, Query(max_length=500)] = None
) -> Response:
    container = live_container(request)
    token = request.cookies.get(SESSION_COOKIE)
    found = None
    if token:
        found = await admin_service.current_session(container.uow(), token, clock=container.clock)
    if found is not None:
        target = safe_next(next)
        if found[0].second_factor_pending:
            target = f"/admin/login/two-factor?next={quote(target, safe='')}"
        return secure(RedirectResponse(target, status_code=303))
    return _login_form(request, container, next=safe_next(next))


def _login_form(
    request: Request,
    container: Container,
    *,
    next: str,
    error: str | None = None,
    email: str = "",
    status_code: int = 200,
) -> Response:
    login_token = secrets.token_urlsafe(32)
    response = render(
        request,
        "admin/login.html",
        {"csrf_token": login_token, "next": next, "error": error, "email": email},
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        login_token,
        httponly=True,
        samesite="strict",
        secure=_secure_cookies(container),
        path="/admin/login",
        max_age=3600,
    )
    return response


@router.post("/admin/login")
async def login(
    request: Request,
    email: Annotated[str, Form(max_length=254)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=500)] = "/admin",
) -> Response:
    container = live_container(request)
    if not csrf_ok(request.cookies.get(LOGIN_COOKIE), csrf_token):
        return refused(request)
    locale = negotiate(request)
    settings = container.settings
    try:
        opened = await admin_service.login(
            container.uow(),
            email,
            password,
            clock=container.clock,
            ttl=timedelta(hours=settings.admin_session_hours),
            # Behind a reverse proxy this is the client only if uvicorn trusts the proxy's
            # X-Forwarded-For (FORWARDED_ALLOW_IPS); see docs/admin.md.
            client_ip=request.client.host if request.client else None,
        )
    except admin_service.LoginRefused:
        # One answer for a wrong email, a wrong password and a throttled attempt.
        message = gettext_for(locale, LOGIN_REFUSED)
        return _login_form(
            request, container, next=safe_next(next), error=message, email=email, status_code=401
        )
    target = safe_next(next)
    if opened.session.second_factor_pending:
        target = f"/admin/login/two-factor?next={quote(target, safe='')}"
    response = secure(RedirectResponse(target, status_code=303))
    response.set_cookie(
        SESSION_COOKIE,
        opened.token,
        httponly=True,
        samesite="strict",
        secure=_secure_cookies(container),
        path="/admin",
        max_age=int(settings.admin_session_hours * 3600),
    )
    response.delete_cookie(LOGIN_COOKIE, path="/admin/login")
    return response


@router.post("/admin/logout")
@requires(Permission.READ)
async def logout(
    request: Request,
    operator: Annotated[Operator, Depends(half_signed_in)],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    container = live_container(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    await admin_service.logout(container.uow(), token, clock=container.clock)
    return signed_out()


def signed_out() -> Response:
    """Back to the login page, the session cookie gone."""
    response = secure(RedirectResponse("/admin/login", status_code=303))
    response.delete_cookie(SESSION_COOKIE, path="/admin")
    return response


@router.post("/admin/mode")
async def switch_mode(
    request: Request,
    operator: Annotated[Operator, require_role(Permission.READ)],
    to: Annotated[str, Form(max_length=10)] = "live",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Show test mode's data (``to=test``) or live mode's: a view setting, not a change
    of data, but a form with the session's CSRF token all the same, so no other site can
    switch what an operator is looking at."""
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    mode: Mode = "test" if to == "test" else "live"
    response = secure(RedirectResponse("/admin", status_code=303))
    response.set_cookie(
        MODE_COOKIE,
        mode,
        httponly=True,
        samesite="lax",
        secure=_secure_cookies(live_container(request)),
        path="/admin",
    )
    return response
