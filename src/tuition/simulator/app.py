"""The simulator: an in-memory gateway speaking the plain ``sandbox`` protocol, Alipay's
open API (:mod:`.alipay`), WeChat Pay API v3 (:mod:`.wechatpay`) and UnionPay's online
payments (:mod:`.unionpay`) over one shared state.

``create_simulator(config)`` returns a :class:`Simulator` whose ``.app`` is an ASGI app
(serve it with uvicorn, or reach it in-process through ``httpx.ASGITransport`` or the
fault-aware ``simulator.transport``) and whose methods drive it directly from tests::

    sim = create_simulator(SimulatorConfig(notify_transport=httpx.ASGITransport(app=tuition)))
    ...  # the channel creates a payment through sim.transport
    await sim.pay("pay_01J…")      # the buyer pays; a signed notification is queued
    await sim.drain()              # wait until every notification is delivered or given up
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Literal
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.routing import Route

from tuition.simulator.agreements import AgreementDesk
from tuition.simulator.alipay import AlipayGateway
from tuition.simulator.api import merchant_routes
from tuition.simulator.bills import BillBook
from tuition.simulator.checkout import buyer_routes
from tuition.simulator.config import SimulatorConfig
from tuition.simulator.control import control_routes
from tuition.simulator.faults import (
    FaultKind,
    FaultPlan,
    Operation,
    RefundOutcome,
    SimulatorTransport,
)
from tuition.simulator.notifier import DeliveryAttempt, Notifier
from tuition.simulator.records import SimPayment, SimRefund
from tuition.simulator.signing import NotificationSigner, RequestAuthenticator, load_private_key
from tuition.simulator.state import GatewayEvent, GatewayState
from tuition.simulator.transfers import TransferDesk
from tuition.simulator.unionpay import UnionPayGateway
from tuition.simulator.wechat_oauth import WechatOAuth
from tuition.simulator.wechatpay import WechatPayGateway


class Simulator:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.faults = FaultPlan()
        self.signer = NotificationSigner(load_private_key(config), config.serial)
        self.authenticator = RequestAuthenticator(
            dict(config.merchants), config.clock, config.auth_max_skew_seconds
        )
        self.notifier = Notifier(config, self.signer, self.faults)
        self.state = GatewayState(config.clock, config.public_base_url, self._notify)
        # The same trades, spoken in the real gateways' protocols (keys and merchants are
        # added to these by whoever configures the channels).
        self.alipay = AlipayGateway(self)
        self.wechatpay = WechatPayGateway(self)
        self.wechat_oauth = WechatOAuth(self)  # a page inside WeChat: OAuth, JSAPI sheet
        self.notifier.formats["alipay"] = self.alipay.notifications
        self.notifier.formats["wechatpay"] = self.wechatpay.notifications
        self.unionpay = UnionPayGateway(self)
        self.notifier.formats["unionpay"] = self.unionpay.notifications
        # Bill files of both protocols, written from the same books (reconciliation).
        self.bills = BillBook(self)
        self.alipay._api["alipay.data.dataservice.bill.downloadurl.query"] = (
            Operation.QUERY,
            self.bills.alipay_downloadurl,
        )
        # Payouts: transfers to payees (simulator/transfers.py).
        self.transfers = TransferDesk(config.clock)
        self.transfers.install(self.alipay)
        # Debit agreements of both protocols (simulator/agreements.py).
        self.agreements = AgreementDesk(self)
        self.agreements.install()
        routes: list[Route] = [
            *merchant_routes(self),
            *buyer_routes(self),
            *self.alipay.routes(),
            *self.wechatpay.routes(),
            *self.unionpay.routes(),
            *self.wechat_oauth.routes(),
            *self.bills.routes(),
            *self.agreements.routes(),
        ]
        if config.control_enabled:
            routes += control_routes(self)
            routes += self.bills.control_routes()
        self.app = Starlette(routes=routes, lifespan=self._lifespan)
        # In-process transport to the app that raises httpx.ReadTimeout on timeout faults.
        # URLs under public_base_url reach it too (its path prefix is treated as the mount
        # point, as when served at /simulator), so a channel can use the URLs a browser uses.
        mount = urlsplit(config.public_base_url).path.rstrip("/")
        self.transport: httpx.AsyncBaseTransport = SimulatorTransport(
            httpx.ASGITransport(app=self.app, root_path=mount)
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        yield
        await self.aclose()

    # -- what merchants need to verify us ---------------------------------------------

    @property
    def public_key_pem(self) -> str:
        return self.signer.public_key_pem

    @property
    def serial(self) -> str:
        return self.signer.serial

    # -- background work --------------------------------------------------------------

    @property
    def deliveries(self) -> list[DeliveryAttempt]:
        """The latest notification delivery attempts, in order (dropped ones included)."""
        return list(self.notifier.deliveries)

    async def drain(self) -> None:
        """Wait until no notification delivery or refund settlement is pending."""
        await self.notifier.drain()

    async def aclose(self) -> None:
        await self.notifier.aclose()

    def _notify(self, event: GatewayEvent) -> None:
        url = event.refund.notify_url if event.refund is not None else event.payment.notify_url
        self.notifier.submit(event, url)

    def start_refund(self, refund: SimRefund, *, synchronous: bool = False) -> None:
        """Play a new refund's life as planned (see :class:`RefundOutcome`).

        Unplanned, it succeeds after ``config.refund_settle_seconds`` (or waits for
        :meth:`settle_refunds` when ``auto_settle_refunds`` is off). ``synchronous``
        settles an immediate outcome before the answer is rendered, as Alipay does.
        """
        plan = self.faults.take_refund_plan()
        outcome = None if plan is None else plan.outcome
        seconds = self.config.refund_settle_seconds
        match outcome:
            case RefundOutcome.HOLD:
                return
            case None if not self.config.auto_settle_refunds:
                return
            case RefundOutcome.DELAY:
                assert plan is not None
                seconds = plan.seconds
            case None | RefundOutcome.FAIL | RefundOutcome.ABNORMAL:
                pass
        if synchronous and seconds == 0:
            self._end_refund(refund, outcome)
        else:
            self.notifier.spawn(self._end_refund_later(refund, outcome, seconds))

    def start_refund_settlement(self, refund: SimRefund) -> None:
        self.start_refund(refund)

    def _end_refund(self, refund: SimRefund, outcome: RefundOutcome | None) -> None:
        if outcome is RefundOutcome.ABNORMAL:
            self.state.mark_abnormal(refund)
        else:
            self.state.settle_refund(refund, succeed=outcome is not RefundOutcome.FAIL)

    async def _end_refund_later(
        self, refund: SimRefund, outcome: RefundOutcome | None, seconds: float
    ) -> None:
        if seconds > 0:
            await self.config.sleep(seconds)
        self._end_refund(refund, outcome)

    async def settle_refunds(self) -> int:
        """Settle every refund still processing now; returns how many were settled."""
        pending = self.state.processing_refunds()
        for refund in pending:
            self.state.settle_refund(refund, succeed=not self.faults.take_refund_failure())
        return len(pending)

    def refund(self, out_refund_no: str, *, app_id: str | None = None) -> SimRefund:
        """The simulator's record of a refund (``app_id`` needed only if ambiguous)."""
        return self.state.find_refund(out_refund_no, app_id)

    async def settle_refund(
        self, out_refund_no: str, *, succeed: bool = True, app_id: str | None = None
    ) -> SimRefund:
        """End one held, delayed or abnormal refund now: success, or failure (closed)."""
        refund = self.state.find_refund(out_refund_no, app_id)
        self.state.settle_refund(refund, succeed=succeed)
        return refund

    # -- the buyer --------------------------------------------------------------------

    def payment(self, out_trade_no: str, *, app_id: str | None = None) -> SimPayment:
        """The simulator's record of a trade (``app_id`` needed only if ambiguous)."""
        return self.state.find_payment(out_trade_no, app_id)

    async def pay(self, out_trade_no: str, *, app_id: str | None = None) -> SimPayment:
        """The buyer pays; raises GatewayError unless the trade is awaiting payment."""
        return self.state.pay(self.state.find_payment(out_trade_no, app_id))

    async def decline(self, out_trade_no: str, *, app_id: str | None = None) -> SimPayment:
        """The buyer's payment fails (``payment.failed``)."""
        return self.state.decline(self.state.find_payment(out_trade_no, app_id))

    # -- fault injection (see tuition.simulator.faults) -------------------------------

    def fail_next(
        self,
        operation: Operation | Literal["create", "query", "close", "refund", "refund_query"],
        count: int = 1,
        *,
        kind: FaultKind | Literal["error", "timeout"] = FaultKind.ERROR,
        applied: bool = False,
    ) -> None:
        """Fail the next ``count`` calls of ``operation`` with a 503 or a timeout."""
        self.faults.fail_next(operation, count, kind=kind, applied=applied)

    def delay_notifications(self, seconds: float) -> None:
        """Hold every later notification ``seconds`` before its first attempt (0 to stop)."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self.faults.notification_delay = seconds

    def duplicate_notifications(self, extra: int, *, concurrent: bool = False) -> None:
        """Send every later notification ``1 + extra`` times, one after another or at once."""
        if extra < 0:
            raise ValueError("extra must be >= 0")
        self.faults.duplicates = extra
        self.faults.concurrent_duplicates = concurrent

    def drop_next_notifications(self, count: int = 1) -> None:
        """Never send the next ``count`` notifications; only a query reveals the outcome."""
        self.faults.drop_next = count

    def tamper_next_notifications(self, count: int = 1) -> None:
        """Change the amount of the next ``count`` notifications after they are signed."""
        self.faults.tamper_next = count

    def fail_next_refunds(self, count: int = 1) -> None:
        """Settle the next ``count`` refunds as ``REFUND_FAILED``.

        Alipay refuses it at once (``ACQ.SELLER_BALANCE_NOT_ENOUGH``); WeChat Pay and the
        sandbox answer processing and then report it closed / failed.
        """
        self.faults.failing_refunds = count

    def hold_next_refunds(self, count: int = 1) -> None:
        """Keep the next ``count`` refunds processing until :meth:`settle_refund`."""
        self.faults.plan_refunds(RefundOutcome.HOLD, count)

    def delay_next_refunds(self, seconds: float, count: int = 1) -> None:
        """Keep the next ``count`` refunds processing ``seconds``, then succeed (notified)."""
        self.faults.plan_refunds(RefundOutcome.DELAY, count, seconds=seconds)

    def abnormal_next_refunds(self, count: int = 1) -> None:
        """End the next ``count`` refunds ABNORMAL (WeChat notifies ``REFUND.ABNORMAL``).

        The money stays out until :meth:`settle_refund` re-routes it (success) or gives
        it back; Alipay and the sandbox show such a refund as still processing.
        """
        self.faults.plan_refunds(RefundOutcome.ABNORMAL, count)

    def lose_next_refund_answers(self, count: int = 1) -> None:
        """Apply the next ``count`` refunds but time their answers out (ChannelTimeout)."""
        self.faults.fail_next(Operation.REFUND, count, kind=FaultKind.TIMEOUT, applied=True)

    def reset_faults(self) -> None:
        self.faults.reset()


def create_simulator(config: SimulatorConfig | None = None) -> Simulator:
    return Simulator(config or SimulatorConfig())
