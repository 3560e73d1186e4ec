"""The sandbox channel against the offline gateway simulator, in-process (no database)."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tuition.channels.base import (
    ChannelTimeout,
    CloseOutcome,
    NextActionType,
    NotificationKind,
    NotificationRejected,
    PaymentRequest,
    RefundRequest,
    SupportsPartialRefund,
    VerifiedNotification,
)
from tuition.channels.sandbox import GatewayRefused, SandboxChannel, SandboxConfig
from tuition.clock import FrozenClock
from tuition.domain.errors import ChannelError
from tuition.domain.payments import PaymentStatus, RefundStatus
from tuition.simulator import GatewayError, Simulator, SimulatorConfig, create_simulator

APP_ID = "app_demo"
SECRET = "s3cret-shared-with-the-gateway"
GATEWAY = "http://sandbox.simulator"
NOTIFY_URL = "http://merchant.test/notify"
START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def gateway_key() -> rsa.RSAPrivateKey:
    # One key per module: generating RSA-2048 for every test would dominate the run time.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class FakeSleep:
    """Records every wait; returns at once unless a gate is closed."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)


class Receiver:
    """A tiny merchant notify endpoint: verifies with the channel and acks accordingly.

    ``answers`` forces the next replies: "FAIL" (verified, then refused), "500" or
    "crash" (the app raises); otherwise the ack follows verification.
    """

    def __init__(self) -> None:
        self.channel: SandboxChannel | None = None
        self.answers: deque[str] = deque()
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.verified: list[VerifiedNotification] = []
        self.rejected: list[str] = []
        self.app = Starlette(routes=[Route("/notify", self.notify, methods=["POST"])])

    async def notify(self, request: Request) -> Response:
        body = await request.body()
        self.received.append((dict(request.headers), body))
        forced = self.answers.popleft() if self.answers else None
        if forced == "crash":
            raise RuntimeError("the merchant crashed")
        if forced == "500":
            return Response("oops", status_code=500)
        assert self.channel is not None
        try:
            verified = self.channel.verify_notification(request.headers, body)
        except NotificationRejected as exc:
            self.rejected.append(exc.reason)
            ack = self.channel.ack(False)
        else:
            self.verified.append(verified)
            ack = self.channel.ack(forced != "FAIL")
        return Response(ack.body, ack.status_code, media_type=ack.media_type)


class World:
    def __init__(self, simulator: Simulator, channel: SandboxChannel, receiver: Receiver) -> None:
        self.sim = simulator
        self.channel = channel
        self.receiver = receiver

    def channel_with(
        self, *, transport: httpx.AsyncBaseTransport | None = None, **config: object
    ) -> SandboxChannel:
        fields: dict[str, object] = {
            "base_url": GATEWAY,
            "app_id": APP_ID,
            "secret": SECRET,
            "gateway_public_key_pem": self.sim.public_key_pem,
            "gateway_serial": self.sim.serial,
            "fee_rate": Decimal("0.006"),
            "timeout_seconds": 2.0,
        }
        fields.update(config)
        return SandboxChannel(
            SandboxConfig(**fields),  # type: ignore[arg-type]
            transport=transport or httpx.ASGITransport(app=self.sim.app),
            clock=self.clock,
        )

    @property
    def clock(self) -> FrozenClock:
        clock = self.sim.config.clock
        assert isinstance(clock, FrozenClock)
        return clock

    @property
    def sleep(self) -> FakeSleep:
        sleep = self.sim.config.sleep
        assert isinstance(sleep, FakeSleep)
        return sleep

    async def create(self, payment_id: str = "pay_1", amount: int = 10_000, **kw: object) -> None:
        await self.channel.create_payment(payment_request(payment_id, amount, **kw))

    async def paid(self, payment_id: str = "pay_1", amount: int = 10_000) -> None:
        await self.create(payment_id, amount)
        await self.sim.pay(payment_id)
        await self.sim.drain()


def payment_request(
    payment_id: str = "pay_1",
    amount: int = 10_000,
    *,
    method: str = "page",
    return_url: str | None = None,
    subject: str = "Python in 30 days",
    expires_in: timedelta = timedelta(minutes=15),
) -> PaymentRequest:
    return PaymentRequest(
        payment_id=payment_id,
        order_id="ord_1",
        amount=amount,
        currency="CNY",
        subject=subject,
        method=method,
        notify_url=NOTIFY_URL,
        return_url=return_url,
        expires_at=START + expires_in,
    )


