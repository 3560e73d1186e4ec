"""Helpers shared by the subscription tests: subscribe, pay, run the renewal pass."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select

from tests.integration.shop import post
from tuition.clock import FrozenClock
from tuition.domain.subscriptions import RenewalPolicy
from tuition.services.orders import OrderPolicy, mark_order_paid
from tuition.services.renewals import RenewalDeps, RenewalRun, run_renewals
from tuition.simulator.app import Simulator
from tuition.store.tables import outbox_events
from tuition.store.uow import UnitOfWork

FEES = {"sandbox": Decimal("0.006")}


def renewal_deps(clock: FrozenClock, policy: RenewalPolicy | None = None) -> RenewalDeps:
    return RenewalDeps(
        clock=clock,
        orders=OrderPolicy(order_ttl=timedelta(minutes=15), channel_fee_rates=FEES),
        policy=policy or RenewalPolicy(),
        checkout_link=lambda order_id: f"http://tuition.test/pay/{order_id}",
    )


async def renew(
    uow: UnitOfWork, clock: FrozenClock, policy: RenewalPolicy | None = None
) -> RenewalRun:
    return await run_renewals(uow, deps=renewal_deps(clock, policy))


async def subscribe(
    client: httpx.AsyncClient, product_id: str, customer: str = "u_1", **extra: Any
) -> dict[str, Any]:
    body = {
        "customer_id": customer,
        "product_id": product_id,
        "channel": "sandbox",
        "method": "page",
        "auto_renew": False,
        **extra,
    }
    return await post(client, "/v1/subscriptions", body)


async def pay_through_gateway(client: httpx.AsyncClient, gateway: Simulator, order_id: str) -> None:
    payment = await post(
        client, f"/v1/orders/{order_id}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    assert (await client.get(f"/v1/orders/{order_id}")).json()["status"] == "paid"


async def mark_paid(uow: UnitOfWork, order_id: str, clock: FrozenClock) -> None:
    async with uow:
        assert await mark_order_paid(uow, order_id, at=clock.now())
        await uow.commit()


async def events(
    uow: UnitOfWork, prefix: str = "subscription."
) -> list[tuple[str, dict[str, Any]]]:
    async with uow:
        rows = await uow.conn.execute(
            select(outbox_events.c.type, outbox_events.c.data)
            .where(outbox_events.c.type.startswith(prefix))
            .order_by(outbox_events.c.id)
        )
        return [(r[0], dict(r[1])) for r in rows]


async def get_sub(client: httpx.AsyncClient, sub_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/subscriptions/{sub_id}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def has_access(client: httpx.AsyncClient, product_id: str, customer: str = "u_1") -> Any:
    response = await client.get(f"/v1/customers/{customer}/entitlements/{product_id}")
    assert response.status_code == 200, response.text
    return response.json()
