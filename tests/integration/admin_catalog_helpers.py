"""Signing an operator of a role into the console, and reading audit rows, for the
catalog and developers page tests."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import select

from tuition.clock import FrozenClock
from tuition.domain.operators import Role
from tuition.services import admin as admin_service
from tuition.store.tables import audit_events
from tuition.store.uow import UnitOfWork

PASSWORD = "a-long-enough-password"


def token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def sign_in(
    browser: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock, role: Role
) -> str:
    """Sign ``browser`` in as a new operator of ``role``; returns a CSRF token."""
    email = f"{role.value}@example.com"
    await admin_service.create_admin_user(uow, email, PASSWORD, clock, role=role)
    browser.headers["Accept-Language"] = "en"
    form = await browser.get("/admin/login")
    signed = await browser.post(
        "/admin/login", data={"email": email, "password": PASSWORD, "csrf_token": token(form.text)}
    )
    assert signed.status_code == 303
    return token((await browser.get("/admin")).text)


async def audit_rows(uow: UnitOfWork, action: str) -> list[dict[str, object]]:
    async with uow:
        rows = await uow.conn.execute(
            select(audit_events).where(audit_events.c.action == action).order_by(audit_events.c.id)
        )
        return [dict(r._mapping) for r in rows]
