"""Every console list, its CSV and the API's lists answer odd input (wildcards, NUL,
very long text, unicode, malformed sort, paging and dates) with a page or a clear 4xx on
both engines, never a 500; a search for a LIKE wildcard finds only the literal text."""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.admin_catalog_helpers import sign_in
from tests.integration.shop import post
from tuition import web
from tuition.clock import FrozenClock
from tuition.domain.operators import Role
from tuition.store.uow import UnitOfWork

LISTS = (
    "/admin/orders",
    "/admin/payments",
    "/admin/refunds",
    "/admin/subscriptions",
    "/admin/invoices",
    "/admin/payees",
    "/admin/customers",
    "/admin/promoters",
    "/admin/catalog/products",
    "/admin/catalog/coupons",
    "/admin/catalog/creators",
    "/admin/catalog/tax_rates",
    "/admin/developers/notifications",
    "/admin/developers/webhooks",
    "/admin/developers/events",
    "/admin/audit",
    "/admin/risk/decisions",
    "/admin/risk/reviews",
    "/admin/orders.csv",
    "/admin/payments.csv",
    "/admin/refunds.csv",
    "/admin/subscriptions.csv",
    "/admin/invoices.csv",
    "/admin/payees.csv",
    "/admin/audit.csv",
)
PARAMS = (
    "q",
    "kind",
    "status",
    "creator",
    "channel",
    "verdict",
    "payment",
    "customer",
    "currency",
    "sort",
    "after",
    "before",
    "from",
    "to",
    "offset",
)
ODD = (
    "%",
    "_",
    "/",
    "\\",
    "%_/\\'\"",
    "a" * 200,
    "a" * 5000,
    "\x00",
    "ab\x00cd",
    "ord_\x00",
    "é😀中文",
    "\u202e",
    "-1",
    "99999999999999999999",
    "1e9",
    "2026-13-45",
    "<script>",
)


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


@pytest.mark.parametrize("value", ODD, ids=repr)
async def test_no_list_answers_odd_input_with_a_500(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock, value: str
) -> None:
    await sign_in(anon_client, uow, clock, Role.OWNER)
    failed = []
    for path in LISTS:
        for name in PARAMS:
            answer = await anon_client.get(path, params={name: value})
            if answer.status_code >= 500:
                failed.append((path, name, answer.status_code))
    assert failed == []


API_LISTS = (
    "/v1/products",
    "/v1/creators",
    "/v1/coupons",
    "/v1/tax_rates",
    "/v1/orders",
    "/v1/payments",
    "/v1/refunds",
    "/v1/subscriptions",
    "/v1/promoters",
    "/v1/payouts",
    "/v1/events",
    "/v1/webhook_endpoints",
    "/v1/risk/decisions",
)
API_PARAMS = (
    "q",
    "status",
    "kind",
    "type",
    "creator_id",
    "currency",
    "customer_id",
    "limit",
    "starting_after",
    "ending_before",
    "created_gte",
    "created_lt",
)


@pytest.mark.parametrize("value", ODD, ids=repr)
async def test_no_api_list_or_rotation_answers_odd_input_with_a_500(
    client: httpx.AsyncClient, value: str
) -> None:
    failed = []
    for path in API_LISTS:
        for name in API_PARAMS:
            answer = await client.get(path, params={name: value})
            if answer.status_code >= 500:
                failed.append((path, name, answer.status_code))
    odd_id = quote(value, safe="")
    for method, path in (
        ("POST", f"/v1/webhook_endpoints/{odd_id}/rotate_secret"),
        ("PATCH", f"/v1/webhook_endpoints/{odd_id}"),
        ("GET", f"/v1/products/{odd_id}"),
        ("GET", f"/v1/coupons/{odd_id}"),
        ("GET", f"/v1/creators/{odd_id}"),
        ("GET", f"/v1/promoters/{odd_id}"),
    ):
        answer = await client.request(method, path, json={} if method != "GET" else None)
        if answer.status_code >= 500 or answer.status_code == 200:
            failed.append((path, method, answer.status_code))
    assert failed == []


