"""Partner platforms over the API on both engines: a partner is a payee with an
agreement, and its share of a sale is quoted in its currency at the rate the container's
rate source gives (a pair of TUITION_FX_RATES, else the recorded FX rates), with the rate, its
source and its time."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from tests.integration.shop import post
from tuition.clock import FrozenClock
from tuition.config import ConfigError, Settings, load_settings


@pytest.fixture
def settings(db_url: str) -> Settings:
    return load_settings(database_url=db_url, fx_rates={"CNY/USD": "0.1389"})


async def test_a_partner_is_a_payee_whose_share_is_quoted_in_its_currency_at_the_set_rate(
    client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    partner = await post(
        client, "/v1/partners", {"name": "Globex Learning", "share": "0.3", "currency": "USD"}
    )
    assert (partner["object"], partner["share"], partner["currency"], partner["tax_profile"]) == (
        "partner",
        "0.3",
        "USD",
        "company",
    )
    payee = (await client.get(f"/v1/payees/{partner['id']}")).json()
    assert (payee["kind"], payee["name"]) == ("partner", "Globex Learning")
    assert (await client.get(f"/v1/partners/{partner['id']}")).json() == partner

    clock.advance(timedelta(hours=1))
    quote = await client.get(
        f"/v1/partners/{partner['id']}/share_quote", params={"amount": 19900, "currency": "CNY"}
    )
    assert quote.status_code == 200, quote.text
    got = quote.json()
    # 30 % of 199.00 CNY = 59.70; x 0.1389 = 8.29233 USD -> 8.29, half up.
    assert (got["share"], got["amount"], got["currency"]) == (5970, 829, "USD")
    assert got["fx"]["rate"] == "0.1389"
    assert got["fx"]["source"] == "setting:TUITION_FX_RATES"
    assert got["fx"]["at"].startswith(clock.now().isoformat()[:19])


async def test_partners_are_refused_with_the_field_named_and_a_missing_rate_is_404(
    client: httpx.AsyncClient,
) -> None:
    bad = await client.post("/v1/partners", json={"name": "X", "share": "1.2", "currency": "USD"})
    assert bad.status_code == 422, bad.text
    assert bad.json()["error"]["param"] == "share"
    odd = await client.post("/v1/partners", json={"name": "X", "share": "0.2", "currency": "XYZ"})
    assert odd.status_code in (400, 422), odd.text
    assert odd.json()["error"]["param"] == "currency"
    # The platform's coins are no currency a partner can be settled (and paid out) in.
    coins = await client.post("/v1/partners", json={"name": "X", "share": "0.2", "currency": "XCN"})
    assert coins.status_code == 422, coins.text
    assert (coins.json()["error"]["code"], coins.json()["error"]["param"]) == (
        "currency_not_convertible",
        "currency",
    )
    euro = await post(client, "/v1/partners", {"name": "Euro", "share": "0.2", "currency": "EUR"})
    missing = await client.get(
        f"/v1/partners/{euro['id']}/share_quote", params={"amount": 100, "currency": "CNY"}
    )
    assert missing.status_code == 404, missing.text
    assert missing.json()["error"]["code"] == "fx_rate_missing"
    unknown = await client.get("/v1/partners/pye_01M8SA1WD0GBMFMGW3HRYCSVWY")
    assert unknown.status_code == 404


def test_a_badly_named_or_non_positive_rate_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="TUITION_FX_RATES"):
        load_settings(fx_rates={"cny-usd": "0.1"})
    with pytest.raises(ConfigError, match="positive"):
        load_settings(fx_rates={"CNY/USD": "0"})


async def test_without_a_fixed_rate_the_share_converts_at_the_recorded_fx_rate(
    client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    """The rates of PUT /v1/fx_rates, in force at the sale's time, recorded with the
    quote; the reverse quote inverted when only it exists."""
    euro = await post(client, "/v1/partners", {"name": "Euro", "share": "0.5", "currency": "EUR"})
    put = await client.put(
        "/v1/fx_rates/CNY/EUR",
        json={"rate": "0.1300", "source": "ecb", "as_of": clock.now().isoformat()},
    )
    assert put.status_code in (200, 201), put.text
    clock.advance(timedelta(minutes=5))
    quote = await client.get(
        f"/v1/partners/{euro['id']}/share_quote", params={"amount": 10000, "currency": "CNY"}
    )
    assert quote.status_code == 200, quote.text
    got = quote.json()
    # 50 % of 100.00 CNY = 50.00 CNY; x 0.13 = 6.50 EUR.
    assert (got["share"], got["amount"], got["currency"]) == (5000, 650, "EUR")
    assert got["fx"]["source"] == "fx_rates CNY/EUR: ecb"


async def test_a_partner_sold_subscription_takes_the_same_fixed_rate_as_an_order(
    client: httpx.AsyncClient,
) -> None:
    """The contract's rate of TUITION_FX_RATES (and no recorded rate) settles a
    partner's share of a subscription's orders as of any order: the subscription's first
    order and its renewals are placed with the same rate source."""
    from tuition.worker.subscriptions import renewal_deps

    ada = await post(client, "/v1/creators", {"name": "Ada", "default_revenue_share": "0.7"})
    monthly = await post(
        client,
        "/v1/products",
        {
            "creator_id": ada["id"],
            "title": "Monthly",
            "kind": "membership",
            "period": "month",
            "prices": {"CNY": 3000},
        },
    )
    globex = await post(
        client, "/v1/partners", {"name": "Globex", "share": "0.1", "currency": "USD"}
    )
    made = await client.post(
        "/v1/subscriptions",
        json={
            "customer_id": "u_1",
            "product_id": monthly["id"],
            "channel": "sandbox",
            "method": "page",
            "auto_renew": False,
            "partner_id": globex["id"],
        },
    )
    assert made.status_code == 201, made.text
    assert made.json()["latest_order"]["partner_id"] == globex["id"]
    # The worker's renewals look the rate up in the same place.
    container = client._transport.app.state.modes.live  # type: ignore[attr-defined]
    rates = renewal_deps(container).orders.rates
    assert rates is not None
    async with container.uow() as uow:
        got = await rates.rate_at(uow, "CNY", "USD", container.clock.now())
    assert got.source == "setting:TUITION_FX_RATES"