def refund_request(refund_id: str, amount: int, payment_id: str = "pay_1") -> RefundRequest:
    return RefundRequest(
        refund_id=refund_id,
        payment_id=payment_id,
        channel_trade_no=None,
        amount=amount,
        payment_amount=10_000,
        currency="CNY",
        reason="requested by buyer",
        notify_url=NOTIFY_URL,
    )


async def make_world(gateway_key: rsa.RSAPrivateKey, **config: object) -> World:
    receiver = Receiver()
    settings: dict[str, object] = {
        "merchants": {APP_ID: SECRET},
        "public_base_url": GATEWAY,
        "private_key_pem": _pem(gateway_key),
        "clock": FrozenClock(START),
        "sleep": FakeSleep(),
        "notify_transport": httpx.ASGITransport(app=receiver.app),
        "notify_max_attempts": 5,
    }
    settings.update(config)
    sim = create_simulator(SimulatorConfig(**settings))  # type: ignore[arg-type]
    world = World(sim, None, receiver)  # type: ignore[arg-type]
    world.channel = receiver.channel = world.channel_with()
    return world


WorldFactory = Callable[..., Awaitable[World]]


@pytest.fixture
async def make(gateway_key: rsa.RSAPrivateKey) -> AsyncIterator[WorldFactory]:
    """Build worlds with config overrides; every one is closed after the test."""
    made: list[World] = []

    async def factory(**config: object) -> World:
        made.append(await make_world(gateway_key, **config))
        return made[-1]

    yield factory
    for w in made:
        await w.channel.aclose()
        await w.sim.aclose()


@pytest.fixture
async def world(make: WorldFactory) -> World:
    return await make()


# -- the happy road ------------------------------------------------------------------------


async def test_a_page_payment_is_created_paid_notified_and_queried(world: World) -> None:
    created = await world.channel.create_payment(payment_request())
    assert created.next_action.type is NextActionType.REDIRECT
    assert created.next_action.url == f"{GATEWAY}/pay/{created.channel_trade_no}"

    pending = await world.channel.query_payment("pay_1")
    assert pending.status is PaymentStatus.PENDING
    assert (pending.amount, pending.currency) == (10_000, "CNY")

    await world.sim.pay("pay_1")
    await world.sim.drain()

    [note] = world.receiver.verified
    assert note.kind is NotificationKind.PAYMENT
    assert (note.app_id, note.event, note.trade_no) == (
        APP_ID,
        "payment.paid",
        created.channel_trade_no,
    )
    assert note.payment is not None
    assert note.payment.status is PaymentStatus.SUCCEEDED
    assert note.payment.amount == 10_000
    assert note.payment.paid_at == START
    assert [d.accepted for d in world.sim.deliveries] == [True]

    paid = await world.channel.query_payment("pay_1")
    assert paid.status is PaymentStatus.SUCCEEDED
    assert paid.channel_trade_no == created.channel_trade_no
    assert paid.paid_at == START


async def test_a_qr_payment_hands_back_a_code_that_opens_the_buyer_page(world: World) -> None:
    created = await world.channel.create_payment(payment_request(method="qr"))
    assert created.next_action.type is NextActionType.QR_CODE
    assert created.next_action.qr_payload == f"{GATEWAY}/pay/{created.channel_trade_no}"


async def test_the_channel_declares_its_slug_methods_fee_and_partial_refunds(world: World) -> None:
    channel = world.channel
    assert (channel.slug, channel.app_id, channel.fee_rate) == ("sandbox", APP_ID, Decimal("0.006"))
    assert channel.methods == frozenset({"page", "qr"})
    assert isinstance(channel, SupportsPartialRefund)
    assert channel.supports_partial_refund is True


async def test_creating_twice_with_the_same_amount_returns_the_same_trade(world: World) -> None:
    first = await world.channel.create_payment(payment_request())
    again = await world.channel.create_payment(payment_request())
    assert again.channel_trade_no == first.channel_trade_no
    with pytest.raises(ChannelError) as caught:
        await world.channel.create_payment(payment_request(amount=1))
    assert caught.value.code == "OUT_TRADE_NO_USED"
    assert not isinstance(caught.value, ChannelTimeout)


