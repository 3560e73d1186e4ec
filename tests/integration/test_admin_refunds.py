"""Refunds in the admin console on both engines: the form with what the rules allow, the
confirmation step, refusals that write nothing, overrides recorded with the operator,
CSRF, retrying a failed refund, the refunds list, and double charges at a glance."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.integration.shop import order_body, post
from tuition import web
from tuition.clock import FrozenClock
from tuition.services import admin as admin_service
from tuition.simulator.app import Simulator
from tuition.store.tables import refunds
from tuition.store.uow import UnitOfWork

EMAIL, PASSWORD = "ops@example.com", "a-long-enough-password"
ADMIN = f"admin:{EMAIL}"


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


@pytest.fixture
async def console(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> httpx.AsyncClient:
    """A browser signed in to the console, showing English pages."""
    await admin_service.create_admin_user(uow, EMAIL, PASSWORD, clock)
    anon_client.headers["Accept-Language"] = "en"
    await _sign_in(anon_client)
    return anon_client


async def _sign_in(browser: httpx.AsyncClient) -> None:
    """Sign in (again: a session does not outlive a clock moved by days)."""
    form = await browser.get("/admin/login")
    signed_in = await browser.post(
        "/admin/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": _token(form.text)}
    )
    assert signed_in.status_code == 303


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


def _hidden(html: str) -> dict[str, str | list[str]]:
    """The confirmation page's form, as a browser would post it."""
    form = html[html.index('action="/admin/orders/') :]
    form = form[: form.index("</form>")]
    fields: dict[str, str | list[str]] = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form):
        if name == "line":
            listed = fields.setdefault(name, [])
            assert isinstance(listed, list)
            listed.append(value)
        else:
            fields[name] = value
    return fields


async def _paid(
    client: httpx.AsyncClient, gateway: Simulator, shop: dict[str, str], *names: str, **extra: Any
) -> dict[str, Any]:
    order = await post(client, "/v1/orders", order_body(shop, *names, **extra))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "qr"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    order["payment_id"] = payment["id"]
    return order


async def _count(uow: UnitOfWork) -> int:
    async with uow:
        return int((await uow.conn.execute(select(func.count()).select_from(refunds))).scalar_one())


async def _page(console: httpx.AsyncClient, order_id: str) -> str:
    response = await console.get(f"/admin/orders/{order_id}")
    assert response.status_code == 200
    return response.text


async def _refund(
    console: httpx.AsyncClient, gateway: Simulator, order_id: str, **fields: str | list[str]
) -> httpx.Response:
    """Fill the order page's refund form, confirm it, and follow the redirect back once
    the gateway has answered."""
    token = _token(await _page(console, order_id))
    data = {"csrf_token": token, "reason": "requested_by_customer", **fields}
    confirm = await console.post(f"/admin/orders/{order_id}/refunds/confirm", data=data)
    if confirm.status_code != 200:
        return confirm
    made = await console.post(f"/admin/orders/{order_id}/refunds", data=_hidden(confirm.text))
    if made.status_code != 303:
        return made
    await gateway.drain()
    return await console.get(made.headers["location"])


def _refund_id(response: httpx.Response) -> str:
    query = urlsplit(str(response.url)).query
    found = re.search(r"refund=(re_[0-9A-Za-z]+)", query)
    assert found is not None, response.url
    return found.group(1)


async def test_an_operator_refunds_an_amount_after_a_confirmation_step(
    client: httpx.AsyncClient,
    console: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
) -> None:
    order = await _paid(client, gateway, shop, "c1", "c2")
    page = await _page(console, order["id"])
    assert "The refund rules allow CN¥298.00 to be refunded now." in page
    assert 'data-testid="refundable-0">CN¥99.00<' in page
    assert "No refunds." in page

    token = _token(page)
    data = {"csrf_token": token, "mode": "amount", "amount": "30.00", "reason": "content_issue"}
    confirm = await console.post(f"/admin/orders/{order['id']}/refunds/confirm", data=data)
    assert confirm.status_code == 200
    assert "Refund CN¥30.00 to the buyer" in confirm.text
    assert f"admin:{EMAIL}" in confirm.text
    assert _hidden(confirm.text)["amount"] == "30.00"
    assert await _count(uow) == 0  # confirming writes nothing
    assert (await console.get(f"/admin/orders/{order['id']}/refunds")).status_code == 405

    made = await console.post(f"/admin/orders/{order['id']}/refunds", data=_hidden(confirm.text))
    assert made.status_code == 303
    assert made.headers["location"].startswith(f"/admin/orders/{order['id']}?refund=re_")
    await gateway.drain()
    back = await console.get(made.headers["location"])
    refund = (await client.get(f"/v1/refunds/{_refund_id(back)}")).json()
    assert (refund["amount"], refund["status"], refund["reason"]) == (
        3000,
        "succeeded",
        "content_issue",
    )
    assert refund["requested_by"] == ADMIN
    assert refund["override_by"] is None
    assert sum(line["amount"] for line in refund["lines"]) == 3000
    assert 'data-testid="refund-notice"' in back.text
    assert f"Refund {refund['id']} of CN¥30.00 succeeded" in back.text
    assert "Problem with the content" in back.text  # the reason, in words
    assert "Refund requested" in back.text  # on the timeline
    assert "Refund succeeded" in back.text
    assert "The refund rules allow CN¥268.00 to be refunded now." in back.text
    after = (await client.get(f"/v1/orders/{order['id']}")).json()
    assert after["status"] == "partially_refunded"


