"""Partner-sold orders on both engines with the clock injected: the partner's share per
its agreement is fixed when the order is placed, booked at paid in the payment's entry
beside the creator's share, held with it, converted into the partner's currency when the
hold ends through the FX accounts at a recorded rate (rate, source and time on the
earning), and taken back by refunds pro rata: from pending in the sale's currency, then
from available in the partner's, at the rate it was settled at. ``ledger verify`` clean
throughout; a release repeated or concurrent settles once."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.shop import post
from tests.integration.test_payouts import _books_clean
from tuition.clock import FrozenClock
from tuition.domain.ledger import payment_source
from tuition.services.earnings import release_earnings
from tuition.services.partners import FixedRates
from tuition.services.payouts import TAX_ZONE
from tuition.simulator.app import Simulator
from tuition.store.uow import UnitOfWork
from tuition.worker.runner import Worker, WorkerConfig

PRICE = 19900


@pytest.fixture
async def sold(client: httpx.AsyncClient, clock: FrozenClock) -> dict[str, str]:
    """Ada's ¥199 course at 70 %, sold through Globex, a partner platform owed 10 % of
    each sale and settled in US dollars; CNY/USD 0.1389 recorded (PBOC)."""
    clock.set(datetime(2026, 11, 2, 9, tzinfo=TAX_ZONE))
    ada = await post(client, "/v1/creators", {"name": "Ada", "default_revenue_share": "0.7"})
    course = await post(
        client,
        "/v1/products",
        {"creator_id": ada["id"], "title": "Course", "kind": "course", "prices": {"CNY": PRICE}},
    )
    globex = await post(
        client, "/v1/partners", {"name": "Globex", "share": "0.1", "currency": "USD"}
    )
    put = await client.put(
        "/v1/fx_rates/CNY/USD",
        json={"rate": "0.1389", "source": "pboc", "as_of": clock.now().isoformat()},
    )
    assert put.status_code in (200, 201), put.text
    return {"ada": ada["id"], "course": course["id"], "globex": globex["id"]}


async def _order(
    client: httpx.AsyncClient, ids: dict[str, str], customer: str, partner: str | None = None
) -> httpx.Response:
    return await client.post(
        "/v1/orders",
        json={
            "customer_id": customer,
            "currency": "CNY",
            "items": [{"product_id": ids["course"]}],
            "partner_id": partner or ids["globex"],
        },
    )


async def _paid(
    client: httpx.AsyncClient, gateway: Simulator, ids: dict[str, str], customer: str
) -> dict[str, Any]:
    made = await _order(client, ids, customer)
    assert made.status_code == 201, made.text
    order = made.json()
    assert order["partner_id"] == ids["globex"]
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    gateway.duplicate_notifications(2, concurrent=True)  # the notification three times at once
    await gateway.pay(payment["id"])
    await gateway.drain()
    gateway.reset_faults()
    order["payment_id"] = payment["id"]
    return order


async def _refund(client: httpx.AsyncClient, gateway: Simulator, **body: Any) -> dict[str, Any]:
    made = await client.post("/v1/refunds", json=body)
    assert made.status_code == 201, made.text
    await gateway.drain()
    refund = (await client.get(f"/v1/refunds/{made.json()['id']}")).json()
    assert refund["status"] == "succeeded", refund
    return refund  # type: ignore[no-any-return]


async def _balances(client: httpx.AsyncClient, payee: str) -> dict[str, tuple[int, int]]:
    got = (await client.get(f"/v1/payees/{payee}/balance")).json()["balances"]
    return {b["currency"]: (b["pending"], b["available"]) for b in got}


async def _fx_position(uow: UnitOfWork) -> dict[str, int]:
    async with uow:
        balances = await uow.ledger.balances()
    return {k: v for k, v in balances.items() if k.startswith("fx_conversion:") and v}


def _worker(app: FastAPI) -> Worker:
    return Worker(app.state.modes.live, WorkerConfig(sweep_interval=timedelta(0)))


async def test_a_partner_share_is_held_then_settled_in_its_currency_and_refunds_claw_it_back(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
    sold: dict[str, str],
) -> None:
    ada, globex = sold["ada"], sold["globex"]
    first = await _paid(client, gateway, sold, "b_1")
    second = await _paid(client, gateway, sold, "b_2")
    # Each sale: 19,900 net; Ada 70 % = 13,930; Globex 10 % = 1,990; the platform 3,980.
    async with uow:
        entry = await uow.ledger.entry_by_source(payment_source(first["payment_id"]))
    assert entry is not None
    postings = {p.account.key: p.amount for p in entry.postings}
    assert postings[f"creator_pending:CNY:{ada}"] == -13930
    assert postings[f"creator_pending:CNY:{globex}"] == -1990
    assert postings["platform_revenue:CNY"] == -3980
    assert await _balances(client, globex) == {"CNY": (2 * 1990, 0)}
    earned = (await client.get(f"/v1/payees/{globex}/earnings")).json()["data"]
    assert {(e["role"], e["rate"], e["amount"], e["settlement"]) for e in earned} == {
        ("partner", "0.1", 1990, None)
    }
    await _books_clean(uow)

    # Day 3, in the hold: the first order refunded whole; Globex gives back from pending.
    clock.advance(timedelta(days=3))
    whole = await _refund(client, gateway, order_id=first["id"])
    assert (whole["lines"][0]["creator_amount"], whole["lines"][0]["platform_amount"]) == (
        13930 + 1990,
        3980,
    )
    assert await _balances(client, globex) == {"CNY": (1990, 0)}
    await _books_clean(uow)

    # Day 5 a new rate is recorded; day 7 the hold ends and the share is converted at it.
    clock.advance(timedelta(days=2))
    put = await client.put(
        "/v1/fx_rates/CNY/USD",
        json={"rate": "0.1400", "source": "pboc", "as_of": clock.now().isoformat()},
    )
    assert put.status_code in (200, 201), put.text
    rate_time = clock.now()
    clock.advance(timedelta(days=2))
    await asyncio.gather(*(_worker(app).run_once() for _ in range(3)))
    await _worker(app).run_once()
    # 19.90 CNY x 0.1400 = 2.786 USD -> 2.79, half up.
    assert await _balances(client, globex) == {"CNY": (0, 0), "USD": (0, 279)}
    assert (await _balances(client, ada))["CNY"] == (0, 13930)
    [settled] = [
        e
        for e in (await client.get(f"/v1/payees/{globex}/earnings")).json()["data"]
        if e["settlement"] is not None
    ]
    s = settled["settlement"]
    assert (s["from_currency"], s["from_amount"], s["currency"], s["amount"]) == (
        "CNY",
        1990,
        "USD",
        279,
    )
    assert (s["rate"], s["rate_source"], s["clawed_back"]) == (
        "0.14",
        "fx_rates CNY/USD: pboc",
        0,
    )
    assert datetime.fromisoformat(s["rate_at"]) == rate_time
    assert await _fx_position(uow) == {"fx_conversion:CNY": -1990, "fx_conversion:USD": 279}
    await _books_clean(uow)

    # Day 10, past the window: half the second order back. The payees' part, 7,960, is
    # split over what they hold [13,930, 1,990]: Ada 6,965, Globex 995 CNY, which comes
    # out of its dollars pro rata at the settled rate: 995 / 1,990 of 279 = 139.5 -> 140.
    clock.advance(timedelta(days=3))
    half = await _refund(
        client, gateway, order_id=second["id"], amount=9950, override=True, reason="other"
    )
    assert (half["lines"][0]["creator_amount"], half["lines"][0]["platform_amount"]) == (
        7960,
        1990,
    )
    assert await _balances(client, globex) == {"CNY": (0, 0), "USD": (0, 139)}
    await _books_clean(uow)
    # The rest back: everything Globex still holds, exactly, whatever the rounding.
    await _refund(client, gateway, order_id=second["id"], override=True, reason="other")
    assert await _balances(client, globex) == {"CNY": (0, 0), "USD": (0, 0)}
    assert (await _balances(client, ada))["CNY"] == (0, 0)
    assert await _fx_position(uow) == {}
    await _books_clean(uow)
    # The statements reconcile in each currency, each conversion traced to its order.
    usd = (await client.get(f"/v1/payees/{globex}/statements/2026-11?currency=USD")).json()
    assert (usd["opening_balance"], usd["conversions"], usd["closing_balance"]) == (0, 0, 0)
    assert [(line["kind"], line["amount"], line["order_id"]) for line in usd["lines"]] == [
        ("conversion", 279, second["id"]),
        ("conversion", -140, second["id"]),
        ("conversion", -139, second["id"]),
    ]
    cny = (await client.get(f"/v1/payees/{globex}/statements/2026-11")).json()
    assert (cny["earnings"], cny["clawbacks"], cny["conversions"]) == (3980, -1990 - 1990, 0)
    assert cny["closing_balance"] == 0


async def test_a_release_repeated_or_concurrent_settles_the_partner_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
    sold: dict[str, str],
) -> None:
    order = await _paid(client, gateway, sold, "b_1")
    clock.advance(timedelta(days=7))
    rates = app.state.modes.live.rate_source()
    await asyncio.gather(
        *(
            release_earnings(UnitOfWork(uow.engine), order["payment_id"], clock=clock, rates=rates)
            for _ in range(4)
        )
    )
    await release_earnings(uow, order["payment_id"], clock=clock, rates=rates)
    # 19.90 CNY x 0.1389 = 2.76411 USD -> 2.76.
    assert await _balances(client, sold["globex"]) == {"CNY": (0, 0), "USD": (0, 276)}
    earned = (await client.get(f"/v1/payees/{sold['globex']}/earnings")).json()["data"]
    assert [e["settlement"]["amount"] for e in earned] == [276]
    await _books_clean(uow)


async def test_partner_orders_are_checked_when_placed(
    client: httpx.AsyncClient, sold: dict[str, str]
) -> None:
    unknown = await _order(client, sold, "b_1", partner="pye_01M8SA1WD0GBMFMGW3HRYCSVWY")
    assert unknown.status_code == 422, unknown.text
    error = unknown.json()["error"]
    assert (error["code"], error["param"]) == ("partner_not_found", "partner_id")
    creator = await _order(client, sold, "b_1", partner=sold["ada"])
    assert creator.status_code == 422, creator.text  # a creator is no partner platform
    euro = await post(client, "/v1/partners", {"name": "Euro", "share": "0.1", "currency": "EUR"})
    no_rate = await _order(client, sold, "b_1", partner=euro["id"])
    assert no_rate.status_code == 422, no_rate.text
    assert (no_rate.json()["error"]["code"], no_rate.json()["error"]["param"]) == (
        "fx_rate_missing",
        "partner_id",
    )
    greedy = await post(client, "/v1/partners", {"name": "Big", "share": "0.4", "currency": "CNY"})
    too_much = await _order(client, sold, "b_1", partner=greedy["id"])
    assert too_much.status_code == 422, too_much.text
    # The platform keeps 30 % (5,970): 40 % (7,960) is more than it has.
    assert too_much.json()["error"]["code"] == "partner_share_exceeds_platform"
    listed = (await client.get("/v1/orders", params={"customer_id": "b_1"})).json()
    assert listed["data"] == []  # refused whole: no order was kept


async def test_a_partner_in_the_sales_currency_is_settled_without_conversion(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
    sold: dict[str, str],
) -> None:
    local = await post(client, "/v1/partners", {"name": "Local", "share": "0.2", "currency": "CNY"})
    ids = {**sold, "globex": local["id"]}
    await _paid(client, gateway, ids, "b_1")
    clock.advance(timedelta(days=7))
    await _worker(app).run_once()
    assert await _balances(client, local["id"]) == {"CNY": (0, 3980)}
    assert await _fx_position(uow) == {}
    await _books_clean(uow)


async def test_a_rate_missing_at_release_leaves_the_share_in_the_sales_currency(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
    sold: dict[str, str],
) -> None:
    order = await _paid(client, gateway, sold, "b_1")
    clock.advance(timedelta(days=7))
    # A rate source that knows no rate any more (a setting's fixed rate removed, say):
    # the release still happens, for the creator and the partner alike.
    await release_earnings(uow, order["payment_id"], clock=clock, rates=FixedRates({}))
    assert await _balances(client, sold["globex"]) == {"CNY": (0, 1990)}
    assert (await _balances(client, sold["ada"]))["CNY"] == (0, 13930)
    assert await _fx_position(uow) == {}
    await _books_clean(uow)


async def test_refunds_racing_the_release_take_the_partners_share_back_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
    sold: dict[str, str],
) -> None:
    orders = [await _paid(client, gateway, sold, f"b_{n}") for n in range(4)]
    clock.advance(timedelta(days=7))  # the last moment a refund is allowed, the hold's end
    for order in orders:
        made = await client.post("/v1/refunds", json={"order_id": order["id"], "amount": 9950})
        assert made.status_code == 201, made.text
    engine = app.state.modes.live.engine
    rates = app.state.modes.live.rate_source()
    await asyncio.gather(
        gateway.drain(),
        *(
            release_earnings(UnitOfWork(engine), o["payment_id"], clock=clock, rates=rates)
            for o in orders
        ),
    )
    # Either order of events leaves Globex 995 CNY of each sale in dollars: refunded
    # first, 9.95 x 0.1389 = 1.382 -> 1.38; released first, 2.76 less 995 / 1,990 of it.
    assert await _balances(client, sold["globex"]) == {"CNY": (0, 0), "USD": (0, 4 * 138)}
    assert (await _balances(client, sold["ada"]))["CNY"] == (0, 4 * 6965)
    await _books_clean(uow)


async def test_a_coupon_entered_at_checkout_keeps_the_partners_share_within_the_price(
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
    sold: dict[str, str],
) -> None:
    from tuition.services.checkout import change_coupon

    await post(client, "/v1/coupons", {"code": "NINETY", "percent_off": "0.9"})
    made = await _order(client, sold, "b_1")
    assert made.status_code == 201, made.text
    order = made.json()
    # The buyer enters a 90 % coupon on the checkout page: ¥19.90 now.
    repriced = await change_coupon(uow, order["id"], "NINETY", clock=clock)
    assert repriced.total == 1990
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    async with uow:
        entry = await uow.ledger.entry_by_source(payment_source(payment["id"]))
    assert entry is not None
    postings = {p.account.key: p.amount for p in entry.postings}
    # 10 % of what was sold, not of the price before the coupon: the partner is never
    # owed more than the platform keeps of the sale.
    assert postings[f"creator_pending:CNY:{sold['globex']}"] == -199
    assert postings[f"creator_pending:CNY:{sold['ada']}"] == -1393
    assert postings["platform_revenue:CNY"] == -(1990 - 1393 - 199)
    await _books_clean(uow)


async def test_a_refund_into_the_wallet_of_a_settled_share_locks_the_wallet_before_the_journal(
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
    sold: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One lock order on every path touching the buyer's wallet and the journal (wallet
    first, services/settlement.py): a refund into the wallet that takes back a converted
    partner share posts its conversion only after crediting the wallet, so it never waits
    for the wallet while holding journal rows a payment from that wallet waits for."""
    from tuition.services import refund_settlement
    from tuition.store.ledger import LedgerRepository

    order = await _paid(client, gateway, sold, "b_1")
    clock.advance(timedelta(days=7))
    await release_earnings(
        uow, order["payment_id"], clock=clock, rates=FixedRates({("CNY", "USD"): Decimal("0.14")})
    )
    assert await _balances(client, sold["globex"]) == {"CNY": (0, 0), "USD": (0, 279)}
    calls: list[str] = []
    real_credit, real_post = refund_settlement.credit, LedgerRepository.post

    async def credit(*args: Any, **kwargs: Any) -> Any:
        calls.append("wallet")
        return await real_credit(*args, **kwargs)

    async def post_entry(self: LedgerRepository, entry: Any, **kwargs: Any) -> bool:
        calls.append(entry.source.partition(":")[0])
        return await real_post(self, entry, **kwargs)

    monkeypatch.setattr(refund_settlement, "credit", credit)
    monkeypatch.setattr(LedgerRepository, "post", post_entry)
    await _refund(client, gateway, order_id=order["id"], to="wallet", override=True, reason="other")
    assert calls == ["wallet", "partner_clawback", "refund"], calls
    monkeypatch.undo()
    assert await _balances(client, sold["globex"]) == {"CNY": (0, 0), "USD": (0, 0)}
    await _books_clean(uow)