async def test_querying_a_payment_the_gateway_never_saw_is_refused(world: World) -> None:
    with pytest.raises(GatewayRefused) as caught:
        await world.channel.query_payment("pay_unknown")
    assert (caught.value.code, caught.value.status_code) == ("TRADE_NOT_EXIST", 404)


async def test_a_declined_payment_fails_and_is_notified_as_failed(world: World) -> None:
    await world.create()
    await world.sim.decline("pay_1")
    await world.sim.drain()
    assert [n.event for n in world.receiver.verified] == ["payment.failed"]
    assert (await world.channel.query_payment("pay_1")).status is PaymentStatus.FAILED


async def test_an_unpaid_payment_expires_into_closed_and_is_notified(world: World) -> None:
    await world.create(expires_in=timedelta(minutes=15))
    world.clock.advance(timedelta(minutes=15))
    assert (await world.channel.query_payment("pay_1")).status is PaymentStatus.CLOSED
    await world.sim.drain()
    assert [n.event for n in world.receiver.verified] == ["payment.closed"]
    with pytest.raises(GatewayError, match="TRADE_STATUS_ERROR"):
        await world.sim.pay("pay_1")


# -- close ---------------------------------------------------------------------------------


async def test_closing_an_unpaid_payment_closes_it_and_closing_again_is_harmless(
    world: World,
) -> None:
    await world.create()
    assert await world.channel.close_payment("pay_1") is CloseOutcome.CLOSED
    assert await world.channel.close_payment("pay_1") is CloseOutcome.CLOSED
    assert (await world.channel.query_payment("pay_1")).status is PaymentStatus.CLOSED


async def test_closing_a_paid_payment_answers_already_paid(world: World) -> None:
    await world.paid()
    assert await world.channel.close_payment("pay_1") is CloseOutcome.ALREADY_PAID
    assert (await world.channel.query_payment("pay_1")).status is PaymentStatus.SUCCEEDED


async def test_closing_a_payment_the_gateway_never_saw_answers_not_found(world: World) -> None:
    assert await world.channel.close_payment("pay_never") is CloseOutcome.NOT_FOUND


# -- refunds -------------------------------------------------------------------------------


async def test_partial_refunds_succeed_up_to_the_total_and_an_over_refund_is_refused(
    world: World,
) -> None:
    await world.paid()
    first = await world.channel.refund(refund_request("re_1", 3_000))
    assert (first.status, first.amount, first.refund_id) == (RefundStatus.PENDING, 3_000, "re_1")
    second = await world.channel.refund(refund_request("re_2", 7_000))
    assert second.status is RefundStatus.PENDING

    with pytest.raises(GatewayRefused) as caught:
        await world.channel.refund(refund_request("re_3", 1))
    assert caught.value.code == "REFUND_AMOUNT_EXCEEDED"

    await world.sim.drain()
    for refund_id, amount in (("re_1", 3_000), ("re_2", 7_000)):
        settled = await world.channel.query_refund(refund_id, "pay_1")
        assert (settled.status, settled.amount) == (RefundStatus.SUCCEEDED, amount)
    refunds = [n for n in world.receiver.verified if n.kind is NotificationKind.REFUND]
    assert sorted((n.event, n.refund.amount) for n in refunds if n.refund) == [
        ("refund.succeeded", 3_000),
        ("refund.succeeded", 7_000),
    ]
    assert all(n.refund and n.trade_no == n.refund.channel_refund_no for n in refunds)


async def test_a_retried_refund_with_the_same_refund_id_is_applied_once(world: World) -> None:
    await world.paid()
    first = await world.channel.refund(refund_request("re_1", 6_000))
    again = await world.channel.refund(refund_request("re_1", 6_000))
    assert again.channel_refund_no == first.channel_refund_no
    with pytest.raises(GatewayRefused, match="REFUND_AMOUNT_EXCEEDED"):
        await world.channel.refund(refund_request("re_2", 4_001))
    with pytest.raises(GatewayRefused, match="OUT_REFUND_NO_USED"):
        await world.channel.refund(refund_request("re_1", 5_000))