@pytest.mark.parametrize("value", ODD, ids=repr)
async def test_no_console_detail_page_or_change_answers_odd_ids_with_a_500(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock, value: str
) -> None:
    csrf = await sign_in(anon_client, uow, clock, Role.OWNER)
    odd_id = quote(value, safe="")
    failed = []
    for path in (
        f"/admin/catalog/products/{odd_id}",
        f"/admin/catalog/coupons/{odd_id}",
        f"/admin/catalog/creators/{odd_id}",
        f"/admin/developers/webhooks/{odd_id}",
        f"/admin/developers/notifications/{odd_id}",
        f"/admin/promoters/{odd_id}",
    ):
        answer = await anon_client.get(path)
        if answer.status_code >= 500 or answer.status_code == 200:
            failed.append(("GET", path, answer.status_code))
    for path in (
        f"/admin/catalog/products/{odd_id}",
        f"/admin/catalog/products/{odd_id}/archive",
        f"/admin/catalog/coupons/{odd_id}",
        f"/admin/catalog/coupons/{odd_id}/disable",
        f"/admin/catalog/creators/{odd_id}",
        f"/admin/developers/webhooks/{odd_id}",
        f"/admin/developers/webhooks/{odd_id}/rotate",
        f"/admin/developers/webhooks/{odd_id}/disable",
    ):
        answer = await anon_client.post(path, data={"csrf_token": csrf, "title": value})
        if answer.status_code >= 500 or answer.status_code in (200, 303):
            failed.append(("POST", path, answer.status_code))
    forms = (
        ("/admin/catalog/products", {"title": value, "kind": value, "prices": value}),
        ("/admin/catalog/coupons", {"code": value, "percent_off": value, "ends_at": value}),
        ("/admin/catalog/creators", {"name": value, "external_id": value}),
        ("/admin/catalog/tax_rates", {"region": value, "rate": value}),
        ("/admin/developers/webhooks", {"url": value, "events": value, "description": value}),
    )
    for path, fields in forms:
        answer = await anon_client.post(path, data={"csrf_token": csrf, **fields})
        if answer.status_code >= 500:
            failed.append(("POST", path, answer.status_code))
    assert failed == []


def _ids(html: str, prefix: str) -> set[str]:
    return set(re.findall(rf"({prefix}_[0-9A-Z]{{26}})", html))


async def test_a_wildcard_in_a_search_matches_only_itself(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    payees = {
        name: (await post(client, "/v1/promoters", {"name": name, "code": code}))["id"]
        for name, code in (("100% Wang", "WANG"), ("a_b", "AB1"), ("axb", "AXB"), ("a/c", "AC1"))
    }
    creator = await post(client, "/v1/creators", {"name": "Ada"})
    products = {}
    for title in ("100% off", "plain", "a_b", "a/c"):
        made = await post(
            client,
            "/v1/products",
            {"creator_id": creator["id"], "kind": "course", "title": title, "prices": {"CNY": 1}},
        )
        products[title] = made["id"]
    await sign_in(anon_client, uow, clock, Role.OWNER)

    def payees_found(html: str) -> set[str]:
        return _ids(html, "pye") | _ids(html, "prm")

    searches = {
        "%": set(),
        "_": set(),
        "/": set(),
        "100%": {payees["100% Wang"]},
        "a_": {payees["a_b"]},
        "a/": {payees["a/c"]},
    }
    for q, wanted in searches.items():
        found = await anon_client.get("/admin/payees", params={"q": q})
        assert found.status_code == 200
        assert payees_found(found.text) & set(payees.values()) == wanted, q
    titles = {
        "%": {products["100% off"]},
        "_": {products["a_b"]},
        "/": {products["a/c"]},
        "%_": set(),
    }
    for q, wanted in titles.items():
        found = await anon_client.get("/admin/catalog/products", params={"q": q})
        assert found.status_code == 200
        assert _ids(found.text, "prod") & set(products.values()) == wanted, q


async def test_signed_out_requests_reach_no_list_and_viewers_export_nothing(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    for path in LISTS:
        answer = await anon_client.get(path)
        assert answer.status_code in (303, 401), path
        assert "/admin/login" in answer.headers.get("location", "/admin/login"), path
    for path in ("/admin/catalog/products", "/admin/developers/webhooks"):
        assert (await anon_client.post(path, data={"title": "x"})).status_code in (303, 401, 403)
    await sign_in(anon_client, uow, clock, Role.VIEWER)
    for path in LISTS:
        answer = await anon_client.get(path)
        refused = path.endswith(".csv") or path.startswith("/admin/audit")  # owners' trail
        wanted = 403 if refused else 200
        assert answer.status_code == wanted, path
