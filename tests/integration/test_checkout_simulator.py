"""Demo wiring (``TUITION_SIMULATOR=true``): the simulator mounted at ``/simulator`` of the
app. The buyer's Pay and Decline buttons must post back under that mount."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.shop import order_body, post
from tuition import web
from tuition.app import create_app
from tuition.clock import FrozenClock
from tuition.config import load_settings
from tuition.services.api_keys import create_key
from tuition.store.uow import UnitOfWork


@pytest.fixture
async def client(  # overrides the shared one: this app hosts its own simulator
    db_url: str, engine: AsyncEngine, clock: FrozenClock, tmp_path: Path
) -> httpx.AsyncClient:
    settings = load_settings(
        database_url=db_url,
        simulator=True,
        public_url="http://tuition.test",
        simulator_key_file=str(tmp_path / "sim.pem"),
    )
    app = create_app(settings, engine=engine, test_engine=engine, clock=clock, run_worker=False)
    web.mount(app)
    key = await create_key(UnitOfWork(engine), name="t", mode="test", clock=clock)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://tuition.test",
        headers={"Authorization": f"Bearer {key.secret}"},
    )


async def test_the_mounted_simulators_pay_button_posts_under_the_mount(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    path, _, query = httpx.URL(order["checkout_url"]).raw_path.decode().partition("?")
    started = await client.post(
        f"{path}/attempts", data={"sig": query.removeprefix("sig="), "option": "sandbox:page"}
    )
    pay_page = httpx.URL(started.headers["location"])
    assert pay_page.path.startswith("/simulator/pay/")
    html = (await client.get(pay_page.path)).text
    action = re.search(r'<form method="post" action="([^"]+)"', html)
    assert action is not None
    target = pay_page.join(action.group(1))
    paid = await client.post(target.path)
    # Paid, the gateway sends the buyer back to the checkout page (the attempt's return).
    assert paid.status_code == 303, (target, paid.status_code)
    assert paid.headers["location"] == order["checkout_url"]
