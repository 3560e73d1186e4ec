"""Risk control in the console, on both engines: the rules editor, the review queue and
the decision log; every change is CSRF-checked and goes through the same use cases."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from sqlalchemy import func, select

from tests.integration.shop import order_body, post
from tuition.clock import FrozenClock
from tuition.services import admin as admin_service
from tuition.store.tables import risk_rules
from tuition.store.uow import UnitOfWork

EMAIL, PASSWORD = "risk@example.com", "a-long-enough-password"


@pytest.fixture
async def console(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> httpx.AsyncClient:
    await admin_service.create_admin_user(uow, EMAIL, PASSWORD, clock)
    anon_client.headers["Accept-Language"] = "en"
    form = await anon_client.get("/admin/login")
    signed_in = await anon_client.post(
        "/admin/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": _token(form.text)}
    )
    assert signed_in.status_code == 303
    return anon_client


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


async def _rules(uow: UnitOfWork) -> int:
    async with uow:
        return int(
            (await uow.conn.execute(select(func.count()).select_from(risk_rules))).scalar_one()
        )


async def test_rules_are_added_and_edited_in_the_console(
    console: httpx.AsyncClient, uow: UnitOfWork
) -> None:
    page = await console.get("/admin/risk")
    assert page.status_code == 200
    assert "No risk rules yet" in page.text
    token = _token(page.text)
    rule = {
        "csrf_token": token,
        "name": "large",
        "kind": "amount_threshold",
        "params": json.dumps({"amounts": {"CNY": "5000.00"}}),
        "stages": ["order"],
        "action": "review",
        "active": "on",
    }
    added = await console.post("/admin/risk/rules", data=rule)
    assert added.status_code == 303
    shown = (await console.get("/admin/risk")).text
    assert "5000.00" in shown
    assert "amount_threshold" in shown

    bad = await console.post(
        "/admin/risk/rules", data={**rule, "params": '{"amounts": {"CNY": "1.234"}}'}
    )
    assert bad.status_code == 422
    assert "params.amounts.CNY" in bad.text
    assert await _rules(uow) == 1

    no_token = await console.post("/admin/risk/rules", data={**rule, "csrf_token": "nope"})
    assert no_token.status_code == 403
    assert await _rules(uow) == 1

    rule_id = re.search(r'data-testid="rule-(rsk_[0-9A-Z]+)"', shown)
    assert rule_id is not None
    edited = await console.post(
        f"/admin/risk/rules/{rule_id.group(1)}",
        data={**rule, "params": json.dumps({"amounts": {"CNY": "100.00"}}), "active": ""},
    )
    assert edited.status_code == 303
    async with uow:
        stored = (await uow.conn.execute(select(risk_rules.c.params, risk_rules.c.active))).one()
    assert (stored[0], stored[1]) == ({"amounts": {"CNY": 10000}}, False)


async def test_reviews_are_approved_in_the_console_and_decisions_logged(
    console: httpx.AsyncClient, client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    await post(
        client,
        "/v1/risk/rules",
        {
            "name": "big",
            "kind": "amount_threshold",
            "params": {"amounts": {"CNY": "100.00"}},
            "action": "review",
            "stages": ["order"],
        },
    )
    await post(
        client,
        "/v1/risk/rules",
        {
            "name": "bad ip",
            "kind": "blocklist",
            "params": {"field": "ip", "values": ["10.9.9.9"]},
            "action": "block",
        },
    )
    order = await post(client, "/v1/orders", order_body(shop, "c2"))
    blocked = await client.post(
        "/v1/orders", json=order_body(shop, "c1", client={"ip": "10.9.9.9"})
    )
    assert blocked.status_code == 403

    queue = await console.get("/admin/risk/reviews")
    assert order["id"] in queue.text
    [review_id] = re.findall(r'data-testid="status-(rrv_[0-9A-Z]+)"', queue.text)
    approved = await console.post(
        f"/admin/risk/reviews/{review_id}/approve",
        data={"csrf_token": _token(queue.text), "note": "ok"},
    )
    assert approved.status_code == 303
    review = (await client.get(f"/v1/risk/reviews/{review_id}")).json()
    assert (review["status"], review["decided_by"], review["note"]) == (
        "approved",
        f"admin:{EMAIL}",
        "ok",
    )
    again = await console.post(
        f"/admin/risk/reviews/{review_id}/approve", data={"csrf_token": _token(queue.text)}
    )
    assert again.status_code == 409
    assert "risk_review_decided" in again.text

    log = await console.get("/admin/risk/decisions")
    assert order["id"] in log.text
    assert "10.9.9.9" in log.text  # the blocked attempt, for audit


async def test_the_risk_pages_are_in_chinese(console: httpx.AsyncClient) -> None:
    page = await console.get("/admin/risk", headers={"Accept-Language": "zh-CN"})
    assert "风控规则" in page.text
    assert "审核队列" in page.text
