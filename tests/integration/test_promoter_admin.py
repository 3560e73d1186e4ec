"""The console's promoter pages on both engines: the promoters list (names, referral
codes, recruiters, balances), a promoter's page (commissions per order, earnings,
payouts), linked from the payees pages, in English and Chinese."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.integration.test_admin_wallet import EMAIL, PASSWORD, _token
from tests.integration.test_promoters import _paid, referral  # noqa: F401
from tuition.clock import FrozenClock
from tuition.services import admin as admin_service
from tuition.simulator.app import Simulator
from tuition.store.uow import UnitOfWork


async def _signed_in(console: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock) -> None:
    await admin_service.create_admin_user(uow, EMAIL, PASSWORD, clock)
    console.headers["Accept-Language"] = "en"
    form = await console.get("/admin/login")
    signed_in = await console.post(
        "/admin/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": _token(form.text)}
    )
    assert signed_in.status_code == 303


async def test_promoters_are_listed_with_codes_recruiters_and_balances_and_have_a_page(
    app: FastAPI,
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
    referral: dict[str, str],  # noqa: F811
) -> None:
    li, wang = referral["li"], referral["wang"]
    first = await _paid(client, gateway, referral, "b_1")
    await _paid(client, gateway, referral, "b_2")
    console = anon_client
    await _signed_in(console, uow, clock)

    payees = await console.get("/admin/payees")
    assert 'href="/admin/promoters"' in payees.text
    listing = await console.get("/admin/promoters")
    assert listing.status_code == 200, listing.text
    text = listing.text
    assert f'<a href="/admin/promoters/{li}">Li</a>' in text  # names, not ids
    assert "LI2026" in text
    assert "WANG" in text
    assert f'<a href="/admin/promoters/{wang}">Wang</a>' in text  # Li's recruiter
    assert "79.60" in text  # Li's pending: 2 x 39.80
    assert "19.90" in text  # Wang's: 2 x 9.95

    page = await console.get(f"/admin/promoters/{li}")
    assert page.status_code == 200, page.text
    assert first["id"] in page.text  # commissions per order, traced to the order
    assert "Level 1" in page.text
    assert "39.80" in page.text
    assert 'data-testid="recruiter"' in page.text
    assert f'href="/admin/payees/{li}"' in page.text
    upper = await console.get(f"/admin/promoters/{wang}")
    assert "Level 2" in upper.text
    assert "9.95" in upper.text
    assert 'data-testid="recruits"' in upper.text
    payee = await console.get(f"/admin/payees/{li}")
    assert f'href="/admin/promoters/{li}"' in payee.text

    chinese = await console.get("/admin/promoters", params={"lang": "zh-CN"})
    assert "推广员" in chinese.text
    assert "推广码" in chinese.text
    detail = await console.get(f"/admin/promoters/{li}", params={"lang": "zh-CN"})
    assert "各订单佣金" in detail.text
    assert "一级" in detail.text
    missing = await console.get("/admin/promoters/pye_01M8SA1WD0GBMFMGW3HRYCSVWY")
    assert missing.status_code == 404
