"""Free orders (a 100 % coupon makes the total 0) complete with one action, through the
paid path: paid, access granted, ``order.paid`` sent; no payment, no gateway call, no
ledger entry. Both engines; the race of two completions on PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.shop import order_body, post
from tuition import web
from tuition.clock import FrozenClock
from tuition.domain.errors import Conflict
from tuition.services.checkout import change_coupon
from tuition.services.free_orders import complete_free_order
from tuition.simulator.app import Simulator
from tuition.store.tables import journal_entries, outbox_events, payments
from tuition.store.uow import UnitOfWork


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


async def _free_order(client: httpx.AsyncClient, shop: dict[str, str], *names: str) -> Any:
    await post(client, "/v1/coupons", {"code": "ALLFREE", "percent_off": "1"})
    order = await post(
        client,
        "/v1/orders",
        order_body(shop, *names or ("c1",), coupon_code="ALLFREE", return_url="https://s.example/"),
    )
    assert order["total"] == 0
    return order


async def _counts(uow: UnitOfWork, order_id: str) -> tuple[int, int, list[str]]:
    """(payments of the order, ledger entries, event types about the order)."""
    async with uow:
        paid = await uow.conn.scalar(
            select(func.count()).select_from(payments).where(payments.c.order_id == order_id)
        )
        entries = await uow.conn.scalar(select(func.count()).select_from(journal_entries))
        events = await uow.conn.execute(
            select(outbox_events.c.type)
            .where(outbox_events.c.object_id == order_id)
            .order_by(outbox_events.c.created_at, outbox_events.c.id)
        )
        return int(paid or 0), int(entries or 0), [row.type for row in events]


async def test_a_free_order_completes_with_one_call_and_no_money_moves(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, gateway: Simulator
) -> None:
    order = await _free_order(client, shop, "c1", "c2")
    refused = await client.post(
        f"/v1/orders/{order['id']}/payments", json={"channel": "sandbox", "method": "page"}
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "order_is_free"
    assert gateway.state.payments == {}  # the gateway was never called
    from_balance = await client.post(
        f"/v1/orders/{order['id']}/payments", json={"channel": "wallet"}
    )
    assert from_balance.status_code == 409
    assert from_balance.json()["error"]["code"] == "order_is_free"

    done = await client.post(f"/v1/orders/{order['id']}/complete")
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["status"], body["total"]) == ("paid", 0)
    assert body["paid_at"] is not None
    for name in ("c1", "c2"):
        access = await client.get(f"/v1/customers/u_1/entitlements/{shop[name]}")
        assert access.json()["has_access"] is True, access.text
    assert await _counts(uow, order["id"]) == (0, 0, ["order.paid"])

    again = await client.post(f"/v1/orders/{order['id']}/complete")
    assert again.status_code == 200
    assert again.json()["paid_at"] == body["paid_at"]
    assert await _counts(uow, order["id"]) == (0, 0, ["order.paid"])


async def test_an_order_that_costs_something_or_a_free_top_up_is_refused(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork
) -> None:
    paying = await post(client, "/v1/orders", order_body(shop, "c1"))
    refused = await client.post(f"/v1/orders/{paying['id']}/complete")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "order_not_free"
    assert (await client.get(f"/v1/orders/{paying['id']}")).json()["status"] == "pending_payment"
    missing = await client.post("/v1/orders/ord_00000000000000000000000000/complete")
    assert missing.status_code == 404

    cancelled = await _free_order(client, shop, "c2")
    assert (await client.post(f"/v1/orders/{cancelled['id']}/cancel")).status_code == 200
    closed = await client.post(f"/v1/orders/{cancelled['id']}/complete")
    assert closed.status_code == 409
    assert closed.json()["error"]["code"] == "order_not_payable"
    payments_made, entries, events = await _counts(uow, cancelled["id"])
    assert (payments_made, entries) == (0, 0)
    assert "order.paid" not in events


async def test_removing_the_coupon_first_makes_completion_fail_and_writes_nothing(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    order = await _free_order(client, shop, "c1")
    await change_coupon(uow, order["id"], None, clock=clock)
    with pytest.raises(Conflict) as refused:
        await complete_free_order(order["id"], uow, clock=clock)
    assert refused.value.code == "order_not_free"
    now = (await client.get(f"/v1/orders/{order['id']}")).json()
    assert (now["status"], now["total"]) == ("pending_payment", 9900)
    access = await client.get(f"/v1/customers/u_1/entitlements/{shop['c1']}")
    assert access.json()["has_access"] is False


@pytest.mark.postgres_only
async def test_two_completions_racing_pay_the_order_once(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    uow: UnitOfWork,
    engine: AsyncEngine,
    clock: FrozenClock,
) -> None:
    order = await _free_order(client, shop, "c1")
    done = await asyncio.gather(
        *(complete_free_order(order["id"], UnitOfWork(engine), clock=clock) for _ in range(4))
    )
    assert {d.status.value for d in done} == {"paid"}
    assert await _counts(uow, order["id"]) == (0, 0, ["order.paid"])


@pytest.mark.postgres_only
async def test_a_completion_racing_a_coupon_removal_never_gives_away_a_priced_order(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    uow: UnitOfWork,
    engine: AsyncEngine,
    clock: FrozenClock,
) -> None:
    for n in range(3):
        order = (
            await _free_order(client, shop, "c1")
            if n == 0
            else await post(
                client,
                "/v1/orders",
                order_body(shop, "c1", coupon_code="ALLFREE", customer_id=f"racer-{n}"),
            )
        )
        completed, removed = await asyncio.gather(
            complete_free_order(order["id"], UnitOfWork(engine), clock=clock),
            change_coupon(UnitOfWork(engine), order["id"], None, clock=clock),
            return_exceptions=True,
        )
        now = (await client.get(f"/v1/orders/{order['id']}")).json()
        if isinstance(completed, BaseException):  # the removal won: a priced, unpaid order
            assert isinstance(completed, Conflict), completed
            assert (now["status"], now["total"]) == ("pending_payment", 9900)
        else:  # the completion won: paid at 0, and the coupon stays
            assert isinstance(removed, Conflict), removed
            assert (now["status"], now["total"], now["coupon_code"]) == ("paid", 0, "ALLFREE")
        payments_made, entries, _ = await _counts(uow, order["id"])
        assert (payments_made, entries) == (0, 0)


async def test_the_checkout_page_completes_a_free_order_with_one_button(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork
) -> None:
    order = await _free_order(client, shop, "c1")
    url = urlsplit(order["checkout_url"])
    sig = parse_qs(url.query)["sig"][0]
    page = await anon_client.get(url.path, params={"sig": sig, "lang": "en"})
    assert "Nothing to pay: this order is free." in page.text
    assert 'name="option"' not in page.text  # no channel to choose
    bad = await anon_client.post(f"{url.path}/complete", data={"sig": sig[:-1] + "x"})
    assert bad.status_code == 404
    done = await anon_client.post(f"{url.path}/complete", data={"sig": sig})
    assert done.status_code == 303
    assert "error" not in done.headers["location"]
    shown = await anon_client.get(url.path, params={"sig": sig, "lang": "en"})
    assert "Payment received" in shown.text
    assert "Nothing was charged." in shown.text
    assert await _counts(uow, order["id"]) == (0, 0, ["order.paid"])
