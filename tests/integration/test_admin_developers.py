"""API keys in the console on both engines: an owner creates a restricted key whose
secret is shown once and works within its scopes, revokes it (audited); other roles are
refused."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tuition import web
from tuition.clock import FrozenClock
from tuition.domain.operators import Role
from tuition.services import admin as admin_service
from tuition.store.tables import audit_events
from tuition.store.uow import UnitOfWork

PASSWORD = "a-long-enough-password"


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def _sign_in(
    browser: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock, role: Role
) -> None:
    email = f"{role.value}@example.com"
    await admin_service.create_admin_user(uow, email, PASSWORD, clock, role=role)
    browser.headers["Accept-Language"] = "en"
    form = await browser.get("/admin/login")
    signed = await browser.post(
        "/admin/login", data={"email": email, "password": PASSWORD, "csrf_token": _token(form.text)}
    )
    assert signed.status_code == 303


async def test_an_owner_creates_a_restricted_key_shown_once_and_revokes_it(
    app: FastAPI, anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    await _sign_in(anon_client, uow, clock, Role.OWNER)
    page = await anon_client.get("/admin/developers/keys")
    assert page.status_code == 200
    made = await anon_client.post(
        "/admin/developers/keys",
        data={
            "csrf_token": _token(page.text),
            "name": "storefront",
            "mode": "test",
            "scope": ["orders_payments", "read"],
        },
    )
    assert made.status_code == 201
    secret = re.search(r'data-testid="secret">(sk_test_[^<]+)<', made.text)
    assert secret is not None
    again = await anon_client.get("/admin/developers/keys")
    assert secret.group(1) not in again.text  # shown once
    assert "orders_payments, read" in again.text
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://tuition.test",
        headers={"Authorization": f"Bearer {secret.group(1)}"},
    ) as api:
        assert (await api.get("/v1/orders")).status_code == 200
        assert (await api.post("/v1/creators", json={"name": "X"})).status_code == 403
        key_id = re.search(r'data-key="(key_[0-9A-Z]{26})"', again.text)
        assert key_id is not None
        revoked = await anon_client.post(
            f"/admin/developers/keys/{key_id.group(1)}/revoke",
            data={"csrf_token": _token(again.text)},
        )
        assert revoked.status_code == 303
        assert (await api.get("/v1/orders")).status_code == 401
    bad = await anon_client.post(
        "/admin/developers/keys",
        data={"csrf_token": _token(again.text), "name": "x", "scope": "root"},
    )
    assert bad.status_code == 422
    assert "scope_unknown" in bad.text
    async with uow:
        actions = (
            await uow.conn.execute(
                select(audit_events.c.action, audit_events.c.actor).where(
                    audit_events.c.action.like("api_key.%")
                )
            )
        ).all()
    assert [tuple(a) for a in actions] == [
        ("api_key.created", "owner@example.com"),
        ("api_key.revoked", "owner@example.com"),
    ]


async def test_finance_cannot_manage_keys(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    await _sign_in(anon_client, uow, clock, Role.FINANCE)
    board = await anon_client.get("/admin")
    assert 'href="/admin/developers/keys"' not in board.text
    assert (await anon_client.get("/admin/developers/keys")).status_code == 403
    refused = await anon_client.post(
        "/admin/developers/keys", data={"csrf_token": _token(board.text), "name": "x"}
    )
    assert refused.status_code == 403