async def test_an_unpaid_payment_cannot_be_refunded(world: World) -> None:
    await world.create()
    with pytest.raises(GatewayRefused, match="TRADE_NOT_PAID"):
        await world.channel.refund(refund_request("re_1", 100))


async def test_a_refund_stays_processing_until_the_gateway_settles_it(make: WorldFactory) -> None:
    w = await make(auto_settle_refunds=False)
    await w.paid()
    await w.channel.refund(refund_request("re_1", 100))
    await w.sim.drain()
    assert (await w.channel.query_refund("re_1", "pay_1")).status is RefundStatus.PENDING
    assert await w.sim.settle_refunds() == 1
    assert (await w.channel.query_refund("re_1", "pay_1")).status is RefundStatus.SUCCEEDED


async def test_a_refund_the_gateway_fails_gives_its_amount_back(world: World) -> None:
    await world.paid()
    world.sim.fail_next_refunds(1)
    await world.channel.refund(refund_request("re_1", 10_000))
    await world.sim.drain()
    assert (await world.channel.query_refund("re_1", "pay_1")).status is RefundStatus.FAILED
    assert world.receiver.verified[-1].event == "refund.failed"
    retried = await world.channel.refund(refund_request("re_2", 10_000))
    assert retried.status is RefundStatus.PENDING


# -- notification delivery -----------------------------------------------------------------


async def test_a_refused_notification_is_redelivered_with_exponential_backoff(
    world: World,
) -> None:
    world.receiver.answers.extend(["FAIL", "500", "crash"])
    await world.paid()
    attempts = world.sim.deliveries
    assert [(d.attempt, d.accepted) for d in attempts] == [
        (1, False),
        (2, False),
        (3, False),
        (4, True),
    ]
    assert [d.waited for d in attempts] == [0.0, 0.5, 1.0, 2.0]
    assert world.sleep.delays == [0.5, 1.0, 2.0]
    assert [d.status_code for d in attempts[:2]] == [400, 500]
    assert attempts[2].status_code is None
    assert attempts[2].error is not None
    assert "RuntimeError" in attempts[2].error
    assert len({d.notify_id for d in attempts}) == 1
    # Each attempt is signed afresh, but the body (and its notify_id) never changes.
    assert len({h["sandbox-nonce"] for h, _ in world.receiver.received}) == 4
    assert len({b for _, b in world.receiver.received}) == 1


async def test_redelivery_gives_up_after_the_last_attempt_with_capped_backoff(
    make: WorldFactory,
) -> None:
    w = await make(notify_max_attempts=6, notify_backoff_cap=3.0)
    w.receiver.answers.extend(["FAIL"] * 10)
    await w.paid()
    assert len(w.sim.deliveries) == 6
    assert not any(d.accepted for d in w.sim.deliveries)
    assert w.sleep.delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert (await w.channel.query_payment("pay_1")).status is PaymentStatus.SUCCEEDED


async def test_duplicated_notifications_arrive_again_with_the_same_notify_id(
    world: World,
) -> None:
    world.sim.duplicate_notifications(2)
    await world.paid()
    assert len(world.receiver.verified) == 3
    assert [d.copy for d in world.sim.deliveries] == [0, 1, 2]
    assert len({d.notify_id for d in world.sim.deliveries}) == 1
    assert len({(n.event, n.trade_no) for n in world.receiver.verified}) == 1


async def test_concurrent_duplicates_are_all_in_flight_at_once(world: World) -> None:
    in_flight = 0
    peak = 0
    inner = world.receiver.notify

    async def slow_notify(request: Request) -> Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        try:
            return await inner(request)
        finally:
            in_flight -= 1

    world.receiver.app.router.routes[0] = Route("/notify", slow_notify, methods=["POST"])
    world.sim.duplicate_notifications(3, concurrent=True)
    await world.paid()
    assert len(world.receiver.verified) == 4
    assert peak == 4


async def test_a_dropped_notification_never_arrives_but_a_query_reveals_the_payment(
    world: World,
) -> None:
    world.sim.drop_next_notifications(1)
    await world.paid()
    assert world.receiver.received == []
    [dropped] = world.sim.deliveries
    assert dropped.dropped
    assert not dropped.accepted
    assert (await world.channel.query_payment("pay_1")).status is PaymentStatus.SUCCEEDED
    await world.paid("pay_2")  # only the next notification was dropped
    assert [n.event for n in world.receiver.verified] == ["payment.paid"]


