"""Refunds on request over HTTP, on both engines: amounts, lines, rules, races, the
channel's answers, the ledger reversal and the access a refund takes back."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.integration.shop import order_body, post
from tuition.clock import FrozenClock
from tuition.services.ledger import verify_ledger
from tuition.simulator.app import Simulator
from tuition.simulator.records import GatewayError
from tuition.store.tables import outbox_events, refunds
from tuition.store.uow import UnitOfWork
from tuition.worker.runner import Worker, WorkerConfig


async def _paid(
    client: httpx.AsyncClient, gateway: Simulator, shop: dict[str, str], *names: str, **extra: Any
) -> dict[str, Any]:
    order = await post(client, "/v1/orders", order_body(shop, *names, **extra))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    paid = (await client.get(f"/v1/orders/{order['id']}")).json()
    assert paid["status"] == "paid", paid
    paid["payment_id"] = payment["id"]
    return paid  # type: ignore[no-any-return]


async def _refund(client: httpx.AsyncClient, gateway: Simulator, **body: Any) -> httpx.Response:
    """POST a refund, let the gateway's answer arrive, and read the refund as it now is."""
    made = await client.post("/v1/refunds", json=body)
    if made.status_code != 201:
        return made
    await gateway.drain()
    now = await client.get(f"/v1/refunds/{made.json()['id']}")
    return httpx.Response(201, json=now.json())


async def _balances(uow: UnitOfWork) -> dict[str, int]:
    async with uow:
        return {k: v for k, v in (await uow.ledger.balances()).items() if v}


async def _event_types(uow: UnitOfWork) -> list[str]:
    async with uow:
        return sorted(r[0] for r in await uow.conn.execute(select(outbox_events.c.type)))


async def _refund_count(uow: UnitOfWork) -> int:
    async with uow:
        return int((await uow.conn.execute(select(func.count()).select_from(refunds))).scalar_one())


async def _access(client: httpx.AsyncClient, product_id: str, customer: str = "u_1") -> bool:
    got = await client.get(f"/v1/customers/{customer}/entitlements/{product_id}")
    return bool(got.json()["has_access"])


async def _ledger_clean(uow: UnitOfWork) -> None:
    report = await verify_ledger(uow)
    assert report.ok, report.problems


def _worker(app: FastAPI) -> Worker:
    return Worker(app.state.modes.live, WorkerConfig(sweep_interval=timedelta(seconds=0)))


