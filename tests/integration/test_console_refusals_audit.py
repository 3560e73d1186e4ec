"""The new console changes and the API's rotation, on both engines: a change posted
without the session's CSRF token is refused (403) and changes and records nothing, even
for an owner; and an audit record that cannot be written takes its change with it (one
transaction), so a secret is never rotated, nor a product made, unaudited."""

from __future__ import annotations

from collections.abc import Awaitable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.integration.admin_catalog_helpers import sign_in
from tuition import web
from tuition.clock import FrozenClock
from tuition.domain.operators import Role
from tuition.services import audit
from tuition.store.tables import audit_events, coupons, creators, products, webhook_endpoints
from tuition.store.uow import UnitOfWork


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


async def _count(uow: UnitOfWork, table: object) -> int:
    async with uow:
        return int(await uow.conn.scalar(select(func.count()).select_from(table)) or 0)  # type: ignore[arg-type]


async def test_an_owners_change_without_the_csrf_token_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    creator = (await client.post("/v1/creators", json={"name": "Ada"})).json()
    product = (
        await client.post(
            "/v1/products",
            json={
                "creator_id": creator["id"],
                "kind": "course",
                "title": "C",
                "prices": {"CNY": 1},
            },
        )
    ).json()
    await client.post("/v1/coupons", json={"code": "A1", "percent_off": "0.1"})
    endpoint = (
        await client.post(
            "/v1/webhook_endpoints", json={"url": "https://example.com/h", "events": ["*"]}
        )
    ).json()
    csrf = await sign_in(anon_client, uow, clock, Role.OWNER)
    tables = (audit_events, creators, products, coupons, webhook_endpoints)
    before = [await _count(uow, t) for t in tables]
    hook = f"/admin/developers/webhooks/{endpoint['id']}"
    changes = (
        ("/admin/catalog/creators", {"name": "Bo", "default_revenue_share": "20"}),
        (f"/admin/catalog/creators/{creator['id']}", {"name": "Bo"}),
        ("/admin/catalog/products", {"title": "T", "kind": "course", "prices": "CNY 1"}),
        (f"/admin/catalog/products/{product['id']}", {"title": "T2"}),
        (f"/admin/catalog/products/{product['id']}/archive", {}),
        ("/admin/catalog/coupons", {"code": "B2", "kind": "percent", "percent_off": "10"}),
        ("/admin/catalog/coupons/A1", {"max_redemptions": "5"}),
        ("/admin/catalog/coupons/A1/disable", {}),
        ("/admin/catalog/tax_rates", {"region": "CN", "rate": "6"}),
        ("/admin/developers/webhooks", {"url": "https://example.com/x", "event": "*"}),
        (hook, {"url": "https://example.com/y", "event": "*"}),
        (f"{hook}/rotate", {}),
        (f"{hook}/disable", {}),
    )
    for path, data in changes:
        for token in ({}, {"csrf_token": "forged"}, {"csrf_token": csrf[:-1]}):
            refused = await anon_client.post(path, data={**data, **token})
            assert refused.status_code == 403, (path, token)
    assert [await _count(uow, t) for t in tables] == before
    async with uow:
        stored = await uow.work.endpoint(endpoint["id"])
        kept = await uow.catalog.get_product(product["id"])
    assert stored is not None
    assert (stored.secret, stored.enabled) == (endpoint["secret"], True)
    assert kept is not None
    assert (kept.product.title, str(kept.product.status)) == ("C", "active")


async def test_a_change_whose_audit_record_fails_is_not_made(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    uow: UnitOfWork,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    creator = (await client.post("/v1/creators", json={"name": "Ada"})).json()
    endpoint = (
        await client.post(
            "/v1/webhook_endpoints", json={"url": "https://example.com/h", "events": ["*"]}
        )
    ).json()
    csrf = await sign_in(anon_client, uow, clock, Role.OWNER)
    made_before = await _count(uow, products)

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the audit trail is unavailable")

    async def failed(request: Awaitable[httpx.Response]) -> None:
        try:
            answer = await request
        except RuntimeError:
            return
        assert answer.status_code == 500, answer.text

    monkeypatch.setattr(audit, "record", broken)
    await failed(client.post(f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret"))
    await failed(
        anon_client.post(
            f"/admin/developers/webhooks/{endpoint['id']}/rotate", data={"csrf_token": csrf}
        )
    )
    await failed(
        anon_client.post(
            "/admin/catalog/products",
            data={
                "creator_id": creator["id"],
                "title": "T",
                "kind": "course",
                "prices": "CNY 1.00",
                "csrf_token": csrf,
            },
        )
    )
    async with uow:
        stored = await uow.work.endpoint(endpoint["id"])
    assert stored is not None
    assert stored.secret == endpoint["secret"]
    assert await _count(uow, products) == made_before
