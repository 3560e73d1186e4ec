"""The buyer's history feed and hiding entries from it, over HTTP on both engines."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.integration.shop import order_body, post
from tuition.clock import FrozenClock
from tuition.services.ledger import verify_ledger
from tuition.simulator.app import Simulator
from tuition.store.tables import history_hidden, outbox_events
from tuition.store.uow import UnitOfWork


async def _paid(
    client: httpx.AsyncClient, gateway: Simulator, shop: dict[str, str], *names: str, **extra: Any
) -> tuple[dict[str, Any], str]:
    order = await post(client, "/v1/orders", order_body(shop, *names, **extra))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    return order, payment["id"]


async def _all_pages(
    client: httpx.AsyncClient, customer: str = "u_1", limit: int = 2, **params: Any
) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"limit": limit, **params}
        if cursor:
            query["starting_after"] = cursor
        got = await client.get(f"/v1/customers/{customer}/history", params=query)
        assert got.status_code == 200, got.text
        body = got.json()
        seen.extend(body["data"])
        if not body["has_more"]:
            return seen
        cursor = body["next_cursor"]


async def test_the_feed_merges_orders_payments_refunds_and_wallet_moves_newest_first(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, clock: FrozenClock
) -> None:
    order, payment_id = await _paid(client, gateway, shop, "c1")
    clock.advance(timedelta(minutes=1))
    refund = await post(client, "/v1/refunds", {"order_id": order["id"], "amount": 1000})
    await gateway.drain()
    clock.advance(timedelta(minutes=1))
    await post(
        client,
        "/v1/customers/u_1/wallet/adjustments",
        {"currency": "CNY", "amount": 500, "reason": "goodwill"},
    )
    await post(client, "/v1/orders", order_body(shop, "c2", customer_id="someone_else"))
    entries = await _all_pages(client)
    kinds = [e["kind"] for e in entries]
    assert kinds[:2] == ["wallet_transaction", "refund"]
    assert sorted(kinds[2:]) == ["order", "payment"]
    assert len({e["id"] for e in entries}) == len(entries) == 4
    times = [e["created_at"] for e in entries]
    assert times == sorted(times, reverse=True)
    by_kind = {e["kind"]: e for e in entries}
    assert by_kind["order"]["amount"] == 9900
    assert by_kind["order"]["direction"] == "debit"
    assert by_kind["order"]["lines"][0]["product_id"] == shop["c1"]
    assert by_kind["order"]["links"]["receipt"] == f"/v1/orders/{order['id']}/receipt"
    assert by_kind["payment"]["links"]["payment"] == f"/v1/payments/{payment_id}"
    assert by_kind["payment"]["status"] == "succeeded"
    assert by_kind["refund"]["id"] == refund["id"]
    assert by_kind["refund"]["direction"] == "credit"
    assert by_kind["refund"]["amount"] == 1000
    assert by_kind["refund"]["description"] == by_kind["order"]["description"] != ""
    wallet = by_kind["wallet_transaction"]
    assert (wallet["amount"], wallet["direction"], wallet["status"]) == (500, "credit", "succeeded")
    only_refunds = await _all_pages(client, kind="refund")
    assert [e["id"] for e in only_refunds] == [refund["id"]]
    succeeded = await _all_pages(client, status="succeeded")
    assert {e["kind"] for e in succeeded} == {"payment", "refund", "wallet_transaction"}
    start = (clock.now() - timedelta(seconds=30)).isoformat()
    recent = await _all_pages(client, created_gte=start)
    assert [e["kind"] for e in recent] == ["wallet_transaction"]
    older = await _all_pages(client, created_lt=start)
    assert len(older) == 3


async def test_pages_have_no_gaps_or_repeats_while_new_entries_arrive(
    client: httpx.AsyncClient, shop: dict[str, str], clock: FrozenClock
) -> None:
    made = []
    for n in range(7):
        # Pairs share a timestamp, so ties across ids are exercised too.
        if n % 2 == 0:
            clock.advance(timedelta(seconds=1))
        made.append((await post(client, "/v1/orders", order_body(shop, "c1")))["id"])
    seen: list[str] = []
    cursor = None
    arrived: list[str] = []
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["starting_after"] = cursor
        body = (await client.get("/v1/customers/u_1/history", params=params)).json()
        seen.extend(e["id"] for e in body["data"])
        # Something new arrives between pages: it belongs at the top, never mid-feed.
        clock.advance(timedelta(milliseconds=1))
        arrived.append((await post(client, "/v1/orders", order_body(shop, "c2")))["id"])
        if not body["has_more"]:
            break
        cursor = body["next_cursor"]
    assert sorted(seen) == sorted(made)
    assert len(seen) == len(set(seen))
    assert not set(seen) & set(arrived)
    everything = await _all_pages(client, limit=100)
    assert [e["id"] for e in everything][: len(arrived)] == list(reversed(arrived))


async def test_a_bad_filter_or_cursor_is_a_422_naming_it(client: httpx.AsyncClient) -> None:
    for params, param in (
        ({"kind": "coupon"}, "kind"),
        ({"status": "nonsense"}, "status"),
        ({"starting_after": "ord_01J9Z3K4QW8YV6T2N5B7C0D1EF"}, "starting_after"),
        ({"starting_after": "!!!"}, "starting_after"),
        ({"created_gte": "yesterday"}, "created_gte"),
        ({"limit": 0}, "limit"),
    ):
        got = await client.get("/v1/customers/u_1/history", params=params)
        assert got.status_code == 422, (params, got.text)
        assert got.json()["error"]["param"] == param, got.text


async def test_hiding_changes_only_the_buyers_feed_and_unhiding_restores_it(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order, payment_id = await _paid(client, gateway, shop, "c1")
    before_order = (await client.get(f"/v1/orders/{order['id']}")).json()
    hid = await client.post(f"/v1/customers/u_1/history/{payment_id}/hide")
    assert hid.status_code == 200, hid.text
    assert hid.json()["hidden"] is True
    again = await client.post(f"/v1/customers/u_1/history/{payment_id}/hide")
    assert again.status_code == 200
    assert again.json()["hidden"] is True
    visible = await _all_pages(client)
    assert [e["id"] for e in visible] == [order["id"]]
    everything = await _all_pages(client, include_hidden="true")
    assert {e["id"]: e["hidden"] for e in everything} == {order["id"]: False, payment_id: True}
    # The objects themselves and the ledger are untouched.
    assert (await client.get(f"/v1/payments/{payment_id}")).json()["status"] == "succeeded"
    assert (await client.get(f"/v1/orders/{order['id']}")).json() == before_order
    assert (await verify_ledger(uow)).ok
    shown = await client.post(f"/v1/customers/u_1/history/{payment_id}/unhide")
    assert shown.status_code == 200
    assert shown.json()["hidden"] is False
    assert len(await _all_pages(client)) == 2
    async with uow:
        row = (await uow.conn.execute(select(history_hidden))).one()
        types = [
            r[0]
            for r in await uow.conn.execute(
                select(outbox_events.c.type).where(outbox_events.c.object_id == payment_id)
            )
        ]
    assert row.hidden is False
    assert row.hidden_by.startswith("api_key:")
    assert row.unhidden_by.startswith("api_key:")
    assert row.unhidden_at is not None
    # One event per change, none for the repeated hide.
    assert types.count("history.entry_hidden") == 1
    assert types.count("history.entry_unhidden") == 1


async def test_hiding_an_order_awaiting_payment_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    got = await client.post(f"/v1/customers/u_1/history/{order['id']}/hide")
    assert got.status_code == 409, got.text
    assert got.json()["error"]["code"] == "order_pending_payment"
    for path in (
        f"/v1/customers/someone_else/history/{order['id']}/hide",
        "/v1/customers/u_1/history/ord_01J9Z3K4QW8YV6T2N5B7C0D1EF/hide",
        "/v1/customers/u_1/history/cpn_whatever/hide",
    ):
        missing = await client.post(path)
        assert missing.status_code == 404, missing.text
        assert missing.json()["error"]["param"] == "entry_id"
    async with uow:
        count = (
            await uow.conn.execute(select(func.count()).select_from(history_hidden))
        ).scalar_one()
    assert count == 0


@pytest.mark.postgres_only
async def test_racing_hides_of_one_entry_record_one_change_and_one_event(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    _order, payment_id = await _paid(client, gateway, shop, "c1")
    answers = await asyncio.gather(
        *(client.post(f"/v1/customers/u_1/history/{payment_id}/hide") for _ in range(8))
    )
    assert all(a.status_code == 200 and a.json()["hidden"] for a in answers), [
        a.text for a in answers
    ]
    async with uow:
        rows = (await uow.conn.execute(select(history_hidden))).all()
        events = (
            await uow.conn.execute(
                select(func.count())
                .select_from(outbox_events)
                .where(outbox_events.c.type == "history.entry_hidden")
            )
        ).scalar_one()
    assert len(rows) == 1
    assert events == 1
