"""The console's webhook endpoints and channel notifications log on both engines.

Endpoints: an owner registers one (its secret shown once), edits its URL and events,
disables and enables it and rotates its secret (the new one shown once and signing
from then on); each change is audited without the secret, as the same changes made
through the API are; other roles read but are refused. The log: every notification with
its channel, verdict and reason, filtered, paged, decoded, linked from its payment."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.integration.admin_catalog_helpers import audit_rows, sign_in
from tests.integration.shop import order_body, post
from tuition import web
from tuition.clock import FrozenClock
from tuition.domain.ids import new_id
from tuition.domain.operators import Role
from tuition.simulator.app import Simulator
from tuition.store.events import NotificationRecord
from tuition.store.tables import audit_events, webhook_endpoints
from tuition.store.uow import UnitOfWork

DASH = "\u2013"  # the pages write ranges with an en dash


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


def secret_of(html: str) -> str:
    found = re.search(r'data-testid="secret">(whsec_[^<]+)<', html)
    assert found is not None, "no secret shown"
    return found.group(1)


async def test_an_owner_registers_edits_disables_and_rotates_an_endpoint_audited(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    csrf = await sign_in(anon_client, uow, clock, Role.OWNER)
    made = await anon_client.post(
        "/admin/developers/webhooks",
        data={
            "csrf_token": csrf,
            "url": "https://example.com/hooks",
            "event": ["order.paid", "refund.succeeded"],
        },
    )
    assert made.status_code == 201, made.text
    first = secret_of(made.text)
    listed = await anon_client.get("/admin/developers/webhooks")
    assert first not in listed.text  # shown once
    endpoint_id = re.search(r'data-endpoint="(whe_[0-9A-Z]+)"', listed.text)
    assert endpoint_id is not None
    url = f"/admin/developers/webhooks/{endpoint_id.group(1)}"
    page = await anon_client.get(url)
    assert page.status_code == 200
    assert first not in page.text

    edited = await anon_client.post(
        url, data={"csrf_token": csrf, "url": "https://example.org/in", "event": ["*"]}
    )
    assert edited.status_code == 303
    assert "https://example.org/in" in (await anon_client.get(url)).text
    disabled = await anon_client.post(f"{url}/disable", data={"csrf_token": csrf})
    assert disabled.status_code == 303
    async with uow:
        stored = await uow.work.endpoint(endpoint_id.group(1))
    assert stored is not None
    assert not stored.enabled
    assert stored.events == ["*"]
    assert (await anon_client.post(f"{url}/enable", data={"csrf_token": csrf})).status_code == 303

    rotated = await anon_client.post(f"{url}/rotate", data={"csrf_token": csrf})
    assert rotated.status_code == 200
    second = secret_of(rotated.text)
    assert second != first
    async with uow:
        stored = await uow.work.endpoint(endpoint_id.group(1))
    assert stored is not None
    assert stored.secret == second
    assert stored.enabled
    assert second not in (await anon_client.get(url)).text

    actions = [
        "webhook_endpoint.created",
        "webhook_endpoint.updated",
        "webhook_endpoint.secret_rotated",
    ]
    rows = [row for action in actions for row in await audit_rows(uow, action)]
    assert [r["action"] for r in rows] == [actions[0], *[actions[1]] * 3, actions[2]]
    assert all(r["actor"] == "owner@example.com" for r in rows)
    edit = rows[1]
    assert json.loads(str(edit["before"]))["url"] == "https://example.com/hooks"
    assert json.loads(str(edit["after"]))["events"] == ["*"]
    for row in rows:
        assert first not in str(row["after"])
        assert second not in str(row["after"])


async def test_a_forbidden_url_or_no_event_is_shown_and_nothing_is_written(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    csrf = await sign_in(anon_client, uow, clock, Role.OWNER)
    for data in (
        {"url": "http://169.254.169.254/latest", "event": ["order.paid"]},
        {"url": "https://example.com/hooks"},
        {"url": "https://example.com/hooks", "event": ["no.such"]},
    ):
        refused = await anon_client.post(
            "/admin/developers/webhooks", data={"csrf_token": csrf, **data}
        )
        assert refused.status_code == 422, data
        assert 'data-testid="problem"' in refused.text
    async with uow:
        assert await uow.conn.scalar(select(func.count()).select_from(webhook_endpoints)) == 0


@pytest.mark.parametrize("role", [Role.FINANCE, Role.SUPPORT, Role.VIEWER])
async def test_other_roles_see_endpoints_but_cannot_change_them(
    role: Role,
    anon_client: httpx.AsyncClient,
    client: httpx.AsyncClient,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    made = await client.post(
        "/v1/webhook_endpoints", json={"url": "https://example.com/h", "events": ["*"]}
    )
    endpoint = made.json()
    csrf = await sign_in(anon_client, uow, clock, role)
    url = f"/admin/developers/webhooks/{endpoint['id']}"
    assert (await anon_client.get("/admin/developers/webhooks")).status_code == 200
    page = await anon_client.get(url)
    assert page.status_code == 200
    assert endpoint["secret"] not in page.text
    assert (await anon_client.get("/admin/developers/notifications")).status_code == 200
    async with uow:
        before = await uow.conn.scalar(select(func.count()).select_from(audit_events))
    for path, data in (
        ("/admin/developers/webhooks", {"url": "https://example.com/x", "event": ["*"]}),
        (url, {"url": "https://example.com/y", "event": ["*"]}),
        (f"{url}/disable", {}),
        (f"{url}/rotate", {}),
    ):
        refused = await anon_client.post(path, data={"csrf_token": csrf, **data})
        assert refused.status_code == 403, path
    async with uow:
        assert await uow.conn.scalar(select(func.count()).select_from(audit_events)) == before
        stored = await uow.work.endpoint(endpoint["id"])
    assert stored is not None
    assert stored.secret == endpoint["secret"]
    assert stored.enabled


async def test_endpoint_changes_through_the_api_are_audited_and_rotate_shows_the_secret_once(
    client: httpx.AsyncClient, uow: UnitOfWork
) -> None:
    made = await client.post(
        "/v1/webhook_endpoints", json={"url": "https://example.com/h", "events": ["order.paid"]}
    )
    endpoint = made.json()
    changed = await client.patch(f"/v1/webhook_endpoints/{endpoint['id']}", json={"enabled": False})
    assert changed.status_code == 200
    assert changed.json()["secret"] is None
    rotated = await client.post(f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret")
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new.startswith("whsec_")
    assert new != endpoint["secret"]
    listed = (await client.get("/v1/webhook_endpoints")).json()["data"]
    assert all(e["secret"] is None for e in listed)
    missing = await client.post("/v1/webhook_endpoints/whe_nope/rotate_secret")
    assert missing.status_code == 404
    async with uow:
        rows = (
            await uow.conn.execute(
                select(audit_events.c.action, audit_events.c.actor_kind, audit_events.c.after)
                .where(audit_events.c.action.like("webhook_endpoint.%"))
                .order_by(audit_events.c.id)
            )
        ).all()
    assert [r.action for r in rows] == [
        "webhook_endpoint.created",
        "webhook_endpoint.updated",
        "webhook_endpoint.secret_rotated",
    ]
    assert {r.actor_kind for r in rows} == {"api_key"}
    assert all(new not in str(r.after) and endpoint["secret"] not in str(r.after) for r in rows)


async def _notification(
    uow: UnitOfWork, clock: FrozenClock, *, channel: str, verdict: str, body: str, days_ago: int = 0
) -> str:
    record = NotificationRecord(
        id=new_id("ntf"),
        channel=channel,
        received_at=clock.now() - timedelta(days=days_ago),
        headers={"content-type": "application/x-www-form-urlencoded"},
        body=body,
        verdict=verdict,
        reason="signature does not verify" if verdict == "rejected" else None,
        payment_id=None,
        refund_id=None,
        event=None,
        trade_no=None,
    )
    async with uow:
        await uow.events.record_notification(record)
        await uow.commit()
    return record.id


async def test_the_notifications_log_filters_pages_decodes_and_links_payments(
    anon_client: httpx.AsyncClient,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "qr"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    refused_id = await _notification(
        uow,
        clock,
        channel="alipay",
        verdict="rejected",
        body="out_trade_no=pay_1&total_amount=88.80&trade_status=TRADE_SUCCESS",
        days_ago=3,
    )
    await sign_in(anon_client, uow, clock, Role.VIEWER)

    log = await anon_client.get("/admin/developers/notifications")
    assert log.status_code == 200
    assert f'data-testid="notifications-count">1{DASH}2 of 2' in log.text
    assert payment["id"] in log.text
    assert "Refused" in log.text

    only_refused = await anon_client.get(
        "/admin/developers/notifications", params={"verdict": "rejected"}
    )
    assert refused_id in only_refused.text
    assert payment["id"] not in only_refused.text
    sandbox = await anon_client.get(
        "/admin/developers/notifications", params={"channel": "sandbox"}
    )
    assert refused_id not in sandbox.text
    assert payment["id"] in sandbox.text
    today = clock.now().date().isoformat()
    recent = await anon_client.get(
        "/admin/developers/notifications", params={"from": today, "to": today}
    )
    assert refused_id not in recent.text
    assert payment["id"] in recent.text
    by_payment = await anon_client.get(
        "/admin/developers/notifications", params={"payment": payment["id"]}
    )
    assert refused_id not in by_payment.text
    assert f"1{DASH}1 of 1" in by_payment.text

    bad = await anon_client.get("/admin/developers/notifications", params={"from": "30/11/2026"})
    assert bad.status_code == 422
    assert "Enter a date as 2026-11-30." in bad.text
    unknown = await anon_client.get("/admin/developers/notifications", params={"verdict": "x"})
    assert unknown.status_code == 422
    assert 'data-testid="filter-error"' in unknown.text

    form = await anon_client.get(f"/admin/developers/notifications/{refused_id}")
    assert form.status_code == 200
    assert '<th class="mono">total_amount</th><td class="mono">88.80</td>' in form.text
    assert "signature does not verify" in form.text

    paid = await anon_client.get(f"/admin/payments/{payment['id']}")
    link = re.search(r'href="(/admin/developers/notifications/ntf_[0-9A-Z]+)"', paid.text)
    assert link is not None
    detail = await anon_client.get(link.group(1))
    assert detail.status_code == 200
    assert "Applied" in detail.text
    assert f'href="/admin/payments/{payment["id"]}"' in detail.text
    assert "<pre" in detail.text  # the sandbox's JSON, pretty-printed
    assert (await anon_client.get("/admin/developers/notifications/ntf_nope")).status_code == 404

    # The creator's ledger accounts carry the creator's name.
    ledger = await anon_client.get("/admin/ledger")
    assert 'data-testid="account-creator">Ada<' in ledger.text


async def test_the_log_pages_both_ways_with_the_total(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    for n in range(52):
        await _notification(
            uow, clock, channel="wechatpay", verdict="duplicate", body=f'{{"n":{n}}}'
        )
    await sign_in(anon_client, uow, clock, Role.SUPPORT)
    first = await anon_client.get("/admin/developers/notifications")
    assert f"1{DASH}50 of 52" in first.text
    assert 'rel="next"' in first.text
    assert 'rel="prev"' not in first.text
    second = await anon_client.get("/admin/developers/notifications", params={"offset": 50})
    assert f"51{DASH}52 of 52" in second.text
    assert 'rel="prev"' in second.text
