"""Renewal and dunning on both engines: once per period, whatever runs twice or crashes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.subscription_shop import (
    events,
    get_sub,
    has_access,
    mark_paid,
    pay_through_gateway,
    renew,
    subscribe,
)
from tuition.clock import FrozenClock
from tuition.services.ledger import verify_ledger
from tuition.simulator.app import Simulator
from tuition.store.subscriptions import SubscriptionRepository
from tuition.store.tables import orders, subscription_orders
from tuition.store.uow import UnitOfWork

RENEWAL_DUE = datetime(2026, 11, 28, 9, tzinfo=UTC)  # three days before 12-01 09:00
PERIOD_END = datetime(2026, 12, 1, 9, tzinfo=UTC)


async def _paid_subscription(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> dict[str, Any]:
    await client.put(f"/v1/products/{shop['monthly']}/access_scope", json={"everything": True})
    sub = await subscribe(client, shop["monthly"])
    await mark_paid(uow, sub["latest_order"]["id"], clock)
    return sub


async def _renewals(uow: UnitOfWork, sub_id: str) -> list[Any]:
    async with uow:
        return list(
            await uow.conn.execute(
                select(subscription_orders.c.order_id, subscription_orders.c.status).where(
                    subscription_orders.c.subscription_id == sub_id,
                    subscription_orders.c.kind == "renewal",
                )
            )
        )


async def _order_statuses(uow: UnitOfWork) -> list[str]:
    async with uow:
        return sorted(r[0] for r in await uow.conn.execute(select(orders.c.status)))


async def test_the_renewal_order_comes_n_days_before_the_end_with_a_link_to_pay_by_hand(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    sub = await _paid_subscription(client, shop, uow, clock)
    clock.set(datetime(2026, 11, 28, 8, 59, tzinfo=UTC))
    assert (await renew(uow, clock)).prepared == []
    clock.set(RENEWAL_DUE)
    assert (await renew(uow, clock)).prepared == [sub["id"]]
    upcoming = [d for t, d in await events(uow) if t == "subscription.renewal_upcoming"]
    assert len(upcoming) == 1
    assert upcoming[0]["period_index"] == 2
    assert upcoming[0]["checkout_url"].endswith(upcoming[0]["order_id"])
    order = (await client.get(f"/v1/orders/{upcoming[0]['order_id']}")).json()
    assert order["total"] == 3000
    assert order["expires_at"].startswith("2026-12-08T09:00:00")  # payable through the grace

    await pay_through_gateway(client, gateway, order["id"])
    renewed = await get_sub(client, sub["id"])
    assert renewed["status"] == "active"
    assert renewed["period_index"] == 2
    # Paid three days early: the new month runs from the old end, 12-01 to 01-01.
    assert renewed["current_period_start"].startswith("2026-12-01T09:00:00")
    assert renewed["current_period_end"].startswith("2027-01-01T09:00:00")
    assert [t for t, _ in await events(uow)] == [
        "subscription.created",
        "subscription.renewal_upcoming",
        "subscription.renewed",
    ]
    report = await verify_ledger(uow)
    assert report.ok, report.problems


async def test_a_renewal_run_twice_makes_one_order(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    sub = await _paid_subscription(client, shop, uow, clock)
    clock.set(RENEWAL_DUE)
    first, second = await renew(uow, clock), await renew(uow, clock)
    assert (first.prepared, second.prepared) == ([sub["id"]], [])
    assert len(await _renewals(uow, sub["id"])) == 1
    assert await _order_statuses(uow) == ["paid", "pending_payment"]


async def test_two_workers_renewing_at_once_make_one_order_and_cancel_the_other(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    engine: AsyncEngine,
    clock: FrozenClock,
) -> None:
    sub = await _paid_subscription(client, shop, UnitOfWork(engine), clock)
    clock.set(RENEWAL_DUE)
    # Both workers read the subscription before either records its order.
    runs = await asyncio.gather(*(renew(UnitOfWork(engine), clock) for _ in range(4)))
    assert sum(len(r.prepared) for r in runs) == 1
    assert len(await _renewals(UnitOfWork(engine), sub["id"])) == 1
    statuses = await _order_statuses(UnitOfWork(engine))
    # One first order paid, one renewal payable; a loser's order, if it made one, is
    # cancelled so it can never be paid.
    assert statuses.count("pending_payment") == 1
    assert set(statuses) <= {"paid", "pending_payment", "cancelled"}
    upcoming = [t for t, _ in await events(UnitOfWork(engine)) if t.endswith("renewal_upcoming")]
    assert upcoming == ["subscription.renewal_upcoming"]


async def test_a_worker_killed_after_making_the_order_converges_to_one_renewal(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    uow: UnitOfWork,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sub = await _paid_subscription(client, shop, uow, clock)
    clock.set(RENEWAL_DUE)
    original = SubscriptionRepository.add_order

    async def killed(self: SubscriptionRepository, record: Any) -> bool:
        raise SystemExit("worker killed between the order and its link")

    monkeypatch.setattr(SubscriptionRepository, "add_order", killed)
    with pytest.raises(SystemExit):
        await renew(uow, clock)
    monkeypatch.setattr(SubscriptionRepository, "add_order", original)
    assert await _renewals(uow, sub["id"]) == []

    assert (await renew(uow, clock)).prepared == [sub["id"]]
    assert (await renew(uow, clock)).prepared == []
    links = await _renewals(uow, sub["id"])
    assert len(links) == 1
    upcoming = [d for t, d in await events(uow) if t == "subscription.renewal_upcoming"]
    assert [d["order_id"] for d in upcoming] == [links[0][0]]
    # The orphan order is never shown to the buyer; the expiry job closes it.
    async with uow:
        orphans = (
            await uow.conn.execute(
                select(func.count()).where(
                    orders.c.status == "pending_payment",
                    orders.c.id != links[0][0],
                )
            )
        ).scalar_one()
    assert orphans == 1


async def test_an_unpaid_renewal_goes_past_due_with_grace_access_retries_then_expires(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    sub = await _paid_subscription(client, shop, uow, clock)
    clock.set(RENEWAL_DUE)
    await renew(uow, clock)
    clock.set(PERIOD_END.replace(second=1))
    assert (await renew(uow, clock)).past_due == [sub["id"]]
    late = await get_sub(client, sub["id"])
    assert late["status"] == "past_due"
    renewal = next(o for o in late["orders"] if o["kind"] == "renewal")
    assert (renewal["status"], renewal["attempts"]) == ("failed", 1)
    assert renewal["next_attempt_at"].startswith("2026-12-02T09:00:01")
    grace = await has_access(client, shop["c1"])
    assert (grace["has_access"], grace["via_subscription"]) == (True, sub["id"])
    assert grace["expires_at"].startswith("2026-12-08T09:00:00")

    attempts = []
    for day in (2, 4, 8):  # +1, +3, +7 days after the first failure
        clock.set(datetime(2026, 12, day, 9, 0, 2, tzinfo=UTC))
        run = await renew(uow, clock)
        attempts.append(run.reminded)
    assert attempts == [[sub["id"]]] * 3
    assert (await get_sub(client, sub["id"]))["status"] == "expired"
    assert (await has_access(client, shop["c1"]))["has_access"] is False

    kinds = [t for t, _ in await events(uow)]
    assert kinds == [
        "subscription.created",
        "subscription.renewal_upcoming",
        "subscription.payment_failed",
        "subscription.past_due",
        "subscription.payment_failed",
        "subscription.payment_failed",
        "subscription.payment_failed",
        "subscription.expired",
    ]
    failed = [d["attempt"] for t, d in await events(uow) if t == "subscription.payment_failed"]
    assert failed == [1, 2, 3, 4]
    order = (await client.get(f"/v1/orders/{renewal['order_id']}")).json()
    assert order["status"] == "cancelled"


async def test_paying_a_past_due_renewal_restores_the_subscription(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    sub = await _paid_subscription(client, shop, uow, clock)
    clock.set(RENEWAL_DUE)
    await renew(uow, clock)
    clock.set(datetime(2026, 12, 1, 10, tzinfo=UTC))
    await renew(uow, clock)
    renewal = next(
        o for o in (await get_sub(client, sub["id"]))["orders"] if o["kind"] == "renewal"
    )
    clock.set(datetime(2026, 12, 3, 12, tzinfo=UTC))
    await mark_paid(uow, renewal["order_id"], clock)
    restored = await get_sub(client, sub["id"])
    assert restored["status"] == "active"
    # The membership had lapsed: the paid month runs from the payment.
    assert restored["current_period_end"].startswith("2027-01-03T12:00:00")
    clock.set(datetime(2026, 12, 9, tzinfo=UTC))  # after the grace: nothing expires
    assert (await renew(uow, clock)).expired == []
    assert (await has_access(client, shop["c1"]))["has_access"] is True


async def test_the_worker_sweep_runs_the_subscription_pass_with_the_settings(
    app: Any, client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    from datetime import timedelta

    from tuition.worker.runner import Worker, WorkerConfig

    sub = await _paid_subscription(client, shop, uow, clock)
    worker = Worker(app.state.modes.live, WorkerConfig(sweep_interval=timedelta(seconds=0)))
    try:
        clock.set(RENEWAL_DUE - timedelta(minutes=1))
        await worker.sweep()
        assert await _renewals(uow, sub["id"]) == []
        clock.set(RENEWAL_DUE)  # TUITION_SUBSCRIPTION_RENEWAL_LEAD_DAYS defaults to 3
        await worker.sweep()
        await worker.sweep()
    finally:
        await worker.close()
    links = await _renewals(uow, sub["id"])
    assert len(links) == 1
    upcoming = [d for t, d in await events(uow) if t == "subscription.renewal_upcoming"]
    assert "/pay/" in upcoming[0]["checkout_url"]
    assert "sig=" in upcoming[0]["checkout_url"]


async def test_a_subscription_whose_first_order_expired_unpaid_expires_and_frees_the_slot(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    from datetime import timedelta

    from tuition.services.orders import expire_order

    sub = await subscribe(client, shop["monthly"])
    assert (await renew(uow, clock)).expired == []  # still payable
    clock.advance(timedelta(minutes=16))
    await expire_order(uow, sub["latest_order"]["id"], clock=clock)
    assert (await renew(uow, clock)).expired == [sub["id"]]
    assert (await renew(uow, clock)).expired == []
    ended = await get_sub(client, sub["id"])
    assert ended["status"] == "expired"
    assert [o["status"] for o in ended["orders"]] == ["void"]
    again = await subscribe(client, shop["monthly"])
    assert again["status"] == "active"


async def test_a_webhook_endpoint_can_subscribe_to_the_subscription_events(
    client: httpx.AsyncClient,
) -> None:
    events_ = ["subscription.renewal_upcoming", "subscription.payment_failed"]
    made = await client.post(
        "/v1/webhook_endpoints", json={"url": "https://platform.example/hooks", "events": events_}
    )
    assert made.status_code == 201, made.text
    assert sorted(made.json()["events"]) == sorted(events_)


async def test_a_renewal_paid_while_the_pass_runs_is_never_marked_past_due_or_expired(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    from tests.integration.subscription_shop import renewal_deps
    from tuition.services import renewals
    from tuition.services.subscriptions import get_subscription

    sub = await _paid_subscription(client, shop, uow, clock)
    clock.set(RENEWAL_DUE)
    await renew(uow, clock)
    clock.set(PERIOD_END.replace(minute=5))
    stale = await get_subscription(uow, sub["id"])  # what a pass read a moment ago
    renewal = (await _renewals(uow, sub["id"]))[0]
    await mark_paid(uow, renewal[0], clock)  # the buyer pays just then

    deps = renewal_deps(clock)
    assert await renewals._lapse(uow, stale, deps=deps) is None
    assert (await get_sub(client, sub["id"]))["status"] == "active"
    past_due = await get_subscription(uow, sub["id"])
    # Even a pass that saw it past due (a stale read) cannot expire a paid subscription.
    from dataclasses import replace

    from tuition.domain.subscriptions import SubscriptionStatus

    assert not await renewals._expire(
        uow, replace(past_due, status=SubscriptionStatus.PAST_DUE, period_index=1), deps=deps
    )
    assert (await get_sub(client, sub["id"]))["status"] == "active"
