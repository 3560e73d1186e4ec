"""The default earnings hold follows the platform's refund window
(TUITION_REFUND_POLICY), and TUITION_PAYOUT_HOLD_DAYS overrides every order's hold; on
both engines with the clock injected."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.test_earnings import _balance, _books_clean, _paid, _worker
from tuition.clock import FrozenClock
from tuition.config import ConfigError, Settings, load_settings
from tuition.domain.earnings import HoldRule
from tuition.domain.errors import ValidationFailed
from tuition.simulator.app import Simulator
from tuition.store.uow import UnitOfWork

SHARE = 6930  # 70 % of the 99.00 course "c1", which has no refund window of its own


@pytest.fixture
def settings(db_url: str, request: pytest.FixtureRequest) -> Settings:
    overrides: dict[str, Any] = getattr(request, "param", {})
    return load_settings(database_url=db_url, **overrides)


async def _held_for(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    shop: dict[str, str],
    clock: FrozenClock,
    days: int,
) -> None:
    paid_at = clock.now()
    await _paid(client, gateway, shop, "c1")
    creator = shop["creator"]
    [earning] = (await client.get(f"/v1/payees/{creator}/earnings")).json()["data"]
    assert earning["release_at"].startswith((paid_at + timedelta(days=days)).date().isoformat())
    clock.advance(timedelta(days=days) - timedelta(seconds=1))
    await _worker(app).run_once()
    assert await _balance(client, creator) == {"pending": SHARE, "available": 0}
    clock.advance(timedelta(seconds=1))
    await _worker(app).run_once()
    assert await _balance(client, creator) == {"pending": 0, "available": SHARE}


@pytest.mark.parametrize("settings", [{"refund_policy": {"window_days": 14}}], indirect=True)
async def test_the_default_hold_is_the_platforms_refund_window(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    await _held_for(app, client, gateway, shop, clock, 14)
    await _books_clean(uow)


@pytest.mark.parametrize(
    "settings", [{"refund_policy": {"window_days": 14}, "payout_hold_days": 3}], indirect=True
)
async def test_the_payout_hold_setting_overrides_the_refund_window(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    await _held_for(app, client, gateway, shop, clock, 3)
    await _books_clean(uow)


def test_a_policy_without_a_window_holds_the_usual_seven_days_and_bad_days_are_refused() -> None:
    assert HoldRule.of(None, None) == HoldRule(7, None)
    assert HoldRule.of(30, 0) == HoldRule(30, 0)
    with pytest.raises(ValidationFailed, match=r"0\.\.3650"):
        HoldRule(7, -1)
    with pytest.raises(ConfigError, match="TUITION_PAYOUT_HOLD_DAYS"):
        load_settings(payout_hold_days=-1)
