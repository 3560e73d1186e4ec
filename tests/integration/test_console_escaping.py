"""What callers and channels write reaches the console's new pages as text, never as
markup, on both engines: a notification's body and headers, a product's title and
description, a creator's name and a webhook endpoint's description."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.admin_catalog_helpers import sign_in
from tuition import web
from tuition.clock import FrozenClock
from tuition.domain.ids import new_id
from tuition.domain.operators import Role
from tuition.store.events import NotificationRecord
from tuition.store.uow import UnitOfWork

SCRIPT = "<script>alert(1)</script>"
IMAGE = '"><img src=x onerror=alert(2)>'


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


def _inert(html: str) -> None:
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert '"><img' not in html


async def test_caller_text_is_escaped_on_every_new_page(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    creator = (await client.post("/v1/creators", json={"name": SCRIPT + IMAGE})).json()
    product = await client.post(
        "/v1/products",
        json={
            "creator_id": creator["id"],
            "kind": "course",
            "title": SCRIPT + IMAGE,
            "description": SCRIPT,
            "prices": {"CNY": 100},
        },
    )
    assert product.status_code == 201, product.text
    markup_code = await client.post("/v1/coupons", json={"code": "A<b>1", "percent_off": "0.1"})
    assert markup_code.status_code == 422  # a coupon code is letters and digits
    await client.post("/v1/coupons", json={"code": "SAFE1", "percent_off": "0.1"})
    endpoint = await client.post(
        "/v1/webhook_endpoints",
        json={
            "url": "https://hooks.example.com/in",
            "events": ["order.paid"],
            "description": SCRIPT + IMAGE,
        },
    )
    notification = NotificationRecord(
        id=new_id("ntf"),
        channel="alipay",
        received_at=clock.now() - timedelta(minutes=1),
        headers={"x-" + SCRIPT: SCRIPT, "x-image": IMAGE},
        body=f"out_trade_no={SCRIPT}&subject={IMAGE}",
        verdict="rejected",
        reason=SCRIPT,
        payment_id=None,
        refund_id=None,
        event=SCRIPT,
        trade_no=IMAGE,
    )
    raw = replace(notification, id=new_id("ntf"), body=SCRIPT)
    async with uow:
        await uow.events.record_notification(notification)
        await uow.events.record_notification(raw)
        await uow.commit()
    await sign_in(anon_client, uow, clock, Role.OWNER)

    pages = [
        "/admin/catalog/products",
        f"/admin/catalog/products/{product.json()['id']}",
        "/admin/catalog/creators",
        f"/admin/catalog/creators/{creator['id']}",
        "/admin/catalog/coupons",
        "/admin/catalog/coupons/SAFE1",
        "/admin/developers/notifications",
        f"/admin/developers/notifications/{notification.id}",
        f"/admin/developers/notifications/{raw.id}",
        "/admin/developers/webhooks",
        "/admin/audit",
    ]
    assert endpoint.status_code == 201, endpoint.text
    pages.append(f"/admin/developers/webhooks/{endpoint.json()['id']}")
    for path in pages:
        answer = await anon_client.get(path)
        assert answer.status_code == 200, path
        _inert(answer.text)
    shown = await anon_client.get(f"/admin/developers/notifications/{notification.id}")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown.text
