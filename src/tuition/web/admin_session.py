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
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response

from tuition.api.deps import Container, live_container
from tuition.domain.modes import Mode
from tuition.services import admin as admin_service
from tuition.store.admin import AdminSession, AdminUser
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


async def signed_in(request: Request) -> Operator:
    """Dependency: the operator, or a redirect to the login page (303 with Location)."""
    token = request.cookies.get(SESSION_COOKIE)
    container = live_container(request)
    found = None
    if token:
        found = await admin_service.current_session(container.uow(), token, clock=container.clock)
    if found is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(
            status_code=303, headers={"Location": f"/admin/login?next={quote(target, safe='')}"}
        )
    # The pages show (and act on) the data of the mode the operator chose.
    request.state.mode = console_mode(request)
    return Operator(user=found[1], session=found[0])


def console_mode(request: Request) -> Mode:
    """The mode whose data the console shows: the operator's choice, live by default."""
    return "test" if request.cookies.get(MODE_COOKIE) == "test" else "live"


OperatorDep = Annotated[Operator, Depends(signed_in)]


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected and given) and secrets.compare_digest(str(expected), str(given))


def refused(request: Request) -> Response:
    """The answer to a form without a valid CSRF token."""
    return render(request, "admin/forbidden.html", {}, status_code=403)


def _secure_cookies(container: Container) -> bool:
    return container.settings.base_url.startswith("https://")


def _safe_next(target: str | None) -> str:
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
    if token and await admin_service.current_session(container.uow(), token, clock=container.clock):
        return secure(RedirectResponse(_safe_next(next), status_code=303))
    return _login_form(request, container, next=_safe_next(next))


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
            request, container, next=_safe_next(next), error=message, email=email, status_code=401
        )
    response = secure(RedirectResponse(_safe_next(next), status_code=303))
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
async def logout(
    request: Request,
    operator: OperatorDep,
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    container = live_container(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    await admin_service.logout(container.uow(), token, clock=container.clock)
    response = secure(RedirectResponse("/admin/login", status_code=303))
    response.delete_cookie(SESSION_COOKIE, path="/admin")
    return response


@router.get("/admin/mode")
async def switch_mode(request: Request, operator: OperatorDep, to: str = "live") -> Response:
    """Show test mode's data (``to=test``) or live mode's: a view setting, not a change."""
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
