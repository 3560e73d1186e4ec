"""Offline bank transfer on both engines: an attempt answers the account and a unique
reference and makes the order wait days; finance records transfers by hand or from a
statement, each bank serial once; an underpayment stays open, an overpayment is flagged,
and the covering total pays through the one paid path exactly once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.shop import order_body, post
from tuition.channels.bank_transfer.client import BankTransferChannel, BankTransferConfig
from tuition.clock import FrozenClock
from tuition.services.ledger import verify_ledger
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


async def _attempt(client: httpx.AsyncClient, shop: dict[str, str]) -> dict[str, Any]:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    payment = await post(
        client,
        f"/v1/orders/{order['id']}/payments",
        {"channel": "bank_transfer", "method": "transfer"},
    )
    return {"order": order, "payment": payment}


def _receipt(reference: str, amount: int, serial: str, **extra: Any) -> dict[str, Any]:
    return {
        "reference": reference,
        "amount": amount,
        "currency": "CNY",
        "received_on": "2026-11-02",
        "bank_serial": serial,
        "payer": "某某公司",
        **extra,
    }


async def test_an_attempt_answers_the_account_and_a_reference_and_waits_days(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    bank: BankTransferChannel,
    clock: FrozenClock,
) -> None:
    started = await _attempt(client, shop)
    payment = started["payment"]
    assert payment["status"] == "pending"
    action = payment["next_action"]
    assert action["type"] == "bank_transfer"
    params = action["params"]
    assert params["account_number"] == "110912345610001"
    assert params["reference"] == "TU" + payment["id"].removeprefix("pay_")
    assert (params["amount"], params["currency"]) == ("99.00", "CNY")
    order = (await client.get(f"/v1/orders/{started['order']['id']}")).json()
    assert order["expires_at"].startswith((clock.now() + timedelta(days=3)).date().isoformat())
    other = await _attempt(client, shop)
    assert other["payment"]["next_action"]["params"]["reference"] != params["reference"]


async def test_an_underpayment_stays_open_and_the_rest_pays_it_once(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    bank: BankTransferChannel,
    uow: UnitOfWork,
) -> None:
    started = await _attempt(client, shop)
    reference = started["payment"]["next_action"]["params"]["reference"]
    first = await post(client, "/v1/bank_transfers/receipts", _receipt(reference, 5000, "S1"))
    assert (first["verdict"], first["received"], first["expected"]) == ("underpaid", 5000, 9900)
    order = (await client.get(f"/v1/orders/{started['order']['id']}")).json()
    assert order["status"] == "pending_payment"
    again = await post(client, "/v1/bank_transfers/receipts", _receipt(reference, 5000, "S1"))
    assert again["verdict"] == "duplicate"
    assert again["received"] == 5000
    rest = await post(
        client, "/v1/bank_transfers/receipts", _receipt(f"货款 {reference.lower()}", 4900, "S2")
    )
    assert (rest["verdict"], rest["received"]) == ("paid", 9900)
    order = (await client.get(f"/v1/orders/{started['order']['id']}")).json()
    assert order["status"] == "paid"
    payment = (await client.get(f"/v1/payments/{started['payment']['id']}")).json()
    assert (payment["status"], payment["fee"]) == ("succeeded", 0)
    report = await verify_ledger(uow)
    assert report.ok, report.problems


async def test_an_overpayment_pays_and_is_flagged(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    bank: BankTransferChannel,
) -> None:
    started = await _attempt(client, shop)
    reference = started["payment"]["next_action"]["params"]["reference"]
    over = await post(client, "/v1/bank_transfers/receipts", _receipt(reference, 10000, "S9"))
    assert (over["verdict"], over["received"], over["expected"]) == ("overpaid", 10000, 9900)
    order = (await client.get(f"/v1/orders/{started['order']['id']}")).json()
    assert order["status"] == "paid"
    events = (await client.get("/v1/events", params={"type": "payment.overpaid"})).json()["data"]
    assert [e["data"]["received"] for e in events] == [10000]


async def test_money_for_a_closed_payment_is_flagged_not_lost(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    bank: BankTransferChannel,
) -> None:
    """The buyer transfers the exact amount after the order was cancelled: nothing is
    booked, but an event flags it, so finance sends it back (the cash is in the bank)."""
    started = await _attempt(client, shop)
    reference = started["payment"]["next_action"]["params"]["reference"]
    cancelled = await client.post(f"/v1/orders/{started['order']['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    late = await post(client, "/v1/bank_transfers/receipts", _receipt(reference, 9900, "S1"))
    assert (late["verdict"], late["received"]) == ("overpaid", 9900)
    events = (await client.get("/v1/events", params={"type": "payment.overpaid"})).json()["data"]
    assert [e["data"]["bank_serial"] for e in events] == ["S1"]
    order = (await client.get(f"/v1/orders/{started['order']['id']}")).json()
    assert order["status"] == "cancelled"


async def test_a_statement_imported_twice_pays_once(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    bank: BankTransferChannel,
    uow: UnitOfWork,
) -> None:
    started = await _attempt(client, shop)
    reference = started["payment"]["next_action"]["params"]["reference"]
    statement = (
        "date,amount,currency,reference,serial,payer\n"
        f"2026-11-02,99.00,CNY,货款 {reference},B20261102001,某某公司\n"
        "2026-11-02,12.00,CNY,no reference here,B20261102002,someone\n"
        "2026-11-02,abc,CNY,x,B20261102003,someone\n"
    ).encode()
    headers = {"Content-Type": "text/csv"}
    first = await client.post("/v1/bank_transfers/statements", content=statement, headers=headers)
    assert first.status_code == 200, first.text
    lines = first.json()["lines"]
    assert [(line["verdict"], line["error"] is None) for line in lines] == [
        ("paid", True),
        ("unmatched", True),
        (None, False),
    ]
    second = await client.post("/v1/bank_transfers/statements", content=statement, headers=headers)
    assert second.json()["lines"][0]["verdict"] == "duplicate"
    payments = (await client.get("/v1/payments", params={"channel": "bank_transfer"})).json()
    assert [p["status"] for p in payments["data"]] == ["succeeded"]
    order = (await client.get(f"/v1/orders/{started['order']['id']}")).json()
    assert order["status"] == "paid"
    report = await verify_ledger(uow)
    assert report.ok, report.problems
    bad = await client.post(
        "/v1/bank_transfers/statements", content=b"when,how much\n1,2\n", headers=headers
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "statement_columns"


async def test_an_unknown_reference_or_currency_is_refused_and_writes_nothing(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    bank: BankTransferChannel,
) -> None:
    started = await _attempt(client, shop)
    reference = started["payment"]["next_action"]["params"]["reference"]
    unknown = await client.post(
        "/v1/bank_transfers/receipts", json=_receipt("TU" + "0" * 26, 9900, "S1")
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "transfer_reference_unknown"
    wrong = await client.post(
        "/v1/bank_transfers/receipts", json=_receipt(reference, 9900, "S1", currency="USD")
    )
    assert wrong.status_code == 422
    assert wrong.json()["error"]["param"] == "currency"
    later = await post(client, "/v1/bank_transfers/receipts", _receipt(reference, 9900, "S1"))
    assert later["verdict"] == "paid"  # S1 was not used up by the refusals


@pytest.mark.postgres_only
async def test_two_partial_transfers_recorded_at_once_complete_the_payment(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    bank: BankTransferChannel,
    uow: UnitOfWork,
) -> None:
    started = await _attempt(client, shop)
    reference = started["payment"]["next_action"]["params"]["reference"]
    answers = await asyncio.gather(
        *(
            client.post("/v1/bank_transfers/receipts", json=_receipt(reference, amount, serial))
            for amount, serial in ((5000, "P1"), (4900, "P2"))
        )
    )
    assert sorted(a.json()["verdict"] for a in answers) == ["paid", "underpaid"]
    order = (await client.get(f"/v1/orders/{started['order']['id']}")).json()
    assert order["status"] == "paid"
    report = await verify_ledger(uow)
    assert report.ok, report.problems


async def test_the_checkout_page_says_where_to_transfer_and_with_which_reference(
    client: httpx.AsyncClient, shop: dict[str, str], bank: BankTransferChannel, app: FastAPI
) -> None:
    from urllib.parse import parse_qs, urlsplit

    from tuition import web

    web.mount(app)
    started = await _attempt(client, shop)
    url = urlsplit(started["order"]["checkout_url"])
    sig = parse_qs(url.query)["sig"][0]
    page = await client.get(url.path, params={"sig": sig, "lang": "zh_CN"})
    assert page.status_code == 200, page.text
    reference = started["payment"]["next_action"]["params"]["reference"]
    assert 'data-testid="bank-transfer"' in page.text
    assert reference in page.text
    assert "110912345610001" in page.text
    assert "收款户名" in page.text
    assert "附言" in page.text


async def test_finance_records_a_transfer_in_the_console_and_an_underpayment_keeps_waiting(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    bank: BankTransferChannel,
    app: FastAPI,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    import re

    from tuition import web
    from tuition.services import admin as admin_service

    web.mount(app)
    await admin_service.create_admin_user(uow, "ops@example.com", "a-long-enough-password", clock)
    anon_client.headers["Accept-Language"] = "en"
    login = await anon_client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
    assert token is not None
    signed_in = await anon_client.post(
        "/admin/login",
        data={
            "email": "ops@example.com",
            "password": "a-long-enough-password",
            "csrf_token": token.group(1),
        },
    )
    assert signed_in.status_code == 303
    started = await _attempt(client, shop)
    order_id = started["order"]["id"]
    page = await anon_client.get(f"/admin/orders/{order_id}")
    assert 'data-testid="transfer-form"' in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    form = {
        "csrf_token": csrf.group(1),
        "amount": "50.00",
        "bank_serial": "C1",
        "received_on": "2026-11-02",
        "payer": "某某公司",
    }
    short = await anon_client.post(f"/admin/orders/{order_id}/bank-transfers", data=form)
    assert short.status_code == 303
    assert "transfer=underpaid" in short.headers["location"]
    order = (await client.get(f"/v1/orders/{order_id}")).json()
    assert order["status"] == "pending_payment"
    forged = await anon_client.post(
        f"/admin/orders/{order_id}/bank-transfers", data={**form, "csrf_token": "x"}
    )
    assert forged.status_code == 403
    rest = await anon_client.post(
        f"/admin/orders/{order_id}/bank-transfers",
        data={**form, "amount": "49.00", "bank_serial": "C2"},
    )
    assert "transfer=paid" in rest.headers["location"]
    shown = await anon_client.get(rest.headers["location"])
    assert 'data-testid="transfer-notice"' in shown.text
    assert "order is paid" in shown.text
    assert (await client.get(f"/v1/orders/{order_id}")).json()["status"] == "paid"
    from sqlalchemy import select

    from tuition.store.tables import audit_events

    async with uow:  # each receipt recorded from the console is audited with the operator
        trail = (
            await uow.conn.execute(
                select(audit_events.c.actor_kind, audit_events.c.actor, audit_events.c.subject)
                .where(audit_events.c.action == "bank_transfer.received")
                .order_by(audit_events.c.seq)
            )
        ).all()
    reference = started["payment"]["next_action"]["params"]["reference"]
    assert [tuple(r) for r in trail] == [("operator", "ops@example.com", reference)] * 2
