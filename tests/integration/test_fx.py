"""Exchange rates over HTTP and in orders, on both engines (docs/fx.md)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from tests.integration.shop import order_body, post
from tests.integration.test_channels_offline import (  # noqa: F401  (fixtures)
    Gateways,
    _pay_in_browser,
    gateways,
    key_dir,
)
from tuition.clock import FrozenClock
from tuition.domain.ledger import AccountKind, AccountRef
from tuition.services import fx as fx_service
from tuition.services.ledger import verify_ledger
from tuition.services.orders import CreateOrder, ItemRequest, OrderPolicy, create_order
from tuition.store.tables import fx_rates, orders
from tuition.store.uow import UnitOfWork


async def _put(client: httpx.AsyncClient, pair: str, **body: Any) -> httpx.Response:
    return await client.put(f"/v1/fx_rates/{pair}", json={"source": "ecb", **body})


async def _count(uow: UnitOfWork, table: Any) -> int:
    async with uow:
        return int((await uow.conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _product(client: httpx.AsyncClient, shop: dict[str, str], **prices: int) -> str:
    body = {"creator_id": shop["creator"], "title": "p", "kind": "course", "prices": prices}
    return str((await post(client, "/v1/products", body))["id"])


async def test_a_rate_is_recorded_read_and_kept_in_history(
    client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    first = await _put(client, "CNY/EUR", rate="0.1500")
    assert first.status_code == 200, first.text
    assert first.json()["rate"] == "0.1500"  # as written, a string
    assert first.json()["as_of"].startswith("2026-11-01T09:00:00")
    clock.advance(timedelta(hours=1))
    second = await _put(client, "CNY/EUR", rate="0.1510", source="manual")
    later = (clock.now() + timedelta(days=1)).isoformat()
    await _put(client, "CNY/EUR", rate="0.2", as_of=later)  # takes effect tomorrow

    now = (await client.get("/v1/fx_rates/CNY/EUR")).json()
    assert (now["rate"], now["source"]) == ("0.1510", "manual")
    history = (await client.get("/v1/fx_rates/CNY/EUR/history", params={"limit": 2})).json()
    assert [r["rate"] for r in history["data"]] == ["0.2", "0.1510"]
    assert history["has_more"] is True
    rest = await client.get(
        "/v1/fx_rates/CNY/EUR/history", params={"starting_after": history["data"][-1]["id"]}
    )
    assert [r["rate"] for r in rest.json()["data"]] == ["0.1500"]
    assert second.json()["id"] != first.json()["id"]
    listed = (await client.get("/v1/fx_rates")).json()["data"]
    assert [(r["base"], r["quote"], r["rate"]) for r in listed] == [("CNY", "EUR", "0.2")]
    missing = await client.get("/v1/fx_rates/EUR/CNY")  # never inverted here
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "fx_rate_not_found"


@pytest.mark.parametrize(
    ("pair", "body", "status", "code", "param"),
    [
        ("CNY/EUR", {"rate": 0.15}, 422, "validation_failed", "rate"),
        ("CNY/EUR", {"rate": "1e-1"}, 422, "rate_invalid", "rate"),
        ("CNY/EUR", {"rate": "0"}, 422, "rate_out_of_range", "rate"),
        ("CNY/CNY", {"rate": "1"}, 422, "fx_pair_invalid", "quote"),
        ("cny/EUR", {"rate": "0.15"}, 400, "currency_unknown", "base"),
        ("CNY/XCN", {"rate": "0.15"}, 422, "currency_not_convertible", "quote"),
        ("CNY/EUR", {"rate": "0.15", "as_of": "2026-11-01T09:00:00"}, 422, None, "as_of"),
        ("CNY/EUR", {"rate": "0.15", "source": ""}, 422, "validation_failed", "source"),
    ],
)
async def test_bad_rates_are_refused_naming_the_field_and_write_nothing(
    client: httpx.AsyncClient,
    uow: UnitOfWork,
    pair: str,
    body: dict[str, Any],
    status: int,
    code: str | None,
    param: str,
) -> None:
    response = await _put(client, pair, **body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert param in (error["param"] or ""), error
    if code is not None:
        assert error["code"] == code, error
    assert await _count(uow, fx_rates) == 0


async def test_the_seed_examples_price_orders_in_another_currency(
    client: httpx.AsyncClient, shop: dict[str, str], clock: FrozenClock
) -> None:
    hundred = await _product(client, shop, CNY=10000)
    two_thousand = await _product(client, shop, CNY=200000)
    await _put(client, "CNY/EUR", rate="0.15")
    await _put(client, "USD/CNY", rate="7")

    eur = await post(
        client,
        "/v1/orders",
        {"customer_id": "u_1", "currency": "EUR", "items": [{"product_id": hundred}]},
    )
    assert (eur["currency"], eur["total"]) == ("EUR", 1500)  # 15.00 EUR
    assert eur["fx"] == eur["pricing"]["fx"]
    [used] = eur["fx"]
    assert used["from_currency"] == "CNY"
    assert used["to_currency"] == "EUR"
    assert (used["pair"], used["rate"], used["inverted"]) == ("CNY/EUR", "0.15", False)
    assert (used["source"], used["markup"]) == ("ecb", "0")
    assert used["as_of"].startswith("2026-11-01T09:00:00")

    usd = await post(
        client,
        "/v1/orders",
        {"customer_id": "u_1", "currency": "USD", "items": [{"product_id": two_thousand}]},
    )
    assert usd["total"] == 28571  # 2,000 CNY at 7 CNY/USD = 285.71 USD
    assert usd["fx"][0]["pair"] == "USD/CNY"
    assert usd["fx"][0]["inverted"] is True

    # an order priced in its own currency records no conversion
    own = await post(client, "/v1/orders", order_body(shop, "c2"))
    assert own["fx"] is None
    assert "fx" not in own["pricing"]


async def test_a_zero_decimal_currency_is_priced_in_whole_units(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    product = await _product(client, shop, CNY=12345)
    await _put(client, "CNY/JPY", rate="20.57")
    order = await post(
        client,
        "/v1/orders",
        {"customer_id": "u_1", "currency": "JPY", "items": [{"product_id": product}]},
    )
    assert order["total"] == 2539  # 123.45 x 20.57 = 2539.3665 -> 2539 JPY
    assert order["lines"][0]["unit_price"] == 2539


async def test_the_rate_in_force_at_order_time_is_used_and_kept(
    client: httpx.AsyncClient, shop: dict[str, str], clock: FrozenClock
) -> None:
    product = await _product(client, shop, CNY=10000)
    body = {"customer_id": "u_1", "currency": "EUR", "items": [{"product_id": product}]}
    refused = await client.post("/v1/orders", json=body)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "product_not_priced_in_currency"

    await _put(client, "CNY/EUR", rate="0.15")
    tomorrow = (clock.now() + timedelta(days=1)).isoformat()
    await _put(client, "CNY/EUR", rate="0.10", as_of=tomorrow)
    first = await post(client, "/v1/orders", body)
    assert first["total"] == 1500
    clock.advance(timedelta(days=2))
    second = await post(client, "/v1/orders", {**body, "customer_id": "u_2"})
    assert second["total"] == 1000
    again = (await client.get(f"/v1/orders/{first['id']}")).json()
    assert again["total"] == 1500
    assert again["fx"][0]["rate"] == "0.15"


async def test_the_markup_setting_is_added_to_the_rate(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    product = await _product(client, shop, CNY=10000)
    await _put(client, "CNY/EUR", rate="0.15")
    policy = OrderPolicy(
        order_ttl=timedelta(minutes=15),
        channel_fee_rates={"sandbox": Decimal("0.006")},
        fx_markup=Decimal("0.02"),
    )
    order = await create_order(
        CreateOrder(customer_id="u_1", currency="EUR", items=(ItemRequest(product),)),
        uow,
        clock=clock,
        policy=policy,
    )
    assert order.total == 1530  # 15.00 x 1.02
    assert order.pricing["fx"][0]["markup"] == "0.02"


def _per_currency(balances: dict[str, int]) -> dict[str, int]:
    sums: dict[str, int] = {}
    for key, value in balances.items():
        currency = key.split(":")[1]
        sums[currency] = sums.get(currency, 0) + value
    return sums


async def _paid_usd_course(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateways: Gateways,  # noqa: F811
) -> dict[str, Any]:
    await _put(client, "USD/CNY", rate="7.1")
    order = await post(client, "/v1/orders", order_body(shop, "usd_only"))  # 10.00 USD
    assert (order["currency"], order["total"]) == ("CNY", 7100)
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "alipay", "method": "page"}
    )
    assert (payment["amount"], payment["currency"]) == (7100, "CNY")
    gateways.sim.duplicate_notifications(2)  # the gateway notifies three times
    await _pay_in_browser(gateways.sim, payment["next_action"]["url"])
    await gateways.sim.drain()
    gateways.sim.duplicate_notifications(0)
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    return order


async def test_a_usd_course_is_paid_through_alipay_in_cny_and_every_currency_balances(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateways: Gateways,  # noqa: F811
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    order = await _paid_usd_course(client, shop, gateways)
    accepted = [d for d in gateways.sim.deliveries if d.accepted]
    assert len(accepted) == 3  # every copy acknowledged, applied once
    async with uow:
        [entry] = await uow.ledger.entries_with_source_prefix("payment:")
        balances = await uow.ledger.balances()
    # The money, the fee and the creator's share in CNY, as paid; the platform's revenue
    # in USD, the product's currency, at the order's rate: 21.30 CNY / 7.1 = 3.00 USD.
    assert balances["channel_clearing:CNY:alipay"] == 7100 - 43  # 0.6 % fee
    assert balances[f"creator_pending:CNY:{shop['creator']}"] == -4970  # 70 %
    assert "platform_revenue:CNY" not in balances
    assert balances["platform_revenue:USD"] == -300
    assert balances["fx_conversion:CNY"] == -2130
    assert balances["fx_conversion:USD"] == 300
    assert _per_currency(balances) == {"CNY": 0, "USD": 0}
    assert {p.account.currency for p in entry.postings} == {"CNY", "USD"}
    report = await verify_ledger(uow)
    assert report.ok, report.problems

    # Later the platform converts its CNY into USD (at today's rate, 7.1 still): the
    # conversion closes the FX position the sale opened.
    async with uow:
        moved = await fx_service.post_conversion(
            uow,
            source=f"fx:{order['id']}",
            credit=AccountRef(AccountKind.CHANNEL_CLEARING, "CNY", "alipay"),
            debit=AccountRef(AccountKind.CASH, "USD"),
            amount=2130,
            at=clock.now(),
        )
        again = await fx_service.post_conversion(
            uow,
            source=f"fx:{order['id']}",
            credit=AccountRef(AccountKind.CHANNEL_CLEARING, "CNY", "alipay"),
            debit=AccountRef(AccountKind.CASH, "USD"),
            amount=2130,
            at=clock.now(),
        )
        await uow.commit()
    assert moved is not None
    assert again is None
    async with uow:
        balances = await uow.ledger.balances()
    assert balances["cash:USD"] == 300
    assert balances["fx_conversion:CNY"] == balances["fx_conversion:USD"] == 0
    assert _per_currency(balances) == {"CNY": 0, "USD": 0}
    assert (await verify_ledger(uow)).ok


async def test_a_refund_of_a_usd_course_paid_in_cny_reverses_at_the_order_rate(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateways: Gateways,  # noqa: F811
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    order = await _paid_usd_course(client, shop, gateways)
    # A new rate does not change what the refund takes back.
    clock.advance(timedelta(hours=1))
    await _put(client, "USD/CNY", rate="6.5")
    part = await post(client, "/v1/refunds", {"order_id": order["id"], "amount": 3550})
    await gateways.sim.settle_refunds()
    await gateways.sim.drain()
    assert (await client.get(f"/v1/refunds/{part['id']}")).json()["status"] == "succeeded"
    async with uow:
        balances = await uow.ledger.balances()
    # Half: 10.65 CNY of the platform's part, back as 1.50 USD at 7.1 (not 6.5).
    assert balances["refunds:USD"] == 150
    assert balances["fx_conversion:CNY"] == -2130 + 1065
    assert balances["fx_conversion:USD"] == 300 - 150
    assert _per_currency(balances) == {"CNY": 0, "USD": 0}

    rest = await post(client, "/v1/refunds", {"order_id": order["id"]})
    await gateways.sim.settle_refunds()
    await gateways.sim.drain()
    assert (await client.get(f"/v1/refunds/{rest['id']}")).json()["status"] == "succeeded"
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "refunded"
    async with uow:
        balances = await uow.ledger.balances()
    # The whole sale reversed exactly: no FX gain or loss left behind.
    assert balances["refunds:USD"] == 300
    assert balances["platform_revenue:USD"] == -300
    assert balances["fx_conversion:CNY"] == balances["fx_conversion:USD"] == 0
    assert balances[f"creator_pending:CNY:{shop['creator']}"] == 0
    assert _per_currency(balances) == {"CNY": 0, "USD": 0}
    report = await verify_ledger(uow)
    assert report.ok, report.problems


async def test_a_conversion_without_a_rate_is_refused(uow: UnitOfWork, clock: FrozenClock) -> None:
    from tuition.domain.errors import InvalidRequest

    async with uow:
        with pytest.raises(InvalidRequest) as caught:
            await fx_service.post_conversion(
                uow,
                source="fx:none",
                credit=AccountRef(AccountKind.CASH, "CNY"),
                debit=AccountRef(AccountKind.CASH, "USD"),
                amount=100,
                at=clock.now(),
            )
    assert caught.value.code == "fx_rate_missing"


async def test_rate_at_inverts_and_prefers_the_later_quote(
    client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    await _put(client, "USD/CNY", rate="7")
    clock.advance(timedelta(hours=1))
    await _put(client, "CNY/USD", rate="0.1400")
    async with uow:
        later = await fx_service.rate_at(uow, "USD", "CNY", clock.now())
        before = await fx_service.rate_at(uow, "USD", "CNY", clock.now() - timedelta(minutes=1))
        none = await fx_service.rate_at(uow, "USD", "EUR", clock.now())
    assert later is not None
    assert later.inverted
    assert later.convert(100) == 714
    assert before is not None
    assert not before.inverted
    assert before.convert(100) == 700
    assert none is None


def test_rates_are_imported_from_csv_all_or_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuition.cli import app
    from tuition.config import get_settings

    monkeypatch.setenv("TUITION_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'fx.db'}")
    monkeypatch.setenv("COLUMNS", "200")  # room for every column of the table
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        assert runner.invoke(app, ["migrate"]).exit_code == 0
        bad = tmp_path / "bad.csv"
        bad.write_text(
            "base,quote,rate,source,as_of\n"
            "CNY,EUR,0.15,ecb,2026-11-01T00:00:00+00:00\n"
            "CNY,JPY,1e3,ecb,\n"
        )
        refused = runner.invoke(app, ["fx", "import", str(bad)])
        assert refused.exit_code == 1
        assert "line 3" in refused.output
        assert "rate_invalid" in refused.output
        listed = runner.invoke(app, ["fx", "list"])
        assert "CNY/EUR" not in listed.output  # nothing of the bad file was kept

        good = tmp_path / "good.csv"
        good.write_text(
            "base,quote,rate,source,as_of\n"
            "CNY,EUR,0.1500,ecb,2026-11-01T00:00:00+00:00\n"
            "USD,CNY,7.1,ecb,2026-11-01T00:00:00+08:00\n"
        )
        imported = runner.invoke(app, ["fx", "import", str(good)])
        assert imported.exit_code == 0, imported.output
        assert "2 rates recorded" in imported.output
        listed = runner.invoke(app, ["fx", "list"])
        assert "CNY/EUR" in listed.output
        assert "0.1500" in listed.output
        assert "USD/CNY" in listed.output
        assert "7.1" in listed.output
    finally:
        get_settings.cache_clear()


async def test_a_csv_with_a_wrong_header_is_refused(uow: UnitOfWork, clock: FrozenClock) -> None:
    from tuition.domain.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as caught:
        await fx_service.import_rates_csv("base,quote,rate\nCNY,EUR,0.15\n", uow, clock=clock)
    assert caught.value.code == "csv_header_invalid"
    assert await _count(uow, fx_rates) == 0
    assert await _count(uow, orders) == 0


async def test_recorded_rates_are_audited_with_who_recorded_them(
    client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    from tuition.services.audit import Actor
    from tuition.store.tables import audit_events

    put = (await _put(client, "USD/CNY", rate="7.1000")).json()
    text = "base,quote,rate,source,as_of\nCNY,EUR,0.13,ecb,\n"
    imported = await fx_service.import_rates_csv(text, uow, clock=clock, actor=Actor("cli", "ops"))
    async with uow:
        rows = (
            await uow.conn.execute(
                select(
                    audit_events.c.actor_kind,
                    audit_events.c.action,
                    audit_events.c.subject,
                    audit_events.c.after,
                )
                .where(audit_events.c.action.startswith("fx_rate"))
                .order_by(audit_events.c.seq)
            )
        ).all()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("api_key", "fx_rate.recorded", put["id"]),
        ("cli", "fx_rates.imported", imported[0].id),
    ]
    assert '"rate":"7.1000"' in rows[0][3]
    assert '"count":1' in rows[1][3]


async def test_a_coupon_applied_at_checkout_keeps_the_orders_rate_and_its_revenue_currency(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateways: Gateways,  # noqa: F811
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    from tuition.services.checkout import change_coupon

    await _put(client, "USD/CNY", rate="7.1")
    await post(client, "/v1/coupons", {"code": "HALF", "percent_off": "0.5"})
    order = await post(client, "/v1/orders", order_body(shop, "usd_only"))  # 71.00 CNY
    # The buyer enters the coupon on the checkout page: the order is re-priced...
    repriced = await change_coupon(uow, order["id"], "HALF", clock=clock)
    assert repriced.total == 3550
    # ... and still converted at the rate it was placed with.
    got = (await client.get(f"/v1/orders/{order['id']}")).json()
    assert got["fx"] == order["fx"]
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "alipay", "method": "page"}
    )
    await _pay_in_browser(gateways.sim, payment["next_action"]["url"])
    await gateways.sim.drain()
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    async with uow:
        balances = await uow.ledger.balances()
    # 30 % of 35.50 CNY is 10.65 CNY: 1.50 USD of revenue, in the product's currency.
    assert "platform_revenue:CNY" not in balances
    assert balances["platform_revenue:USD"] == -150
    assert _per_currency(balances) == {"CNY": 0, "USD": 0}


async def test_a_converted_product_beside_a_native_one_keeps_the_revenue_in_the_order_currency(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateways: Gateways,  # noqa: F811
    uow: UnitOfWork,
) -> None:
    await _put(client, "USD/CNY", rate="7.1")
    # c2 has a CNY price of its own (199.00); usd_only is converted (10.00 USD = 71.00).
    order = await post(client, "/v1/orders", order_body(shop, "c2", "usd_only"))
    assert order["total"] == 19900 + 7100
    assert len(order["fx"]) == 1
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "alipay", "method": "page"}
    )
    await _pay_in_browser(gateways.sim, payment["next_action"]["url"])
    await gateways.sim.drain()
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    async with uow:
        balances = await uow.ledger.balances()
    # The CNY course's 30 % (59.70 CNY) is never turned into USD at the other line's
    # rate: an order mixing its own currency with a converted one keeps its revenue in
    # the order's currency (docs/fx.md#ledger, limits).
    assert balances.get("platform_revenue:USD", 0) == 0
    assert balances["platform_revenue:CNY"] == -(5970 + 2130)
    assert _per_currency(balances) == {"CNY": 0}
    report = await verify_ledger(uow)
    assert report.ok, report.problems


async def test_many_partial_refunds_of_a_converted_sale_add_up_to_its_revenue_exactly(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateways: Gateways,  # noqa: F811
    uow: UnitOfWork,
) -> None:
    order = await _paid_usd_course(client, shop, gateways)
    # Three refunds of 1.00 CNY (0.30 of the platform's part each, 0.0423 USD at 7.1),
    # then the rest: however the refunds are cut, they take back the 3.00 USD of revenue
    # the sale recognised, no cent more or less.
    for amount in (100, 100, 100, None):
        body: dict[str, Any] = {"order_id": order["id"]}
        if amount is not None:
            body["amount"] = amount
        refund = await post(client, "/v1/refunds", body)
        await gateways.sim.settle_refunds()
        await gateways.sim.drain()
        assert (await client.get(f"/v1/refunds/{refund['id']}")).json()["status"] == "succeeded"
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "refunded"
    async with uow:
        balances = await uow.ledger.balances()
    assert balances["refunds:USD"] == 300
    assert balances["platform_revenue:USD"] == -300
    assert balances["fx_conversion:CNY"] == balances["fx_conversion:USD"] == 0
    assert _per_currency(balances) == {"CNY": 0, "USD": 0}
    report = await verify_ledger(uow)
    assert report.ok, report.problems
