"""Subscriptions in the admin console: the list with MRR and churn, a subscription's page
with its periods and renewal attempts, and cancel / resume behind CSRF."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.integration.shop import post
from tests.integration.subscription_shop import get_sub, mark_paid, renew, subscribe
from tuition import web
from tuition.clock import FrozenClock
from tuition.services import admin as admin_service
from tuition.store.tables import audit_events
from tuition.store.uow import UnitOfWork

EMAIL, PASSWORD = "ops@example.com", "a-long-enough-password"


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


@pytest.fixture
async def console(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> httpx.AsyncClient:
    await admin_service.create_admin_user(uow, EMAIL, PASSWORD, clock)
    anon_client.headers["Accept-Language"] = "en"
    await sign_in(anon_client)
    return anon_client


async def sign_in(browser: httpx.AsyncClient) -> None:
    """Sign in again (the clock moves past a session's 12 hours in these tests)."""
    form = await browser.get("/admin/login")
    signed_in = await browser.post(
        "/admin/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": _token(form.text)}
    )
    assert signed_in.status_code == 303


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


def _testid(html: str, name: str) -> str:
    found = re.search(rf'data-testid="{name}">([^<]*)<', html)
    assert found is not None, f"no {name} in the page"
    return found.group(1).strip()


async def test_the_list_shows_mrr_and_churn_and_the_page_shows_periods_and_attempts(
    client: httpx.AsyncClient,
    console: httpx.AsyncClient,
    shop: dict[str, str],
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    yearly = await post(
        client,
        "/v1/products",
        {
            "creator_id": shop["creator"],
            "title": "Year",
            "kind": "membership",
            "period": "year",
            "prices": {"CNY": 36500},
        },
    )
    monthly = await subscribe(client, shop["monthly"], customer="u_1")
    year = await subscribe(client, yearly["id"], customer="u_2")
    gone = await subscribe(client, shop["monthly"], customer="u_3")
    for sub in (monthly, year, gone):
        await mark_paid(uow, sub["latest_order"]["id"], clock)
    clock.set(datetime(2026, 11, 28, 9, tzinfo=UTC))
    await renew(uow, clock)
    clock.set(datetime(2026, 12, 1, 10, tzinfo=UTC))
    await renew(uow, clock)  # the two monthly ones are past due now
    clock.set(datetime(2026, 12, 5, tzinfo=UTC))  # live 30 days ago: all three
    await client.post(f"/v1/subscriptions/{gone['id']}/cancel", json={"at_period_end": False})
    await sign_in(console)

    listing = await console.get("/admin/subscriptions")
    assert listing.status_code == 200
    # MRR counts paying subscriptions (past due included): 30.00 + 365.00 / 12 = 60.4167.
    assert _testid(listing.text, "mrr-CNY") in ("CN¥60.42", "¥60.42")
    assert _testid(listing.text, "live") == "2"
    assert _testid(listing.text, "churn") == "33.3 %"  # one of three ended
    assert monthly["id"] in listing.text

    filtered = await console.get("/admin/subscriptions", params={"status": "canceled"})
    assert gone["id"] in filtered.text
    assert monthly["id"] not in filtered.text

    detail = await console.get(f"/admin/subscriptions/{monthly['id']}")
    assert detail.status_code == 200
    assert "Past due" in detail.text
    assert "Unpaid, retrying" in detail.text
    assert "Renewal" in detail.text
    assert (await console.get("/admin/subscriptions/sub_nope")).status_code == 404


async def test_cancel_and_resume_from_the_console_need_the_csrf_token(
    client: httpx.AsyncClient,
    console: httpx.AsyncClient,
    shop: dict[str, str],
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    sub = await subscribe(client, shop["monthly"])
    await mark_paid(uow, sub["latest_order"]["id"], clock)
    page = await console.get(f"/admin/subscriptions/{sub['id']}")
    token = _token(page.text)

    forged = await console.post(f"/admin/subscriptions/{sub['id']}/cancel", data={})
    assert forged.status_code == 403
    assert (await get_sub(client, sub["id"]))["cancel_at_period_end"] is False

    done = await console.post(
        f"/admin/subscriptions/{sub['id']}/cancel", data={"csrf_token": token}
    )
    assert done.status_code == 303
    assert (await get_sub(client, sub["id"]))["cancel_at_period_end"] is True
    await console.post(f"/admin/subscriptions/{sub['id']}/resume", data={"csrf_token": token})
    assert (await get_sub(client, sub["id"]))["cancel_at_period_end"] is False
    await console.post(f"/admin/subscriptions/{sub['id']}/cancel_now", data={"csrf_token": token})
    assert (await get_sub(client, sub["id"]))["status"] == "canceled"
    refused = await console.post(
        f"/admin/subscriptions/{sub['id']}/resume", data={"csrf_token": token}
    )
    assert refused.status_code == 409
    assert "not_resumable" in refused.text
    # Each change is in the audit trail, in its own transaction; the refused one is not.
    async with uow:
        audited = (
            await uow.conn.execute(
                select(audit_events.c.action, audit_events.c.subject)
                .where(
                    audit_events.c.action.like("subscription.%"),
                    audit_events.c.actor_kind == "operator",  # not the API's subscribing
                )
                .order_by(audit_events.c.seq)
            )
        ).all()
    assert [tuple(a) for a in audited] == [
        ("subscription.cancel", sub["id"]),
        ("subscription.resumed", sub["id"]),
        ("subscription.cancel_now", sub["id"]),
    ]


async def test_the_dashboard_shows_subscription_mrr_and_churn(
    client: httpx.AsyncClient,
    console: httpx.AsyncClient,
    shop: dict[str, str],
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    before = await console.get("/admin")
    assert 'data-testid="subs-live"' not in before.text
    sub = await subscribe(client, shop["monthly"])
    await mark_paid(uow, sub["latest_order"]["id"], clock)
    board = await console.get("/admin")
    assert _testid(board.text, "subs-live") == "1"
    assert _testid(board.text, "subs-mrr-CNY") in ("CN¥30.00", "¥30.00")
    assert _testid(board.text, "subs-churn") == "—"  # nobody was live 30 days ago


async def test_the_checkout_page_shows_the_period_the_renewal_price_and_how_it_renews(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    from urllib.parse import urlsplit

    await client.put(
        f"/v1/products/{shop['monthly']}/subscription_plan",
        json={"first_period_prices": {"CNY": 990}},
    )
    sub = await subscribe(client, shop["monthly"], auto_renew=True)
    url = urlsplit(sub["latest_order"]["checkout_url"])
    anon_client.headers["Accept-Language"] = "en"
    page = await anon_client.get(f"{url.path}?{url.query}")
    assert page.status_code == 200
    assert "This pays for the first period of your subscription." in page.text
    assert _testid(page.text, "renewal-price") in (
        "Renews every month at CN¥30.00.",
        "Renews every month at ¥30.00.",
    )
    assert "Renews automatically" in page.text

    plain = await post(
        client,
        "/v1/orders",
        {"customer_id": "u_9", "currency": "CNY", "items": [{"product_id": shop["c1"]}]},
    )
    other = urlsplit(plain["checkout_url"])
    assert (
        'data-testid="subscription-terms"'
        not in (await anon_client.get(f"{other.path}?{other.query}")).text
    )
