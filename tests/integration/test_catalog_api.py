"""The catalog over HTTP: creators, products of every kind, tax rates and coupons."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update
from starlette.routing import NoMatchFound

from tuition.api.catalog import routers
from tuition.clock import FrozenClock
from tuition.domain.catalog import ProductKind
from tuition.store.tables import coupons
from tuition.store.uow import UnitOfWork


@pytest.fixture(autouse=True)
def _catalog_routes(app: FastAPI) -> None:
    # app.py may already include these routers; include them only once. Looked up by
    # route name, which works whether FastAPI flattens included routes or not.
    try:
        app.url_path_for("create_product")
    except NoMatchFound:
        for router in routers:
            app.include_router(router)


def assert_error(response: httpx.Response, status: int, code: str, param: str | None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param), error


async def created(response_: Any) -> dict[str, Any]:
    response = await response_
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def make_creator(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    return await created(client.post("/v1/creators", json={"name": "Ada", **fields}))


async def make_product(client: httpx.AsyncClient, creator_id: str, **fields: Any) -> dict[str, Any]:
    body = {"creator_id": creator_id, "kind": "course", "title": "Python", **fields}
    body.setdefault("prices", {"CNY": 19900})
    return await created(client.post("/v1/products", json=body))


async def listed(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(path, params={"limit": 100, **params})
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


# --- creators ---------------------------------------------------------------------------


async def test_a_creator_is_created_read_listed_and_updated(client: httpx.AsyncClient) -> None:
    creator = await make_creator(client, default_revenue_share="0.65", external_id="u-1")
    assert creator["id"].startswith("cre_")
    assert (creator["name"], creator["default_revenue_share"]) == ("Ada", "0.65")
    assert (await client.get(f"/v1/creators/{creator['id']}")).json() == creator
    assert [c["id"] for c in await listed(client, "/v1/creators")] == [creator["id"]]

    patched = await client.patch(
        f"/v1/creators/{creator['id']}", json={"name": "Ada L.", "external_id": None}
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["name"], body["external_id"], body["default_revenue_share"]) == (
        "Ada L.",
        None,
        "0.65",
    )


async def test_a_creator_without_a_share_gets_the_default_of_seventy_percent(
    client: httpx.AsyncClient,
) -> None:
    assert (await make_creator(client))["default_revenue_share"] == "0.7"


async def test_a_taken_external_id_is_a_conflict_and_writes_nothing(
    client: httpx.AsyncClient,
) -> None:
    first = await make_creator(client, external_id="same")
    second = await make_creator(client, external_id="other")
    response = await client.post("/v1/creators", json={"name": "B", "external_id": "same"})
    assert_error(response, 409, "creator_external_id_taken", "external_id")
    response = await client.patch(f"/v1/creators/{second['id']}", json={"external_id": "same"})
    assert_error(response, 409, "creator_external_id_taken", "external_id")
    assert len(await listed(client, "/v1/creators")) == 2
    assert (await client.get(f"/v1/creators/{first['id']}")).json()["external_id"] == "same"


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"name": "A", "default_revenue_share": 0.7}, "validation_failed", "default_revenue_share"),
        (
            {"name": "A", "default_revenue_share": "1.2"},
            "rate_out_of_range",
            "default_revenue_share",
        ),
        ({"name": "   "}, "name_required", "name"),
        ({"name": "A", "nmae": "B"}, "validation_failed", "nmae"),
    ],
)
async def test_bad_creator_input_is_refused_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], code: str, param: str
) -> None:
    response = await client.post("/v1/creators", json=body)
    assert_error(response, 422, code, param)
    assert await listed(client, "/v1/creators") == []


async def test_an_unknown_creator_is_a_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/creators/cre_nope"), 404, "resource_missing", "creator_id")


# --- products ---------------------------------------------------------------------------

KIND_FIELDS: dict[str, dict[str, Any]] = {
    "course": {},
    "article": {"prices": {"CNY": 300}},
    "column": {"prices": {"CNY": 9900, "USD": 1500}},
    "consultation": {"prices": {"JPY": 5000}},
    "membership": {"period": "quarter"},
    "topup": {"topup_credit": 1000, "prices": {"CNY": 1000}},
}


@pytest.mark.parametrize("kind", list(KIND_FIELDS))
async def test_a_product_of_each_kind_is_created_and_read_back(
    client: httpx.AsyncClient, kind: str
) -> None:
    creator = await make_creator(client)
    product = await make_product(
        client,
        creator["id"],
        kind=kind,
        description="Learn it",
        metadata={"sku": "A-1"},
        **KIND_FIELDS[kind],
    )
    assert product["id"].startswith("prod_")
    assert (product["kind"], product["status"]) == (kind, "active")
    assert product["prices"] == KIND_FIELDS[kind].get("prices", {"CNY": 19900})
    assert product["period"] == KIND_FIELDS[kind].get("period")
    assert product["topup_credit"] == KIND_FIELDS[kind].get("topup_credit")
    assert product["metadata"] == {"sku": "A-1"}
    assert (await client.get(f"/v1/products/{product['id']}")).json() == product


async def test_a_product_takes_the_creators_share_unless_it_sets_its_own(
    client: httpx.AsyncClient,
) -> None:
    creator = await make_creator(client, default_revenue_share="0.55")
    assert (await make_product(client, creator["id"]))["revenue_share"] == "0.55"
    own = await make_product(client, creator["id"], revenue_share="0")
    assert own["revenue_share"] == "0"


async def test_a_bundle_keeps_its_components_in_the_given_order(
    client: httpx.AsyncClient,
) -> None:
    creator = await make_creator(client)
    a, b, c = [(await make_product(client, creator["id"], title=t))["id"] for t in "abc"]
    bundle = await make_product(
        client, creator["id"], kind="bundle", prices={"CNY": 29900}, components=[c, a, b]
    )
    assert bundle["components"] == [c, a, b]
    assert (await client.get(f"/v1/products/{bundle['id']}")).json()["components"] == [c, a, b]


async def test_a_membership_needs_a_period(client: httpx.AsyncClient) -> None:
    creator = await make_creator(client)
    body = {"creator_id": creator["id"], "kind": "membership", "title": "VIP", "prices": {"CNY": 1}}
    response = await client.post("/v1/products", json=body)
    assert_error(response, 422, "membership_period_required", "period")
    assert await listed(client, "/v1/products") == []


async def test_a_topup_needs_a_credit(client: httpx.AsyncClient) -> None:
    creator = await make_creator(client)
    body = {"creator_id": creator["id"], "kind": "topup", "title": "Coins", "prices": {"CNY": 1}}
    response = await client.post("/v1/products", json=body)
    assert_error(response, 422, "topup_credit_required", "topup_credit")
    assert await listed(client, "/v1/products") == []


NOW = "2026-11-01T09:00:00+08:00"
LATER = "2026-12-01T09:00:00+08:00"
BAD_PRODUCTS: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("share_as_number", {"revenue_share": 0.7}, 422, "validation_failed", "revenue_share"),
    ("share_above_one", {"revenue_share": "1.5"}, 422, "rate_out_of_range", "revenue_share"),
    ("share_exponent", {"revenue_share": "7e-1"}, 422, "rate_invalid", "revenue_share"),
    ("no_prices", {"prices": {}}, 422, "amounts_required", "prices"),
    ("lower_currency", {"prices": {"cny": 100}}, 400, "currency_unknown", "prices.cny"),
    ("negative_price", {"prices": {"CNY": -1}}, 422, "amount_not_positive", "prices.CNY"),
    ("float_price", {"prices": {"CNY": 199.5}}, 422, "validation_failed", "prices.CNY"),
    ("string_price", {"prices": {"CNY": "199"}}, 422, "validation_failed", "prices.CNY"),
    ("huge_price", {"prices": {"CNY": 10**16}}, 400, "amount_too_large", "prices.CNY"),
    ("unknown_kind", {"kind": "ebook"}, 422, "validation_failed", "kind"),
    ("misspelt_field", {"titel": "x"}, 422, "validation_failed", "titel"),
    ("blank_title", {"title": "  "}, 422, "title_required", "title"),
    ("long_title", {"title": "x" * 301}, 422, "validation_failed", "title"),
    ("nul_in_title", {"title": "a\x00b"}, 422, "validation_failed", "title"),
    ("period_on_course", {"period": "month"}, 422, "period_not_allowed", "period"),
    ("bad_period", {"kind": "membership", "period": "week"}, 422, "validation_failed", "period"),
    ("credit_on_course", {"topup_credit": 5}, 422, "topup_credit_not_allowed", "topup_credit"),
    (
        "zero_credit",
        {"kind": "topup", "topup_credit": 0},
        422,
        "amount_not_positive",
        "topup_credit",
    ),
    (
        "components_on_course",
        {"components": ["prod_x"]},
        422,
        "components_not_allowed",
        "components",
    ),
    ("unknown_creator", {"creator_id": "cre_nobody"}, 404, "resource_missing", "creator_id"),
    (
        "naive_promotion",
        {"promotion": {"starts_at": "2026-11-01T09:00:00", "ends_at": LATER, "percent_off": "0.1"}},
        422,
        "validation_failed",
        "promotion.starts_at",
    ),
    (
        "promotion_epoch_number",
        {"promotion": {"starts_at": 1700000000, "ends_at": LATER, "percent_off": "0.1"}},
        422,
        "validation_failed",
        "promotion.starts_at",
    ),
    (
        "promotion_two_discounts",
        {
            "promotion": {
                "starts_at": NOW,
                "ends_at": LATER,
                "percent_off": "0.1",
                "amount_off": {"CNY": 100},
            }
        },
        422,
        "promotion_discount_ambiguous",
        "promotion",
    ),
    (
        "promotion_inverted",
        {"promotion": {"starts_at": LATER, "ends_at": NOW, "percent_off": "0.1"}},
        422,
        "promotion_window_invalid",
        "promotion.ends_at",
    ),
    (
        "promotion_zero_percent",
        {"promotion": {"starts_at": NOW, "ends_at": LATER, "percent_off": "0"}},
        422,
        "rate_out_of_range",
        "promotion.percent_off",
    ),
    (
        "promotion_percent_number",
        {"promotion": {"starts_at": NOW, "ends_at": LATER, "percent_off": 0.1}},
        422,
        "validation_failed",
        "promotion.percent_off",
    ),
    (
        "promotion_beyond_year_9999_in_utc",
        {
            "promotion": {
                "starts_at": NOW,
                "ends_at": "9999-12-31T23:00:00-05:00",
                "percent_off": "0.1",
            }
        },
        422,
        "validation_failed",
        "promotion.ends_at",
    ),
    ("metadata_not_string", {"metadata": {"a": 1}}, 422, "validation_failed", "metadata.a"),
]


@pytest.mark.parametrize(
    ("fields", "status", "code", "param"),
    [case[1:] for case in BAD_PRODUCTS],
    ids=[case[0] for case in BAD_PRODUCTS],
)
async def test_bad_product_input_is_refused_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient, fields: dict[str, Any], status: int, code: str, param: str
) -> None:
    creator = await make_creator(client)
    body = {
        "creator_id": creator["id"],
        "kind": "course",
        "title": "T",
        "prices": {"CNY": 100},
        **fields,
    }
    response = await client.post("/v1/products", json=body)
    assert_error(response, status, code, param)
    assert await listed(client, "/v1/products") == []


async def test_text_that_the_database_cannot_store_is_a_422_not_a_500(
    client: httpx.AsyncClient,
) -> None:
    creator = await make_creator(client)
    # A lone surrogate, escaped as JSON allows; httpx's json= could not even encode it.
    body = {"creator_id": creator["id"], "kind": "course", "title": "\ud800", "prices": {"CNY": 1}}
    raw = json.dumps(body)
    response = await client.post(
        "/v1/products", content=raw.encode(), headers={"Content-Type": "application/json"}
    )
    assert_error(response, 422, "validation_failed", "title")
    # NUL in a URL is refused for every route before any lookup (see api/middleware.py).
    for path in ("/v1/products/prod_%00", "/v1/creators/cre_%00", "/v1/coupons/A%00"):
        response = await client.get(path)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "nul_character"
    nul_query = await client.get("/v1/products", params={"creator_id": "cre_\x00"})
    assert nul_query.json()["error"]["code"] == "nul_character"


@pytest.mark.parametrize(
    ("case", "code", "param"),
    [
        ("one_component", "bundle_too_few_components", "components"),
        ("duplicate", "bundle_duplicate_component", "components"),
        ("missing", "bundle_component_missing", "components[1]"),
        ("nested_bundle", "bundle_contains_bundle", "components[1]"),
        ("membership_inside", "bundle_component_not_allowed", "components[1]"),
        ("topup_inside", "bundle_component_not_allowed", "components[1]"),
        ("unpriced", "bundle_component_not_priced", "components[1]"),
        ("archived", "bundle_component_archived", "components[1]"),
    ],
)
async def test_bundle_rules_refuse_bad_components_and_write_nothing(
    client: httpx.AsyncClient, case: str, code: str, param: str
) -> None:
    creator = await make_creator(client)
    cid = creator["id"]
    a = (await make_product(client, cid, title="a"))["id"]
    b = (await make_product(client, cid, title="b"))["id"]
    others = {
        "nested_bundle": lambda: make_product(
            client, cid, kind="bundle", components=[a, b], prices={"CNY": 100}
        ),
        "membership_inside": lambda: make_product(client, cid, kind="membership", period="month"),
        "topup_inside": lambda: make_product(client, cid, kind="topup", topup_credit=100),
        "unpriced": lambda: make_product(client, cid, prices={"USD": 100}),
    }
    second = (await others[case]())["id"] if case in others else b
    if case == "archived":
        assert (await client.post(f"/v1/products/{b}/archive")).status_code == 200
    components = {
        "one_component": [a],
        "duplicate": [a, a],
        "missing": [a, "prod_01JAAAAAAAAAAAAAAAAAAAAAAA"],
    }.get(case, [a, second])
    before = await listed(client, "/v1/products")
    body = {
        "creator_id": cid,
        "kind": "bundle",
        "title": "Pack",
        "prices": {"CNY": 100},
        "components": components,
    }
    assert_error(await client.post("/v1/products", json=body), 422, code, param)
    assert await listed(client, "/v1/products") == before


async def test_products_are_filtered_by_kind_status_creator_and_currency(
    client: httpx.AsyncClient,
) -> None:
    ada, bob = await make_creator(client), await make_creator(client, name="Bob")
    course = await make_product(client, ada["id"], prices={"CNY": 100, "USD": 20})
    article = await make_product(client, ada["id"], kind="article", prices={"CNY": 5})
    member = await make_product(client, bob["id"], kind="membership", period="year")
    await client.post(f"/v1/products/{article['id']}/archive")

    def ids(items: list[dict[str, Any]]) -> list[str]:
        return [item["id"] for item in items]

    everything = ids(await listed(client, "/v1/products"))
    assert everything == [member["id"], article["id"], course["id"]]  # newest first
    assert ids(await listed(client, "/v1/products", kind="article")) == [article["id"]]
    assert ids(await listed(client, "/v1/products", status="active")) == [
        member["id"],
        course["id"],
    ]
    assert ids(await listed(client, "/v1/products", creator_id=bob["id"])) == [member["id"]]
    assert ids(await listed(client, "/v1/products", currency="USD")) == [course["id"]]
    assert ids(
        await listed(client, "/v1/products", currency="CNY", status="archived", kind="article")
    ) == [article["id"]]
    bad = await client.get("/v1/products", params={"currency": "usd"})
    assert_error(bad, 400, "currency_unknown", "currency")
    assert_error(await client.get("/v1/products?kind=ebook"), 422, "validation_failed", "kind")


async def test_a_product_is_updated_and_unnamed_fields_are_kept(
    client: httpx.AsyncClient,
) -> None:
    creator = await make_creator(client)
    product = await make_product(client, creator["id"], description="old", metadata={"k": "v"})
    promotion = {"starts_at": NOW, "ends_at": LATER, "amount_off": {"CNY": 1000}}
    response = await client.patch(
        f"/v1/products/{product['id']}",
        json={"title": "Python 2", "prices": {"CNY": 29900, "USD": 4000}, "promotion": promotion},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["title"], body["description"], body["metadata"]) == ("Python 2", "old", {"k": "v"})
    assert body["prices"] == {"CNY": 29900, "USD": 4000}
    assert body["promotion"]["amount_off"] == {"CNY": 1000}
    assert body["promotion"]["percent_off"] is None
    assert (await client.get(f"/v1/products/{product['id']}")).json() == body

    cleared = await client.patch(
        f"/v1/products/{product['id']}", json={"promotion": None, "revenue_share": "0.5"}
    )
    assert (cleared.json()["promotion"], cleared.json()["revenue_share"]) == (None, "0.5")
    assert cleared.json()["prices"] == {"CNY": 29900, "USD": 4000}


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"title": None}, "field_not_nullable", "title"),
        ({"prices": {}}, "amounts_required", "prices"),
        ({"kind": "article"}, "validation_failed", "kind"),
        ({"components": []}, "validation_failed", "components"),
        ({"revenue_share": 1}, "validation_failed", "revenue_share"),
        (
            {"promotion": {"starts_at": NOW, "ends_at": NOW, "percent_off": "0.1"}},
            "promotion_window_invalid",
            "promotion.ends_at",
        ),
    ],
)
async def test_a_bad_product_update_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], code: str, param: str
) -> None:
    creator = await make_creator(client)
    product = await make_product(client, creator["id"])
    response = await client.patch(f"/v1/products/{product['id']}", json=body)
    assert_error(response, 422, code, param)
    assert (await client.get(f"/v1/products/{product['id']}")).json() == product


async def test_updating_an_unknown_product_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.patch("/v1/products/prod_nope", json={"title": "x"})
    assert_error(response, 404, "resource_missing", "product_id")
    assert_error(await client.get("/v1/products/prod_nope"), 404, "resource_missing", "product_id")


async def test_a_product_is_archived_and_unarchived_and_repeating_changes_nothing(
    client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    creator = await make_creator(client)
    product = await make_product(client, creator["id"])
    clock.advance(timedelta(minutes=1))
    archived = (await client.post(f"/v1/products/{product['id']}/archive")).json()
    assert archived["status"] == "archived"
    assert archived["updated_at"] != product["updated_at"]
    clock.advance(timedelta(minutes=1))
    again = await client.post(f"/v1/products/{product['id']}/archive")
    assert again.status_code == 200
    assert again.json() == archived
    unarchived = await client.post(f"/v1/products/{product['id']}/unarchive")
    assert unarchived.json()["status"] == "active"
    missing = await client.post("/v1/products/prod_nope/archive")
    assert_error(missing, 404, "resource_missing", "product_id")


async def test_a_component_cannot_drop_a_currency_its_active_bundle_is_sold_in(
    client: httpx.AsyncClient,
) -> None:
    creator = await make_creator(client)
    prices = {"CNY": 100, "USD": 20}
    a = await make_product(client, creator["id"], prices=prices)
    b = await make_product(client, creator["id"], prices=prices)
    bundle = await make_product(
        client, creator["id"], kind="bundle", prices={"USD": 30}, components=[a["id"], b["id"]]
    )
    response = await client.patch(f"/v1/products/{a['id']}", json={"prices": {"CNY": 90}})
    assert_error(response, 422, "bundle_component_not_priced", "prices")
    assert (await client.get(f"/v1/products/{a['id']}")).json()["prices"] == prices
    # The bundle cannot take a currency its components lack either.
    response = await client.patch(
        f"/v1/products/{bundle['id']}", json={"prices": {"USD": 30, "EUR": 25}}
    )
    assert_error(response, 422, "bundle_component_not_priced", "components[0]")
    # Once the bundle is archived, the component is free to change.
    await client.post(f"/v1/products/{bundle['id']}/archive")
    response = await client.patch(f"/v1/products/{a['id']}", json={"prices": {"CNY": 90}})
    assert response.status_code == 200, response.text


async def test_pagination_walks_every_page_once_newest_first(client: httpx.AsyncClient) -> None:
    creator = await make_creator(client)
    made = [(await make_product(client, creator["id"], title=f"p{i}"))["id"] for i in range(7)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["starting_after"] = cursor
        page = (await client.get("/v1/products", params=params)).json()
        pages += 1
        seen += [item["id"] for item in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["data"][-1]["id"]
    assert pages == 3
    assert seen == list(reversed(made))
    assert (await client.get("/v1/products")).json()["has_more"] is False


@pytest.mark.parametrize(
    ("query", "code", "param"),
    [
        ("limit=0", "validation_failed", "limit"),
        ("limit=101", "validation_failed", "limit"),
        ("starting_after=cre_01JAAAAAAAAAAAAAAAAAAAAAAA", "cursor_invalid", "starting_after"),
        ("starting_after=nonsense", "cursor_invalid", "starting_after"),
    ],
)
async def test_a_bad_page_request_is_refused(
    client: httpx.AsyncClient, query: str, code: str, param: str
) -> None:
    assert_error(await client.get(f"/v1/products?{query}"), 422, code, param)


async def test_replaying_a_product_creation_with_one_idempotency_key_creates_one_product(
    client: httpx.AsyncClient,
) -> None:
    creator = await make_creator(client)
    body = {"creator_id": creator["id"], "kind": "course", "title": "T", "prices": {"CNY": 1}}
    headers = {"Idempotency-Key": "create-T"}
    first = await client.post("/v1/products", json=body, headers=headers)
    second = await client.post("/v1/products", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert [p["id"] for p in await listed(client, "/v1/products")] == [first.json()["id"]]


# --- tax rates --------------------------------------------------------------------------


async def test_a_tax_rate_is_created_then_replaced_by_region(
    client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    first = await client.put("/v1/tax_rates/CN", json={"rate": "0.06"})
    assert first.status_code == 200, first.text
    assert (first.json()["rate"], first.json()["inclusive"]) == ("0.06", False)
    clock.advance(timedelta(days=1))
    second = await client.put("/v1/tax_rates/CN", json={"rate": "0.13", "inclusive": True})
    await client.put("/v1/tax_rates/AU", json={"rate": "0.1", "inclusive": True})
    assert second.json()["updated_at"] != first.json()["updated_at"]
    rates = (await client.get("/v1/tax_rates")).json()
    assert rates["has_more"] is False
    assert [(r["region"], r["rate"], r["inclusive"]) for r in rates["data"]] == [
        ("AU", "0.1", True),
        ("CN", "0.13", True),
    ]
    assert (await client.get("/v1/tax_rates/CN")).json() == second.json()


@pytest.mark.parametrize(
    ("region", "body", "code", "param"),
    [
        ("CN", {"rate": 0.06}, "validation_failed", "rate"),
        ("CN", {"rate": "1.01"}, "rate_out_of_range", "rate"),
        ("CN", {"rate": "-0.1"}, "rate_out_of_range", "rate"),
        ("CN", {"rate": "0.06", "inclusive": "yes"}, "validation_failed", "inclusive"),
        ("CN", {}, "validation_failed", "rate"),
        ("cn", {"rate": "0.06"}, "region_invalid", "region"),
        ("C" * 33, {"rate": "0.06"}, "region_invalid", "region"),
    ],
)
async def test_a_bad_tax_rate_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, region: str, body: dict[str, Any], code: str, param: str
) -> None:
    assert_error(await client.put(f"/v1/tax_rates/{region}", json=body), 422, code, param)
    assert (await client.get("/v1/tax_rates")).json()["data"] == []


async def test_an_unset_tax_rate_is_a_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/tax_rates/XX"), 404, "resource_missing", "region")


# --- coupons ----------------------------------------------------------------------------


async def test_a_coupon_is_created_found_by_any_case_and_listed(
    client: httpx.AsyncClient,
) -> None:
    creator = await make_creator(client)
    product = await make_product(client, creator["id"])
    coupon = await created(
        client.post(
            "/v1/coupons",
            json={
                "code": "  spring-15 ",
                "percent_off": "0.15",
                "min_spend": {"CNY": 5000},
                "applies_to_products": [product["id"]],
                "applies_to_kinds": ["article"],
                "ends_at": LATER,
                "max_redemptions": 100,
                "max_per_customer": 1,
            },
        )
    )
    assert coupon["id"].startswith("cpn_")
    assert (coupon["code"], coupon["kind"], coupon["percent_off"]) == (
        "SPRING-15",
        "percent",
        "0.15",
    )
    assert (coupon["times_redeemed"], coupon["active"]) == (0, True)
    assert coupon["applies_to_kinds"] == ["article"]
    assert (await client.get("/v1/coupons/Spring-15")).json() == coupon
    amount = await created(
        client.post("/v1/coupons", json={"code": "TEN", "amount_off": {"CNY": 1000}})
    )
    assert (amount["kind"], amount["amount_off"], amount["percent_off"]) == (
        "amount",
        {"CNY": 1000},
        None,
    )
    assert [c["code"] for c in await listed(client, "/v1/coupons")] == ["TEN", "SPRING-15"]


async def test_a_duplicate_coupon_code_in_any_case_is_a_conflict(
    client: httpx.AsyncClient,
) -> None:
    await created(client.post("/v1/coupons", json={"code": "WELCOME", "percent_off": "0.1"}))
    response = await client.post("/v1/coupons", json={"code": "welcome", "percent_off": "0.2"})
    assert_error(response, 409, "coupon_code_taken", "code")
    coupons_now = await listed(client, "/v1/coupons")
    assert [(c["code"], c["percent_off"]) for c in coupons_now] == [("WELCOME", "0.1")]


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"code": "X", "percent_off": 0.1}, 422, "validation_failed", "percent_off"),
        ({"code": "X", "percent_off": "0"}, 422, "rate_out_of_range", "percent_off"),
        (
            {"code": "X", "percent_off": "0.1", "amount_off": {"CNY": 1}},
            422,
            "coupon_discount_mismatch",
            "amount_off",
        ),
        ({"code": "X"}, 422, "coupon_discount_mismatch", "percent_off"),
        (
            {"code": "X", "kind": "amount", "percent_off": "0.1"},
            422,
            "coupon_discount_mismatch",
            "amount_off",
        ),
        ({"code": "X", "amount_off": {"CNY": 0}}, 422, "amount_not_positive", "amount_off.CNY"),
        ({"code": "X", "amount_off": {"XYZ": 1}}, 400, "currency_unknown", "amount_off.XYZ"),
        ({"code": "TWO WORDS", "percent_off": "0.1"}, 422, "coupon_code_invalid", "code"),
        ({"code": "   ", "percent_off": "0.1"}, 422, "coupon_code_invalid", "code"),
        (
            {"code": "X", "percent_off": "0.1", "starts_at": "2026-11-01T09:00:00"},
            422,
            "validation_failed",
            "starts_at",
        ),
        (
            {"code": "X", "percent_off": "0.1", "starts_at": LATER, "ends_at": NOW},
            422,
            "coupon_window_invalid",
            "ends_at",
        ),
        (
            {"code": "X", "percent_off": "0.1", "max_redemptions": 0},
            422,
            "limit_invalid",
            "max_redemptions",
        ),
        (
            {"code": "X", "percent_off": "0.1", "max_per_customer": 10**12},
            422,
            "validation_failed",
            "max_per_customer",
        ),
        (
            {"code": "X", "percent_off": "0.1", "times_redeemed": 5},
            422,
            "validation_failed",
            "times_redeemed",
        ),
        (
            {"code": "X", "percent_off": "0.1", "applies_to_kinds": ["ebook"]},
            422,
            "validation_failed",
            "applies_to_kinds[0]",
        ),
        (
            {"code": "X", "percent_off": "0.1", "applies_to_products": ["prod_nope"]},
            404,
            "resource_missing",
            "applies_to_products[0]",
        ),
    ],
)
async def test_a_bad_coupon_is_refused_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, code: str, param: str
) -> None:
    assert_error(await client.post("/v1/coupons", json=body), status, code, param)
    assert await listed(client, "/v1/coupons") == []


async def test_a_coupon_is_updated_but_its_redemption_count_is_not_writable(
    client: httpx.AsyncClient, uow: UnitOfWork
) -> None:
    await created(
        client.post("/v1/coupons", json={"code": "VIP", "percent_off": "0.2", "ends_at": LATER})
    )
    response = await client.patch(
        "/v1/coupons/vip", json={"ends_at": None, "max_redemptions": 10, "active": False}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["ends_at"], body["max_redemptions"], body["active"]) == (None, 10, False)
    assert body["percent_off"] == "0.2"

    refused = await client.patch("/v1/coupons/VIP", json={"times_redeemed": 0})
    assert_error(refused, 422, "validation_failed", "times_redeemed")
    refused = await client.patch("/v1/coupons/VIP", json={"percent_off": "0.9"})
    assert_error(refused, 422, "validation_failed", "percent_off")
    assert_error(
        await client.patch("/v1/coupons/VIP", json={"active": None}),
        422,
        "field_not_nullable",
        "active",
    )

    async with uow:  # as order placement would
        await uow.conn.execute(update(coupons).values(times_redeemed=4))
        await uow.commit()
    below = await client.patch("/v1/coupons/VIP", json={"max_redemptions": 3})
    assert_error(below, 422, "max_redemptions_below_redeemed", "max_redemptions")
    equal = await client.patch("/v1/coupons/VIP", json={"max_redemptions": 4})
    assert (equal.json()["max_redemptions"], equal.json()["times_redeemed"]) == (4, 4)
    missing = await client.patch("/v1/coupons/NOPE", json={"active": True})
    assert_error(missing, 404, "resource_missing", "code")


async def test_coupons_and_creators_are_paged_too(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await created(client.post("/v1/coupons", json={"code": f"C{i}", "percent_off": "0.1"}))
        await make_creator(client, name=f"n{i}")
    for path in ("/v1/coupons", "/v1/creators"):
        first = (await client.get(path, params={"limit": 2})).json()
        assert (len(first["data"]), first["has_more"]) == (2, True)
        rest = await client.get(
            path, params={"limit": 2, "starting_after": first["data"][-1]["id"]}
        )
        assert (len(rest.json()["data"]), rest.json()["has_more"]) == (1, False)


# --- repository and documentation -------------------------------------------------------


async def test_products_by_ids_includes_the_components_of_bundles(
    client: httpx.AsyncClient, uow: UnitOfWork
) -> None:
    creator = await make_creator(client)
    a = await make_product(client, creator["id"], prices={"CNY": 100, "USD": 10})
    b = await make_product(
        client,
        creator["id"],
        promotion={"starts_at": NOW, "ends_at": LATER, "percent_off": "0.25"},
    )
    bundle = await make_product(
        client, creator["id"], kind="bundle", prices={"CNY": 150}, components=[b["id"], a["id"]]
    )
    async with uow:
        found = await uow.catalog.products_by_ids([bundle["id"], "prod_unknown"])
    assert set(found) == {bundle["id"], a["id"], b["id"]}
    assert found[bundle["id"]].kind is ProductKind.BUNDLE
    assert found[bundle["id"]].components == (b["id"], a["id"])
    assert found[a["id"]].prices == {"CNY": 100, "USD": 10}
    promotion = found[b["id"]].promotion
    assert promotion is not None
    assert str(promotion.percent_off) == "0.25"
    assert promotion.starts_at.utcoffset() is not None


async def test_coupon_by_code_and_tax_rule_are_found_through_a_unit_of_work(
    client: httpx.AsyncClient, uow: UnitOfWork
) -> None:
    made = await created(
        client.post("/v1/coupons", json={"code": "Save5", "amount_off": {"CNY": 500}})
    )
    await client.put("/v1/tax_rates/CN", json={"rate": "0.06", "inclusive": True})
    async with uow:
        found = await uow.catalog.coupon_by_code(" save5")
        missing = await uow.catalog.coupon_by_code("SAVE6")
        rule = await uow.catalog.tax_rule("CN")
        no_rule = await uow.catalog.tax_rule("US")
    assert found is not None
    coupon_id, coupon = found
    assert (coupon_id, coupon.code, dict(coupon.amount_off or {})) == (
        made["id"],
        "SAVE5",
        {"CNY": 500},
    )
    assert (missing, no_rule) == (None, None)
    assert rule is not None
    assert (str(rule.rate), rule.inclusive, rule.region) == ("0.06", True, "CN")


async def test_every_catalog_route_is_documented(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    catalog_paths = {
        path: item
        for path, item in spec["paths"].items()
        if path.startswith(("/v1/creators", "/v1/products", "/v1/tax_rates", "/v1/coupons"))
    }
    operations = [op for item in catalog_paths.values() for op in item.values()]
    # 17 of the catalog, 6 of memberships and 2 of promoter commissions under /v1/products
    assert len(operations) == 25
    for operation in operations:
        assert operation["summary"], operation
        assert operation["description"], operation
        success = operation["responses"].get("200") or operation["responses"]["201"]
        assert "$ref" in success["content"]["application/json"]["schema"]
