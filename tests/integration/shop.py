"""A small shop built through the API, shared by the order and entitlement tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from tuition.clock import FrozenClock


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture
async def shop(client: httpx.AsyncClient, clock: FrozenClock) -> dict[str, str]:
    """A creator with courses, a bundle, a membership, a top-up and a tax rate."""
    now = clock.now()
    creator = await post(client, "/v1/creators", {"name": "Ada", "default_revenue_share": "0.7"})
    ids: dict[str, str] = {"creator": creator["id"]}

    async def product(name: str, **fields: Any) -> None:
        body = {"creator_id": creator["id"], "title": name, "kind": "course", **fields}
        ids[name] = (await post(client, "/v1/products", body))["id"]

    await product(
        "sale",
        prices={"CNY": 20000},
        promotion={
            "percent_off": "0.15",
            "starts_at": (now - timedelta(days=1)).isoformat(),
            "ends_at": (now + timedelta(days=1)).isoformat(),
        },
    )
    await product("c1", prices={"CNY": 9900, "USD": 1500})
    await product("c2", prices={"CNY": 19900})
    await product("c3", prices={"CNY": 29900})
    await product("usd_only", prices={"USD": 1000})
    await product("huge", kind="consultation", prices={"CNY": 10**14})
    await product(
        "bundle", kind="bundle", prices={"CNY": 39900}, components=[ids["c1"], ids["c2"], ids["c3"]]
    )
    await product("monthly", kind="membership", period="month", prices={"CNY": 3000})
    await product("coins", kind="topup", topup_credit=1000, prices={"CNY": 1000})
    await product("gone", prices={"CNY": 100})
    archived = await client.post(f"/v1/products/{ids['gone']}/archive")
    assert archived.status_code == 200, archived.text
    tax = await client.put("/v1/tax_rates/CN-X", json={"rate": "0.08", "inclusive": False})
    assert tax.status_code == 200, tax.text
    return ids


def order_body(shop: dict[str, str], *names: str, **extra: Any) -> dict[str, Any]:
    return {
        "customer_id": extra.pop("customer_id", "u_1"),
        "currency": extra.pop("currency", "CNY"),
        "items": [{"product_id": shop[n]} for n in names],
        **extra,
    }
