"""The console's catalog on both engines: products (search, create, edit prices and
promotion, archive), coupons (create, disable, redemptions), tax rates and creators by
name. Each change is the API's use case, audited with the operator (and, made through
the API, with the key) and before/after; a refused change shows its problem and writes
nothing; only owners change the catalog, every role reads it."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.integration.admin_catalog_helpers import audit_rows, sign_in
from tuition import web
from tuition.clock import FrozenClock
from tuition.domain.catalog import ProductKind
from tuition.domain.operators import Role
from tuition.services import audit, catalog
from tuition.services import coupons as coupons_service
from tuition.store.tables import audit_events, coupons, creators, products, tax_rates
from tuition.store.uow import UnitOfWork


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


async def count(uow: UnitOfWork, table: object) -> int:
    async with uow:
        return int(await uow.conn.scalar(select(func.count()).select_from(table)) or 0)  # type: ignore[arg-type]


async def test_an_owner_creates_a_creator_and_a_product_edits_and_archives_it_audited(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    csrf = await sign_in(anon_client, uow, clock, Role.OWNER)
    made = await anon_client.post(
        "/admin/catalog/creators",
        data={"csrf_token": csrf, "name": "李老师", "default_revenue_share": "70"},
    )
    assert made.status_code == 303
    creator_id = made.headers["location"].split("/")[-1].split("?")[0]
    page = await anon_client.get(made.headers["location"])
    assert "李老师" in page.text
    assert "70.0%" in page.text

    created = await anon_client.post(
        "/admin/catalog/products",
        data={
            "csrf_token": csrf,
            "creator_id": creator_id,
            "kind": "course",
            "title": "Python 入门",
            "prices": "CNY 199.00; USD 29",
        },
    )
    assert created.status_code == 303, created.text
    product_url = created.headers["location"]
    product_id = product_url.split("/")[-1].split("?")[0]
    shown = await anon_client.get(product_url)
    assert shown.status_code == 200
    assert 'data-testid="creator-name">李老师<' in shown.text  # the creator by name
    assert creator_id not in shown.text.split('data-testid="creator-name"')[1][:60]

    # The list searches titles in any case, and names the creator.
    listed = await anon_client.get("/admin/catalog/products", params={"q": "PYTHON"})
    assert f'data-product="{product_id}"' in listed.text
    assert "李老师" in listed.text
    assert (
        'data-product="'
        not in (
            await anon_client.get("/admin/catalog/products", params={"q": "nothing like it"})
        ).text
    )

    edited = await anon_client.post(
        product_url.split("?")[0],
        data={
            "csrf_token": csrf,
            "title": "Python 入门",
            "prices": "CNY 149.00",
            "revenue_share": "65",
            "promotion": "percent",
            "promotion_percent": "20",
            "promotion_starts": "2026-11-01T00:00",
            "promotion_ends": "2026-11-12T00:00",
        },
    )
    assert edited.status_code == 303, edited.text
    async with uow:
        record = await uow.catalog.get_product(product_id)
    assert record is not None
    assert dict(record.product.prices) == {"CNY": 14900}
    assert str(record.product.revenue_share) == "0.65"
    promo = record.product.promotion
    assert promo is not None
    assert str(promo.percent_off) == "0.2"
    assert promo.starts_at.isoformat() == "2026-10-31T16:00:00+00:00"  # Asia/Shanghai midnight

    archived = await anon_client.post(
        f"/admin/catalog/products/{product_id}/archive", data={"csrf_token": csrf}
    )
    assert archived.status_code == 303
    assert "Archived" in (await anon_client.get(archived.headers["location"])).text

    (creator_row,) = await audit_rows(uow, "creator.created")
    assert creator_row["actor_kind"] == "operator"
    assert creator_row["actor"] == "owner@example.com"
    (product_row,) = await audit_rows(uow, "product.created")
    assert product_row["subject"] == product_id
    (update_row,) = await audit_rows(uow, "product.updated")
    before = json.loads(str(update_row["before"]))
    after = json.loads(str(update_row["after"]))
    assert before["prices"] == {"CNY": 19900, "USD": 2900}
    assert before["promotion"] is None
    assert after["prices"] == {"CNY": 14900}
    assert after["promotion"]["percent_off"] == "0.2"
    (archive_row,) = await audit_rows(uow, "product.archived")
    assert json.loads(str(archive_row["after"])) == {"status": "archived"}
    report = await audit.verify(uow)
    assert report.ok
    assert report.unsealed == 0


async def test_a_bad_price_or_promotion_is_shown_on_the_page_and_nothing_is_written(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    csrf = await sign_in(anon_client, uow, clock, Role.OWNER)
    made = await anon_client.post(
        "/admin/catalog/creators", data={"csrf_token": csrf, "name": "Ada"}
    )
    assert made.status_code == 422  # no share given: named, nothing written
    assert "default_revenue_share" in made.text
    assert await count(uow, creators) == 0
    made = await anon_client.post(
        "/admin/catalog/creators",
        data={"csrf_token": csrf, "name": "Ada", "default_revenue_share": "70"},
    )
    creator_id = made.headers["location"].split("/")[-1].split("?")[0]
    for prices in ("CNY 1.999", "XXX 10", "199", ""):
        refused = await anon_client.post(
            "/admin/catalog/products",
            data={
                "csrf_token": csrf,
                "creator_id": creator_id,
                "kind": "course",
                "title": "T",
                "prices": prices,
            },
        )
        assert refused.status_code in (400, 422), (prices, refused.status_code)
        assert 'data-testid="problem"' in refused.text
        assert 'value="T"' in refused.text  # what was typed is kept
    assert await count(uow, products) == 0

    created = await anon_client.post(
        "/admin/catalog/products",
        data={
            "csrf_token": csrf,
            "creator_id": creator_id,
            "kind": "course",
            "title": "T",
            "prices": "CNY 10",
        },
    )
    url = created.headers["location"].split("?")[0]
    # A promotion ending before it starts: the whole edit (prices too) is refused.
    refused = await anon_client.post(
        url,
        data={
            "csrf_token": csrf,
            "title": "Renamed",
            "prices": "CNY 5",
            "revenue_share": "70",
            "promotion": "percent",
            "promotion_percent": "10",
            "promotion_starts": "2026-11-10T00:00",
            "promotion_ends": "2026-11-01T00:00",
        },
    )
    assert refused.status_code == 422
    assert 'data-testid="problem"' in refused.text
    async with uow:
        record = await uow.catalog.get_product(url.split("/")[-1])
    assert record is not None
    assert record.product.title == "T"
    assert dict(record.product.prices) == {"CNY": 1000}
    assert await audit_rows(uow, "product.updated") == []


async def test_coupons_are_created_disabled_and_list_their_redemptions(
    anon_client: httpx.AsyncClient,
    client: httpx.AsyncClient,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    csrf = await sign_in(anon_client, uow, clock, Role.OWNER)
    creator = (await client.post("/v1/creators", json={"name": "Ada"})).json()
    product = (
        await client.post(
            "/v1/products",
            json={
                "creator_id": creator["id"],
                "kind": "course",
                "title": "C",
                "prices": {"CNY": 10000},
            },
        )
    ).json()
    made = await anon_client.post(
        "/admin/catalog/coupons",
        data={"csrf_token": csrf, "code": "spring20", "kind": "percent", "percent_off": "20"},
    )
    assert made.status_code == 303, made.text
    assert made.headers["location"].startswith("/admin/catalog/coupons/SPRING20")
    taken = await anon_client.post(
        "/admin/catalog/coupons",
        data={"csrf_token": csrf, "code": "Spring20", "kind": "percent", "percent_off": "10"},
    )
    assert taken.status_code == 409
    assert "coupon_code_taken" in taken.text
    assert await count(uow, coupons) == 1

    order = await client.post(
        "/v1/orders",
        json={
            "customer_id": "u_1",
            "currency": "CNY",
            "items": [{"product_id": product["id"]}],
            "coupon_code": "SPRING20",
        },
    )
    assert order.status_code == 201, order.text
    page = await anon_client.get("/admin/catalog/coupons/spring20")
    assert page.status_code == 200
    assert order.json()["id"] in page.text
    assert 'data-testid="times-redeemed">1' in page.text
    listed = await anon_client.get("/admin/catalog/coupons")
    assert 'data-coupon="SPRING20"' in listed.text

    disabled = await anon_client.post(
        "/admin/catalog/coupons/SPRING20/disable", data={"csrf_token": csrf}
    )
    assert disabled.status_code == 303
    again = await client.post(
        "/v1/orders",
        json={
            "customer_id": "u_2",
            "currency": "CNY",
            "items": [{"product_id": product["id"]}],
            "coupon_code": "SPRING20",
        },
    )
    assert again.status_code in (400, 422), again.text
    below = await anon_client.post(
        "/admin/catalog/coupons/SPRING20",
        data={"csrf_token": csrf, "ends_at": "", "max_redemptions": "0"},
    )
    assert below.status_code == 422
    assert 'data-testid="problem"' in below.text

    (created_row,) = await audit_rows(uow, "coupon.created")
    assert created_row["actor_kind"] == "operator"
    (update_row,) = await audit_rows(uow, "coupon.updated")
    assert json.loads(str(update_row["before"]))["active"] is True
    assert json.loads(str(update_row["after"]))["active"] is False


async def test_tax_rates_are_set_and_replaced_with_before_and_after(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    csrf = await sign_in(anon_client, uow, clock, Role.OWNER)
    for rate in ("6", "9"):
        saved = await anon_client.post(
            "/admin/catalog/tax_rates", data={"csrf_token": csrf, "region": "CN", "rate": rate}
        )
        assert saved.status_code == 303
    page = await anon_client.get("/admin/catalog/tax_rates")
    assert 'data-region="CN"' in page.text
    assert "9.0%" in page.text
    bad = await anon_client.post(
        "/admin/catalog/tax_rates", data={"csrf_token": csrf, "region": "cn x", "rate": "6"}
    )
    assert bad.status_code == 422
    assert "region_invalid" in bad.text
    over = await anon_client.post(
        "/admin/catalog/tax_rates", data={"csrf_token": csrf, "region": "US", "rate": "120"}
    )
    assert over.status_code == 422
    assert await count(uow, tax_rates) == 1
    (first,) = await audit_rows(uow, "tax_rate.set")
    assert first["before"] is None
    (second,) = await audit_rows(uow, "tax_rate.updated")
    assert json.loads(str(second["before"])) == {"rate": "0.06", "inclusive": False}
    assert json.loads(str(second["after"])) == {"rate": "0.09", "inclusive": False}


@pytest.mark.parametrize("role", [Role.FINANCE, Role.SUPPORT, Role.VIEWER])
async def test_other_roles_read_the_catalog_but_the_server_refuses_their_changes(
    role: Role,
    anon_client: httpx.AsyncClient,
    client: httpx.AsyncClient,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    creator = (await client.post("/v1/creators", json={"name": "Ada"})).json()
    product = (
        await client.post(
            "/v1/products",
            json={
                "creator_id": creator["id"],
                "kind": "course",
                "title": "C",
                "prices": {"CNY": 1},
            },
        )
    ).json()
    await client.post("/v1/coupons", json={"code": "X1", "percent_off": "0.1"})
    csrf = await sign_in(anon_client, uow, clock, role)
    for path in (
        "/admin/catalog/products",
        f"/admin/catalog/products/{product['id']}",
        "/admin/catalog/coupons",
        "/admin/catalog/coupons/X1",
        "/admin/catalog/tax_rates",
        "/admin/catalog/creators",
        f"/admin/catalog/creators/{creator['id']}",
    ):
        page = await anon_client.get(path)
        assert page.status_code == 200, path
        assert "Ada" in page.text or "X1" in page.text or path.endswith("tax_rates")
    assert (await anon_client.get("/admin/catalog/products/new")).status_code == 403
    before = await count(uow, audit_events)
    for path, data in (
        ("/admin/catalog/creators", {"name": "Eve", "default_revenue_share": "50"}),
        (f"/admin/catalog/creators/{creator['id']}", {"name": "Eve"}),
        (
            "/admin/catalog/products",
            {"creator_id": creator["id"], "kind": "course", "title": "T", "prices": "CNY 1"},
        ),
        (f"/admin/catalog/products/{product['id']}", {"title": "T", "prices": "CNY 2"}),
        (f"/admin/catalog/products/{product['id']}/archive", {}),
        ("/admin/catalog/coupons", {"code": "Y", "percent_off": "10"}),
        ("/admin/catalog/coupons/X1/disable", {}),
        ("/admin/catalog/coupons/X1", {"max_redemptions": "5"}),
        ("/admin/catalog/tax_rates", {"region": "CN", "rate": "6"}),
    ):
        refused = await anon_client.post(path, data={"csrf_token": csrf, **data})
        assert refused.status_code == 403, path
    assert await count(uow, audit_events) == before
    assert await count(uow, creators) == 1
    assert await count(uow, tax_rates) == 0
    async with uow:
        kept = await uow.catalog.coupon_record("X1")
    assert kept is not None
    assert kept.coupon.active


async def test_catalog_changes_made_through_the_api_are_audited_with_the_key(
    client: httpx.AsyncClient, uow: UnitOfWork
) -> None:
    creator = await client.post("/v1/creators", json={"name": "Ada"})
    product = await client.post(
        "/v1/products",
        json={
            "creator_id": creator.json()["id"],
            "kind": "course",
            "title": "C",
            "prices": {"CNY": 100},
        },
    )
    pid = product.json()["id"]
    assert (await client.patch(f"/v1/products/{pid}", json={"prices": {"CNY": 90}})).is_success
    assert (await client.post(f"/v1/products/{pid}/archive")).is_success
    assert (await client.post(f"/v1/products/{pid}/archive")).is_success  # no change
    assert (await client.post(f"/v1/products/{pid}/unarchive")).is_success
    assert (
        await client.patch(f"/v1/creators/{creator.json()['id']}", json={"name": "Ada L."})
    ).is_success
    assert (await client.put("/v1/tax_rates/CN", json={"rate": "0.06"})).is_success
    assert (await client.post("/v1/coupons", json={"code": "A1", "percent_off": "0.1"})).is_success
    assert (await client.patch("/v1/coupons/A1", json={"active": False})).is_success
    async with uow:
        rows = (
            await uow.conn.execute(
                select(audit_events.c.action, audit_events.c.actor_kind, audit_events.c.actor)
                .where(audit_events.c.actor_kind == "api_key")
                .order_by(audit_events.c.id)
            )
        ).all()
    actions = [r.action for r in rows]
    assert actions == [
        "creator.created",
        "product.created",
        "product.updated",
        "product.archived",
        "product.unarchived",
        "creator.updated",
        "tax_rate.set",
        "coupon.created",
        "coupon.updated",
    ]
    assert all(r.actor.startswith("key_") for r in rows)
    (rename,) = await audit_rows(uow, "creator.updated")
    assert json.loads(str(rename["before"]))["name"] == "Ada"
    assert json.loads(str(rename["after"]))["name"] == "Ada L."
    assert (await audit.verify(uow)).ok


async def test_the_product_list_names_creators_and_validates_its_filters(
    anon_client: httpx.AsyncClient, client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    """Where the console lists products, it shows their creator's name; a bad filter is
    an error on the page."""
    csrf = await sign_in(anon_client, uow, clock, Role.VIEWER)
    assert csrf
    creator = (await client.post("/v1/creators", json={"name": "Grace"})).json()
    await client.post(
        "/v1/products",
        json={"creator_id": creator["id"], "kind": "course", "title": "G", "prices": {"CNY": 1}},
    )
    listed = await anon_client.get("/admin/catalog/products")
    assert "Grace" in listed.text
    filtered = await anon_client.get(
        "/admin/catalog/products", params={"creator": creator["id"], "kind": "nonsense"}
    )
    assert filtered.status_code == 422
    assert 'data-testid="filter-error"' in filtered.text


async def test_products_page_both_ways_with_the_total(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    creator = await catalog.create_creator(catalog.NewCreator("Ada"), uow, clock=clock)
    for n in range(53):
        await catalog.create_product(
            catalog.NewProduct(
                creator_id=creator.creator.id,
                kind=ProductKind.COURSE,
                title=f"Lesson {n:02d}",
                prices={"CNY": 100 + n},
            ),
            uow,
            clock=clock,
        )
    await sign_in(anon_client, uow, clock, Role.VIEWER)
    first = await anon_client.get("/admin/catalog/products")
    assert "53 products match." in first.text
    assert first.text.count("data-product=") == 50
    assert 'rel="prev"' not in first.text
    older = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert older is not None
    second = await anon_client.get(older.group(1).replace("&amp;", "&"))
    assert second.text.count("data-product=") == 3
    assert "Lesson 00" in second.text
    assert 'rel="next"' not in second.text
    newer = re.search(r'href="([^"]+)" rel="prev"', second.text)
    assert newer is not None
    back = await anon_client.get(newer.group(1).replace("&amp;", "&"))
    assert back.text.count("data-product=") == 50
    assert "Lesson 52" in back.text
    assert 'rel="prev"' not in back.text
    bad = await anon_client.get("/admin/catalog/products", params={"after": "nope"})
    assert bad.status_code == 422


async def test_coupons_and_creators_page_both_ways_with_their_totals(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    for n in range(51):
        await coupons_service.create_coupon(
            coupons_service.NewCoupon(code=f"C{n:02d}", percent_off=Decimal("0.1")),
            uow,
            clock=clock,
        )
        await catalog.create_creator(catalog.NewCreator(f"Creator {n:02d}"), uow, clock=clock)
    await sign_in(anon_client, uow, clock, Role.VIEWER)
    for path, marker, oldest, newest in (
        ("/admin/catalog/coupons", "data-coupon=", "C00", "C50"),
        ("/admin/catalog/creators", "data-creator=", "Creator 00", "Creator 50"),
    ):
        first = await anon_client.get(path)
        assert "51 in all." in first.text
        assert first.text.count(marker) == 50
        assert 'rel="prev"' not in first.text
        older = re.search(r'href="([^"]+)" rel="next"', first.text)
        assert older is not None
        second = await anon_client.get(older.group(1).replace("&amp;", "&"))
        assert second.text.count(marker) == 1
        assert oldest in second.text
        newer = re.search(r'href="([^"]+)" rel="prev"', second.text)
        assert newer is not None
        back = await anon_client.get(newer.group(1).replace("&amp;", "&"))
        assert back.text.count(marker) == 50
        assert newest in back.text
        assert (await anon_client.get(path, params={"before": "x"})).status_code == 422
