"""Promoters on both engines with the clock injected: referral codes, two-level
commissions fixed with the order and booked in the payment's entry beside the creator's
share, held and released with it, and taken back by refunds pro rata from pending, then
from available (below zero after a payout, netted by the next release); ``ledger
verify`` clean throughout."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.integration.shop import post
from tests.integration.test_payouts import _balance, _bank, _books_clean
from tuition.clock import FrozenClock
from tuition.domain.commissions import LineSplit, claw_back
from tuition.domain.ledger import JournalEntry, payment_source
from tuition.services.earnings import release_earnings
from tuition.services.payouts import TAX_ZONE
from tuition.simulator.app import Simulator
from tuition.store.ledger import LedgerRepository
from tuition.store.tables import order_commissions
from tuition.store.uow import UnitOfWork
from tuition.worker.runner import Worker, WorkerConfig

PRICE = 19900


@pytest.fixture
async def referral(client: httpx.AsyncClient, clock: FrozenClock) -> dict[str, str]:
    """Ada's ¥199 course at 70 %, promoters paid 20 % / 5 % by the platform: Li (level 1,
    code LI2026) recruited by Wang (level 2)."""
    clock.set(datetime(2026, 11, 2, 9, tzinfo=TAX_ZONE))
    ada = await post(client, "/v1/creators", {"name": "Ada", "default_revenue_share": "0.7"})
    course = await post(
        client,
        "/v1/products",
        {"creator_id": ada["id"], "title": "Course", "kind": "course", "prices": {"CNY": PRICE}},
    )
    setting = await client.put(
        f"/v1/products/{course['id']}/commission",
        json={"level1": "0.2", "level2": "0.05", "bearer": "platform"},
    )
    assert setting.status_code == 200, setting.text
    wang = await post(client, "/v1/promoters", {"name": "Wang", "code": "WANG"})
    li = await post(
        client,
        "/v1/promoters",
        {"name": "Li", "code": "LI2026", "recruited_by": wang["id"], "customer_id": "li_self"},
    )
    return {"ada": ada["id"], "course": course["id"], "li": li["id"], "wang": wang["id"]}


async def _order(
    client: httpx.AsyncClient, ids: dict[str, str], customer: str, code: str | None = "LI2026"
) -> httpx.Response:
    body: dict[str, Any] = {
        "customer_id": customer,
        "currency": "CNY",
        "items": [{"product_id": ids["course"]}],
    }
    if code is not None:
        body["referral_code"] = code
    return await client.post("/v1/orders", json=body)


async def _paid(
    client: httpx.AsyncClient, gateway: Simulator, ids: dict[str, str], customer: str
) -> dict[str, Any]:
    made = await _order(client, ids, customer)
    assert made.status_code == 201, made.text
    order = made.json()
    assert order["referral_code"] == "LI2026"
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    order["payment_id"] = payment["id"]
    return order


async def _refund(client: httpx.AsyncClient, gateway: Simulator, **body: Any) -> dict[str, Any]:
    made = await client.post("/v1/refunds", json=body)
    assert made.status_code == 201, made.text
    await gateway.drain()
    refund = (await client.get(f"/v1/refunds/{made.json()['id']}")).json()
    assert refund["status"] == "succeeded", refund
    return refund  # type: ignore[no-any-return]


async def _held(client: httpx.AsyncClient, *payees: str) -> list[tuple[int, int]]:
    out = []
    for payee in payees:
        got = await _balance(client, payee)
        out.append((got["pending"], got["available"]))
    return out


def _worker(app: FastAPI) -> Worker:
    return Worker(app.state.modes.live, WorkerConfig(sweep_interval=timedelta(0)))


async def test_the_documented_example_pays_two_levels_and_two_refunds_claw_them_back(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
    referral: dict[str, str],
) -> None:
    ada, li, wang = referral["ada"], referral["li"], referral["wang"]
    first = await _paid(client, gateway, referral, "b_1")
    second = await _paid(client, gateway, referral, "b_2")
    third = await _paid(client, gateway, referral, "b_3")
    # Each sale: 19,900 split [70 %, 20 %, 5 %, the platform's 5 %] by largest remainder.
    assert await _held(client, ada, li, wang) == [(3 * 13930, 0), (3 * 3980, 0), (3 * 995, 0)]
    async with uow:
        entry = await uow.ledger.entry_by_source(payment_source(first["payment_id"]))
    assert entry is not None
    postings = {p.account.key: p.amount for p in entry.postings}
    assert postings[f"creator_pending:CNY:{ada}"] == -13930
    assert postings[f"creator_pending:CNY:{li}"] == -3980
    assert postings[f"creator_pending:CNY:{wang}"] == -995
    assert postings["platform_revenue:CNY"] == -995
    earned = (await client.get(f"/v1/payees/{wang}/earnings")).json()["data"]
    assert {(e["role"], e["rate"], e["amount"], e["base_amount"]) for e in earned} == {
        ("promoter_l2", "0.05", 995, PRICE)
    }
    await _books_clean(uow)

    # Day 3, inside the hold: the first order refunded whole, every share from pending.
    clock.advance(timedelta(days=3))
    whole = await _refund(client, gateway, order_id=first["id"])
    assert (whole["lines"][0]["creator_amount"], whole["lines"][0]["platform_amount"]) == (
        13930 + 3980 + 995,
        995,
    )
    assert await _held(client, ada, li, wang) == [(2 * 13930, 0), (2 * 3980, 0), (2 * 995, 0)]
    await _books_clean(uow)

    # Day 7: the holds end; the worker makes the other two orders' shares available.
    clock.advance(timedelta(days=4))
    await _worker(app).run_once()
    assert await _held(client, ada, li, wang) == [(0, 27860), (0, 7960), (0, 1990)]

    # Day 10, past the window: half the second order back (an operator's override).
    # 9,950 over what the line holds [13,930, 3,980, 995, platform 995]: 6,965, 1,990,
    # 497.5, 497.5; the tie goes to the earlier party, so Wang gives 498, the platform 497.
    clock.advance(timedelta(days=3))
    half = await _refund(
        client, gateway, order_id=second["id"], amount=9950, override=True, reason="other"
    )
    assert (half["lines"][0]["creator_amount"], half["lines"][0]["platform_amount"]) == (
        6965 + 1990 + 498,
        497,
    )
    assert claw_back(9950, LineSplit(13930, 3980, 995, 995)) == LineSplit(6965, 1990, 498, 497)
    assert await _held(client, ada, li, wang) == [
        (0, 27860 - 6965),
        (0, 7960 - 1990),
        (0, 1990 - 498),
    ]
    clawed = {
        e["order_id"]: e["clawed_back"]
        for e in (await client.get(f"/v1/payees/{wang}/earnings")).json()["data"]
    }
    assert clawed == {first["id"]: 995, second["id"]: 498, third["id"]: 0}

    # Li's November statement: 3 x 3,980 earned, 3,980 + 1,990 clawed back.
    statement = (await client.get(f"/v1/payees/{li}/statements/2026-11")).json()
    assert (statement["opening_balance"], statement["earnings"], statement["clawbacks"]) == (
        0,
        11940,
        -5970,
    )
    assert statement["closing_balance"] == 5970
    assert {line["order_id"] for line in statement["lines"]} == {
        first["id"],
        second["id"],
        third["id"],
    }
    await _books_clean(uow)


async def test_commissions_borne_by_the_creator_come_out_of_the_creators_share(
    client: httpx.AsyncClient,
    gateway: Simulator,
    uow: UnitOfWork,
    referral: dict[str, str],
) -> None:
    changed = await client.put(
        f"/v1/products/{referral['course']}/commission",
        json={"level1": "0.2", "level2": "0.05", "bearer": "creator"},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["bearer"] == "creator"
    await _paid(client, gateway, referral, "b_1")
    got = await _held(client, referral["ada"], referral["li"], referral["wang"])
    assert got == [(8955, 0), (3980, 0), (995, 0)]
    [creator] = (await client.get(f"/v1/payees/{referral['ada']}/earnings")).json()["data"]
    assert (creator["role"], creator["rate"], creator["amount"]) == ("creator", "0.45", 8955)
    await _books_clean(uow)


async def test_a_promoter_nobody_recruited_has_no_level_two_and_an_order_without_a_code_none(
    client: httpx.AsyncClient,
    gateway: Simulator,
    uow: UnitOfWork,
    referral: dict[str, str],
) -> None:
    await _paid(client, gateway, referral, "b_1")  # Li's code: Wang is level 2
    made = await _order(client, referral, "b_2", code="WANG")  # Wang's own: nobody above
    assert made.status_code == 201, made.text
    payment = await post(
        client, f"/v1/orders/{made.json()['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(payment["id"])
    plain = await _order(client, referral, "b_3", code=None)
    assert plain.status_code == 201, plain.text
    payment = await post(
        client,
        f"/v1/orders/{plain.json()['id']}/payments",
        {"channel": "sandbox", "method": "page"},
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    # Wang: 995 as Li's level 2, 3,980 as level 1 of its own code; Li only its own sale.
    assert await _held(client, referral["wang"], referral["li"]) == [(995 + 3980, 0), (3980, 0)]
    # Without a level 2 its 5 % stays with the platform; without a code nobody is paid.
    assert (await _balance(client, referral["ada"]))["pending"] == 3 * 13930
    async with uow:
        rows = (await uow.conn.execute(select(order_commissions))).all()
    assert sorted((r.level2_id is None, r.level2_amount) for r in rows) == [
        (False, 995),
        (True, 0),
    ]
    await _books_clean(uow)


async def test_a_clawback_after_a_payout_takes_the_promoter_below_zero_and_the_next_release_nets_it(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
    referral: dict[str, str],
) -> None:
    li = referral["li"]
    first = await _paid(client, gateway, referral, "b_1")
    clock.advance(timedelta(days=7))
    await _worker(app).run_once()
    await _bank(client, li)
    payout = await post(client, "/v1/payouts", {"payee_id": li, "currency": "CNY"})
    # 39.80 of income in the month: taxable 39.80 - 800 is below zero, nothing withheld.
    assert (payout["amount"], payout["tax_withheld"]) == (3980, 0)
    second = await _paid(client, gateway, referral, "b_2")
    assert second["id"] != first["id"]
    clock.advance(timedelta(days=1))
    await _refund(client, gateway, order_id=first["id"], override=True, reason="other")
    got = await _balance(client, li)
    assert (got["pending"], got["available"]) == (3980, -3980)
    await _books_clean(uow)
    clock.advance(timedelta(days=7))
    await _worker(app).run_once()  # the second order's release nets the debt
    got = await _balance(client, li)
    assert (got["pending"], got["available"]) == (0, 0)
    await _books_clean(uow)


async def test_referral_codes_are_checked_when_the_order_is_placed(
    client: httpx.AsyncClient, referral: dict[str, str], uow: UnitOfWork
) -> None:
    unknown = await _order(client, referral, "b_1", code="NOBODY")
    assert unknown.status_code == 422, unknown.text
    error = unknown.json()["error"]
    assert (error["code"], error["param"]) == ("referral_code_unknown", "referral_code")
    assert "NOBODY" in error["message"]
    own = await _order(client, referral, "li_self", code="LI2026")
    assert own.status_code == 422, own.text
    assert own.json()["error"]["code"] == "referral_self"
    # Zhou recruited Qian: Zhou buying through Qian's code would earn Zhou's own level 2.
    zhou = await post(
        client, "/v1/promoters", {"name": "Zhou", "code": "ZHOU", "customer_id": "zhou_self"}
    )
    await post(
        client, "/v1/promoters", {"name": "Qian", "code": "QIAN", "recruited_by": zhou["id"]}
    )
    level2 = await _order(client, referral, "zhou_self", code="QIAN")
    assert level2.status_code == 422, level2.text
    error = level2.json()["error"]
    assert (error["code"], error["param"]) == ("referral_self", "referral_code")
    assert "level 2" in error["message"]
    async with uow:
        assert (await uow.conn.execute(select(order_commissions))).first() is None
    listed = (await client.get("/v1/orders", params={"customer_id": "li_self"})).json()
    assert listed["data"] == []  # refused whole: no order was kept


async def test_promoters_are_registered_read_and_listed_and_their_codes_are_unique(
    client: httpx.AsyncClient, referral: dict[str, str]
) -> None:
    got = (await client.get(f"/v1/promoters/{referral['li']}")).json()
    assert (got["object"], got["name"], got["code"], got["recruited_by"]) == (
        "promoter",
        "Li",
        "LI2026",
        referral["wang"],
    )
    payee = (await client.get(f"/v1/payees/{referral['li']}")).json()
    assert (payee["kind"], payee["name"]) == ("promoter", "Li")
    listed = (await client.get("/v1/promoters", params={"limit": 1})).json()
    assert ([p["id"] for p in listed["data"]], listed["has_more"]) == ([referral["li"]], True)
    taken = await client.post("/v1/promoters", json={"name": "Zhao", "code": "LI2026"})
    assert taken.status_code == 409, taken.text
    assert taken.json()["error"]["code"] == "referral_code_taken"
    orphan = await client.post(
        "/v1/promoters",
        json={"name": "Zhao", "code": "ZHAO", "recruited_by": "pye_01M8SA1WD0GBMFMGW3HRYCSVWY"},
    )
    assert orphan.status_code == 422, orphan.text
    assert orphan.json()["error"]["param"] == "recruited_by"
    missing = await client.get("/v1/promoters/pye_01M8SA1WD0GBMFMGW3HRYCSVWY")
    assert missing.status_code == 404


async def test_a_products_commissions_must_fit_the_bearers_share(
    client: httpx.AsyncClient, referral: dict[str, str]
) -> None:
    path = f"/v1/products/{referral['course']}/commission"
    # The platform keeps 30 %: 20 % + 15 % is more than it has.
    too_much = await client.put(
        path, json={"level1": "0.2", "level2": "0.15", "bearer": "platform"}
    )
    assert too_much.status_code == 422, too_much.text
    assert too_much.json()["error"]["code"] == "commission_exceeds_share"
    bad = await client.put(path, json={"level1": "1.5", "bearer": "platform"})
    assert bad.status_code == 422, bad.text
    assert bad.json()["error"]["param"] == "level1"
    kept = (await client.get(path)).json()
    assert (kept["level1"], kept["level2"], kept["bearer"]) == ("0.2", "0.05", "platform")
    assert Decimal(kept["level1"]) + Decimal(kept["level2"]) == Decimal("0.25")


async def test_a_referred_payment_notified_many_times_at_once_books_its_commissions_once(
    client: httpx.AsyncClient,
    gateway: Simulator,
    uow: UnitOfWork,
    referral: dict[str, str],
) -> None:
    gateway.duplicate_notifications(3, concurrent=True)
    order = await _paid(client, gateway, referral, "b_1")
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    got = await _held(client, referral["ada"], referral["li"], referral["wang"])
    assert got == [(13930, 0), (3980, 0), (995, 0)]
    for payee in (referral["li"], referral["wang"]):
        assert len((await client.get(f"/v1/payees/{payee}/earnings")).json()["data"]) == 1
    await _books_clean(uow)


async def test_refunds_racing_the_release_take_each_commission_back_from_one_place_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
    referral: dict[str, str],
) -> None:
    orders = [await _paid(client, gateway, referral, f"b_{n}") for n in range(4)]
    clock.advance(timedelta(days=7))  # the last moment a refund is allowed, the hold's end
    for order in orders:
        made = await client.post("/v1/refunds", json={"order_id": order["id"], "amount": 9950})
        assert made.status_code == 201, made.text
    engine = app.state.modes.live.engine
    await asyncio.gather(
        gateway.drain(),
        *(release_earnings(UnitOfWork(engine), o["payment_id"], clock=clock) for o in orders),
    )
    for order in orders:
        refunds = (await client.get("/v1/refunds", params={"order_id": order["id"]})).json()
        assert [r["status"] for r in refunds["data"]] == ["succeeded"]
    # Whichever committed first, each order keeps 19,900 - 9,950 of its line, split as
    # the refund left it: Ada 6,965, Li 1,990, Wang 497.
    assert await _held(client, referral["ada"], referral["li"], referral["wang"]) == [
        (0, 4 * 6965),
        (0, 4 * 1990),
        (0, 4 * 497),
    ]
    await _books_clean(uow)


async def test_a_refund_settlement_that_crashes_takes_nothing_back_and_its_retry_takes_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
    referral: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order = await _paid(client, gateway, referral, "b_1")
    real_post = LedgerRepository.post
    crashed: list[str] = []

    async def crash(self: LedgerRepository, entry: JournalEntry, **kwargs: Any) -> Any:
        if entry.source.startswith("refund:"):
            crashed.append(entry.source)
            raise ConnectionError("killed between the clawback and the refund's entry")
        return await real_post(self, entry, **kwargs)

    gateway.drop_next_notifications(1)  # the worker's recovery query settles it
    made = await client.post("/v1/refunds", json={"order_id": order["id"]})
    assert made.status_code == 201, made.text
    await gateway.drain()
    clock.advance(timedelta(minutes=2))
    with monkeypatch.context() as patched:
        patched.setattr(LedgerRepository, "post", crash)
        await _worker(app).run_once()
    assert crashed == [f"refund:{made.json()['id']}"]
    refund = (await client.get(f"/v1/refunds/{made.json()['id']}")).json()
    assert refund["status"] == "pending"
    assert await _held(client, referral["li"], referral["wang"]) == [(3980, 0), (995, 0)]
    await _books_clean(uow)
    clock.advance(timedelta(minutes=10))  # the job's retry asks the gateway again
    await _worker(app).run_once()
    refund = (await client.get(f"/v1/refunds/{made.json()['id']}")).json()
    assert refund["status"] == "succeeded"
    assert await _held(client, referral["ada"], referral["li"], referral["wang"]) == [
        (0, 0),
        (0, 0),
        (0, 0),
    ]
    earned = (await client.get(f"/v1/payees/{referral['li']}/earnings")).json()["data"]
    assert [e["clawed_back"] for e in earned] == [3980]
    await _books_clean(uow)


async def test_a_split_tender_referred_order_portions_every_payees_share_over_its_payments(
    client: httpx.AsyncClient,
    gateway: Simulator,
    uow: UnitOfWork,
    referral: dict[str, str],
) -> None:
    await post(
        client,
        "/v1/customers/b_1/wallet/adjustments",
        {"currency": "CNY", "amount": 5000, "reason": "goodwill"},
    )
    made = await _order(client, referral, "b_1")
    assert made.status_code == 201, made.text
    payment = await post(
        client,
        f"/v1/orders/{made.json()['id']}/payments",
        {"channel": "sandbox", "method": "page", "wallet_amount": 5000},
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    async with uow:
        channel = await uow.ledger.entry_by_source(payment_source(payment["id"]))
        wallet = await uow.ledger.entry_by_source(payment_source(payment["wallet_part_id"]))
    assert channel is not None
    assert wallet is not None
    li = f"creator_pending:CNY:{referral['li']}"
    parts = [{p.account.key: p.amount for p in e.postings}.get(li, 0) for e in (wallet, channel)]
    # 5,000 of 19,900 from the balance: its portion of Li's 3,980 is 1,000 (exactly).
    assert parts == [-1000, -2980]
    got = await _held(client, referral["ada"], referral["li"], referral["wang"])
    assert got == [(13930, 0), (3980, 0), (995, 0)]
    await _books_clean(uow)
    # Refunded part by part, the balance part first: every share comes back exactly once.
    await post(client, "/v1/refunds", {"payment_id": payment["wallet_part_id"]})
    rest = await post(client, "/v1/refunds", {"order_id": made.json()["id"]})
    assert (rest["payment_id"], rest["amount"]) == (payment["id"], PRICE - 5000)
    await gateway.settle_refunds()
    await gateway.drain()
    assert (await client.get(f"/v1/orders/{made.json()['id']}")).json()["status"] == "refunded"
    got = await _held(client, referral["ada"], referral["li"], referral["wang"])
    assert got == [(0, 0), (0, 0), (0, 0)]
    await _books_clean(uow)


async def test_refunds_of_one_referred_order_settling_at_once_return_every_share_exactly(
    client: httpx.AsyncClient,
    gateway: Simulator,
    uow: UnitOfWork,
    referral: dict[str, str],
) -> None:
    order = await _paid(client, gateway, referral, "b_1")
    gateway.hold_next_refunds(3)
    made = []
    for amount in (5000, 5000, 9900):  # the whole 19,900 in three parts
        refund = await client.post("/v1/refunds", json={"order_id": order["id"], "amount": amount})
        assert refund.status_code == 201, refund.text
        made.append(refund.json()["id"])
    await gateway.drain()
    assert await gateway.settle_refunds() == 3
    await gateway.drain()  # their notifications arrive together
    for refund_id in made:
        assert (await client.get(f"/v1/refunds/{refund_id}")).json()["status"] == "succeeded"
    # Whatever order they committed in, each payee gave back exactly what it earned.
    got = await _held(client, referral["ada"], referral["li"], referral["wang"])
    assert got == [(0, 0), (0, 0), (0, 0)]
    for payee, earned in (
        (referral["ada"], 13930),
        (referral["li"], 3980),
        (referral["wang"], 995),
    ):
        [row] = (await client.get(f"/v1/payees/{payee}/earnings")).json()["data"]
        assert (row["amount"], row["clawed_back"]) == (earned, earned)
    await _books_clean(uow)


async def test_a_placed_orders_split_stays_as_fixed_when_the_products_rates_change(
    client: httpx.AsyncClient,
    gateway: Simulator,
    uow: UnitOfWork,
    referral: dict[str, str],
) -> None:
    made = await _order(client, referral, "b_1")
    assert made.status_code == 201, made.text
    changed = await client.put(
        f"/v1/products/{referral['course']}/commission",
        json={"level1": "0.1", "level2": "0", "bearer": "creator"},
    )
    assert changed.status_code == 200, changed.text
    payment = await post(
        client, f"/v1/orders/{made.json()['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    # Paid after the change, booked as placed: 20 % / 5 % borne by the platform.
    got = await _held(client, referral["ada"], referral["li"], referral["wang"])
    assert got == [(13930, 0), (3980, 0), (995, 0)]
    later = await _paid(client, gateway, referral, "b_2")  # placed after: the new rates
    assert later["referral_code"] == "LI2026"
    got = await _held(client, referral["ada"], referral["li"], referral["wang"])
    assert got == [(13930 + 11940, 0), (3980 + 1990, 0), (995, 0)]
    await _books_clean(uow)


async def test_a_coupon_entered_at_checkout_fixes_the_referred_split_on_the_new_price(
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
    referral: dict[str, str],
) -> None:
    from tuition.services.checkout import change_coupon

    await post(client, "/v1/coupons", {"code": "NINETY", "percent_off": "0.9"})
    made = await _order(client, referral, "b_1")
    assert made.status_code == 201, made.text
    order = made.json()
    # The split fixed at 199.00 would owe the payees more than the 19.90 now paid.
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
    # 70 % / 20 % / 5 % of 19.90, at the rates fixed when the order was placed.
    assert postings[f"creator_pending:CNY:{referral['ada']}"] == -1393
    assert postings[f"creator_pending:CNY:{referral['li']}"] == -398
    assert -postings[f"creator_pending:CNY:{referral['wang']}"] in (99, 100)
    assert sum(v for k, v in postings.items() if k.startswith("creator_pending:")) >= -1990
    await _books_clean(uow)