async def test_a_delayed_notification_arrives_only_after_the_delay(world: World) -> None:
    world.sim.delay_notifications(30)
    world.sleep.gate = asyncio.Event()
    await world.create()
    await world.sim.pay("pay_1")
    await asyncio.sleep(0.01)
    assert world.sleep.delays == [30]
    assert world.receiver.received == []
    assert (await world.channel.query_payment("pay_1")).status is PaymentStatus.SUCCEEDED
    world.sleep.gate.set()
    await world.sim.drain()
    assert [n.event for n in world.receiver.verified] == ["payment.paid"]
    assert world.sim.deliveries[0].waited == 30


async def test_a_tampered_notification_is_rejected_every_time_it_is_delivered(
    world: World,
) -> None:
    world.sim.tamper_next_notifications(1)
    await world.paid()
    assert world.receiver.verified == []
    assert world.receiver.rejected == ["signature does not verify"] * 5
    assert all(d.tampered and d.status_code == 400 for d in world.sim.deliveries)
    amounts = {json.loads(body)["amount"] for _, body in world.receiver.received}
    assert amounts == {10_001}
    # Only the next notification was tampered with; later ones verify again.
    await world.paid("pay_2")
    assert [n.event for n in world.receiver.verified] == ["payment.paid"]


async def test_notifications_go_to_the_refund_notify_url(world: World) -> None:
    await world.paid()
    await world.channel.refund(refund_request("re_1", 100))
    await world.sim.drain()
    assert {d.url for d in world.sim.deliveries} == {NOTIFY_URL}


# -- verification --------------------------------------------------------------------------


async def _signed(world: World) -> tuple[dict[str, str], bytes]:
    await world.paid()
    return world.receiver.received[-1]


async def test_a_notification_signed_by_another_key_is_rejected(world: World) -> None:
    headers, body = await _signed(world)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    impostor = world.channel_with(gateway_public_key_pem=_public_pem(other))
    with pytest.raises(NotificationRejected, match="signature does not verify"):
        impostor.verify_notification(headers, body)


async def test_a_notification_from_an_unknown_key_serial_is_rejected(world: World) -> None:
    headers, body = await _signed(world)
    with pytest.raises(NotificationRejected, match="unknown key serial"):
        world.channel.verify_notification({**headers, "sandbox-serial": "ROTATED"}, body)


@pytest.mark.parametrize("skew", [timedelta(minutes=6), -timedelta(minutes=6)])
async def test_a_notification_with_a_stale_or_future_timestamp_is_rejected(
    world: World, skew: timedelta
) -> None:
    headers, body = await _signed(world)
    world.clock.advance(timedelta(minutes=4))
    assert world.channel.verify_notification(headers, body).event == "payment.paid"
    world.clock.set(START + skew)
    with pytest.raises(NotificationRejected, match="stale timestamp"):
        world.channel.verify_notification(headers, body)


