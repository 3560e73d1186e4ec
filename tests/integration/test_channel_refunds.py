"""Refunds on request through each channel, with the simulator playing the gateways.

No database: the channels are built as ``make demo`` builds them (``build_registry`` in
simulator mode) and talk to the simulator in-process; the simulator's notifications are
caught by a mock transport and handed to the channel's ``verify_notification``, as the
notify route would. What is proven here is the channel side of a refund: the wire
requests (one ``out_request_no`` / ``out_refund_no`` per refund), the status mapping,
the settle-later paths (processing, lost answer) and the fee the gateway reports.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tuition.channels.base import (
    Channel,
    ChannelTimeout,
    NotificationKind,
    PaymentRequest,
    RefundFeePolicy,
    RefundNotFound,
    RefundRequest,
    RefundState,
    VerifiedNotification,
)
from tuition.channels.sandbox.client import SandboxChannel, SandboxConfig
from tuition.channels.setup import build_registry
from tuition.clock import FrozenClock
from tuition.config import load_settings
from tuition.domain.errors import ChannelError
from tuition.domain.payments import RefundStatus
from tuition.simulator.app import Simulator, create_simulator
from tuition.simulator.config import SimulatorConfig
from tuition.simulator.keyfiles import kept_rsa_key

CHANNELS = ("alipay", "wechatpay", "sandbox")
METHODS = {"alipay": "qr", "wechatpay": "native", "sandbox": "qr"}
TOTAL = 8880
NOTIFY_BASE = "http://tuition.test/v1/notify"
# What each simulated gateway answers to a refund above what is left.
OVER_REFUND_CODES = {
    "alipay": "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
    "wechatpay": "INVALID_REQUEST",
    "sandbox": "REFUND_AMOUNT_EXCEEDED",
}


@dataclass
class World:
    sim: Simulator
    clock: FrozenClock
    channels: dict[str, Channel]
    inbox: list[httpx.Request] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    _serial: int = 0

    def next_id(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}_01JREFUNDTEST{self._serial:013d}"

    async def paid(self, slug: str, amount: int = TOTAL) -> str:
        """A payment made through ``slug`` and paid by the buyer; returns its id."""
        payment_id = self.next_id("pay")
        await self.channels[slug].create_payment(
            PaymentRequest(
                payment_id=payment_id,
                order_id=self.next_id("ord"),
                amount=amount,
                currency="CNY",
                subject="Python 进阶课",
                method=METHODS[slug],
                notify_url=f"{NOTIFY_BASE}/{slug}",
                return_url=None,
                expires_at=self.clock.now() + timedelta(hours=2),
            )
        )
        await self.sim.pay(payment_id)
        await self.sim.drain()
        self.inbox.clear()  # the payment notification is not what these tests are about
        return payment_id

    def request(
        self, slug: str, payment_id: str, amount: int, refund_id: str | None = None
    ) -> RefundRequest:
        return RefundRequest(
            refund_id=refund_id or self.next_id("re"),
            payment_id=payment_id,
            channel_trade_no=self.sim.payment(payment_id).trade_no,
            amount=amount,
            payment_amount=TOTAL,
            currency="CNY",
            reason="课程未开课",
            notify_url=f"{NOTIFY_BASE}/{slug}",
        )

    def refund_notifications(self, slug: str) -> list[VerifiedNotification]:
        """Every notification caught so far, verified by the channel; refunds only."""
        verified = [
            self.channels[slug].verify_notification(dict(r.headers), r.content) for r in self.inbox
        ]
        return [n for n in verified if n.kind is NotificationKind.REFUND]


def _ack(request: httpx.Request) -> httpx.Response:
    # Each gateway's success ACK, so the simulator delivers each notification once.
    if "wechatpay-signature" in request.headers:
        return httpx.Response(204)
    if "sandbox-signature" in request.headers:
        return httpx.Response(200, json={"code": "SUCCESS"})
    return httpx.Response(200, text="success")


@pytest.fixture(scope="session")
def refund_key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("refund-channel-keys")  # RSA keys are slow: once


WorldFactory = Callable[..., Awaitable[World]]


@pytest.fixture
async def make_world(clock: FrozenClock, refund_key_dir: Path) -> AsyncIterator[WorldFactory]:
    made: list[World] = []

    async def make(**config: object) -> World:
        inbox: list[httpx.Request] = []
        sleeps: list[float] = []

        def catch(request: httpx.Request) -> httpx.Response:
            inbox.append(request)
            return _ack(request)

        async def record_sleep(seconds: float) -> None:
            sleeps.append(seconds)
            await asyncio.sleep(0)

        key_file = refund_key_dir / "simulator.pem"
        sim = create_simulator(
            SimulatorConfig(
                clock=clock,
                sleep=record_sleep,
                notify_transport=httpx.MockTransport(catch),
                private_key_pem=kept_rsa_key(key_file),
                **config,  # type: ignore[arg-type]
            )
        )
        settings = load_settings(
            simulator=True, channels=list(CHANNELS), simulator_key_file=str(key_file)
        )
        registry = build_registry(settings, clock=clock, simulator=sim, mode="test")
        world = World(sim, clock, {c.slug: c for c in registry}, inbox, sleeps)
        made.append(world)
        return world

    yield make
    for world in made:
        await world.sim.aclose()
        for channel in world.channels.values():
            await channel.aclose()  # type: ignore[attr-defined]


@pytest.fixture
async def world(make_world: WorldFactory) -> World:
    return await make_world()


async def _settled(world: World, slug: str, request: RefundRequest) -> RefundState:
    """Refund, let the gateway finish, and ask it how the refund ended."""
    await world.channels[slug].refund(request)
    await world.sim.drain()
    return await world.channels[slug].query_refund(request.refund_id, request.payment_id)


# -- the happy paths ---------------------------------------------------------------------


@pytest.mark.parametrize("slug", CHANNELS)
async def test_a_full_refund_succeeds_and_the_query_agrees(world: World, slug: str) -> None:
    payment_id = await world.paid(slug)
    request = world.request(slug, payment_id, TOTAL)

    answer = await world.channels[slug].refund(request)
    await world.sim.drain()
    queried = await world.channels[slug].query_refund(request.refund_id, payment_id)

    # Alipay refunds synchronously (fund_change=Y); the others answer "processing".
    expected_answer = RefundStatus.SUCCEEDED if slug == "alipay" else RefundStatus.PENDING
    assert answer.status is expected_answer
    assert (queried.refund_id, queried.payment_id, queried.status, queried.amount) == (
        request.refund_id,
        payment_id,
        RefundStatus.SUCCEEDED,
        TOTAL,
    )
    assert world.sim.refund(request.refund_id).status == "REFUND_SUCCESS"


@pytest.mark.parametrize("slug", CHANNELS)
async def test_two_partial_refunds_reach_the_total_under_their_own_request_numbers(
    world: World, slug: str
) -> None:
    payment_id = await world.paid(slug)
    first = world.request(slug, payment_id, 3000)
    second = world.request(slug, payment_id, TOTAL - 3000)

    states = [await _settled(world, slug, first), await _settled(world, slug, second)]

    assert [(s.refund_id, s.status, s.amount) for s in states] == [
        (first.refund_id, RefundStatus.SUCCEEDED, 3000),
        (second.refund_id, RefundStatus.SUCCEEDED, TOTAL - 3000),
    ]
    refunds = [r for r in world.sim.state.refunds.values() if r.out_trade_no == payment_id]
    # Our refund ids are the gateway's out_request_no / out_refund_no, one per refund.
    assert sorted(r.out_refund_no for r in refunds) == sorted([first.refund_id, second.refund_id])
    assert world.sim.state.refunded_amount(world.sim.payment(payment_id)) == TOTAL
    with pytest.raises(ChannelError) as caught:
        await world.channels[slug].refund(world.request(slug, payment_id, 1))
    assert caught.value.code == OVER_REFUND_CODES[slug]


@pytest.mark.parametrize("slug", CHANNELS)
async def test_an_over_refund_is_refused_by_the_gateway_and_applies_nothing(
    world: World, slug: str
) -> None:
    payment_id = await world.paid(slug)
    await _settled(world, slug, world.request(slug, payment_id, 5000))

    with pytest.raises(ChannelError) as caught:
        await world.channels[slug].refund(world.request(slug, payment_id, TOTAL - 5000 + 1))

    assert not isinstance(caught.value, ChannelTimeout)
    assert caught.value.code == OVER_REFUND_CODES[slug]
    assert world.sim.state.refunded_amount(world.sim.payment(payment_id)) == 5000


@pytest.mark.parametrize("slug", CHANNELS)
async def test_repeating_a_refund_with_the_same_id_refunds_once(world: World, slug: str) -> None:
    payment_id = await world.paid(slug)
    request = world.request(slug, payment_id, 3000)
    await _settled(world, slug, request)

    again = await world.channels[slug].refund(request)

    assert again.status is RefundStatus.SUCCEEDED
    assert world.sim.state.refunded_amount(world.sim.payment(payment_id)) == 3000


# -- failures ----------------------------------------------------------------------------


async def test_an_alipay_refund_that_fails_is_refused_and_can_be_retried_under_its_number(
    world: World,
) -> None:
    alipay = world.channels["alipay"]
    payment_id = await world.paid("alipay")
    request = world.request("alipay", payment_id, 3000)
    world.sim.fail_next_refunds(1)

    with pytest.raises(ChannelError) as caught:
        await alipay.refund(request)
    assert caught.value.code == "ACQ.SELLER_BALANCE_NOT_ENOUGH"
    # A failed refund is not found by the query; Alipay asks to retry it, same number.
    with pytest.raises(RefundNotFound):
        await alipay.query_refund(request.refund_id, payment_id)

    retried = await alipay.refund(request)
    assert (retried.status, retried.amount) == (RefundStatus.SUCCEEDED, 3000)
    assert world.sim.state.refunded_amount(world.sim.payment(payment_id)) == 3000


@pytest.mark.parametrize(("slug", "raw"), [("wechatpay", "CLOSED"), ("sandbox", "REFUND_FAILED")])
async def test_a_refund_the_gateway_fails_later_is_failed_by_query_and_notification(
    world: World, slug: str, raw: str
) -> None:
    payment_id = await world.paid(slug)
    request = world.request(slug, payment_id, 3000)
    world.sim.fail_next_refunds(1)

    queried = await _settled(world, slug, request)

    assert (queried.status, queried.raw_status) == (RefundStatus.FAILED, raw)
    [notified] = world.refund_notifications(slug)
    assert notified.refund is not None
    assert (notified.refund.refund_id, notified.refund.status) == (
        request.refund_id,
        RefundStatus.FAILED,
    )
    # The failed amount is refundable again.
    assert world.sim.state.refunded_amount(world.sim.payment(payment_id)) == 0


# -- settling later ----------------------------------------------------------------------


@pytest.mark.parametrize("slug", CHANNELS)
async def test_a_refund_still_processing_stays_pending_until_the_gateway_settles_it(
    world: World, slug: str
) -> None:
    channel = world.channels[slug]
    payment_id = await world.paid(slug)
    request = world.request(slug, payment_id, 3000)
    world.sim.hold_next_refunds(1)

    answer = await channel.refund(request)
    await world.sim.drain()
    while_processing = await channel.query_refund(request.refund_id, payment_id)

    assert answer.status is RefundStatus.PENDING
    assert while_processing.status is RefundStatus.PENDING
    assert world.refund_notifications(slug) == []

    await world.sim.settle_refund(request.refund_id)
    await world.sim.drain()

    done = await channel.query_refund(request.refund_id, payment_id)
    assert (done.status, done.amount) == (RefundStatus.SUCCEEDED, 3000)
    [notified] = world.refund_notifications(slug)
    assert notified.refund is not None
    assert (notified.refund.refund_id, notified.refund.status) == (
        request.refund_id,
        RefundStatus.SUCCEEDED,
    )
    # Alipay's trade notification carries the total refunded so far (here: this one).
    assert notified.refund.amount == 3000
    assert notified.refund.amount_is_cumulative is (slug == "alipay")


@pytest.mark.parametrize("slug", CHANNELS)
async def test_a_refund_processing_for_a_while_succeeds_by_itself(world: World, slug: str) -> None:
    payment_id = await world.paid(slug)
    request = world.request(slug, payment_id, 3000)
    world.sim.delay_next_refunds(90)

    answer = await world.channels[slug].refund(request)
    assert answer.status is RefundStatus.PENDING
    await world.sim.drain()

    assert 90 in world.sleeps
    done = await world.channels[slug].query_refund(request.refund_id, payment_id)
    assert done.status is RefundStatus.SUCCEEDED
    assert [n.refund.status for n in world.refund_notifications(slug) if n.refund] == [
        RefundStatus.SUCCEEDED
    ]


@pytest.mark.parametrize("slug", CHANNELS)
async def test_a_refund_whose_answer_is_lost_is_settled_by_the_query(
    world: World, slug: str
) -> None:
    channel = world.channels[slug]
    payment_id = await world.paid(slug)
    request = world.request(slug, payment_id, 3000)
    world.sim.lose_next_refund_answers(1)

    with pytest.raises(ChannelTimeout):
        await channel.refund(request)
    await world.sim.drain()

    recovered = await channel.query_refund(request.refund_id, payment_id)
    assert (recovered.status, recovered.amount) == (RefundStatus.SUCCEEDED, 3000)
    # Sending it again (a recovery job that did not query first) refunds nothing more.
    again = await channel.refund(request)
    assert again.status in (RefundStatus.SUCCEEDED, RefundStatus.PENDING)
    await world.sim.drain()
    assert world.sim.state.refunded_amount(world.sim.payment(payment_id)) == 3000


@pytest.mark.parametrize("slug", CHANNELS)
async def test_a_refund_that_never_reached_the_gateway_is_not_found_and_safe_to_resend(
    world: World, slug: str
) -> None:
    channel = world.channels[slug]
    payment_id = await world.paid(slug)
    request = world.request(slug, payment_id, 3000)
    world.sim.fail_next("refund", kind="timeout")  # not applied

    with pytest.raises(ChannelTimeout):
        await channel.refund(request)
    with pytest.raises(RefundNotFound) as caught:
        await channel.query_refund(request.refund_id, payment_id)
    assert caught.value.code == "refund_not_found"

    resent = await _settled(world, slug, request)
    assert resent.status is RefundStatus.SUCCEEDED


# -- WeChat Pay refund notifications -----------------------------------------------------


async def test_wechat_refund_notifications_success_abnormal_closed_are_verified_and_mapped(
    world: World,
) -> None:
    payment_id = await world.paid("wechatpay")
    succeeds = world.request("wechatpay", payment_id, 1000)
    stuck = world.request("wechatpay", payment_id, 2000)
    closes = world.request("wechatpay", payment_id, 3000)

    await _settled(world, "wechatpay", succeeds)
    world.sim.abnormal_next_refunds(1)
    abnormal = await _settled(world, "wechatpay", stuck)
    world.sim.fail_next_refunds(1)
    await _settled(world, "wechatpay", closes)

    notified = world.refund_notifications("wechatpay")
    assert [
        (n.event, n.refund.refund_id, n.refund.status, n.refund.raw_status)
        for n in notified
        if n.refund
    ] == [
        ("REFUND.SUCCESS", succeeds.refund_id, RefundStatus.SUCCEEDED, "SUCCESS"),
        # The money is out but the buyer's card refused it: pending, for an operator.
        ("REFUND.ABNORMAL", stuck.refund_id, RefundStatus.PENDING, "ABNORMAL"),
        ("REFUND.CLOSED", closes.refund_id, RefundStatus.FAILED, "CLOSED"),
    ]
    assert all(n.app_id == world.channels["wechatpay"].app_id for n in notified)
    assert all(n.trade_no == n.refund.channel_refund_no for n in notified if n.refund)
    assert (abnormal.status, abnormal.raw_status) == (RefundStatus.PENDING, "ABNORMAL")

    # Re-routed by the merchant, the abnormal refund ends SUCCESS.
    world.inbox.clear()
    await world.sim.settle_refund(stuck.refund_id)
    await world.sim.drain()
    [rerouted] = world.refund_notifications("wechatpay")
    assert rerouted.refund is not None
    assert (rerouted.event, rerouted.refund.status) == ("REFUND.SUCCESS", RefundStatus.SUCCEEDED)


@pytest.mark.parametrize("slug", ["alipay", "sandbox"])
async def test_an_abnormal_refund_shows_as_still_processing_where_the_protocol_has_no_such_state(
    world: World, slug: str
) -> None:
    payment_id = await world.paid(slug)
    request = world.request(slug, payment_id, 3000)
    world.sim.abnormal_next_refunds(1)

    state = await _settled(world, slug, request)

    assert state.status is RefundStatus.PENDING
    assert world.refund_notifications(slug) == []


# -- fees --------------------------------------------------------------------------------


async def test_each_channel_declares_its_refund_fee_policy(world: World) -> None:
    assert {slug: c.refund_fee_policy for slug, c in world.channels.items()} == {
        "alipay": RefundFeePolicy.PRO_RATA,
        "wechatpay": RefundFeePolicy.PRO_RATA,
        "sandbox": RefundFeePolicy.PRO_RATA,
    }
    sandbox = world.channels["sandbox"]
    assert isinstance(sandbox, SandboxChannel)
    kept = SandboxChannel(
        SandboxConfig(
            base_url="http://simulator.internal",
            app_id=sandbox.app_id,
            secret="sandbox_secret",
            gateway_public_key_pem=world.sim.public_key_pem,
            gateway_serial=world.sim.serial,
            refund_fee_policy=RefundFeePolicy.KEPT,
        )
    )
    assert kept.refund_fee_policy is RefundFeePolicy.KEPT
    await kept.aclose()


@pytest.mark.parametrize("slug", ["alipay", "wechatpay"])
async def test_the_fee_a_gateway_says_it_returned_is_reported_in_minor_units(
    make_world: WorldFactory, slug: str
) -> None:
    made = await make_world(refund_fee_rate=Decimal("0.006"))
    payment_id = await made.paid(slug)
    request = made.request(slug, payment_id, 3000)

    queried = await _settled(made, slug, request)

    assert queried.fee_returned == 18  # 3000 x 0.6 %
    if slug == "wechatpay":
        [notified] = made.refund_notifications(slug)
        assert notified.refund is not None
        assert notified.refund.fee_returned == 18


@pytest.mark.parametrize("slug", CHANNELS)
async def test_a_gateway_that_does_not_report_the_fee_leaves_fee_returned_unset(
    world: World, slug: str
) -> None:
    payment_id = await world.paid(slug)
    queried = await _settled(world, slug, world.request(slug, payment_id, 3000))
    assert queried.fee_returned is None


# -- the control API ---------------------------------------------------------------------


async def test_refund_outcomes_can_be_planned_and_settled_over_the_control_api(
    world: World,
) -> None:
    payment_id = await world.paid("wechatpay")
    request = world.request("wechatpay", payment_id, 3000)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=world.sim.app), base_url="http://sim"
    ) as control:
        planned = await control.post("/_control/refunds/next", json={"outcome": "hold"})
        assert planned.json()["refunds"] == [{"outcome": "hold", "seconds": 0.0}]

        await world.channels["wechatpay"].refund(request)
        await world.sim.drain()
        shown = await control.get(f"/_control/refunds/{request.refund_id}")
        assert shown.json()["status"] == "REFUND_PROCESSING"

        settled = await control.post(
            f"/_control/refunds/{request.refund_id}/settle", json={"succeed": True}
        )
        assert settled.json()["status"] == "REFUND_SUCCESS"

        lost = await control.post(
            "/_control/refunds/next", json={"outcome": "lost_answer", "count": 2}
        )
        assert lost.json()["api"] == {"refund": ["timeout", "timeout"]}
        bad = await control.post("/_control/refunds/next", json={"outcome": "maybe"})
        assert bad.status_code == 400
        missing = await control.get("/_control/refunds/re_nope")
        assert missing.status_code == 404
    await world.sim.drain()
    assert [n.event for n in world.refund_notifications("wechatpay")] == ["REFUND.SUCCESS"]
    assert json.loads(shown.content)["gateway_status"] == "REFUND_PROCESSING"
