"""Orders over HTTP, on both engines: pricing, bad input, coupons, cancel, listing."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.integration.shop import order_body
from tests.integration.shop import order_body as _order
from tests.integration.shop import post as _post
from tuition.clock import FrozenClock


async def test_order_is_priced_with_promotion_and_exclusive_tax(
    client: httpx.AsyncClient, shop: dict[str, str], clock: FrozenClock
) -> None:
    order = await _post(client, "/v1/orders", _order(shop, "sale", tax_region="CN-X"))
    # 200.00 CNY, 15 % off, 8 % exclusive tax -> 183.60 CNY
    assert order["total"] == 18360
    assert order["subtotal"] == 20000
    assert order["discount_total"] == 3000
    assert order["tax_total"] == 1360
    assert order["status"] == "pending_payment"
    assert [s["name"] for s in order["pricing"]["steps"]] == ["promotion", "tax"]
    expires = datetime.fromisoformat(order["expires_at"].replace("Z", "+00:00"))
    assert expires == clock.now() + timedelta(minutes=15)
    fetched = (await client.get(f"/v1/orders/{order['id']}")).json()
    assert fetched == order


async def test_bundle_price_is_allocated_to_its_courses_exactly(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    order = await _post(client, "/v1/orders", _order(shop, "bundle"))
    components = order["lines"][0]["components"]
    assert [c["product_id"] for c in components] == [shop["c1"], shop["c2"], shop["c3"]]
    assert sum(c["amount"] for c in components) == order["total"] == 39900


async def test_surcharge_mode_adds_the_channel_fee(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    order = await _post(client, "/v1/orders", _order(shop, "c1", surcharge_channel="alipay"))
    assert order["surcharge"] == 59  # 99.00 x 0.6 % = 0.594 -> 0.59
    assert order["total"] == 9959


async def _refused(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, code: str, param: str | None
) -> None:
    response = await client.post("/v1/orders", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param), error
    listed = (await client.get("/v1/orders", params={"customer_id": body["customer_id"]})).json()
    assert listed["data"] == [], "a refused order must write nothing"


@pytest.mark.parametrize(
    ("names", "extra", "status", "code", "param"),
    [
        ((), {}, 422, "order_empty", "items"),
        (("gone",), {}, 400, "product_archived", "items[0].product_id"),
        (("usd_only",), {}, 400, "product_not_priced_in_currency", "items[0].product_id"),
        (("c1", "usd_only"), {}, 400, "product_not_priced_in_currency", "items[1].product_id"),
        (("c1",), {"currency": "XYZ"}, 400, "currency_unknown", "currency"),
        (("c1", "c1"), {}, 422, "duplicate_item", "items[1].product_id"),
        (("c1",), {"coupon_code": "NOPE"}, 400, "coupon_unknown", "coupon_code"),
        (("c1",), {"tax_region": "MARS"}, 400, "tax_region_unknown", "tax_region"),
        (("c1",), {"surcharge_channel": "paypal"}, 400, "channel_unknown", "surcharge_channel"),
    ],
)
async def test_bad_order_input_is_refused_naming_the_field(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    names: tuple[str, ...],
    extra: dict[str, Any],
    status: int,
    code: str,
    param: str,
) -> None:
    await _refused(client, _order(shop, *names, **extra), status, code, param)


async def test_unknown_product_is_refused(client: httpx.AsyncClient, shop: dict[str, str]) -> None:
    body = {"customer_id": "u_1", "currency": "CNY", "items": [{"product_id": "prod_nope"}]}
    await _refused(client, body, 400, "product_not_found", "items[0].product_id")


@pytest.mark.parametrize(
    ("name", "quantity", "status", "code"),
    [
        ("monthly", 0, 422, "validation_failed"),
        ("monthly", 100, 422, "validation_failed"),
        ("c1", 2, 422, "quantity_out_of_range"),
        ("huge", 99, 400, "amount_too_large"),
    ],
)
async def test_quantity_out_of_range_or_overflowing_is_refused(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    name: str,
    quantity: int,
    status: int,
    code: str,
) -> None:
    body = {
        "customer_id": "u_q",
        "currency": "CNY",
        "items": [{"product_id": shop[name], "quantity": quantity}],
    }
    await _refused(client, body, status, code, "items[0].quantity")


async def test_a_misspelled_field_is_named(client: httpx.AsyncClient, shop: dict[str, str]) -> None:
    body = {**_order(shop, "c1"), "cupon_code": "X"}
    await _refused(client, body, 422, "validation_failed", "cupon_code")


async def _coupon(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"kind": "percent", "percent_off": "0.10", **fields}
    return await _post(client, "/v1/coupons", body)


@pytest.mark.parametrize(
    ("coupon", "names", "code"),
    [
        ({"code": "OLD", "ends_at": "2020-01-01T00:00:00Z"}, ("c1",), "coupon_expired"),
        ({"code": "BIG", "min_spend": {"CNY": 50000}}, ("c1",), "coupon_below_minimum_spend"),
        ({"code": "MEMBERS", "applies_to_kinds": ["membership"]}, ("c1",), "coupon_not_applicable"),
        ({"code": "ONCE", "max_redemptions": 1}, ("c1",), "coupon_exhausted"),
    ],
)
async def test_coupon_refusals_write_nothing(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    coupon: dict[str, Any],
    names: tuple[str, ...],
    code: str,
) -> None:
    await _coupon(client, **coupon)
    if code == "coupon_exhausted":
        await _post(client, "/v1/orders", _order(shop, "c2", coupon_code="ONCE", customer_id="u_x"))
    await _refused(
        client, _order(shop, *names, coupon_code=coupon["code"].lower()), 400, code, "coupon_code"
    )


async def test_coupon_is_applied_and_its_use_counted(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    await _coupon(client, code="TEN", max_per_customer=1)
    order = await _post(client, "/v1/orders", _order(shop, "c1", coupon_code="ten"))
    assert order["coupon_code"] == "TEN"
    assert order["total"] == 8910
    again = await client.post("/v1/orders", json=_order(shop, "c2", coupon_code="TEN"))
    assert again.json()["error"]["code"] == "coupon_customer_limit_reached"
    assert (await client.get("/v1/coupons/TEN")).json()["times_redeemed"] == 1


async def test_cancelling_releases_the_coupon_use(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    await _coupon(client, code="SOLO", max_redemptions=1)
    first = await _post(client, "/v1/orders", _order(shop, "c1", coupon_code="SOLO"))
    cancelled = await _post(client, f"/v1/orders/{first['id']}/cancel", {})
    assert cancelled["status"] == "cancelled"
    assert cancelled["closed_at"] is not None
    second = await _post(client, "/v1/orders", _order(shop, "c1", coupon_code="SOLO"))
    assert second["coupon_code"] == "SOLO"
    again = await client.post(f"/v1/orders/{first['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "illegal_transition"


@pytest.mark.postgres_only
async def test_concurrent_checkouts_never_redeem_a_coupon_more_than_its_limit(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    await _coupon(client, code="RUSH", max_redemptions=3)
    responses = await asyncio.gather(
        *(
            client.post(
                "/v1/orders", json=_order(shop, "c1", coupon_code="RUSH", customer_id=f"u_{n}")
            )
            for n in range(12)
        )
    )
    created = [r for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code != 201]
    assert len(created) == 3
    assert {r.json()["error"]["code"] for r in refused} == {"coupon_exhausted"}
    assert (await client.get("/v1/coupons/RUSH")).json()["times_redeemed"] == 3


async def test_orders_are_listed_newest_first_with_filters_and_cursor(
    client: httpx.AsyncClient, shop: dict[str, str], clock: FrozenClock
) -> None:
    made = []
    for n in range(5):
        clock.advance(timedelta(minutes=1))
        made.append(await _post(client, "/v1/orders", _order(shop, "monthly", customer_id="u_l")))
    await _post(client, "/v1/orders", _order(shop, "monthly", customer_id="someone_else"))
    await _post(client, f"/v1/orders/{made[0]['id']}/cancel", {})

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"customer_id": "u_l", "limit": 2}
        if cursor:
            params["starting_after"] = cursor
        page = (await client.get("/v1/orders", params=params)).json()
        seen += [o["id"] for o in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["data"][-1]["id"]
    assert seen == [o["id"] for o in reversed(made)]

    cancelled = (await client.get("/v1/orders", params={"status": "cancelled"})).json()["data"]
    assert [o["id"] for o in cancelled] == [made[0]["id"]]
    window = await client.get(
        "/v1/orders",
        params={
            "customer_id": "u_l",
            "created_gte": made[1]["created_at"],
            "created_lt": made[3]["created_at"],
        },
    )
    assert [o["id"] for o in window.json()["data"]] == [made[2]["id"], made[1]["id"]]
    naive = await client.get("/v1/orders", params={"created_gte": "2026-01-01T00:00:00"})
    assert naive.status_code == 422
    assert naive.json()["error"]["param"] == "created_gte"


async def test_missing_order_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/orders/ord_missing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "order_not_found"


async def test_nul_characters_are_refused_before_reaching_the_database(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    assert (await client.get("/v1/orders/ord_%00x")).json()["error"]["code"] == "nul_character"
    listed = await client.get("/v1/orders", params={"customer_id": "a\x00b"})
    assert listed.status_code == 400
    body = order_body(shop, "c1", coupon_code="A\x00B")
    response = await client.post("/v1/orders", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "coupon_code"