async def test_a_flipped_byte_in_the_body_is_rejected(world: World) -> None:
    headers, body = await _signed(world)
    flipped = bytearray(body)
    flipped[len(flipped) // 2] ^= 0x01
    with pytest.raises(NotificationRejected, match="signature does not verify"):
        world.channel.verify_notification(headers, bytes(flipped))


@pytest.mark.parametrize(
    "header", ["sandbox-signature", "sandbox-timestamp", "sandbox-nonce", "sandbox-serial"]
)
async def test_a_notification_missing_a_signature_header_is_rejected(
    world: World, header: str
) -> None:
    headers, body = await _signed(world)
    del headers[header]
    with pytest.raises(NotificationRejected, match="missing header"):
        world.channel.verify_notification(headers, body)


async def test_header_names_are_matched_case_insensitively(world: World) -> None:
    headers, body = await _signed(world)
    shouting = {name.upper(): value for name, value in headers.items()}
    assert world.channel.verify_notification(shouting, body).event == "payment.paid"


@pytest.mark.parametrize(
    "body",
    [b"not json", b"\xff\xfe", b'{"event": "payment.paid"}', b'{"status": "WHATEVER"}'],
)
async def test_a_correctly_signed_but_malformed_body_is_rejected(world: World, body: bytes) -> None:
    timestamp = int(START.timestamp())
    headers = world.sim.signer.headers(body, timestamp)
    with pytest.raises(NotificationRejected, match="malformed body"):
        world.channel.verify_notification(headers, body)


async def test_a_correctly_signed_body_with_an_unknown_status_is_rejected(world: World) -> None:
    _, body = await _signed(world)
    data = json.loads(body)
    data["status"] = "PAID_TWICE"
    forged = json.dumps(data).encode()
    headers = world.sim.signer.headers(forged, int(START.timestamp()))
    with pytest.raises(NotificationRejected, match="unknown sandbox payment status"):
        world.channel.verify_notification(headers, forged)


async def test_the_acks_are_the_gateway_success_and_failure_answers(world: World) -> None:
    channel = world.channel
    ok = channel.ack(True)
    assert (ok.status_code, json.loads(ok.body), ok.media_type) == (
        200,
        {"code": "SUCCESS"},
        "application/json",
    )
    refused = channel.ack(False)
    assert refused.status_code == 400
    assert json.loads(refused.body)["code"] == "FAIL"


# -- failures on the way to the gateway ----------------------------------------------------


@pytest.mark.parametrize("operation", ["create", "query", "close", "refund", "refund_query"])
async def test_a_gateway_5xx_surfaces_as_channel_timeout(world: World, operation: str) -> None:
    if operation in {"refund", "refund_query"}:
        await world.paid()
        await world.channel.refund(refund_request("re_1", 100))
    elif operation != "create":
        await world.create()
    world.sim.fail_next(operation)  # type: ignore[arg-type]
    calls = {
        "create": lambda: world.channel.create_payment(payment_request()),
        "query": lambda: world.channel.query_payment("pay_1"),
        "close": lambda: world.channel.close_payment("pay_1"),
        "refund": lambda: world.channel.refund(refund_request("re_1", 100)),
        "refund_query": lambda: world.channel.query_refund("re_1", "pay_1"),
    }
    with pytest.raises(ChannelTimeout, match="HTTP 503"):
        await calls[operation]()
    await calls[operation]()  # the fault was for one call only


async def test_a_timeout_after_the_gateway_acted_surfaces_as_channel_timeout(
    world: World,
) -> None:
    channel = world.channel_with(transport=world.sim.transport)
    world.sim.fail_next("create", kind="timeout", applied=True)
    with pytest.raises(ChannelTimeout, match="timed out") as caught:
        await channel.create_payment(payment_request())
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    # The gateway did create it: this is why a timeout must never be read as a failure.
    assert (await channel.query_payment("pay_1")).status is PaymentStatus.PENDING


async def test_a_timeout_before_the_gateway_acted_leaves_nothing_behind(world: World) -> None:
    world.sim.fail_next("create", kind="timeout")
    with pytest.raises(ChannelTimeout, match="HTTP 504"):
        await world.channel.create_payment(payment_request())
    with pytest.raises(GatewayRefused, match="TRADE_NOT_EXIST"):
        await world.channel.query_payment("pay_1")


async def test_a_connection_failure_surfaces_as_channel_timeout(world: World) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    channel = world.channel_with(transport=httpx.MockTransport(refuse))
    with pytest.raises(ChannelTimeout, match="unreachable"):
        await channel.query_payment("pay_1")


async def test_an_unreadable_success_response_surfaces_as_channel_timeout(world: World) -> None:
    channel = world.channel_with(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, text="<html>"))
    )
    with pytest.raises(ChannelTimeout) as caught:
        await channel.query_payment("pay_1")
    assert caught.value.code == "channel_bad_response"


async def test_a_request_signed_with_the_wrong_secret_is_refused(world: World) -> None:
    channel = world.channel_with(secret="not-the-secret")
    with pytest.raises(GatewayRefused) as caught:
        await channel.create_payment(payment_request())
    assert (caught.value.code, caught.value.status_code) == ("SIGNATURE_INVALID", 401)


