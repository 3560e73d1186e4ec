"""The console's payees on both engines: names and balances, a payee's earnings and
payouts, and paying a failed payout again."""

from __future__ import annotations

import csv
import io

import httpx
from fastapi import FastAPI

from tests.integration.shop import post
from tests.integration.test_admin_wallet import EMAIL, PASSWORD, _pages, _token  # noqa: F401
from tests.integration.test_payouts import _balance, _bank, _books_clean, _sell, seller  # noqa: F401
from tuition.clock import FrozenClock
from tuition.services import admin as admin_service
from tuition.simulator.app import Simulator
from tuition.store.uow import UnitOfWork


async def test_the_console_lists_payees_by_name_and_pays_a_failed_payout_again(
    app: FastAPI,
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    order = await _sell(app, client, gateway, clock, seller, "u_1")
    payee = seller["creator"]
    await _bank(client, payee)
    payout = await post(client, "/v1/payouts", {"payee_id": payee, "currency": "CNY"})
    await post(
        client,
        f"/v1/payouts/{payout['id']}/mark_failed",
        {"code": "account_closed", "message": "the account was closed"},
    )
    # Signed in now: the hold above moved the clock past any session made before it.
    await admin_service.create_admin_user(uow, EMAIL, PASSWORD, clock)
    console = anon_client
    console.headers["Accept-Language"] = "en"
    form = await console.get("/admin/login")
    signed_in = await console.post(
        "/admin/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": _token(form.text)}
    )
    assert signed_in.status_code == 303
    listing = await console.get("/admin/payees")
    assert listing.status_code == 200
    assert f'<a href="/admin/payees/{payee}">Bo</a>' in listing.text  # a name, not an id
    assert "5,000.00" in listing.text or "5000.00" in listing.text
    exported = await console.get("/admin/payees.csv", params={"q": "Bo"})
    assert exported.status_code == 200
    table = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    rows = [dict(zip(table[0], row, strict=True)) for row in table[1:]]
    mine = [r for r in rows if r["payee"] == payee]
    assert [(r["name"], r["currency"]) for r in mine] == [("Bo", "CNY")]
    assert "5000.00" in (mine[0]["pending"], mine[0]["available"])  # major units
    assert "6222020000001234" not in exported.text  # the account masked here too

    page = await console.get(f"/admin/payees/{payee}")
    assert page.status_code == 200
    for expected in (order["id"], payout["id"], "account_closed", "************1234"):
        assert expected in page.text, expected
    assert "6222020000001234" not in page.text  # masked everywhere

    retried = await console.post(
        f"/admin/payees/{payee}/payouts/{payout['id']}/retry",
        data={"csrf_token": _token(page.text)},
    )
    assert retried.status_code == 303
    balance = await _balance(client, payee)
    assert (balance["available"], balance["in_payout"], balance["tax_withheld"]) == (
        0,
        420000,
        80000,
    )
    again = await console.post(
        f"/admin/payees/{payee}/payouts/{payout['id']}/retry",
        data={"csrf_token": _token(page.text)},
    )
    assert again.status_code == 303
    assert "problem=" in again.headers["location"]  # nothing left to pay again
    forged = await console.post(f"/admin/payees/{payee}/payouts/{payout['id']}/retry", data={})
    assert forged.status_code in (400, 403)
    await _books_clean(uow)
