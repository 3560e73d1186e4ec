"""The console in the platform's time zone: times shown with their zone and the
dashboard's days cut at local midnight, on both engines."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.shop import order_body, post
from tests.integration.test_admin_console import PASSWORD, _login, _paid_order
from tuition import web
from tuition.clock import FrozenClock
from tuition.services import admin as admin_service
from tuition.services.dashboard import dashboard
from tuition.simulator.app import Simulator
from tuition.store.uow import UnitOfWork

# 17:30 UTC on 1 November is 01:30 on 2 November in Beijing.
LATE = datetime(2026, 11, 1, 17, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


async def test_the_dashboard_cuts_days_at_midnight_in_the_platforms_zone(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    clock.set(LATE)
    await _paid_order(client, shop, gateway)
    local = await dashboard(uow, clock=clock, zone=ZoneInfo("Asia/Shanghai"), days=2)
    assert local.days == [date(2026, 11, 1), date(2026, 11, 2)]
    (cny,) = local.currencies
    assert [p.value for p in cny.gmv] == [0, 39900]
    assert cny.net_revenue[-1].value == cny.net_total != 0
    utc = await dashboard(uow, clock=clock, zone=UTC, days=2)
    assert utc.days == [date(2026, 10, 31), date(2026, 11, 1)]
    assert [p.value for p in utc.currencies[0].gmv] == [0, 39900]
    # A day later in Beijing the sale is yesterday's, not today's.
    clock.set(datetime(2026, 11, 2, 16, 0, tzinfo=UTC))  # 00:00 on 3 November in Beijing
    later = await dashboard(uow, clock=clock, zone=ZoneInfo("Asia/Shanghai"), days=2)
    assert [p.value for p in later.currencies[0].gmv] == [39900, 0]


async def test_console_times_are_in_asia_shanghai_with_the_zone_named(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    clock.set(LATE)
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    await admin_service.create_admin_user(uow, "ops@example.com", PASSWORD, clock)
    await _login(anon_client)
    for lang, named in (
        ("en", "Times in Asia/Shanghai (UTC+8)"),
        ("zh-CN", "时间均为 Asia/Shanghai"),
    ):
        page = await anon_client.get(f"/admin/orders/{order['id']}", params={"lang": lang})
        assert page.status_code == 200
        assert "2026-11-02 01:30:00 UTC+8" in page.text
        assert "17:30:00" not in page.text
        assert named in page.text
    listed = await anon_client.get(
        "/admin/orders", params={"from": "2026-11-02", "to": "2026-11-02"}
    )
    assert order["id"] in listed.text  # 2 November in Beijing, though 1 November in UTC
    before = await anon_client.get("/admin/orders", params={"to": "2026-11-01"})
    assert order["id"] not in before.text
    board = await anon_client.get("/admin", params={"lang": "en"})
    assert "Days are days of Asia/Shanghai (UTC+8), from 2026-10-20." in board.text
