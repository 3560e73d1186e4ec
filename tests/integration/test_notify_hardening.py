"""``/v1/notify/*`` faces anyone: hostile bodies are recorded, bounded and refused with the
channel's failure ACK; an applied notification gets the success ACK whatever follows."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.integration.gateway import send_notification
from tests.integration.shop import order_body, post
from tuition.clock import FrozenClock
from tuition.domain.errors import ChannelError
from tuition.services import notifications as notification_service
from tuition.services.notifications import MAX_UNVERIFIED_BODY_CHARS
from tuition.services.orders import expire_order
from tuition.simulator.app import Simulator
from tuition.store.tables import notifications
from tuition.store.uow import UnitOfWork


async def _recorded(uow: UnitOfWork) -> list[dict[str, Any]]:
    async with uow:
        rows = await uow.conn.execute(select(notifications).order_by(notifications.c.id))
        return [dict(r) for r in rows.mappings()]


async def _payment(client: httpx.AsyncClient, shop: dict[str, str]) -> dict[str, Any]:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    return await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )


def _paid(payment: dict[str, Any], clock: FrozenClock, **changes: Any) -> dict[str, Any]:
    return {
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


async def test_a_nul_byte_in_a_notification_is_recorded_and_gets_the_failure_ack(
    anon_client: httpx.AsyncClient, gateway: Simulator, uow: UnitOfWork
) -> None:
    response = await anon_client.post(
        "/v1/notify/sandbox", content=b'{"event": "payment.paid\x00"}', headers={"X-A": "b"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "FAIL"
    [row] = await _recorded(uow)
    assert row["verdict"] == "rejected"
    assert "\\u0000" in row["body"]
    assert "\x00" not in row["body"]


async def test_a_signed_notification_with_unstorable_fields_is_refused_and_recorded(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    payment = await _payment(client, shop)
    for changes in (
        {"trade_no": "T" * 65},
        {"trade_no": "T\x00"},
        {"out_trade_no": "pay_" + "X" * 60},
        {"event": "e" * 65},
    ):
        response = await send_notification(
            client, gateway, clock, **_paid(payment, clock, **changes)
        )
        assert response.status_code == 400, changes
    rows = await _recorded(uow)
    assert [r["verdict"] for r in rows] == ["rejected"] * 4
    assert all(r["trade_no"] is None and r["payment_id"] is None for r in rows)
    assert (await client.get(f"/v1/payments/{payment['id']}")).json()["status"] == "pending"


async def test_an_unverified_notification_stores_only_a_bounded_body(
    anon_client: httpx.AsyncClient, gateway: Simulator, uow: UnitOfWork
) -> None:
    garbage = json.dumps({"junk": "x" * 60_000}).encode()
    response = await anon_client.post("/v1/notify/sandbox", content=garbage)
    assert response.status_code == 400
    [row] = await _recorded(uow)
    assert row["verdict"] == "rejected"
    assert len(row["body"]) == MAX_UNVERIFIED_BODY_CHARS


async def test_an_applied_notification_gets_the_success_ack_even_if_the_refund_call_fails(
    monkeypatch: pytest.MonkeyPatch,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    payment = await _payment(client, shop)
    clock.advance(timedelta(minutes=16))
    await expire_order(uow, payment["order_id"], clock=clock)
    # The money arrives for the closed order: it is refunded automatically after commit,
    # and that call fails in a way the refund service does not absorb.

    async def failing_submit(*_args: Any, **_kwargs: Any) -> None:
        raise ChannelError("the gateway refused the refund", code="refund_refused")

    monkeypatch.setattr(notification_service, "submit_refund", failing_submit)
    response = await send_notification(client, gateway, clock, **_paid(payment, clock))
    assert response.status_code == 200
    assert response.json() == {"code": "SUCCESS"}
    assert [r["verdict"] for r in await _recorded(uow)] == ["applied"]
    paid = (await client.get(f"/v1/payments/{payment['id']}")).json()
    assert (paid["status"], paid["amount_refunded"]) == ("succeeded", 0)  # refund pending
