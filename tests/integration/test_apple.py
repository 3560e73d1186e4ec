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


# -- family sharing, prorated refunds, Apple's subscription term --------------------------

_SUB = "Auto-Renewable Subscription"


def _ms(at: Any) -> int:
    return int(at.timestamp() * 1000)


async def _events(uow: UnitOfWork, type_: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from tuition.store.tables import outbox_events

    async with uow:
        rows = await uow.conn.execute(
            select(outbox_events.c.data)
            .where(outbox_events.c.type == type_)
            .order_by(outbox_events.c.id)
        )
        return [dict(r[0]) for r in rows]


def _shared(store: TestAppStore, transaction_id: str, at: Any, **fields: Any) -> str:
    return store.transaction(
        transaction_id,
        MONTHLY,
        at=at,
        price=30000,
        type=_SUB,
        inAppOwnershipType="FAMILY_SHARED",
        expiresDate=_ms(later(at, days=30)),
        **fields,
    )


async def test_a_family_shared_membership_grants_access_once_and_moves_no_money(
    client: httpx.AsyncClient,
    apple: dict[str, str],
    store: TestAppStore,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    bought = await _post_tx(
        client,
        store.transaction(
            "8000000000000001",
            MONTHLY,
            at=clock.now(),
            price=30000,
            type=_SUB,
            expiresDate=_ms(later(clock.now(), days=30)),
        ),
        customer_id="u_1",
    )
    assert bought.status_code == 201, bought.text
    signed = _shared(store, "8000000000000101", clock.now())
    granted = await _post_tx(client, signed, customer_id="u_2")
    assert granted.status_code == 201, granted.text
    body = granted.json()
    assert body["family_shared"] is True
    assert body["status"] == "credited"
    assert (body["order_id"], body["payment_id"], body["amount"], body["fee"]) == (
        None,
        None,
        None,
        None,
    )
    assert body["entitlement_id"] is not None
    expires = later(clock.now(), days=30)
    assert body["expires_at"].startswith(expires.strftime("%Y-%m-%dT%H:%M:%S"))
    again = await _post_tx(client, signed, customer_id="u_2")
    assert again.status_code == 200, again.text
    assert again.json()["entitlement_id"] == body["entitlement_id"]
    assert again.json()["created"] is False
    other = await _post_tx(client, signed, customer_id="u_3")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "apple_transaction_other_customer"
    access = (await client.get(f"/v1/customers/u_2/entitlements/{apple['monthly']}")).json()
    assert access["has_access"] is True
    listed = (await client.get("/v1/customers/u_2/entitlements")).json()["data"]
    assert [(e["id"], e["order_id"]) for e in listed] == [(body["entitlement_id"], None)]
    # No money for the family member: no order, no payment, no coins, one grant event.
    assert (await client.get("/v1/orders", params={"customer_id": "u_2"})).json()["data"] == []
    payments = (await client.get("/v1/payments", params={"channel": "apple"})).json()["data"]
    assert [p["id"] for p in payments] == [bought.json()["payment_id"]]
    assert (await client.get("/v1/customers/u_2/wallet")).json()["coins"]["balance"] == 0
    grants = await _events(uow, "entitlement.granted")
    assert [(g["customer_id"], g["apple_transaction_id"]) for g in grants] == [
        ("u_2", "8000000000000101")
    ]
    # A forged chain for a family-shared transaction is refused like any other.
    forged = await _post_tx(
        client, _shared(TestAppStore(), "8000000000000201", clock.now()), customer_id="u_4"
    )
    assert forged.status_code == 400
    assert forged.json()["error"]["code"] == "apple_transaction_invalid"
    assert (await client.get("/v1/customers/u_4/entitlements")).json()["data"] == []
    await _books_balance(uow)


async def test_revoke_ends_family_access_once_and_leaves_the_purchaser_alone(
    client: httpx.AsyncClient,
    apple: dict[str, str],
    store: TestAppStore,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    purchase = store.transaction(
        "8100000000000001", MONTHLY, at=clock.now(), price=30000, type=_SUB
    )
    assert (await _post_tx(client, purchase, customer_id="u_1")).status_code == 201
    first = _shared(store, "8100000000000101", clock.now())
    assert (await _post_tx(client, first, customer_id="u_2")).status_code == 201
    # The family member's renewal arrives from Apple and extends the shared access.
    clock.advance(timedelta(days=30))
    renewal = _shared(store, "8100000000000102", clock.now(), original="8100000000000101")
    renewed = store.notification("DID_RENEW", renewal, at=clock.now())
    assert (await client.post("/v1/notify/apple", content=renewed)).status_code == 200
    path = f"/v1/customers/u_2/entitlements/{apple['monthly']}"
    assert (await client.get(path)).json()["has_access"] is True
    listed = await client.get("/v1/customers/u_2/entitlements", params={"include_inactive": "true"})
    assert len(listed.json()["data"]) == 2  # the first period's grant, and the renewal's
    # The purchaser stops sharing: Apple revokes the family member's latest transaction.
    clock.advance(timedelta(days=2))
    revoked_tx = _shared(
        store,
        "8100000000000102",
        later(clock.now(), days=-2),
        original="8100000000000101",
        revocationDate=_ms(clock.now()),
        revocationReason=0,
        revocationType="FAMILY_REVOKE",
    )
    notice = store.notification("REVOKE", revoked_tx, at=clock.now())
    assert (await client.post("/v1/notify/apple", content=notice)).status_code == 200
    assert (await client.post("/v1/notify/apple", content=notice)).status_code == 200
    resent = store.notification("REVOKE", revoked_tx, at=clock.now())  # another uuid
    assert (await client.post("/v1/notify/apple", content=resent)).status_code == 200
    assert (await client.get(path)).json()["has_access"] is False
    revocations = await _events(uow, "entitlement.revoked")
    assert sorted(r["apple_transaction_id"] for r in revocations) == [
        "8100000000000101",
        "8100000000000102",
    ]
    assert {r["customer_id"] for r in revocations} == {"u_2"}
    async with uow:
        rows = await AppleRepository(uow.conn).of_original("8100000000000101")
    assert [r.status for r in rows] == ["revoked", "revoked"]
    # The purchaser keeps what was paid for; REVOKE of a purchase changes nothing.
    mine = ("/v1/customers/u_1/entitlements", {"include_inactive": "true"})
    [held] = (await client.get(mine[0], params=mine[1])).json()["data"]
    assert held["revoked_at"] is None
    not_family = store.notification("REVOKE", purchase, at=clock.now())
    assert (await client.post("/v1/notify/apple", content=not_family)).status_code == 200
    assert (await client.get(mine[0], params=mine[1])).json()["data"] == [held]
    await _books_balance(uow)


async def test_a_family_shared_coin_pack_is_refused_and_writes_nothing(
    client: httpx.AsyncClient,
    apple: dict[str, str],
    store: TestAppStore,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    signed = store.transaction(
        "8200000000000001",
        COINS,
        at=clock.now(),
        price=12000,
        inAppOwnershipType="FAMILY_SHARED",
    )
    refused = await _post_tx(client, signed, customer_id="u_2")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "apple_family_not_shareable"
    async with uow:
        assert await AppleRepository(uow.conn).get("8200000000000001") is None
    assert (await client.get("/v1/customers/u_2/wallet")).json()["coins"]["balance"] == 0


async def test_a_prorated_refund_books_its_share_and_ends_the_membership(
    client: httpx.AsyncClient,
    apple: dict[str, str],
    store: TestAppStore,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    signed = store.transaction("8300000000000001", MONTHLY, at=clock.now(), price=30000, type=_SUB)
    bought = await _post_tx(client, signed, customer_id="u_1")
    assert bought.status_code == 201, bought.text
    order_id = bought.json()["order_id"]
    clock.advance(timedelta(days=20))
    refunded_tx = store.transaction(
        "8300000000000001",
        MONTHLY,
        at=later(clock.now(), days=-20),
        price=30000,
        type=_SUB,
        revocationDate=_ms(clock.now()),
        revocationReason=0,
        revocationType="REFUND_PRORATED",
        revocationPercentage=33333,  # 33.333 %: the unused third of the month
    )
    notice = store.notification("REFUND", refunded_tx, at=clock.now())
    assert (await client.post("/v1/notify/apple", content=notice)).status_code == 200
    again = store.notification("REFUND", refunded_tx, at=clock.now())  # another uuid
    assert (await client.post("/v1/notify/apple", content=again)).status_code == 200
    refunds = (await client.get("/v1/refunds", params={"order_id": order_id})).json()["data"]
    # 3000 x 33.333 % = 999.99, rounded half up: one refund of 1000, not the whole 3000.
    assert [(r["status"], r["amount"]) for r in refunds] == [("succeeded", 1000)]
    order = (await client.get(f"/v1/orders/{order_id}")).json()
    assert order["status"] == "partially_refunded"
    path = f"/v1/customers/u_1/entitlements/{apple['monthly']}"
    assert (await client.get(path)).json()["has_access"] is False
    assert len(await _events(uow, "entitlement.revoked")) == 1
    async with uow:
        record = await AppleRepository(uow.conn).get("8300000000000001")
    assert record is not None
    assert (record.status, record.refund_id) == ("refunded", refunds[0]["id"])
    await _books_balance(uow)


async def test_a_prorated_refund_of_a_coin_pack_is_left_for_an_operator(
    client: httpx.AsyncClient,
    apple: dict[str, str],
    store: TestAppStore,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    signed = store.transaction("8400000000000001", COINS, at=clock.now(), price=12000)
    bought = await _post_tx(client, signed, customer_id="u_1")
    assert bought.status_code == 201, bought.text
    refunded_tx = store.transaction(
        "8400000000000001",
        COINS,
        at=clock.now(),
        price=12000,
        revocationDate=_ms(clock.now()),
        revocationType="REFUND_PRORATED",
        revocationPercentage=50000,
    )
    notice = store.notification("REFUND", refunded_tx, at=clock.now())
    assert (await client.post("/v1/notify/apple", content=notice)).status_code == 200
    order_id = bought.json()["order_id"]
    assert (await client.get("/v1/refunds", params={"order_id": order_id})).json()["data"] == []
    assert (await client.get("/v1/customers/u_1/wallet")).json()["coins"]["balance"] == 120
    async with uow:
        record = await AppleRepository(uow.conn).get("8400000000000001")
    assert record is not None
    assert record.status == "credited"
    await _books_balance(uow)


async def test_a_subscription_lasts_to_apples_expires_date_not_the_products_period(
    client: httpx.AsyncClient,
    apple: dict[str, str],
    store: TestAppStore,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    week = later(clock.now(), days=7)  # an introductory week, say
    first = store.transaction(
        "8500000000000001",
        MONTHLY,
        at=clock.now(),
        price=30000,
        type=_SUB,
        expiresDate=_ms(week),
    )
    assert (await _post_tx(client, first, customer_id="u_1")).status_code == 201
    path = f"/v1/customers/u_1/entitlements/{apple['monthly']}"
    held = (await client.get(path)).json()
    assert held["expires_at"].startswith(week.strftime("%Y-%m-%dT%H:%M:%S"))
    clock.advance(timedelta(days=7))
    month = later(clock.now(), days=30)
    renewal = store.transaction(
        "8500000000000002",
        MONTHLY,
        at=clock.now(),
        price=30000,
        type=_SUB,
        original="8500000000000001",
        expiresDate=_ms(month),
    )
    notice = store.notification("DID_RENEW", renewal, at=clock.now())
    assert (await client.post("/v1/notify/apple", content=notice)).status_code == 200
    renewed = (await client.get(path)).json()
    assert renewed["has_access"] is True
    assert renewed["expires_at"].startswith(month.strftime("%Y-%m-%dT%H:%M:%S"))
    backwards = store.transaction(
        "8500000000000003",
        MONTHLY,
        at=clock.now(),
        price=30000,
        type=_SUB,
        original="8500000000000001",
        expiresDate=_ms(later(clock.now(), days=-1)),
    )
    refused = await _post_tx(client, backwards)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "apple_transaction_invalid"
    await _books_balance(uow)


@pytest.mark.postgres_only
async def test_the_same_family_transaction_posted_at_once_grants_once(
    client: httpx.AsyncClient,
    apple: dict[str, str],
    store: TestAppStore,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    import asyncio

    signed = _shared(store, "8600000000000101", clock.now())
    answers = await asyncio.gather(*(_post_tx(client, signed, customer_id="u_2") for _ in range(4)))
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201], [a.text for a in answers]
    assert len({a.json()["entitlement_id"] for a in answers}) == 1
    assert len((await client.get("/v1/customers/u_2/entitlements")).json()["data"]) == 1
    revoked_tx = _shared(store, "8600000000000101", clock.now(), revocationDate=_ms(clock.now()))
    notices = [store.notification("REVOKE", revoked_tx, at=clock.now()) for _ in range(3)]
    sent = await asyncio.gather(*(client.post("/v1/notify/apple", content=n) for n in notices))
    assert [s.status_code for s in sent] == [200, 200, 200]
    assert len(await _events(uow, "entitlement.revoked")) == 1


async def test_a_family_members_own_purchase_starts_now_not_after_the_shared_access(
    client: httpx.AsyncClient,
    apple: dict[str, str],
    store: TestAppStore,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    shared = _shared(store, "8700000000000101", clock.now())
    assert (await _post_tx(client, shared, customer_id="u_2")).status_code == 201
    clock.advance(timedelta(days=10))
    own = store.transaction("8700000000000201", MONTHLY, at=clock.now(), price=30000)
    bought = await _post_tx(client, own, customer_id="u_2")
    assert bought.status_code == 201, bought.text
    listed = (await client.get("/v1/customers/u_2/entitlements")).json()["data"]
    [paid] = [e for e in listed if e["order_id"] == bought.json()["order_id"]]
    # Nov 11 + a month, not the shared grant's Dec 1 end (revocable) + a month.
    assert paid["expires_at"].startswith("2026-12-11T09:00:00")
    await _books_balance(uow)


async def test_a_crash_after_a_family_claim_is_completed_by_the_next_post(
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
    signed = _shared(store, "8800000000000101", clock.now())
    tx = deps.channel.verify_transaction(signed)
    # The first attempt claimed the transaction, then died before granting.
    claimed = await apple_service._claim(tx, "u_2", apple["monthly"], uow, at=clock.now())
    assert (claimed.status, claimed.entitlement_id) == ("received", None)
    assert (await client.get("/v1/customers/u_2/entitlements")).json()["data"] == []
    retried = await _post_tx(client, signed)  # the customer comes from the claim
    assert retried.status_code == 201, retried.text
    assert retried.json()["customer_id"] == "u_2"
    listed = (await client.get("/v1/customers/u_2/entitlements")).json()["data"]
    assert [e["id"] for e in listed] == [retried.json()["entitlement_id"]]
    assert len(await _events(uow, "entitlement.granted")) == 1


async def test_a_refund_notice_of_a_family_shared_transaction_ends_access_and_moves_no_money(
    client: httpx.AsyncClient,
    apple: dict[str, str],
    store: TestAppStore,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    signed = _shared(store, "8900000000000101", clock.now())
    assert (await _post_tx(client, signed, customer_id="u_2")).status_code == 201
    refunded = _shared(
        store, "8900000000000101", clock.now(), revocationDate=_ms(clock.now()), revocationReason=1
    )
    notice = store.notification("REFUND", refunded, at=clock.now())
    assert (await client.post("/v1/notify/apple", content=notice)).status_code == 200
    path = f"/v1/customers/u_2/entitlements/{apple['monthly']}"
    assert (await client.get(path)).json()["has_access"] is False
    assert (await client.get("/v1/refunds")).json()["data"] == []
    assert (await client.get("/v1/payments", params={"channel": "apple"})).json()["data"] == []
    async with uow:
        record = await AppleRepository(uow.conn).get("8900000000000101")
    assert record is not None
    assert record.status == "revoked"
    await _books_balance(uow)


@pytest.mark.postgres_only
async def test_prorated_refund_notices_at_once_book_one_refund(
    client: httpx.AsyncClient,
    apple: dict[str, str],
    store: TestAppStore,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    import asyncio

    signed = store.transaction("9100000000000001", MONTHLY, at=clock.now(), price=30000, type=_SUB)
    bought = await _post_tx(client, signed, customer_id="u_1")
    assert bought.status_code == 201, bought.text
    refunded_tx = store.transaction(
        "9100000000000001",
        MONTHLY,
        at=clock.now(),
        price=30000,
        type=_SUB,
        revocationDate=_ms(clock.now()),
        revocationType="REFUND_PRORATED",
        revocationPercentage=50000,
    )
    notices = [store.notification("REFUND", refunded_tx, at=clock.now()) for _ in range(3)]
    sent = await asyncio.gather(*(client.post("/v1/notify/apple", content=n) for n in notices))
    assert [s.status_code for s in sent] == [200, 200, 200]
    order_id = bought.json()["order_id"]
    refunds = (await client.get("/v1/refunds", params={"order_id": order_id})).json()["data"]
    assert [(r["status"], r["amount"]) for r in refunds] == [("succeeded", 1500)]
    assert len(await _events(uow, "entitlement.revoked")) == 1
    await _books_balance(uow)


async def test_a_refund_whose_first_delivery_failed_is_applied_by_apples_retry(
    client: httpx.AsyncClient,
    apple: AppleChannel,
    store: TestAppStore,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Apple has no query to recover a lost REFUND from: a delivery that fails must not
    mark the notification seen, so the retry books it (once)."""
    from tuition.services import apple as apple_service

    signed = store.transaction("2000000000000099", COINS, at=clock.now(), price=12000)
    bought = await _post_tx(client, signed, customer_id="u_9")
    assert bought.status_code == 201, bought.text
    clock.advance(timedelta(days=1))
    refunded = store.transaction(
        "2000000000000099",
        COINS,
        at=later(clock.now(), days=-1),
        price=12000,
        revocationDate=int(clock.now().timestamp() * 1000),
        revocationReason=0,
    )
    notice = store.notification("REFUND", refunded, at=clock.now())
    real = apple_service.refund_transaction

    async def drops_the_connection(*_args: object, **_kwargs: object) -> Any:
        raise ConnectionError("the database went away mid-apply")

    monkeypatch.setattr(apple_service, "refund_transaction", drops_the_connection)
    failed = await client.post("/v1/notify/apple", content=notice)
    assert failed.status_code >= 500  # not 200: Apple sends it again
    monkeypatch.setattr(apple_service, "refund_transaction", real)
    retried = await client.post("/v1/notify/apple", content=notice)
    assert retried.status_code == 200
    order = (await client.get(f"/v1/orders/{bought.json()['order_id']}")).json()
    assert order["status"] == "refunded"
    again = await client.post("/v1/notify/apple", content=notice)  # and a third copy
    assert again.status_code == 200
    refunds = (await client.get("/v1/refunds", params={"order_id": order["id"]})).json()
    assert len(refunds["data"]) == 1
