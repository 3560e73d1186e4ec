"""The main road on both engines: order -> payment -> signed notification -> paid, once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select

from tests.integration.gateway import send_notification
from tests.integration.shop import order_body, post
from tuition.clock import FrozenClock
from tuition.services.ledger import verify_ledger
from tuition.services.orders import expire_order
from tuition.services.payments import PaymentDeps, reconcile_payment
from tuition.simulator.app import Simulator
from tuition.store.tables import journal_entries, notifications, outbox_events
from tuition.store.uow import UnitOfWork


async def _checkout(
    client: httpx.AsyncClient, shop: dict[str, str], *names: str, **extra: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    order = await post(client, "/v1/orders", order_body(shop, *names or ("c1",), **extra))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    return order, payment


async def _count(uow: UnitOfWork, table: Any, *where: Any) -> int:
    async with uow:
        return int(
            (
                await uow.conn.execute(select(func.count()).select_from(table).where(*where))
            ).scalar_one()
        )


async def _verdicts(uow: UnitOfWork) -> list[str]:
    async with uow:
        rows = await uow.conn.execute(select(notifications.c.verdict).order_by(notifications.c.id))
        return sorted(r[0] for r in rows)


async def test_a_paid_order_posts_one_balanced_entry_and_grants_access(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order, payment = await _checkout(client, shop, "bundle")
    assert payment["status"] == "pending"
    assert payment["next_action"]["type"] == "redirect"
    assert payment["next_action"]["url"].startswith(gateway.config.public_base_url)

    await gateway.pay(payment["id"])
    await gateway.drain()

    paid = (await client.get(f"/v1/payments/{payment['id']}")).json()
    assert paid["status"] == "succeeded"
    assert paid["fee"] == 239  # 399.00 x 0.6 % = 2.394
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    access = (await client.get(f"/v1/customers/u_1/entitlements/{shop['c2']}")).json()
    assert access["has_access"] is True
    assert await _count(uow, journal_entries) == 1
    report = await verify_ledger(uow)
    assert report.ok, report.problems
    async with uow:
        balances = await uow.ledger.balances()
        types = sorted(r[0] for r in await uow.conn.execute(select(outbox_events.c.type)))
    creator = shop["creator"]
    assert balances == {
        "channel_clearing:CNY:sandbox": 39900 - 239,
        "channel_fees:CNY": 239,
        f"creator_pending:CNY:{creator}": -27930,  # 70 % of 399.00
        "platform_revenue:CNY": -11970,
    }
    assert types == ["order.paid", "payment.succeeded"]
    assert await _verdicts(uow) == ["applied"]


async def test_a_notification_delivered_twice_posts_once(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    gateway.duplicate_notifications(1)
    _, payment = await _checkout(client, shop)
    await gateway.pay(payment["id"])
    await gateway.drain()
    assert await _count(uow, journal_entries) == 1
    assert await _verdicts(uow) == ["applied", "duplicate"]


async def test_twenty_concurrent_copies_of_a_notification_post_once(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    gateway.duplicate_notifications(19, concurrent=True)
    order, payment = await _checkout(client, shop, "bundle")
    await gateway.pay(payment["id"])
    await gateway.drain()
    assert await _count(uow, journal_entries) == 1
    verdicts = await _verdicts(uow)
    assert verdicts.count("applied") == 1
    assert len(verdicts) == 20
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    assert len((await client.get("/v1/customers/u_1/entitlements")).json()["data"]) == 3
    assert (await verify_ledger(uow)).ok


async def test_a_tampered_notification_changes_nothing_and_gets_the_failure_ack(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    gateway.tamper_next_notifications(1)
    order, payment = await _checkout(client, shop)
    await gateway.pay(payment["id"])
    await gateway.drain()
    # Every re-delivery of the altered notification is refused with the failure ACK.
    assert gateway.deliveries
    assert {d.status_code for d in gateway.deliveries} == {400}
    assert set(await _verdicts(uow)) == {"rejected"}
    async with uow:
        reasons = {
            r[0]
            for r in await uow.conn.execute(
                select(notifications.c.reason).where(notifications.c.verdict == "rejected")
            )
        }
    assert all("signature" in r for r in reasons), reasons
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "pending_payment"
    assert await _count(uow, journal_entries) == 0


async def _signed(
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    payment: dict[str, Any],
    **changes: Any,
) -> httpx.Response:
    body = {
        "app_id": "sandbox_app",
        "event": "payment.paid",
        "out_trade_no": payment["id"],
        "trade_no": "T1",
        "status": "PAID",
        "amount": payment["amount"],
        "currency": payment["currency"],
        "paid_at": clock.now().isoformat(),
        "notify_id": "N1",
        "sent_at": clock.now().isoformat(),
        **changes,
    }
    return await send_notification(client, gateway, clock, **body)


async def test_mismatched_notifications_change_nothing(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    order, payment = await _checkout(client, shop)
    cases = {
        "amount": {"amount": payment["amount"] - 1},
        "currency": {"currency": "USD"},
        "unknown payment": {"out_trade_no": "pay_00000000000000000000000000"},
        "app id": {"app_id": "someone_else"},
    }
    for expected, changes in cases.items():
        response = await _signed(anon_client, gateway, clock, payment, **changes)
        assert response.status_code == 400, expected
        assert response.json()["code"] == "FAIL"
    forged = await anon_client.post(
        "/v1/notify/sandbox",
        json={"out_trade_no": payment["id"], "status": "PAID"},
        headers={
            "Sandbox-Signature": "Zm9yZ2Vk",
            "Sandbox-Timestamp": "1",
            "Sandbox-Nonce": "x",
            "Sandbox-Serial": gateway.serial,
        },
    )
    assert forged.status_code == 400
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "pending_payment"
    assert (await client.get(f"/v1/payments/{payment['id']}")).json()["status"] == "pending"
    assert await _count(uow, journal_entries) == 0
    assert await _verdicts(uow) == ["rejected"] * 5
    async with uow:
        reasons = [r[0] for r in await uow.conn.execute(select(notifications.c.reason))]
    for word in ("amount", "currency", "unknown payment", "app id"):
        assert any(word in r for r in reasons), (word, reasons)


async def test_a_replayed_notification_is_applied_once(
    anon_client: httpx.AsyncClient,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    _, payment = await _checkout(client, shop)
    for _ in range(3):
        response = await _signed(anon_client, gateway, clock, payment)
        assert response.status_code == 200
    assert await _count(uow, journal_entries) == 1
    assert await _verdicts(uow) == ["applied", "duplicate", "duplicate"]
    clock.advance(timedelta(minutes=10))
    stale = await anon_client.post(
        "/v1/notify/sandbox",
        content=b'{"a":1}',
        headers=gateway.signer.headers(
            b'{"a":1}', int((clock.now() - timedelta(minutes=10)).timestamp())
        ),
    )
    assert stale.status_code == 400


async def test_a_second_successful_payment_is_refunded_automatically(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order, first = await _checkout(client, shop)
    second = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "qr"}
    )
    assert second["next_action"]["type"] == "qr_code"
    await gateway.pay(first["id"])
    await gateway.drain()
    await gateway.pay(second["id"])
    await gateway.drain()

    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    duplicate = (await client.get(f"/v1/payments/{second['id']}")).json()
    assert duplicate["duplicate_of"] == order["id"]
    assert duplicate["amount_refunded"] == duplicate["amount"]
    async with uow:
        types = [r[0] for r in await uow.conn.execute(select(outbox_events.c.type))]
    assert types.count("refund.succeeded") == 1
    assert len((await client.get("/v1/customers/u_1/entitlements")).json()["data"]) == 1
    async with uow:
        balances = await uow.ledger.balances()
    # Net revenue is the first payment's 30 % only; the second came in and went back out.
    assert balances["platform_revenue:CNY"] + balances["refunds:CNY"] == -2970
    assert (await verify_ledger(uow)).ok


async def test_two_payments_settling_at_once_pay_the_order_once_and_refund_the_other(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order, first = await _checkout(client, shop)
    second = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "qr"}
    )
    await gateway.pay(first["id"])
    await gateway.pay(second["id"])
    await gateway.drain()  # both notifications race; either may win

    payments = [(await client.get(f"/v1/payments/{p['id']}")).json() for p in (first, second)]
    assert sorted(p["duplicate_of"] is None for p in payments) == [False, True]
    [returned] = [p for p in payments if p["duplicate_of"] == order["id"]]
    assert returned["amount_refunded"] == returned["amount"]
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    assert len((await client.get("/v1/customers/u_1/entitlements")).json()["data"]) == 1
    assert await _count(uow, journal_entries) == 3  # two payments, one refund
    assert (await verify_ledger(uow)).ok


async def test_money_that_arrives_after_expiry_is_refunded_and_the_order_stays_expired(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    # The buyer pays at the last second; the gateway's notification is held up until
    # after our side expired the order (without the worker's close-first step).
    gateway.drop_next_notifications(1)
    order, payment = await _checkout(client, shop)
    await gateway.pay(payment["id"])
    await gateway.drain()
    clock.advance(timedelta(minutes=16))
    await expire_order(uow, order["id"], clock=clock)
    late_notice = await _signed(client, gateway, clock, payment)
    assert late_notice.status_code == 200
    await gateway.drain()

    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "expired"
    late = (await client.get(f"/v1/payments/{payment['id']}")).json()
    assert late["status"] == "succeeded"
    assert late["amount_refunded"] == late["amount"]
    assert (await client.get("/v1/customers/u_1/entitlements")).json()["data"] == []
    assert (await verify_ledger(uow)).ok


async def test_a_dropped_notification_is_recovered_by_querying(
    client: httpx.AsyncClient,
    app: Any,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    gateway.drop_next_notifications(1)
    order, payment = await _checkout(client, shop)
    await gateway.pay(payment["id"])
    await gateway.drain()
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "pending_payment"
    container = app.state.modes.live
    deps = PaymentDeps(container.registry, clock, "http://tuition.test")
    recovered = await reconcile_payment(uow, payment["id"], deps=deps)
    assert recovered.status == "succeeded"
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    assert await _count(uow, journal_entries) == 1


async def test_a_gateway_timeout_leaves_the_payment_pending(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    gateway.fail_next("create", kind="timeout")
    response = await client.post(
        f"/v1/orders/{order['id']}/payments", json={"channel": "sandbox", "method": "page"}
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "channel_timeout"
    listed = (await client.get(f"/v1/orders/{order['id']}/payments")).json()["data"]
    assert [p["status"] for p in listed] == ["pending"]


async def test_payment_attempts_are_refused_for_bad_input(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator
) -> None:
    order, payment = await _checkout(client, shop)
    cases = [
        ({"channel": "paypal", "method": "page"}, 400, "channel_unknown", "channel"),
        ({"channel": "sandbox", "method": "jsapi"}, 422, "method_unsupported", "method"),
    ]
    for body, status, code, param in cases:
        response = await client.post(f"/v1/orders/{order['id']}/payments", json=body)
        assert response.status_code == status, response.text
        assert (response.json()["error"]["code"], response.json()["error"]["param"]) == (
            code,
            param,
        )
    await gateway.pay(payment["id"])
    await gateway.drain()
    again = await client.post(
        f"/v1/orders/{order['id']}/payments", json={"channel": "sandbox", "method": "page"}
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "order_not_payable"
    missing = await client.post(
        "/v1/orders/ord_nope/payments", json={"channel": "sandbox", "method": "page"}
    )
    assert missing.status_code == 404


async def test_payments_are_listed_by_customer_status_and_channel(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator
) -> None:
    _, paid = await _checkout(client, shop, "c1")
    _, open_ = await _checkout(client, shop, "c2", customer_id="u_2")
    await gateway.pay(paid["id"])
    await gateway.drain()
    by_status = (await client.get("/v1/payments", params={"status": "succeeded"})).json()
    assert [p["id"] for p in by_status["data"]] == [paid["id"]]
    by_customer = (await client.get("/v1/payments", params={"customer_id": "u_2"})).json()
    assert [p["id"] for p in by_customer["data"]] == [open_["id"]]
    by_channel = (
        await client.get("/v1/payments", params={"channel": "sandbox", "limit": 1})
    ).json()
    assert by_channel["has_more"] is True