async def test_a_full_refund_returns_every_party_its_part_and_ends_access(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order = await _paid(client, gateway, shop, "c1")
    made = await _refund(client, gateway, order_id=order["id"], reason="content_issue")
    assert made.status_code == 201, made.text
    refund = made.json()
    assert refund["status"] == "succeeded"
    assert refund["amount"] == 9900
    assert refund["payment_id"] == order["payment_id"]
    assert refund["lines"] == [
        {
            "line_id": f"{order['id']}:0",
            "index": 0,
            "amount": 9900,
            "creator_amount": 6930,
            "tax_amount": 0,
            "platform_amount": 2970,
            "revokes_access": True,
        }
    ]
    assert refund["fee_returned"] == 59  # the sandbox returns its fee pro rata
    assert refund["requested_by"].startswith("api_key:key_")
    after = (await client.get(f"/v1/orders/{order['id']}")).json()
    assert after["status"] == "refunded"
    assert after["amount_refunded"] == 9900
    assert after["lines"][0]["amount_refunded"] == 9900
    payment = (await client.get(f"/v1/payments/{order['payment_id']}")).json()
    assert payment["amount_refunded"] == 9900
    assert not await _access(client, shop["c1"])
    await _ledger_clean(uow)
    assert await _balances(uow) == {"platform_revenue:CNY": -2970, "refunds:CNY": 2970}
    types = await _event_types(uow)
    for expected in ("refund.created", "refund.succeeded", "order.refunded"):
        assert expected in types
    assert types.count("entitlement.revoked") == 1
    again = await _refund(client, gateway, order_id=order["id"])
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "order_not_refundable"


async def test_two_partial_refunds_reach_the_total_and_only_the_last_ends_access(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order = await _paid(client, gateway, shop, "c1")
    first = (await _refund(client, gateway, order_id=order["id"], amount=3000)).json()
    assert first["status"] == "succeeded"
    # 3000 of 9900 over creator 6930 / platform 2970: exactly 2100 / 900.
    assert (first["lines"][0]["creator_amount"], first["lines"][0]["platform_amount"]) == (
        2100,
        900,
    )
    assert first["fee_returned"] == 18  # round(59 x 3000 / 9900) = round(17.88)
    middle = (await client.get(f"/v1/orders/{order['id']}")).json()
    assert middle["status"] == "partially_refunded"
    assert await _access(client, shop["c1"])
    second = (await _refund(client, gateway, order_id=order["id"])).json()
    assert second["amount"] == 6900
    assert second["fee_returned"] == 41  # 59 in all
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "refunded"
    assert not await _access(client, shop["c1"])
    await _ledger_clean(uow)
    creator = shop["creator"]
    balances = await _balances(uow)
    assert f"creator_pending:CNY:{creator}" not in balances
    assert balances == {"platform_revenue:CNY": -2970, "refunds:CNY": 2970}
    types = await _event_types(uow)
    assert types.count("order.partially_refunded") == 1
    assert types.count("order.refunded") == 1


async def test_refunding_a_bundle_line_revokes_its_components_and_nothing_else(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order = await _paid(client, gateway, shop, "c1", "bundle")
    bundle_line = order["lines"][1]["id"]
    made = await _refund(client, gateway, order_id=order["id"], lines=[{"line_id": bundle_line}])
    assert made.status_code == 201, made.text
    assert made.json()["amount"] == 39900
    assert [line["index"] for line in made.json()["lines"]] == [1]
    assert await _access(client, shop["c1"])  # still held through line 0
    assert not await _access(client, shop["c2"])
    assert not await _access(client, shop["c3"])
    after = (await client.get(f"/v1/orders/{order['id']}")).json()
    assert after["status"] == "partially_refunded"
    assert [line["amount_refunded"] for line in after["lines"]] == [0, 39900]
    assert (await _event_types(uow)).count("entitlement.revoked") == 3
    # The line cannot give back more; the other line still can.
    again = await _refund(
        client, gateway, order_id=order["id"], lines=[{"line_id": 1, "amount": 1}]
    )
    assert again.json()["error"]["code"] == "refund_exceeds_refundable"
    unknown = await _refund(client, gateway, order_id=order["id"], lines=[{"line_id": "ord_x:0"}])
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "line_not_found"
    await _ledger_clean(uow)


async def test_an_amount_is_spread_over_lines_and_creators_by_largest_remainder(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    other = await post(client, "/v1/creators", {"name": "Bo", "default_revenue_share": "0.5"})
    course = await post(
        client,
        "/v1/products",
        {"creator_id": other["id"], "title": "Bo's", "kind": "course", "prices": {"CNY": 10000}},
    )
    shop = {**shop, "bo": course["id"]}
    order = await _paid(client, gateway, shop, "c1", "bo")  # 9900 (70 %) + 10000 (50 %)
    refund = (await _refund(client, gateway, order_id=order["id"], amount=1001)).json()
    # 1001 over the lines' 9900 : 10000 -> 498 (497.98) and 503 (503.02); then each line
    # over its parties: 498 -> creator 348.6 / platform 149.4 -> 349 / 149, and
    # 503 -> 251.5 / 251.5 -> 252 / 251 (a tie goes to the earlier part).
    parts = [
        (line["amount"], line["creator_amount"], line["platform_amount"])
        for line in refund["lines"]
    ]
    assert parts == [(498, 349, 149), (503, 252, 251)]
    await _ledger_clean(uow)
    balances = await _balances(uow)
    assert balances[f"creator_pending:CNY:{shop['creator']}"] == -(6930 - 349)
    assert balances[f"creator_pending:CNY:{other['id']}"] == -(5000 - 252)
    assert balances["refunds:CNY"] == 149 + 251


async def test_asking_for_more_than_is_refundable_writes_nothing(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order = await _paid(client, gateway, shop, "c1")
    too_much = await _refund(client, gateway, order_id=order["id"], amount=9901)
    assert too_much.status_code == 409
    assert too_much.json()["error"]["code"] == "refund_exceeds_refundable"
    assert too_much.json()["error"]["param"] == "amount"
    both = await _refund(client, gateway, order_id=order["id"], amount=1, lines=[{"line_id": 0}])
    assert both.status_code == 422
    unpaid = await post(client, "/v1/orders", order_body(shop, "c2"))
    refused = await _refund(client, gateway, order_id=unpaid["id"])
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "order_not_refundable"
    assert (await _refund(client, gateway, order_id="ord_nope")).status_code == 404
    assert await _refund_count(uow) == 0
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    await _ledger_clean(uow)


async def test_the_refund_window_closes_and_an_override_is_recorded(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    order = await _paid(client, gateway, shop, "c1")
    clock.advance(timedelta(days=7, seconds=1))  # the platform default: 7 days
    late = await _refund(client, gateway, order_id=order["id"])
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "refund_window_closed"
    assert await _refund_count(uow) == 0
    preview = (await client.get(f"/v1/orders/{order['id']}/refundable")).json()
    assert preview["refundable"] == 0
    assert preview["lines"][0]["refused_by"] == "refund_window_closed"
    forced = await _refund(client, gateway, order_id=order["id"], override=True)
    assert forced.status_code == 201, forced.text
    assert forced.json()["status"] == "succeeded"
    assert forced.json()["override_by"] == forced.json()["requested_by"]
    assert forced.json()["override_by"].startswith("api_key:key_")


async def test_consumption_rules_refund_the_unconsumed_share_or_nothing_above_a_limit(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    prorate = await client.patch(
        f"/v1/products/{shop['c2']}", json={"refund_policy": {"consumption": "prorate"}}
    )
    assert prorate.status_code == 200, prorate.text
    assert prorate.json()["refund_policy"] == {"consumption": "prorate"}
    limit = await client.patch(
        f"/v1/products/{shop['c3']}",
        json={"refund_policy": {"consumption": "limit", "max_progress": "0.3"}},
    )
    assert limit.status_code == 200, limit.text
    bad = await client.patch(
        f"/v1/products/{shop['c3']}", json={"refund_policy": {"consumption": "limit"}}
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["param"] == "refund_policy.max_progress"

    order = await _paid(client, gateway, shop, "c2", "c3")
    progress = await client.put(
        f"/v1/customers/u_1/entitlements/{shop['c2']}/progress", json={"progress": "0.35"}
    )
    assert progress.status_code == 200, progress.text
    lessons = await client.put(
        f"/v1/customers/u_1/entitlements/{shop['c3']}/progress",
        json={"lessons_consumed": 7, "lessons_total": 20},
    )
    assert lessons.json()["progress"] == "0.350000000000"
    nobody = await client.put(
        f"/v1/customers/u_2/entitlements/{shop['c3']}/progress", json={"progress": "0.1"}
    )
    assert nobody.status_code == 404
    out_of_range = await client.put(
        f"/v1/customers/u_1/entitlements/{shop['c3']}/progress", json={"progress": "1.5"}
    )
    assert out_of_range.status_code == 422

    over_limit = await _refund(client, gateway, order_id=order["id"], lines=[{"line_id": 1}])
    assert over_limit.json()["error"]["code"] == "consumption_limit_exceeded"
    # c2: 19900 x (1 - 0.35) = 12935; over creator 13930 / platform 5970 -> 9055 / 3880.
    refund = (await _refund(client, gateway, order_id=order["id"], lines=[{"line_id": 0}])).json()
    assert refund["amount"] == 12935
    assert (refund["lines"][0]["creator_amount"], refund["lines"][0]["platform_amount"]) == (
        9055,
        3880,
    )
    assert refund["lines"][0]["revokes_access"] is False  # a partial refund keeps access
    assert await _access(client, shop["c2"])
    await client.put(
        f"/v1/customers/u_1/entitlements/{shop['c3']}/progress",
        json={"lessons_consumed": 6, "lessons_total": 20},
    )
    at_limit = await _refund(client, gateway, order_id=order["id"], lines=[{"line_id": 1}])
    assert at_limit.json()["amount"] == 29900  # 0.3 is not above the limit of 0.3
    await _ledger_clean(uow)


async def test_a_membership_refunds_its_unused_time_to_the_second(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    order = await _paid(client, gateway, shop, "monthly")  # 30.00, 11-01 09:00 to 12-01
    clock.advance(timedelta(days=6))
    # 24 of 30 days left: 3000 x 2073600 / 2592000 = 2400.
    preview = (await client.get(f"/v1/orders/{order['id']}/refundable")).json()
    assert preview["refundable"] == 2400
    refund = (await _refund(client, gateway, order_id=order["id"])).json()
    assert refund["amount"] == 2400
    assert refund["lines"][0]["revokes_access"] is True
    assert not await _access(client, shop["monthly"])
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == (
        "partially_refunded"
    )
    await _ledger_clean(uow)


async def test_twenty_concurrent_refunds_never_give_back_more_than_was_paid(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order = await _paid(client, gateway, shop, "c1")
    answers = await asyncio.gather(
        *(_refund(client, gateway, order_id=order["id"], amount=1000) for _ in range(20))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes.count(201) == 9, [a.text for a in answers if a.status_code not in (201, 409)]
    assert codes.count(409) == 11
    after = (await client.get(f"/v1/orders/{order['id']}")).json()
    assert after["amount_refunded"] == 9000
    assert await _refund_count(uow) == 9
    await _ledger_clean(uow)


async def test_a_refund_the_gateway_fails_releases_its_hold_and_can_be_retried(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order = await _paid(client, gateway, shop, "c1")
    gateway.fail_next_refunds(1)
    made = (await _refund(client, gateway, order_id=order["id"])).json()
    await gateway.drain()
    failed = (await client.get(f"/v1/refunds/{made['id']}")).json()
    assert failed["status"] == "failed"
    assert failed["failure_code"]
    assert failed["failed_at"] is not None
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    preview = (await client.get(f"/v1/orders/{order['id']}/refundable")).json()
    assert preview["refundable"] == 9900  # the hold was given back
    assert await _access(client, shop["c1"])
    retried = await client.post(f"/v1/refunds/{made['id']}/retry")
    assert retried.status_code == 201, retried.text
    assert retried.json()["retry_of"] == made["id"]
    await gateway.drain()
    again = (await client.get(f"/v1/refunds/{retried.json()['id']}")).json()
    assert again["status"] == "succeeded"
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "refunded"
    not_again = await client.post(f"/v1/refunds/{retried.json()['id']}/retry")
    assert not_again.json()["error"]["code"] == "refund_not_retryable"
    types = await _event_types(uow)
    assert types.count("refund.failed") == 1
    await _ledger_clean(uow)


async def test_a_refund_still_processing_is_settled_by_the_recovery_query(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    order = await _paid(client, gateway, shop, "c1")
    gateway.hold_next_refunds(1)
    made = (await _refund(client, gateway, order_id=order["id"])).json()
    assert made["status"] == "pending"
    assert made["submitted_at"] is not None
    gateway.drop_next_notifications(1)
    await gateway.settle_refund(made["id"])
    await gateway.drain()
    assert (await client.get(f"/v1/refunds/{made['id']}")).json()["status"] == "pending"
    worker = _worker(app)
    clock.advance(timedelta(seconds=61))
    await worker.run_once()
    await worker.close()
    assert (await client.get(f"/v1/refunds/{made['id']}")).json()["status"] == "succeeded"
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "refunded"
    await _ledger_clean(uow)


async def test_a_refund_whose_answer_was_lost_is_settled_once_by_the_query(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    order = await _paid(client, gateway, shop, "c1")
    gateway.lose_next_refund_answers(1)
    gateway.drop_next_notifications(1)
    made = (await _refund(client, gateway, order_id=order["id"])).json()
    assert made["status"] == "pending"
    await gateway.drain()
    worker = _worker(app)
    clock.advance(timedelta(seconds=61))
    await worker.run_once()
    clock.advance(timedelta(seconds=61))
    await worker.run_once()
    await worker.close()
    settled = (await client.get(f"/v1/refunds/{made['id']}")).json()
    assert settled["status"] == "succeeded"
    assert (await _event_types(uow)).count("refund.succeeded") == 1
    assert len(gateway.state.refunds) == 1  # asked about, never sent twice
    await _ledger_clean(uow)


async def test_refunds_are_listed_by_order_customer_and_status(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator
) -> None:
    first = await _paid(client, gateway, shop, "c1")
    second = await _paid(client, gateway, shop, "c2", customer_id="u_2")
    a = (await _refund(client, gateway, order_id=first["id"], amount=100)).json()
    b = (await _refund(client, gateway, payment_id=second["payment_id"], amount=200)).json()
    everything = (await client.get("/v1/refunds")).json()
    assert [r["id"] for r in everything["data"]] == [b["id"], a["id"]]
    by_customer = (await client.get("/v1/refunds", params={"customer_id": "u_2"})).json()
    assert [r["id"] for r in by_customer["data"]] == [b["id"]]
    by_order = (await client.get("/v1/refunds", params={"order_id": first["id"]})).json()
    assert [r["id"] for r in by_order["data"]] == [a["id"]]
    paged = (await client.get("/v1/refunds", params={"limit": 1})).json()
    assert paged["has_more"] is True
    rest = (
        await client.get("/v1/refunds", params={"starting_after": paged["data"][0]["id"]})
    ).json()
    assert [r["id"] for r in rest["data"]] == [a["id"]]
    pending = (await client.get("/v1/refunds", params={"status": "pending"})).json()
    assert pending["data"] == []
    bad_cursor = await client.get("/v1/refunds", params={"starting_after": first["id"]})
    assert bad_cursor.status_code == 422
    assert (await client.get("/v1/refunds/re_nope")).status_code == 404


async def test_a_refund_request_is_idempotent_by_key(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order = await _paid(client, gateway, shop, "c1")
    headers = {"Idempotency-Key": "refund-once"}
    body = {"order_id": order["id"], "amount": 500}
    first = await client.post("/v1/refunds", json=body, headers=headers)
    second = await client.post("/v1/refunds", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert await _refund_count(uow) == 1


async def test_cancelling_an_order_closes_its_open_attempts_on_the_channel(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    cancelled = await client.post(f"/v1/orders/{order['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    closed = (await client.get(f"/v1/payments/{payment['id']}")).json()
    assert closed["status"] == "closed"
    with pytest.raises(GatewayError):  # the gateway refuses to take the money
        await gateway.pay(payment["id"])


async def test_money_for_an_attempt_we_had_closed_is_taken_and_refunded(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    from decimal import Decimal

    from tuition.channels.base import PaymentState
    from tuition.domain.payments import PaymentStatus
    from tuition.services.settlement import apply_payment_state

    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await client.post(f"/v1/orders/{order['id']}/cancel")
    async with uow:
        closed = await uow.payments.get(payment["id"])
        assert closed is not None
        assert closed.status is PaymentStatus.CLOSED
        # The gateway reports it paid after all (the buyer paid as we closed it).
        state = PaymentState(payment["id"], PaymentStatus.SUCCEEDED, 9900, "CNY")
        settled = await apply_payment_state(
            uow, closed, state, fee_rate=Decimal("0.006"), at=closed.updated_at
        )
        await uow.commit()
    assert settled.changed
    assert len(settled.refunds_to_submit) == 1
    taken = (await client.get(f"/v1/payments/{payment['id']}")).json()
    assert taken["status"] == "succeeded"
    assert taken["duplicate_of"] == order["id"]
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "cancelled"
    refunds = (await client.get("/v1/refunds", params={"payment_id": payment["id"]})).json()
    assert refunds["data"][0]["reason"] == "order_cancelled"
    await _ledger_clean(uow)


async def test_tax_comes_back_pro_rata_with_the_creator_and_platform_parts(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order = await _paid(client, gateway, shop, "c1", tax_region="CN-X")  # 99.00 + 8 % tax
    assert order["total"] == 10692
    part = (await _refund(client, gateway, order_id=order["id"], amount=1000)).json()
    # 1000 over creator 6930 / tax 792 / platform 2970 (of 10692): 648.15, 74.07, 277.78
    # -> 648, 74, 277 and the last unit to the largest remainder (platform): 278.
    line = part["lines"][0]
    assert (line["creator_amount"], line["tax_amount"], line["platform_amount"]) == (648, 74, 278)
    rest = (await _refund(client, gateway, order_id=order["id"])).json()
    line = rest["lines"][0]
    assert (line["creator_amount"], line["tax_amount"], line["platform_amount"]) == (
        6930 - 648,
        792 - 74,
        2970 - 278,
    )
    async with uow:
        balances = await uow.ledger.balances()
    assert balances.get("tax_payable:CNY", 0) == 0
    await _ledger_clean(uow)
