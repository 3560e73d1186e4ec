"""``make demo``'s seed on both engines: a shop, an operator and a ready order; twice."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tuition import web
from tuition.clock import FrozenClock
from tuition.services import admin as admin_service
from tuition.services.demo import seed_demo
from tuition.store.tables import creators, partners, products, promoters
from tuition.store.uow import UnitOfWork


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


async def _count(uow: UnitOfWork, table: Any) -> int:
    async with uow:
        return int((await uow.conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_the_demo_seeds_a_shop_an_operator_and_an_order_ready_to_pay(
    engine: AsyncEngine,
    settings: Any,
    clock: FrozenClock,
    uow: UnitOfWork,
    anon_client: httpx.AsyncClient,
) -> None:
    first = await seed_demo(lambda: UnitOfWork(engine), settings, clock)
    assert set(first.products) == {
        "python",
        "writing",
        "design",
        "compound",
        "bundle",
        "membership",
        "topup",
        "coin_pack",  # 100 + 20 bonus coins, ¥10 on the web, ¥12 on iOS
        "question",  # sold for 50 coins
    }
    url = urlsplit(first.checkout_url)
    page = await anon_client.get(f"{url.path}?{url.query}", headers={"accept-language": "zh-CN"})
    assert page.status_code == 200
    assert "Python 数据分析实战" in page.text
    assert "¥298.00" in page.text
    opened = await admin_service.login(
        uow, first.admin_email, first.admin_password, clock=clock, ttl=admin_service.LOCK_FOR
    )
    assert opened.user.email == "admin@example.com"

    second = await seed_demo(lambda: UnitOfWork(engine), settings, clock)
    assert second.products == first.products
    assert second.order_id != first.order_id
    assert (await _count(uow, creators), await _count(uow, products)) == (2, 9)
    # Two promoters, made once; both demo orders referred by 张伟 (WANGFANG above).
    assert await _count(uow, promoters) == 2
    # A partner platform settled in USD, made once.
    assert await _count(uow, partners) == 1
    async with uow:
        for info in (first, second):
            order = await uow.orders.get(info.order_id)
            assert order is not None
            assert order.referral_code == "ZHANGWEI"
            split = await uow.commissions.of_order(info.order_id)
            # The Python course (line 0): 19,900 x [0.7, 0.2, 0.05, 0.05]; writing pays none.
            assert [(i, c.level1_amount, c.level2_amount) for i, c in split.items()] == [
                (0, 3980, 995)
            ]
    with pytest.raises(admin_service.LoginRefused):
        await admin_service.login(
            uow, first.admin_email, first.admin_password, clock=clock, ttl=admin_service.LOCK_FOR
        )
    await admin_service.login(
        uow, second.admin_email, second.admin_password, clock=clock, ttl=admin_service.LOCK_FOR
    )


async def test_the_demos_free100_coupon_makes_its_order_complete_with_one_button(
    engine: AsyncEngine, settings: Any, clock: FrozenClock, anon_client: httpx.AsyncClient
) -> None:
    info = await seed_demo(lambda: UnitOfWork(engine), settings, clock)
    assert "FREE100" in info.coupons
    url = urlsplit(info.checkout_url)
    sig = url.query.removeprefix("sig=")
    applied = await anon_client.post(f"{url.path}/coupon", data={"sig": sig, "code": "FREE100"})
    assert applied.headers["location"].endswith("notice=coupon_applied")
    done = await anon_client.post(f"{url.path}/complete", data={"sig": sig})
    assert "error" not in done.headers["location"]
    page = await anon_client.get(f"{url.path}?{url.query}", headers={"accept-language": "en"})
    assert "Payment received" in page.text
    assert "Nothing was charged." in page.text