async def test_an_operator_refunds_chosen_lines_whole_or_in_part(
    client: httpx.AsyncClient,
    console: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
) -> None:
    order = await _paid(client, gateway, shop, "c1", "c2")
    whole = await _refund(console, gateway, order["id"], mode="lines", line=["1"])
    first = (await client.get(f"/v1/refunds/{_refund_id(whole)}")).json()
    assert first["amount"] == 19900
    assert [(line["index"], line["amount"]) for line in first["lines"]] == [(1, 19900)]
    assert first["lines"][0]["revokes_access"] is True
    assert "access revoked" in whole.text

    part = await _refund(
        console, gateway, order["id"], mode="lines", line=["0"], line_amount_0="10.50"
    )
    second = (await client.get(f"/v1/refunds/{_refund_id(part)}")).json()
    assert [(line["index"], line["amount"]) for line in second["lines"]] == [(0, 1050)]
    assert 'data-testid="refundable-0">CN¥88.50<' in part.text
    assert 'data-testid="refundable-1">CN¥0.00<' in part.text
    assert "Refunded in full" in part.text
    listed = re.findall(r'<td class="mono">(re_[0-9A-Za-z]+)<', part.text)
    assert listed == [second["id"], first["id"]]  # the order's refunds, newest first


async def test_a_refund_the_rules_refuse_shows_the_rule_and_writes_nothing(
    client: httpx.AsyncClient,
    console: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    order = await _paid(client, gateway, shop, "c1")
    too_much = await _refund(console, gateway, order["id"], mode="amount", amount="99.01")
    assert too_much.status_code == 409
    assert "refund_exceeds_refundable" in too_much.text
    assert "That is more than can be refunded now." in too_much.text
    assert 'value="99.01"' in too_much.text  # the form keeps what was typed
    typo = await _refund(console, gateway, order["id"], mode="amount", amount="12,50")
    assert typo.status_code == 422
    assert "amount_invalid" in typo.text
    no_line = await _refund(console, gateway, order["id"], mode="lines")
    assert no_line.status_code == 422

    clock.advance(timedelta(days=7, seconds=1))  # past the default 7-day window
    await _sign_in(console)
    page = await _page(console, order["id"])
    assert "refund_window_closed" in page  # the rule that blocks the line, before asking
    token = _token(page)
    late = await console.post(
        f"/admin/orders/{order['id']}/refunds",
        data={"csrf_token": token, "mode": "all", "reason": "requested_by_customer"},
    )
    assert late.status_code == 409
    assert 'data-testid="refund-problem"' in late.text
    assert "<code>refund_window_closed</code>" in late.text
    assert "The refund window of this purchase has closed." in late.text
    assert "Nothing was refunded." in late.text
    assert await _count(uow) == 0
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"


async def test_an_override_is_recorded_with_the_operators_email(
    client: httpx.AsyncClient,
    console: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
) -> None:
    order = await _paid(client, gateway, shop, "c1")
    clock.advance(timedelta(days=30))
    await _sign_in(console)
    token = _token(await _page(console, order["id"]))
    confirm = await console.post(
        f"/admin/orders/{order['id']}/refunds/confirm",
        data={"csrf_token": token, "mode": "all", "reason": "other", "override": "1"},
    )
    assert 'data-testid="confirm-override"' in confirm.text
    assert "Refund CN¥99.00 to the buyer" in confirm.text
    made = await console.post(f"/admin/orders/{order['id']}/refunds", data=_hidden(confirm.text))
    assert made.status_code == 303
    await gateway.drain()
    back = await console.get(made.headers["location"])
    refund = (await client.get(f"/v1/refunds/{_refund_id(back)}")).json()
    assert refund["status"] == "succeeded"
    assert refund["override_by"] == refund["requested_by"] == ADMIN
    assert f"rules overridden by {ADMIN}" in back.text
    assert 'id="refund"' not in back.text  # refunded in full: no form any more


async def test_refund_forms_without_the_sessions_csrf_token_are_refused(
    client: httpx.AsyncClient,
    console: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
) -> None:
    order = await _paid(client, gateway, shop, "c1")
    for path in (
        f"/admin/orders/{order['id']}/refunds",
        f"/admin/orders/{order['id']}/refunds/confirm",
    ):
        for token in ({}, {"csrf_token": "forged"}):
            refused = await console.post(path, data={"mode": "all", **token})
            assert refused.status_code == 403, path
    refused = await console.post("/admin/refunds/re_nope/retry", data={})
    assert refused.status_code == 403
    assert await _count(uow) == 0
    console.cookies.clear()
    anonymous = await console.post(f"/admin/orders/{order['id']}/refunds", data={"mode": "all"})
    assert anonymous.status_code == 303  # to the login page
    assert anonymous.headers["location"].startswith("/admin/login")
    assert await _count(uow) == 0


async def test_a_failed_refund_shows_its_reason_and_is_retried_from_the_order_page(
    client: httpx.AsyncClient,
    console: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
) -> None:
    order = await _paid(client, gateway, shop, "c1")
    gateway.fail_next_refunds(1)
    back = await _refund(console, gateway, order["id"], mode="all")
    await gateway.drain()
    failed_id = _refund_id(back)
    back = await console.get(f"/admin/orders/{order['id']}", params={"refund": failed_id})
    failed = (await client.get(f"/v1/refunds/{failed_id}")).json()
    assert failed["status"] == "failed"
    assert f"Refund {failed_id} of CN¥99.00 failed." in back.text
    assert failed["failure_code"] in back.text
    assert "Refund failed" in back.text  # on the timeline
    assert f'action="/admin/refunds/{failed_id}/retry"' in back.text

    retried = await console.post(
        f"/admin/refunds/{failed_id}/retry", data={"csrf_token": _token(back.text)}
    )
    assert retried.status_code == 303
    await gateway.drain()
    again_page = await console.get(retried.headers["location"])
    again = (await client.get(f"/v1/refunds/{_refund_id(again_page)}")).json()
    assert (again["status"], again["retry_of"], again["requested_by"]) == (
        "succeeded",
        failed_id,
        ADMIN,
    )
    assert f"retry of {failed_id}" in again_page.text
    not_again = await console.post(
        f"/admin/refunds/{again['id']}/retry", data={"csrf_token": _token(again_page.text)}
    )
    assert not_again.status_code == 409
    assert "refund_not_retryable" in not_again.text
    missing = await console.post(
        "/admin/refunds/re_nope/retry", data={"csrf_token": _token(again_page.text)}
    )
    assert missing.status_code == 404


async def test_the_refunds_list_filters_by_status_order_customer_and_date(
    client: httpx.AsyncClient,
    console: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
) -> None:
    first = await _paid(client, gateway, shop, "c1")
    second = await _paid(client, gateway, shop, "c2", customer_id="u_2")
    a = _refund_id(await _refund(console, gateway, first["id"], mode="amount", amount="1.00"))
    gateway.fail_next_refunds(1)
    b = _refund_id(await _refund(console, gateway, second["id"], mode="amount", amount="2.00"))
    await gateway.drain()

    async def ids(**params: str) -> list[str]:
        page = await console.get("/admin/refunds", params=params)
        assert page.status_code == 200
        return re.findall(r'data-testid="refund-id">(re_[0-9A-Za-z]+)<', page.text)

    everything = await console.get("/admin/refunds")
    assert 'href="/admin/refunds" aria-current="page"' in everything.text  # in the navigation
    assert await ids() == [b, a]
    assert await ids(status="failed") == [b]
    assert await ids(status="succeeded") == [a]
    assert await ids(order=first["id"]) == [a]
    assert await ids(customer="u_2") == [b]
    today = clock.now().date().isoformat()
    assert await ids(**{"from": today, "to": today}) == [b, a]
    assert await ids(to="2020-01-01") == []
    assert await ids(offset="1") == [a]  # the next page starts after the rows shown
    refused = await console.get("/admin/refunds", params={"status": "bogus"})
    assert refused.status_code == 422
    assert 'data-testid="filter-error"' in refused.text


async def test_a_double_charge_is_marked_with_its_automatic_refund_everywhere(
    client: httpx.AsyncClient,
    console: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    first, second = [
        await post(
            client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "qr"}
        )
        for _ in range(2)
    ]
    for payment in (first, second):
        await gateway.pay(payment["id"])
        await gateway.drain()

    payments = (await console.get("/admin/payments")).text
    assert 'data-testid="double-charge"' in payments
    assert "refunded automatically: Succeeded" in payments
    assert 'data-testid="refunded">CN¥99.00<' in payments
    page = await _page(console, order["id"])
    assert "Double charge — refunded automatically." in page
    assert f"the extra payment {second['id']} goes back by itself" in page
    assert "no lines (double charge)" in page

    checkout = urlsplit(order["checkout_url"])
    buyer = await anon_client.get(f"{checkout.path}?{checkout.query}")
    assert buyer.status_code == 200
    assert "We received a second payment of CN¥99.00 for this order." in buyer.text
    assert "It has been returned to you" in buyer.text
    chinese = await anon_client.get(f"{checkout.path}?{checkout.query}&lang=zh-CN")
    assert "我们收到了该订单的第二笔付款 ¥99.00" in chinese.text
    assert "已退还给你" in chinese.text


async def test_the_refund_pages_read_in_chinese(
    client: httpx.AsyncClient,
    console: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
) -> None:
    order = await _paid(client, gateway, shop, "c1")
    page = (await console.get(f"/admin/orders/{order['id']}", params={"lang": "zh-CN"})).text
    assert "当前可退 ¥99.00。" in page
    assert "越过退款规则" in page
    listed = (await console.get("/admin/refunds")).text
    assert "没有符合条件的退款。" in listed
