"""A subscription sold with a promoter's referral code and through a partner platform,
on both engines: the first order and every renewal are placed with them, each order's
split fixed anew from the product's commission setting when it is placed; an unknown
code or partner is refused at subscribe time, trial or not."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy import select

from tests.integration.shop import post
from tests.integration.subscription_shop import get_sub, mark_paid, renew, subscribe
from tuition.clock import FrozenClock
from tuition.store.tables import order_commissions, order_partner_shares
from tuition.store.uow import UnitOfWork


async def test_renewal_orders_carry_the_subscriptions_referral_code_and_partner(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    setting = await client.put(
        f"/v1/products/{shop['monthly']}/commission",
        json={"level1": "0.1", "level2": "0", "bearer": "platform"},
    )
    assert setting.status_code == 200, setting.text
    li = await post(client, "/v1/promoters", {"name": "Li", "code": "LI"})
    local = await post(
        client, "/v1/partners", {"name": "Local", "share": "0.05", "currency": "CNY"}
    )
    sub = await subscribe(client, shop["monthly"], referral_code="LI", partner_id=local["id"])
    first = sub["latest_order"]
    assert (first["referral_code"], first["partner_id"]) == ("LI", local["id"])
    await mark_paid(uow, first["id"], clock)
    # The commission rate changes before the renewal: the renewal's split follows it.
    await client.put(
        f"/v1/products/{shop['monthly']}/commission",
        json={"level1": "0.2", "level2": "0", "bearer": "platform"},
    )
    clock.set(datetime(2026, 11, 28, 9, tzinfo=UTC))
    run = await renew(uow, clock)
    assert run.prepared == [sub["id"]]
    [renewal] = [o for o in (await get_sub(client, sub["id"]))["orders"] if o["kind"] == "renewal"]
    order = (await client.get(f"/v1/orders/{renewal['order_id']}")).json()
    assert (order["referral_code"], order["partner_id"]) == ("LI", local["id"])
    async with uow:
        splits = {
            r.order_id: (r.level1_id, r.level1_amount)
            for r in await uow.conn.execute(select(order_commissions))
        }
        partners = {
            r.order_id: r.amount for r in await uow.conn.execute(select(order_partner_shares))
        }
    # 30.00 a month: 10 % then 20 % to Li, 5 % to Local each time.
    assert splits == {first["id"]: (li["id"], 300), order["id"]: (li["id"], 600)}
    assert partners == {first["id"]: 150, order["id"]: 150}


async def test_an_unknown_code_or_partner_is_refused_when_subscribing(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    for extra in ({}, {"trial_days": 7}):
        body = {
            "customer_id": "u_1",
            "product_id": shop["monthly"],
            "channel": "sandbox",
            "method": "page",
            **extra,
        }
        code = await client.post("/v1/subscriptions", json={**body, "referral_code": "NOBODY"})
        assert code.status_code == 422, code.text
        assert code.json()["error"]["code"] == "referral_code_unknown"
        partner = await client.post(
            "/v1/subscriptions",
            json={**body, "partner_id": "pye_01M8SA1WD0GBMFMGW3HRYCSVWY"},
        )
        assert partner.status_code == 422, partner.text
        assert (partner.json()["error"]["code"], partner.json()["error"]["param"]) == (
            "partner_not_found",
            "partner_id",
        )
    assert (await client.get("/v1/subscriptions")).json()["data"] == []
