"""Hostile input at the API's edge: every refusal is a clear 4xx, never a 500 or a write."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.shop import order_body, post
from tuition.app import create_app
from tuition.channels.registry import ChannelRegistry
from tuition.clock import FrozenClock
from tuition.config import load_settings


def _raw(body: dict[str, Any]) -> dict[str, Any]:
    # json.dumps escapes a lone surrogate as \udc00 and NUL as \u0000, as a client would.
    return {"content": json.dumps(body), "headers": {"Content-Type": "application/json"}}


async def _orders(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/v1/orders")
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


# --- text: surrogates, NUL, nesting ----------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"metadata": {"note": "a\udc00b"}}, "metadata.note"),
        ({"metadata": {"\udc00": "x"}}, "metadata"),
        ({"return_url": "https://shop.example/\x00"}, "return_url"),
        ({"metadata": {"note": "\x00"}}, "metadata.note"),
        ({"coupon_code": "\ud800"}, "coupon_code"),
    ],
)
async def test_bad_text_anywhere_in_a_body_is_refused_before_anything_is_written(
    client: httpx.AsyncClient, shop: dict[str, str], extra: dict[str, Any], param: str
) -> None:
    response = await client.post(
        "/v1/orders",
        content=json.dumps(order_body(shop, "c1", **extra)),
        headers={"Content-Type": "application/json", "Idempotency-Key": f"k-{param}"},
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("validation_failed", param)
    assert await _orders(client) == []


async def test_bad_text_in_an_item_is_named_by_its_index(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    body = order_body(shop, "c1")
    body["items"].append({"product_id": "prod_\udfff"})
    response = await client.post("/v1/orders", **_raw(body))
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "items[1].product_id"


@pytest.mark.parametrize("key", [None, "k-deep"])
async def test_deeply_nested_json_is_refused_with_a_clear_error(
    client: httpx.AsyncClient, key: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    deep = b'{"metadata": {"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}"
    response = await client.post("/v1/orders", content=deep, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "json_too_deep"


async def test_brackets_inside_strings_do_not_count_as_nesting(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    body = order_body(shop, "c1", metadata={"note": "[" * 400 + '"{'})
    assert (await client.post("/v1/orders", json=body)).status_code == 201


# --- sizes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "why"),
    [
        ({"k" * 41: "v"}, "key too long"),
        ({"k": "v" * 501}, "value too long"),
        ({f"k{i}": "v" for i in range(51)}, "too many keys"),
        ({f"k{i:02}": "v" * 500 for i in range(40)}, "over 16 KiB in all"),
    ],
)
async def test_metadata_is_bounded(
    client: httpx.AsyncClient, shop: dict[str, str], metadata: dict[str, str], why: str
) -> None:
    response = await client.post("/v1/orders", json=order_body(shop, "c1", metadata=metadata))
    assert response.status_code == 422, why
    assert response.json()["error"]["param"].startswith("metadata"), why


async def test_a_body_over_the_limit_is_refused_with_413(client: httpx.AsyncClient) -> None:
    big = b'{"metadata": {"a": "' + b"x" * (1024 * 1024) + b'"}}'
    response = await client.post("/v1/orders", content=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


async def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(
    client: httpx.AsyncClient,
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(100):  # 6.4 MB in all, if it were all read
            sent += 1
            yield b" " * 64 * 1024

    response = await client.post("/v1/orders", content=chunks())
    assert response.status_code == 413
    assert sent <= 17  # stopped just past 1 MiB


async def test_a_notification_over_its_smaller_limit_is_refused_with_413(
    anon_client: httpx.AsyncClient,
) -> None:
    response = await anon_client.post("/v1/notify/sandbox", content=b"x" * (64 * 1024 + 1))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


@pytest.fixture
async def impatient_client(
    db_url: str, engine: AsyncEngine, clock: FrozenClock, api_key: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(database_url=db_url, body_timeout_seconds=0.2)
    app = create_app(
        settings, engine=engine, test_engine=engine, clock=clock, registry=ChannelRegistry()
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://tuition.test",
        headers={"Authorization": f"Bearer {api_key}"},
    ) as c:
        yield c


async def test_a_body_that_never_arrives_times_out_with_408(
    impatient_client: httpx.AsyncClient,
) -> None:
    async def stalled() -> AsyncIterator[bytes]:
        yield b'{"customer_id": '
        await asyncio.sleep(5)
        yield b'"u_1"}'

    response = await asyncio.wait_for(
        impatient_client.post("/v1/orders", content=stalled()), timeout=3
    )
    assert response.status_code == 408
    assert response.json()["error"]["code"] == "request_timeout"


# --- order of checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b'{"customer_id": ', {}),
        (b"{}", {"Idempotency-Key": "x" * 300}),
        (b'{"metadata": {"a": "\\udc00"}}', {}),
    ],
)
async def test_an_anonymous_request_is_refused_before_its_body_is_looked_at(
    anon_client: httpx.AsyncClient, content: bytes, headers: dict[str, str]
) -> None:
    response = await anon_client.post(
        "/v1/orders", content=content, headers={"Content-Type": "application/json", **headers}
    )
    assert response.status_code == 401


async def test_an_anonymous_body_is_not_read_at_all(anon_client: httpx.AsyncClient) -> None:
    sent = 0

    async def twenty_megabytes() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(320):
            sent += 1
            yield b" " * 64 * 1024

    response = await anon_client.post("/v1/orders", content=twenty_megabytes())
    assert response.status_code == 401
    assert sent <= 1


# --- idempotency after a refusal ------------------------------------------------------------


async def test_a_refusal_is_stored_and_replayed_for_its_key(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    headers = {"Idempotency-Key": "k-refused"}
    bad = order_body(shop, "c1", currency="C")
    first = await client.post("/v1/orders", json=bad, headers=headers)
    assert first.status_code == 422
    again = await client.post("/v1/orders", json=bad, headers=headers)
    assert (again.status_code, again.json()) == (422, first.json())
    assert again.headers["idempotent-replayed"] == "true"
    other = await client.post("/v1/orders", json=order_body(shop, "c1"), headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert await _orders(client) == []


async def test_a_refusal_before_the_operation_runs_does_not_take_the_key(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    headers = {"Idempotency-Key": "k-malformed", "Content-Type": "application/json"}
    malformed = await client.post("/v1/orders", content=b'{"customer_id": ', headers=headers)
    assert malformed.status_code == 400
    fixed = await client.post(
        "/v1/orders", content=json.dumps(order_body(shop, "c1")), headers=headers
    )
    assert fixed.status_code == 201


async def test_a_key_on_a_path_of_any_length_is_not_a_server_error(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        f"/v1/orders/ord_{'X' * 600}/cancel", headers={"Idempotency-Key": "k-long"}
    )
    assert response.status_code == 404


# --- customer ids, dates, lists -------------------------------------------------------------

CYRILLIC_O = "u_\u043e"  # looks like "u_o"


async def test_a_customer_id_outside_ascii_is_refused_wherever_it_is_accepted(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    body = await client.post("/v1/orders", json=order_body(shop, "c1", customer_id=CYRILLIC_O))
    assert (body.status_code, body.json()["error"]["param"]) == (422, "customer_id")
    for path in (
        f"/v1/orders?customer_id={CYRILLIC_O}",
        f"/v1/payments?customer_id={CYRILLIC_O}",
        f"/v1/customers/{CYRILLIC_O}/entitlements",
        f"/v1/customers/{CYRILLIC_O}/entitlements/{shop['c1']}",
    ):
        response = await client.get(path)
        assert response.status_code == 422, path
        assert response.json()["error"]["param"] == "customer_id", path
    ok = await client.post("/v1/orders", json=order_body(shop, "c1", customer_id="a.b:c@d-e_1"))
    assert ok.status_code == 201


@pytest.mark.parametrize("value", ["0.5", "1700000000", "2026-11-01"])
@pytest.mark.parametrize("name", ["created_gte", "created_lt"])
@pytest.mark.parametrize("path", ["/v1/orders", "/v1/payments"])
async def test_dates_are_iso_8601_with_an_offset_only(
    client: httpx.AsyncClient, path: str, name: str, value: str
) -> None:
    response = await client.get(path, params={name: value})
    assert response.status_code == 422
    assert response.json()["error"]["param"] == name
    good = await client.get(path, params={name: "2026-11-01T09:00:00+08:00"})
    assert good.status_code == 200


async def test_every_list_refuses_a_cursor_of_another_kind(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    for path in (
        "/v1/orders",
        "/v1/payments",
        f"/v1/orders/{order['id']}/payments",
        "/v1/products",
        "/v1/creators",
        "/v1/events",
    ):
        response = await client.get(path, params={"starting_after": "cpn_x"})
        assert response.status_code == 422, path
        error = response.json()["error"]
        assert (error["code"], error["param"]) == ("cursor_invalid", "starting_after"), path


@pytest.mark.parametrize("path", ["/v1/orders", "/v1/payments", "/v1/products"])
async def test_an_unknown_enum_filter_value_is_refused(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path, params={"status": "bogus"})
    assert (response.status_code, response.json()["error"]["param"]) == (422, "status")


async def test_an_unknown_event_type_is_refused_like_any_enum_filter(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/events", params={"type": "bogus"})
    assert (response.status_code, response.json()["error"]["param"]) == (422, "type")
    assert (await client.get("/v1/events", params={"type": "order.paid"})).status_code == 200


# --- HTTP surface ------------------------------------------------------------------------------


async def test_the_trailing_slash_redirect_does_not_echo_the_host(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/orders/?limit=1", headers={"Host": "evil.example"})
    assert response.status_code == 307
    assert response.headers["location"] == "/v1/orders?limit=1"


async def test_head_is_answered_wherever_get_is(client: httpx.AsyncClient) -> None:
    got = await client.get("/v1/orders")
    head = await client.head("/v1/orders")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]
    assert head.headers["request-id"]


async def test_a_nul_in_the_url_is_refused_with_a_request_id(
    anon_client: httpx.AsyncClient,
) -> None:
    response = await anon_client.get("/v1/orders/%00")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "nul_character"
    assert response.headers["request-id"]


async def test_405_names_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/orders")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_the_openapi_document_states_the_whole_contract(app: FastAPI) -> None:
    schema = app.openapi()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "Error" in schema["components"]["schemas"]
    create_payment = schema["paths"]["/v1/orders/{order_id}/payments"]["post"]
    assert create_payment["security"] == [{"bearer": []}]
    assert {"400", "401", "408", "413", "422", "502"} <= set(create_payment["responses"])
    error = create_payment["responses"]["422"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}
    notify = schema["paths"]["/v1/notify/{channel}"]["post"]
    assert "security" not in notify
    assert {"200", "400", "413"} <= set(notify["responses"])
    assert "503" in schema["paths"]["/readyz"]["get"]["responses"]
