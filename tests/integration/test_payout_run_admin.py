"""The console's payout runs on both engines: propose the period's run, review what
each payee would get (by name), approve it as the signed-in operator (money moves only
then, once), retry a failed payout, and refuse a forged form."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI

from tests.integration.shop import post
from tests.integration.test_admin_wallet import EMAIL, PASSWORD, _token
from tests.integration.test_payouts import _balance, _bank, _books_clean, _sell, seller  # noqa: F401
from tuition.clock import FrozenClock
from tuition.services import admin as admin_service
from tuition.simulator.app import Simulator
from tuition.store.uow import UnitOfWork


async def _console(anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock) -> None:
    await admin_service.create_admin_user(uow, EMAIL, PASSWORD, clock)
    anon_client.headers["Accept-Language"] = "en"
    form = await anon_client.get("/admin/login")
    signed_in = await anon_client.post(
        "/admin/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": _token(form.text)}
    )
    assert signed_in.status_code == 303


async def test_a_run_is_proposed_reviewed_and_approved_in_the_console(
    app: FastAPI,
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    await _sell(app, client, gateway, clock, seller, "u_1")
    payee = seller["creator"]
    await _bank(client, payee)
    await _console(anon_client, uow, clock)
    console = anon_client
    listing = await console.get("/admin/payout_runs")
    assert listing.status_code == 200
    assert "No payout run yet." in listing.text

    proposed = await console.post(
        "/admin/payout_runs/propose", data={"csrf_token": _token(listing.text)}
    )
    assert proposed.status_code == 303
    url = proposed.headers["location"]
    assert re.fullmatch(r"/admin/payout_runs/prun_[0-9A-Z]{26}", url)
    page = await console.get(url)
    assert page.status_code == 200
    assert f'<a href="/admin/payees/{payee}">Bo</a>' in page.text
    for expected in ("5,000.00", "800.00", "4,200.00", "proposed", "Approve and pay"):
        assert expected in page.text, expected
    assert (await client.get("/v1/payouts")).json()["data"] == []  # nothing moved yet

    forged = await console.post(f"{url}/approve", data={})
    assert forged.status_code in (400, 403)
    assert (await client.get("/v1/payouts")).json()["data"] == []

    approved = await console.post(f"{url}/approve", data={"csrf_token": _token(page.text)})
    assert approved.status_code == 303
    page = await console.get(url)
    assert f"Approved by admin:{EMAIL}" in page.text
    [payout] = (await client.get("/v1/payouts")).json()["data"]
    assert payout["id"] in page.text
    again = await console.post(f"{url}/approve", data={"csrf_token": _token(page.text)})
    assert "problem=payout_run_approved" in again.headers["location"]
    assert len((await client.get("/v1/payouts")).json()["data"]) == 1

    await post(
        client,
        f"/v1/payouts/{payout['id']}/mark_failed",
        {"code": "account_closed", "message": "the account was closed"},
    )
    page = await console.get(url)
    assert "account_closed" in page.text
    retried = await console.post(f"{url}/retry", data={"csrf_token": _token(page.text)})
    assert retried.status_code == 303
    assert "problem" not in retried.headers["location"]
    statuses = sorted(p["status"] for p in (await client.get("/v1/payouts")).json()["data"])
    assert statuses == ["failed", "pending"]
    assert (await _balance(client, payee))["in_payout"] == 420000
    runs = await console.get("/admin/payout_runs")
    assert f"admin:{EMAIL}" in runs.text
    await _books_clean(uow)


async def test_only_finance_and_owners_approve_a_run_and_the_trail_names_them(
    app: FastAPI,
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    await _sell(app, client, gateway, clock, seller, "u_1")
    await _bank(client, seller["creator"])
    await _console(anon_client, uow, clock)  # an owner
    listing = await anon_client.get("/admin/payout_runs")
    proposed = await anon_client.post(
        "/admin/payout_runs/propose", data={"csrf_token": _token(listing.text)}
    )
    url = proposed.headers["location"]

    await admin_service.create_admin_user(uow, "help@example.com", PASSWORD, clock, role="support")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tuition.test"
    ) as support:
        form = await support.get("/admin/login")
        await support.post(
            "/admin/login",
            data={
                "email": "help@example.com",
                "password": PASSWORD,
                "csrf_token": _token(form.text),
            },
        )
        page = await support.get(url)
        assert page.status_code == 200  # support reads the run ...
        assert "Approve and pay" not in page.text
        refused = await support.post(f"{url}/approve", data={"csrf_token": _token(page.text)})
        assert refused.status_code == 403  # ... and the server refuses its approval
    assert (await client.get("/v1/payouts")).json()["data"] == []

    page = await anon_client.get(url)
    approved = await anon_client.post(f"{url}/approve", data={"csrf_token": _token(page.text)})
    assert approved.status_code == 303
    assert len((await client.get("/v1/payouts")).json()["data"]) == 1
    async with uow:
        rows = await uow.conn.exec_driver_sql(
            "SELECT action, subject FROM audit_events WHERE action LIKE 'payout_run.%'"
        )
        trail = [tuple(r) for r in rows]
    assert trail == [("payout_run.approve", url.rsplit("/", 1)[1])]
