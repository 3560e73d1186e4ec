"""Apple App Store in-app purchases on both engines: signed transactions verified with
Apple's library against a test root configured in place of Apple's, one order per
transaction id, Apple's commission as the channel fee, renewals extending a
membership, and REFUND notifications taking coins or access back (a spent pack leaves
a flagged shortfall; the books still balance)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.app_store import APP_APPLE_ID, BUNDLE_ID, TestAppStore, later
from tests.integration.shop import post
from tuition.channels.apple.client import AppleChannel
from tuition.channels.apple.config import load_apple_config
from tuition.clock import FrozenClock
from tuition.services.earnings import payee_problems
from tuition.services.ledger import verify_ledger
from tuition.services.wallet import wallet_problems
from tuition.store.apple import AppleRepository
from tuition.store.uow import UnitOfWork

COINS = "com.example.tuition.coins100"
MONTHLY = "com.example.tuition.monthly"


@pytest.fixture
def store() -> TestAppStore:
    return TestAppStore()


@pytest.fixture
async def apple(
    client: httpx.AsyncClient, app: FastAPI, store: TestAppStore, tmp_path: Path
) -> dict[str, str]:
    creator = await post(client, "/v1/creators", {"name": "Lin", "default_revenue_share": "0.7"})
    pack = await post(
        client,
        "/v1/products",
        {
            "creator_id": creator["id"],
            "kind": "topup",
            "title": "100 学币",
            "prices": {"CNY": 1000},
            "surface_prices": {"ios": {"CNY": 1200}},
            "topup_coins": 100,
            "topup_bonus_coins": 20,
        },
    )
    monthly = await post(
        client,
        "/v1/products",
        {
            "creator_id": creator["id"],
            "kind": "membership",
            "period": "month",
            "title": "Monthly",
            "prices": {"CNY": 3000},
        },
    )
    question = await post(
        client,
        "/v1/products",
        {
            "creator_id": creator["id"],
            "kind": "consultation",
            "title": "A paid question",
            "prices": {"XCN": 50},
        },
    )
    root = tmp_path / "AppleRootCA-G3.cer"
    root.write_bytes(store.root_der())
    config = load_apple_config(
        bundle_id=BUNDLE_ID,
        environment="Sandbox",
        root_certificate_files=[str(root)],
        app_apple_id=APP_APPLE_ID,
        products={
            COINS: {"product_id": pack["id"]},
            MONTHLY: {"product_id": monthly["id"], "commission": "0.15"},
        },
        online_checks=False,
    )
    app.state.modes.live.registry.add(AppleChannel(config))
    return {"pack": pack["id"], "monthly": monthly["id"], "question": question["id"]}


async def _post_tx(client: httpx.AsyncClient, signed: str, **extra: Any) -> httpx.Response:
    return await client.post(
        "/v1/channels/apple/transactions", json={"signed_transaction": signed, **extra}
    )


async def _books_balance(uow: UnitOfWork) -> None:
    report = await verify_ledger(uow)
    assert report.ok, report.problems
    assert await wallet_problems(uow) == []
    assert await payee_problems(uow) == []


async def test_a_signed_coin_purchase_credits_the_pack_once_with_apples_commission(
    client: httpx.AsyncClient,
    apple: dict[str, str],
    store: TestAppStore,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    signed = store.transaction("2000000000000001", COINS, at=clock.now(), price=12000)
    first = await _post_tx(client, signed, customer_id="u_1")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["status"] == "credited"
    assert body["order_status"] == "paid"
    assert (body["amount"], body["currency"], body["fee"]) == (1200, "CNY", 360)  # 30 %
    again = await _post_tx(client, signed, customer_id="u_1")
    assert again.status_code == 200, again.text
    assert again.json()["order_id"] == body["order_id"]
    assert again.json()["created"] is False
    other = await _post_tx(client, signed, customer_id="u_2")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "apple_transaction_other_customer"
    wallet = (await client.get("/v1/customers/u_1/wallet")).json()
    assert wallet["coins"]["balance"] == 120
    payments = (await client.get("/v1/payments", params={"channel": "apple"})).json()["data"]
    assert [p["id"] for p in payments] == [body["payment_id"]]
    await _books_balance(uow)


async def test_a_forged_chain_another_bundle_or_environment_is_refused_and_writes_nothing(
    client: httpx.AsyncClient,
    apple: dict[str, str],
    store: TestAppStore,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    forger = TestAppStore("Test Apple Root CA - G3")  # same name, another key
    cases = {
        "VERIFICATION_FAILURE": forger.transaction("9", COINS, at=clock.now(), price=12000),
        "INVALID_APP_IDENTIFIER": store.transaction(
            "10", COINS, at=clock.now(), price=12000, bundle_id="com.example.other"
        ),
        "INVALID_ENVIRONMENT": store.transaction(
            "11", COINS, at=clock.now(), price=12000, environment="Production"
        ),
    }
    for status, signed in cases.items():
        response = await _post_tx(client, signed, customer_id="u_1")
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "apple_transaction_invalid"
        assert status in error["message"]
        assert error["param"] == "signed_transaction"
    # A valid signature over a tampered payload does not verify either.
    header, payload, signature = store.transaction("12", COINS, at=clock.now(), price=12000).split(
        "."
    )
    other_payload = store.transaction("13", COINS, at=clock.now(), price=1).split(".")[1]
    tampered = await _post_tx(client, f"{header}.{other_payload[:-2]}{payload[-2:]}.{signature}")
    assert tampered.status_code == 400
    unknown = await _post_tx(
        client,
        store.transaction("14", "com.example.nope", at=clock.now(), price=100),
        customer_id="u_1",
    )
    assert unknown.json()["error"]["code"] == "apple_product_unknown"
    async with uow:
        assert await AppleRepository(uow.conn).of_original("9") == []
    orders = (await client.get("/v1/orders", params={"customer_id": "u_1"})).json()["data"]
    assert orders == []


async def test_a_refund_after_coins_were_spent_leaves_a_flagged_shortfall_and_balanced_books(
    client: httpx.AsyncClient,
    apple: dict[str, str],
    store: TestAppStore,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    signed = store.transaction("2000000000000002", COINS, at=clock.now(), price=12000)
    bought = await _post_tx(client, signed, customer_id="u_1")
    assert bought.status_code == 201, bought.text
    order = await post(
        client,
        "/v1/orders",
        {"customer_id": "u_1", "currency": "XCN", "items": [{"product_id": apple["question"]}]},
    )
    paid = await post(client, f"/v1/orders/{order['id']}/payments", {"channel": "wallet"})
    assert paid["status"] == "succeeded"
    clock.advance(timedelta(days=3))
    refunded_tx = store.transaction(
        "2000000000000002",
        COINS,
        at=later(clock.now(), days=-3),
        price=12000,
        revocationDate=int(clock.now().timestamp() * 1000),
        revocationReason=0,
    )
    notice = store.notification("REFUND", refunded_tx, at=clock.now())
    answer = await client.post("/v1/notify/apple", content=notice)
    assert answer.status_code == 200, answer.text
    again = await client.post("/v1/notify/apple", content=notice)
    assert again.status_code == 200
    wallet = (await client.get("/v1/customers/u_1/wallet")).json()
    assert wallet["coins"]["balance"] == 0
    [shortfall] = wallet["shortfalls"]  # flagged: the buyer owes the 50 coins spent
    assert (shortfall["currency"], shortfall["amount"]) == ("XCN", 50)
    assert shortfall["value_currency"] == "CNY"
    assert 0 < shortfall["value"] <= 600
    refunded = (await client.get(f"/v1/orders/{bought.json()['order_id']}")).json()
    assert refunded["status"] == "refunded"
    refunds = (await client.get("/v1/refunds", params={"order_id": refunded["id"]})).json()
    assert [(r["status"], r["amount"]) for r in refunds["data"]] == [("succeeded", 1200)]
    async with uow:
        record = await AppleRepository(uow.conn).get("2000000000000002")
    assert record is not None
    assert record.status == "refunded"
    await _books_balance(uow)


async def test_a_renewal_extends_the_membership_and_its_refund_ends_that_period(
    client: httpx.AsyncClient,
    apple: dict[str, str],
    store: TestAppStore,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    first = store.transaction(
        "3000000000000001",
        MONTHLY,
        at=clock.now(),
        price=30000,
        type="Auto-Renewable Subscription",
    )
    bought = await _post_tx(client, first, customer_id="u_1")
    assert bought.status_code == 201, bought.text
    assert bought.json()["fee"] == 450  # 15 % of 30.00
    path = f"/v1/customers/u_1/entitlements/{apple['monthly']}"
    before = (await client.get(path)).json()
    clock.advance(timedelta(days=29))
    renewal = store.transaction(
        "3000000000000002",
        MONTHLY,
        at=clock.now(),
        price=30000,
        original="3000000000000001",
        type="Auto-Renewable Subscription",
    )
    notice = store.notification("DID_RENEW", renewal, at=clock.now())
    assert (await client.post("/v1/notify/apple", content=notice)).status_code == 200
    assert (await client.post("/v1/notify/apple", content=notice)).status_code == 200
    after = (await client.get(path)).json()
    assert after["expires_at"] > before["expires_at"]
    orders = (await client.get("/v1/orders", params={"customer_id": "u_1"})).json()["data"]
    assert sorted(o["status"] for o in orders) == ["paid", "paid"]
    # The app posting the renewal too changes nothing.
    repeat = await _post_tx(client, renewal)
    assert repeat.status_code == 200
    assert repeat.json()["created"] is False
    refund = store.notification(
        "REFUND",
        store.transaction(
            "3000000000000002",
            MONTHLY,
            at=clock.now(),
            price=30000,
            original="3000000000000001",
            revocationDate=int(clock.now().timestamp() * 1000),
        ),
        at=clock.now(),
    )
    assert (await client.post("/v1/notify/apple", content=refund)).status_code == 200
    ended = (await client.get(path)).json()
    assert ended["expires_at"] == before["expires_at"]
    await _books_balance(uow)


async def test_a_forged_or_other_apps_notification_is_refused_and_changes_nothing(
    client: httpx.AsyncClient,
    apple: dict[str, str],
    store: TestAppStore,
    clock: FrozenClock,
) -> None:
    signed = store.transaction("4000000000000001", COINS, at=clock.now(), price=12000)
    assert (await _post_tx(client, signed, customer_id="u_1")).status_code == 201
    forged = TestAppStore().notification("REFUND", signed, at=clock.now())
    assert (await client.post("/v1/notify/apple", content=forged)).status_code == 400
    other = store.notification("REFUND", signed, at=clock.now(), bundle_id="com.example.other")
    assert (await client.post("/v1/notify/apple", content=other)).status_code == 400
    junk = await client.post("/v1/notify/apple", content=b"{}")
    assert junk.status_code == 400
    wallet = (await client.get("/v1/customers/u_1/wallet")).json()
    assert wallet["coins"]["balance"] == 120


async def test_a_crash_after_the_claim_or_the_order_is_completed_by_the_next_post(
    client: httpx.AsyncClient,
    apple: dict[str, str],
    store: TestAppStore,
    clock: FrozenClock,
    uow: UnitOfWork,
    app: FastAPI,
) -> None:
    from tuition.api.apple import deps_of
    from tuition.services import apple as apple_service

    deps = deps_of(app.state.modes.live)
    signed = store.transaction("5000000000000001", COINS, at=clock.now(), price=12000)
    tx = deps.channel.verify_transaction(signed)
    # The first attempt claimed the transaction and made its order, then died.
    record = await apple_service._claim(tx, "u_1", apple["pack"], uow, at=clock.now())
    record = await apple_service._order_for(tx, record, uow, deps=deps)
    stale_order = record.order_id
    clock.advance(timedelta(days=1))  # long enough for that order to expire unpaid
    retried = await _post_tx(client, signed, customer_id="u_1")
    assert retried.status_code == 201, retried.text
    assert retried.json()["order_id"] != stale_order
    assert retried.json()["order_status"] == "paid"
    wallet = (await client.get("/v1/customers/u_1/wallet")).json()
    assert wallet["coins"]["balance"] == 120
    await _books_balance(uow)


@pytest.mark.postgres_only
async def test_the_same_transaction_posted_at_once_pays_one_order(
    client: httpx.AsyncClient,
    apple: dict[str, str],
    store: TestAppStore,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    import asyncio

    signed = store.transaction("6000000000000001", COINS, at=clock.now(), price=12000)
    answers = await asyncio.gather(*(_post_tx(client, signed, customer_id="u_1") for _ in range(4)))
    ok = [a for a in answers if a.status_code in (200, 201)]
    assert sorted(a.status_code for a in ok).count(201) == 1, [a.text for a in answers]
    assert {a.json()["order_id"] for a in ok} == {ok[0].json()["order_id"]}
    for other in answers:
        if other not in ok:  # still being credited by the winner: retry later
            assert other.json()["error"]["code"] == "apple_transaction_in_progress"
    wallet = (await client.get("/v1/customers/u_1/wallet")).json()
    assert wallet["coins"]["balance"] == 120
    paid = (await client.get("/v1/payments", params={"channel": "apple"})).json()["data"]
    assert len(paid) == 1
    await _books_balance(uow)


async def test_apple_refunds_come_from_apple_and_unknown_renewals_wait_for_the_app(
    client: httpx.AsyncClient, apple: dict[str, str], store: TestAppStore, clock: FrozenClock
) -> None:
    signed = store.transaction("7000000000000001", COINS, at=clock.now(), price=12000)
    bought = await client.post(
        "/v1/channels/apple/transactions",
        json={"signed_transaction": signed, "customer_id": "u_1"},
        headers={"Idempotency-Key": "apple-7000000000000001"},
    )
    assert bought.status_code == 201, bought.text
    asked = await client.post("/v1/refunds", json={"order_id": bought.json()["order_id"]})
    assert asked.status_code in (200, 201), asked.text
    assert asked.json()["status"] == "failed"
    assert asked.json()["failure_code"] == "apple_refunds_by_apple"
    assert (await client.get("/v1/customers/u_1/wallet")).json()["coins"]["balance"] == 120
    stranger = store.transaction(
        "7000000000000099", MONTHLY, at=clock.now(), price=30000, original="7000000000000098"
    )
    notice = store.notification("DID_RENEW", stranger, at=clock.now())
    assert (await client.post("/v1/notify/apple", content=notice)).status_code == 200
    orders = (await client.get("/v1/orders", params={"customer_id": "u_1"})).json()["data"]
    assert len(orders) == 1
    missing = await _post_tx(client, stranger)
    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "customer_required"
