"""Changes made through the API are in the audit trail on both engines, named by the
caller's key, written in the change's transaction: refunds (made, retried), progress
reports, wallet adjustments, subscriptions (made, cancelled, resumed, changed), invoice
requests and bank transfers (a receipt, a statement). A refused change writes none,
and orders and payments, records of their own, none either."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.integration.shop import order_body, post
from tests.integration.subscription_shop import mark_paid, subscribe
from tuition.channels.bank_transfer.client import BankTransferChannel, BankTransferConfig
from tuition.clock import FrozenClock
from tuition.services import audit
from tuition.simulator.app import Simulator
from tuition.store.tables import api_keys, audit_events
from tuition.store.uow import UnitOfWork


@pytest.fixture
def bank(app: FastAPI) -> BankTransferChannel:
    channel = BankTransferChannel(
        BankTransferConfig(
            account_name="某某教育科技有限公司",
            bank_name="招商银行北京分行",
            account_number="110912345610001",
            expiry=timedelta(days=3),
        )
    )
    app.state.modes.live.registry.add(channel)
    return channel


async def _key_id(uow: UnitOfWork) -> str:
    async with uow:
        return str((await uow.conn.execute(select(api_keys.c.id))).scalar_one())


async def _trail(uow: UnitOfWork, action: str) -> list[dict[str, Any]]:
    async with uow:
        rows = await uow.conn.execute(
            select(audit_events).where(audit_events.c.action == action).order_by(audit_events.c.seq)
        )
        return [dict(r._mapping) for r in rows]


async def _one(uow: UnitOfWork, action: str, subject: str, key_id: str) -> dict[str, Any]:
    rows = await _trail(uow, action)
    assert len(rows) == 1, (action, rows)
    row = rows[0]
    assert (row["actor_kind"], row["actor"], row["subject"]) == ("api_key", key_id, subject)
    assert row["request_id"]
    return row


async def _paid(
    client: httpx.AsyncClient, gateway: Simulator, shop: dict[str, str], name: str = "c1"
) -> dict[str, Any]:
    order = await post(client, "/v1/orders", order_body(shop, name))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "qr"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    return order


async def test_refunds_progress_and_wallet_adjustments_are_audited_with_the_key(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
) -> None:
    key_id = await _key_id(uow)
    order = await _paid(client, gateway, shop)
    assert await _trail(uow, "order.created") == []  # orders are records of their own
    gateway.fail_next_refunds(1)
    failed = await post(client, "/v1/refunds", {"order_id": order["id"], "amount": 100})
    await gateway.drain()
    created = await _one(uow, "refund.created", failed["id"], key_id)
    assert json.loads(str(created["after"]))["of"] == order["id"]
    retried = await post(client, f"/v1/refunds/{failed['id']}/retry", {})
    assert retried["retry_of"] == failed["id"]
    await _one(uow, "refund.retried", retried["id"], key_id)
    refused = await client.post("/v1/refunds", json={"order_id": order["id"], "amount": 10**9})
    assert refused.status_code in (409, 422)
    assert len(await _trail(uow, "refund.created")) == 1  # a refused change writes none

    progress = await client.put(
        f"/v1/customers/{order['customer_id']}/entitlements/{shop['c1']}/progress",
        json={"progress": "0.25"},
    )
    assert progress.status_code == 200, progress.text
    reported = await _one(uow, "consumption.reported", order["customer_id"], key_id)
    assert json.loads(str(reported["after"]))["product_id"] == shop["c1"]

    credit = await post(
        client,
        "/v1/customers/u_9/wallet/adjustments",
        {"currency": "CNY", "amount": 500, "reason": "goodwill"},
    )
    assert credit["amount"] == 500
    adjusted = await _one(uow, "wallet.adjusted", "u_9", key_id)
    assert json.loads(str(adjusted["after"])) == {
        "of": "u_9",
        "currency": "CNY",
        "amount": 500,
        "reason": "goodwill",
    }
    debit = await client.post(
        "/v1/customers/u_9/wallet/adjustments",
        json={"currency": "CNY", "amount": -501, "reason": "too much"},
    )
    assert debit.status_code == 409
    assert len(await _trail(uow, "wallet.adjusted")) == 1
    assert await audit.seal(uow) >= 1
    assert (await audit.verify(uow)).ok


async def test_subscription_changes_and_invoice_requests_are_audited_with_the_key(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    key_id = await _key_id(uow)
    sub = await subscribe(client, shop["monthly"], customer="u_5")
    made = await _one(uow, "subscription.created", "u_5", key_id)
    assert json.loads(str(made["after"]))["product_id"] == shop["monthly"]
    await mark_paid(uow, sub["latest_order"]["id"], clock)
    cancel = await post(client, f"/v1/subscriptions/{sub['id']}/cancel", {"at_period_end": True})
    assert cancel["cancel_at_period_end"] is True
    await _one(uow, "subscription.cancel", sub["id"], key_id)
    # Asked again: nothing changes, so nothing more is recorded.
    again = await post(client, f"/v1/subscriptions/{sub['id']}/cancel", {"at_period_end": True})
    assert again["canceled_at"] == cancel["canceled_at"]
    await _one(uow, "subscription.cancel", sub["id"], key_id)
    await post(client, f"/v1/subscriptions/{sub['id']}/resume", {})
    await _one(uow, "subscription.resumed", sub["id"], key_id)
    premium = await post(
        client,
        "/v1/products",
        {
            "creator_id": shop["creator"],
            "title": "Premium",
            "kind": "membership",
            "period": "month",
            "prices": {"CNY": 6999},
        },
    )
    preview = await post(
        client, f"/v1/subscriptions/{sub['id']}/change", {"product_id": premium["id"]}
    )
    assert preview["status"] == "preview"
    assert await _trail(uow, "subscription.changed") == []  # a preview changes nothing
    confirmed = await post(
        client,
        f"/v1/subscriptions/{sub['id']}/change",
        {"product_id": premium["id"], "confirm": True},
    )
    assert confirmed["status"] == "pending_payment"
    changed = await _one(uow, "subscription.changed", sub["id"], key_id)
    assert json.loads(str(changed["after"]))["to"] == premium["id"]
    twice = await client.post(
        f"/v1/subscriptions/{sub['id']}/cancel", json={"at_period_end": False}
    )
    assert twice.status_code == 200
    await _one(uow, "subscription.cancel_now", sub["id"], key_id)

    order = await _paid(client, gateway, shop, "c2")
    request = await post(
        client,
        f"/v1/orders/{order['id']}/invoice_requests",
        {"type": "personal", "title": "Li Lei", "email": "li@example.com"},
    )
    requested = await _one(uow, "invoice.requested", request["id"], key_id)
    assert json.loads(str(requested["after"]))["of"] == order["id"]


async def test_bank_transfer_receipts_and_statements_are_audited_with_the_key(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    bank: BankTransferChannel,
    uow: UnitOfWork,
) -> None:
    key_id = await _key_id(uow)
    references = []
    for _ in range(2):
        order = await post(client, "/v1/orders", order_body(shop, "c1"))
        payment = await post(
            client,
            f"/v1/orders/{order['id']}/payments",
            {"channel": "bank_transfer", "method": "transfer"},
        )
        references.append(payment["next_action"]["params"]["reference"])
    receipt = {
        "reference": references[0],
        "amount": 9900,
        "currency": "CNY",
        "received_on": "2026-11-02",
        "bank_serial": "S1",
        "payer": "某某公司",
    }
    await post(client, "/v1/bank_transfers/receipts", receipt)
    received = await _one(uow, "bank_transfer.received", references[0], key_id)
    assert json.loads(str(received["after"]))["bank_serial"] == "S1"
    statement = (
        "date,amount,currency,reference,serial,payer\n"
        f"2026-11-02,99.00,CNY,{references[1]},B1,某某公司\n"
    ).encode()
    imported = await client.post(
        "/v1/bank_transfers/statements", content=statement, headers={"Content-Type": "text/csv"}
    )
    assert imported.status_code == 200, imported.text
    rows = await _trail(uow, "bank_transfer.statement_imported")
    assert [(r["actor_kind"], r["actor"]) for r in rows] == [("api_key", key_id)]
    assert json.loads(str(rows[0]["after"]))["size"] == len(statement)
