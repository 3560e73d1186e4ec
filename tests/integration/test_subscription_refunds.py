"""A refund of a subscription's current period cancels it; a partial refund does not."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from tests.integration.subscription_shop import (
    events,
    get_sub,
    has_access,
    pay_through_gateway,
    renew,
    subscribe,
)
from tuition.clock import FrozenClock
from tuition.domain.subscriptions import RenewalPolicy
from tuition.services.ledger import verify_ledger
from tuition.simulator.app import Simulator
from tuition.store.uow import UnitOfWork


async def _refund(client: httpx.AsyncClient, gateway: Simulator, **body: Any) -> dict[str, Any]:
    made = await client.post("/v1/refunds", json=body)
    assert made.status_code == 201, made.text
    await gateway.drain()
    refund = (await client.get(f"/v1/refunds/{made.json()['id']}")).json()
    assert refund["status"] == "succeeded", refund
    return refund  # type: ignore[no-any-return]


async def _paid_subscription(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator
) -> dict[str, Any]:
    await client.put(f"/v1/products/{shop['monthly']}/access_scope", json={"everything": True})
    sub = await subscribe(client, shop["monthly"])
    await pay_through_gateway(client, gateway, sub["latest_order"]["id"])
    assert (await get_sub(client, sub["id"]))["current_period_end"] is not None
    return sub


async def test_a_full_refund_of_the_current_period_cancels_the_subscription(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    sub = await _paid_subscription(client, shop, gateway)
    await _refund(
        client, gateway, order_id=sub["latest_order"]["id"], reason="requested_by_customer"
    )
    after = await get_sub(client, sub["id"])
    assert after["status"] == "canceled"
    assert after["ended_at"] is not None
    assert not (await has_access(client, shop["c1"]))["has_access"]
    canceled = [d for t, d in await events(uow) if t == "subscription.canceled"]
    assert len(canceled) == 1
    assert canceled[0]["reason"] == "refunded"
    assert canceled[0]["order_id"] == sub["latest_order"]["id"]
    # Nothing renews a canceled subscription.
    clock.set(clock.now().replace(month=11, day=28))
    assert (await renew(uow, clock)).prepared == []
    report = await verify_ledger(uow)
    assert report.ok, report.problems


async def test_a_partial_refund_leaves_the_subscription_active(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    sub = await _paid_subscription(client, shop, gateway)
    await _refund(
        client,
        gateway,
        order_id=sub["latest_order"]["id"],
        amount=1000,
        reason="requested_by_customer",
    )
    after = await get_sub(client, sub["id"])
    assert after["status"] == "active"
    assert "subscription.canceled" not in [t for t, _ in await events(uow)]


async def test_a_full_refund_closes_the_renewal_order_already_made(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    """A renewal made before the refund is closed with it: a charge on its way (an
    agreement's) that lands later finds a cancelled order, which is refunded."""
    sub = await _paid_subscription(client, shop, gateway)
    # Renewals made a whole period ahead, so the renewal exists while the current period
    # is still refundable in full (a membership refunds its unused time to the second).
    run = await renew(uow, clock, RenewalPolicy(lead=timedelta(days=31)))
    assert len(run.prepared) == 1
    async with uow:
        links = await uow.subscriptions.orders_of(sub["id"])
    (renewal_id,) = [link.order_id for link in links if link.order_id != sub["latest_order"]["id"]]
    renewal = (await client.get(f"/v1/orders/{renewal_id}")).json()
    assert renewal["status"] == "pending_payment"
    await _refund(
        client, gateway, order_id=sub["latest_order"]["id"], reason="requested_by_customer"
    )
    assert (await get_sub(client, sub["id"]))["status"] == "canceled"
    closed = (await client.get(f"/v1/orders/{renewal['id']}")).json()
    assert closed["status"] == "cancelled"
    refused = await client.post(
        f"/v1/orders/{renewal['id']}/payments", json={"channel": "sandbox", "method": "page"}
    )
    assert refused.status_code == 409, refused.text
