"""Monthly statements on both engines: opening + earnings + clawbacks + tax + payouts =
closing, each line traced to its order or payout; the CSV and printable forms; the
month's withholding report."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
from fastapi import FastAPI

from tests.integration.shop import post
from tests.integration.test_payouts import _balance, _bank, _books_clean, _sell, seller  # noqa: F401
from tuition.clock import FrozenClock
from tuition.services.payouts import TAX_ZONE
from tuition.simulator.app import Simulator
from tuition.store.uow import UnitOfWork


async def test_a_months_statement_reconciles_and_traces_each_line(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    clock.set(datetime(2026, 11, 2, 10, tzinfo=TAX_ZONE))
    payee = seller["creator"]
    order = await _sell(app, client, gateway, clock, seller, "u_1")  # 5,000 earned, released
    made = await client.post(
        "/v1/refunds",
        json={"order_id": order["id"], "amount": 100000, "override": True, "reason": "other"},
    )
    assert made.status_code == 201, made.text
    await gateway.drain()  # 500 of the share taken back from available
    await _bank(client, payee)
    payout = await post(
        client, "/v1/payouts", {"payee_id": payee, "currency": "CNY", "amount": 300000}
    )
    assert payout["tax_withheld"] == 44000  # 3,000: (3,000 - 800) x 20 %
    await client.post("/v1/payouts/bank_batch")
    await post(client, f"/v1/payouts/{payout['id']}/mark_paid", {"reference": "BK-9"})

    got = await client.get(f"/v1/payees/{payee}/statements/2026-11")
    assert got.status_code == 200, got.text
    november = got.json()
    assert november["opening_balance"] == 0
    assert november["earnings"] == 500000
    assert november["clawbacks"] == -50000
    assert november["tax"] == -44000
    assert november["payouts"] == -256000
    assert (
        november["closing_balance"]
        == 150000
        == (
            november["opening_balance"]
            + november["earnings"]
            + november["clawbacks"]
            + november["tax"]
            + november["payouts"]
        )
    )
    kinds = [
        (line["kind"], line["amount"], line["order_id"], line["payout_id"])
        for line in november["lines"]
    ]
    assert kinds == [
        ("earning", 500000, order["id"], None),
        ("clawback", -50000, order["id"], None),
        ("tax", -44000, None, payout["id"]),
        ("payout", -256000, None, payout["id"]),
    ]
    balance = await _balance(client, payee)
    assert balance["pending"] + balance["available"] + balance["in_payout"] == 150000

    clock.set(datetime(2026, 12, 3, tzinfo=TAX_ZONE))
    await _sell(app, client, gateway, clock, seller, "u_2")
    december = (await client.get(f"/v1/payees/{payee}/statements/2026-12")).json()
    assert (december["opening_balance"], december["earnings"], december["closing_balance"]) == (
        150000,
        500000,
        650000,
    )

    csv = await client.get(f"/v1/payees/{payee}/statements/2026-11", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    rows = csv.text.splitlines()
    assert rows[0] == "date,kind,order_id,payout_id,source,amount"
    assert rows[1] == ",opening,,,,0.00"
    assert rows[-1] == ",closing,,,,1500.00"
    assert any(r.endswith(",-2560.00") and payout["id"] in r for r in rows)
    page = await client.get(f"/v1/payees/{payee}/statements/2026-11", params={"format": "html"})
    assert page.headers["content-type"].startswith("text/html")
    for expected in ("Statement 2026-11", "Closing balance", "1500.00 CNY", order["id"], "Bo"):
        assert expected in page.text

    report = await client.get("/v1/withholding_reports/2026-11")
    assert report.status_code == 200
    assert report.text.splitlines() == [
        "period,payee_id,name,tax_profile,currency,income,taxable,withheld",
        f"2026-11,{payee},Bo,individual,CNY,3000.00,2200.00,440.00",
    ]
    await _books_clean(uow)


async def test_a_statement_for_a_malformed_month_is_422_naming_the_period(
    client: httpx.AsyncClient,
    seller: dict[str, str],  # noqa: F811
) -> None:
    for bad in ("2026-13", "26-11-1"):
        got = await client.get(f"/v1/payees/{seller['creator']}/statements/{bad}")
        assert got.status_code == 422, got.text
        assert got.json()["error"]["param"] == "period"
    unknown = await client.get("/v1/payees/cre_01J9Z3K4QW8YV6T2N5B7C0D1EF/statements/2026-11")
    assert unknown.status_code == 404
    fmt = await client.get(
        f"/v1/payees/{seller['creator']}/statements/2026-11", params={"format": "pdf"}
    )
    assert fmt.status_code == 422


def test_statement_months_start_and_end_in_chinas_time() -> None:
    from tuition.services.statements import period_bounds

    start, end = period_bounds("2026-12")
    assert start == datetime(2026, 12, 1, tzinfo=TAX_ZONE)
    assert end == datetime(2027, 1, 1, tzinfo=TAX_ZONE)
    assert end - start == timedelta(days=31)