async def test_a_request_with_a_stale_timestamp_is_refused(world: World) -> None:
    skewed = SandboxChannel(
        SandboxConfig(GATEWAY, APP_ID, SECRET, world.sim.public_key_pem, world.sim.serial),
        transport=httpx.ASGITransport(app=world.sim.app),
        clock=FrozenClock(START - timedelta(minutes=6)),
    )
    with pytest.raises(GatewayRefused) as caught:
        await skewed.query_payment("pay_1")
    assert (caught.value.code, caught.value.status_code) == ("TIMESTAMP_EXPIRED", 401)


async def test_an_unsigned_request_gets_a_401_json_error(world: World) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=world.sim.app), base_url=GATEWAY
    ) as client:
        response = await client.get("/v1/payments/pay_1")
    assert response.status_code == 401
    assert response.json()["code"] == "SIGNATURE_MISSING"


# -- the buyer page ------------------------------------------------------------------------


async def _browser(world: World) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=world.sim.app), base_url=GATEWAY)


async def test_the_pay_page_shows_amount_and_subject_and_its_pay_button_pays(
    world: World,
) -> None:
    created = await world.channel.create_payment(
        payment_request(
            subject='<script>alert("x")</script> course',
            return_url="http://shop.test/thanks",
        )
    )
    assert created.next_action.url is not None
    async with await _browser(world) as browser:
        page = await browser.get(created.next_action.url)
        assert page.status_code == 200
        assert "100.00 CNY" in page.text
        assert "&lt;script&gt;" in page.text
        assert "<script>alert" not in page.text
        action = f"/pay/{created.channel_trade_no}/pay"
        assert f'action="{action}"' in page.text

        clicked = await browser.post(action)
        assert clicked.status_code == 303
        assert clicked.headers["location"] == "http://shop.test/thanks"

        again = await browser.post(action)
        assert again.status_code == 409
        assert "Payment successful" in again.text
    await world.sim.drain()
    assert (await world.channel.query_payment("pay_1")).status is PaymentStatus.SUCCEEDED
    assert [n.event for n in world.receiver.verified] == ["payment.paid"]


async def test_the_decline_button_without_a_return_url_shows_a_result_page(
    world: World,
) -> None:
    created = await world.channel.create_payment(payment_request())
    async with await _browser(world) as browser:
        result = await browser.post(f"/pay/{created.channel_trade_no}/decline")
        assert result.status_code == 200
        assert "Payment declined" in result.text
        missing = await browser.get("/pay/SBX_NOPE")
        assert missing.status_code == 404
    assert (await world.channel.query_payment("pay_1")).status is PaymentStatus.FAILED


# -- control API and setup -----------------------------------------------------------------


async def test_faults_and_payments_can_be_driven_over_the_control_api(world: World) -> None:
    await world.create()
    async with await _browser(world) as control:
        response = await control.post(
            "/_control/faults", json={"operation": "query", "count": 2, "kind": "error"}
        )
        assert response.json()["api"] == {"query": ["error", "error"]}
        assert (
            await control.post("/_control/faults", json={"operation": "nope"})
        ).status_code == 400
        await control.post("/_control/notifications", json={"duplicates": 1, "drop_next": 0})
        assert (await control.post("/_control/payments/pay_1/pay")).json()["status"] == "PAID"
        for _ in range(2):
            with pytest.raises(ChannelTimeout):
                await world.channel.query_payment("pay_1")
        await world.sim.drain()
        log = (await control.get("/_control/deliveries")).json()
        assert [entry["copy"] for entry in log] == [0, 1]
        await control.post("/_control/reset")
        assert world.sim.faults.duplicates == 0
    assert (await world.channel.query_payment("pay_1")).status is PaymentStatus.SUCCEEDED


async def test_the_gateway_publishes_its_public_key_and_serial(world: World) -> None:
    async with await _browser(world) as client:
        published = (await client.get("/v1/public-key")).json()
    assert published["public_key_pem"] == world.sim.public_key_pem
    assert published["serial"] == world.sim.serial


async def test_the_gateway_key_can_be_loaded_from_a_pem_file(
    gateway_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    path = tmp_path / "gateway.pem"
    path.write_bytes(_pem(gateway_key))
    from_file = create_simulator(SimulatorConfig(private_key_pem_path=path))
    assert from_file.public_key_pem == _public_pem(gateway_key)
    fresh = create_simulator()
    assert fresh.public_key_pem != from_file.public_key_pem
    assert fresh.serial != from_file.serial
