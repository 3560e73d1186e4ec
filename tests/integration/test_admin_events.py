"""The events page on both engines: every event with its webhook deliveries and a
resend button that queues it again (audited); a viewer may look but not resend."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.integration.shop import order_body, post
from tuition import web
from tuition.clock import FrozenClock
from tuition.domain.operators import Role
from tuition.services import admin as admin_service
from tuition.simulator.app import Simulator
from tuition.store.tables import audit_events, webhook_deliveries
from tuition.store.uow import UnitOfWork

PASSWORD = "a-long-enough-password"


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


_OPEN: list[httpx.AsyncClient] = []


@pytest.fixture(autouse=True)
async def _close() -> AsyncIterator[None]:
    yield
    while _OPEN:
        await _OPEN.pop().aclose()


async def _sign_in(
    app: FastAPI, uow: UnitOfWork, clock: FrozenClock, role: Role
) -> httpx.AsyncClient:
    email = f"{role.value}@example.com"
    await admin_service.create_admin_user(uow, email, PASSWORD, clock, role=role)
    browser = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://tuition.test",
        headers={"Accept-Language": "en"},
    )
    _OPEN.append(browser)
    form = await browser.get("/admin/login")
    signed = await browser.post(
        "/admin/login", data={"email": email, "password": PASSWORD, "csrf_token": _token(form.text)}
    )
    assert signed.status_code == 303
    return browser


async def test_support_resends_an_events_webhook_and_a_viewer_cannot(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    endpoint = await post(
        client, "/v1/webhook_endpoints", {"url": "https://platform.example/h", "events": ["*"]}
    )
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "qr"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    events = (await client.get("/v1/events", params={"type": "order.paid"})).json()["data"]
    (paid,) = events
    support = await _sign_in(app, uow, clock, Role.SUPPORT)
    page = await support.get("/admin/developers/events", params={"type": "order.paid"})
    assert page.status_code == 200
    assert paid["id"] in page.text
    assert "No webhook delivery." in page.text  # the worker has not fanned it out yet
    done = await support.post(
        f"/admin/developers/events/{paid['id']}/resend", data={"csrf_token": _token(page.text)}
    )
    assert done.status_code == 303
    again = await support.get(done.headers["location"])
    assert 'data-testid="delivery-status">pending<' in again.text
    assert endpoint["id"] in again.text
    assert "queued again" in again.text
    bad = await support.get("/admin/developers/events", params={"type": "nonsense"})
    assert bad.status_code == 422
    missing = await support.post(
        "/admin/developers/events/evt_nope/resend", data={"csrf_token": _token(page.text)}
    )
    assert missing.status_code == 404
    async with uow:
        status = (
            await uow.conn.execute(
                select(webhook_deliveries.c.status).where(
                    webhook_deliveries.c.event_id == paid["id"]
                )
            )
        ).scalar_one()
        audited = (
            await uow.conn.execute(
                select(audit_events.c.action, audit_events.c.subject, audit_events.c.actor).where(
                    audit_events.c.action == "event.resent"
                )
            )
        ).all()
    assert status == "pending"
    assert [tuple(a) for a in audited] == [("event.resent", paid["id"], "support@example.com")]
    viewer = await _sign_in(app, uow, clock, Role.VIEWER)
    page = await viewer.get("/admin/developers/events")
    assert page.status_code == 200
    assert "Resend</button>" not in page.text
    refused = await viewer.post(
        f"/admin/developers/events/{paid['id']}/resend", data={"csrf_token": _token(page.text)}
    )
    assert refused.status_code == 403
