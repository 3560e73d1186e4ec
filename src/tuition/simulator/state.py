"""The simulated gateway's own books: payments and refunds in memory, in its wire statuses.

Every method runs without awaiting, so under asyncio each check-then-change is atomic:
two racing requests for the same trade see one transition. State changes the merchant
did not ask for synchronously (buyer paid or declined, the trade expired, a refund
settled) are reported through ``on_event`` so the notifier can tell the merchant.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from tuition.clock import Clock
from tuition.simulator.records import (
    GatewayError,
    PaymentWireStatus,
    RefundWireStatus,
    SimPayment,
    SimRefund,
)


@dataclass(frozen=True, slots=True)
class GatewayEvent:
    """``name`` is the notification event, e.g. ``payment.paid`` or ``refund.succeeded``."""

    name: str
    payment: SimPayment
    refund: SimRefund | None = None


_TRADE_PREFIXES = {"sandbox": "SBX", "alipay": "ALI", "wechatpay": "WX", "unionpay": "UP"}


def _new_no(prefix: str, at: datetime) -> str:
    if prefix.endswith("UP"):  # UnionPay's queryId: 21 digits
        return f"{at:%Y%m%d%H%M%S}{secrets.randbelow(10**7):07d}"
    return f"{prefix}{at:%Y%m%d}{secrets.token_hex(8).upper()}"


class GatewayState:
    def __init__(
        self, clock: Clock, public_base_url: str, on_event: Callable[[GatewayEvent], None]
    ) -> None:
        self._clock = clock
        self._base_url = public_base_url.rstrip("/")
        self._on_event = on_event
        self.payments: dict[tuple[str, str], SimPayment] = {}
        self.refunds: dict[tuple[str, str], SimRefund] = {}
        self._by_trade_no: dict[str, SimPayment] = {}

    # -- payments ---------------------------------------------------------------------

    def create_payment(
        self,
        app_id: str,
        *,
        out_trade_no: str,
        amount: int,
        currency: str,
        subject: str,
        method: str,
        notify_url: str,
        return_url: str | None,
        expires_at: datetime,
        protocol: str = "sandbox",
        details: Mapping[str, str] | None = None,
    ) -> SimPayment:
        """Create a trade, or return the existing one for a retried identical request."""
        existing = self.payments.get((app_id, out_trade_no))
        if existing is not None:
            if (existing.amount, existing.currency) != (amount, currency):
                raise GatewayError(
                    "OUT_TRADE_NO_USED",
                    f"out_trade_no {out_trade_no} was used with another amount or currency",
                    409,
                )
            return self._refresh(existing)
        now = self._clock.now()
        if expires_at <= now:
            raise GatewayError("INVALID_REQUEST", "expires_at must be in the future")
        trade_no = _new_no(_TRADE_PREFIXES.get(protocol, "SBX"), now)
        payment = SimPayment(
            app_id=app_id,
            out_trade_no=out_trade_no,
            trade_no=trade_no,
            amount=amount,
            currency=currency,
            subject=subject,
            method=method,
            notify_url=notify_url,
            return_url=return_url,
            expires_at=expires_at,
            created_at=now,
            pay_url=f"{self._base_url}/pay/{trade_no}",
            protocol=protocol,
            details=dict(details or {}),
        )
        self.payments[(app_id, out_trade_no)] = payment
        self._by_trade_no[trade_no] = payment
        return payment

    def get_payment(self, app_id: str, out_trade_no: str) -> SimPayment:
        payment = self.payments.get((app_id, out_trade_no))
        if payment is None:
            raise GatewayError("TRADE_NOT_EXIST", f"no trade {out_trade_no}", 404)
        return self._refresh(payment)

    def find_payment(self, out_trade_no: str, app_id: str | None = None) -> SimPayment:
        """Look a trade up by out_trade_no alone when only one merchant has it (for tests)."""
        if app_id is not None:
            return self.get_payment(app_id, out_trade_no)
        found = [p for (_, no), p in self.payments.items() if no == out_trade_no]
        if len(found) != 1:
            raise GatewayError("TRADE_NOT_EXIST", f"{len(found)} trades {out_trade_no}", 404)
        return self._refresh(found[0])

    def by_trade_no(self, trade_no: str) -> SimPayment:
        payment = self._by_trade_no.get(trade_no)
        if payment is None:
            raise GatewayError("TRADE_NOT_EXIST", f"no trade {trade_no}", 404)
        return self._refresh(payment)

    def close_payment(self, app_id: str, out_trade_no: str) -> SimPayment:
        """Close an unpaid trade; closed or failed trades are answered as they are."""
        payment = self.get_payment(app_id, out_trade_no)
        if payment.status is PaymentWireStatus.PAID:
            raise GatewayError("TRADE_ALREADY_PAID", f"trade {out_trade_no} is paid", 409)
        if payment.status is PaymentWireStatus.WAIT_PAY:
            payment.status = PaymentWireStatus.CLOSED
            payment.closed_at = self._clock.now()
        return payment

    def pay(self, payment: SimPayment) -> SimPayment:
        self._require_payable(self._refresh(payment))
        payment.status = PaymentWireStatus.PAID
        payment.paid_at = self._clock.now()
        self._on_event(GatewayEvent("payment.paid", payment))
        return payment

    def decline(self, payment: SimPayment) -> SimPayment:
        self._require_payable(self._refresh(payment))
        payment.status = PaymentWireStatus.FAILED
        self._on_event(GatewayEvent("payment.failed", payment))
        return payment

    def _require_payable(self, payment: SimPayment) -> None:
        if payment.status is not PaymentWireStatus.WAIT_PAY:
            raise GatewayError(
                "TRADE_STATUS_ERROR", f"trade is {payment.status}, not awaiting payment", 409
            )

    def _refresh(self, payment: SimPayment) -> SimPayment:
        # Expiry is applied lazily on every access rather than by a timer task, so a
        # frozen test clock fully controls it.
        now = self._clock.now()
        if payment.status is PaymentWireStatus.WAIT_PAY and now >= payment.expires_at:
            payment.status = PaymentWireStatus.CLOSED
            payment.closed_at = now
            self._on_event(GatewayEvent("payment.closed", payment))
        return payment

    # -- refunds ----------------------------------------------------------------------

    def refunded_amount(self, payment: SimPayment) -> int:
        """Refunded or still settling (abnormal too); failed refunds give their amount back."""
        return sum(
            r.amount
            for r in self.refunds.values()
            if r.app_id == payment.app_id
            and r.out_trade_no == payment.out_trade_no
            and r.status is not RefundWireStatus.REFUND_FAILED
        )

    def create_refund(
        self,
        app_id: str,
        *,
        out_trade_no: str,
        out_refund_no: str,
        amount: int,
        currency: str | None,
        reason: str,
        notify_url: str | None,
        retry_failed: bool = False,
    ) -> tuple[SimRefund, bool]:
        """Start a refund; returns it and whether it is new (a retry returns the original).

        With ``retry_failed`` (Alipay's rule: retry a failed refund with the same request
        number) a failed refund sent again is started again, as if new.
        """
        existing = self.refunds.get((app_id, out_refund_no))
        if existing is not None:
            if (existing.out_trade_no, existing.amount) != (out_trade_no, amount):
                raise GatewayError(
                    "OUT_REFUND_NO_USED",
                    f"out_refund_no {out_refund_no} was used for another refund",
                    409,
                )
            if not (retry_failed and existing.status is RefundWireStatus.REFUND_FAILED):
                return existing, False
            payment = self.get_payment(app_id, out_trade_no)
            remaining = payment.amount - self.refunded_amount(payment)
            if amount > remaining:
                raise GatewayError(
                    "REFUND_AMOUNT_EXCEEDED", f"at most {remaining} is left to refund", 409
                )
            existing.status = RefundWireStatus.REFUND_PROCESSING
            return existing, True
        payment = self.get_payment(app_id, out_trade_no)
        if payment.status is not PaymentWireStatus.PAID:
            raise GatewayError("TRADE_NOT_PAID", f"trade is {payment.status}", 409)
        if currency is not None and currency != payment.currency:
            raise GatewayError("CURRENCY_MISMATCH", f"trade is in {payment.currency}")
        remaining = payment.amount - self.refunded_amount(payment)
        if amount > remaining:
            raise GatewayError(
                "REFUND_AMOUNT_EXCEEDED", f"at most {remaining} is left to refund", 409
            )
        now = self._clock.now()
        refund = SimRefund(
            app_id=app_id,
            out_refund_no=out_refund_no,
            refund_no=_new_no("R" + _TRADE_PREFIXES.get(payment.protocol, "SBX"), now),
            out_trade_no=out_trade_no,
            trade_no=payment.trade_no,
            amount=amount,
            currency=payment.currency,
            reason=reason,
            notify_url=notify_url or payment.notify_url,
            created_at=now,
        )
        self.refunds[(app_id, out_refund_no)] = refund
        return refund, True

    def get_refund(self, app_id: str, out_trade_no: str, out_refund_no: str) -> SimRefund:
        refund = self.refunds.get((app_id, out_refund_no))
        if refund is None or refund.out_trade_no != out_trade_no:
            raise GatewayError("REFUND_NOT_EXIST", f"no refund {out_refund_no}", 404)
        return refund

    def find_refund(self, out_refund_no: str, app_id: str | None = None) -> SimRefund:
        """A refund by its out_refund_no alone when only one merchant has it (for tests)."""
        found = [
            r
            for (app, no), r in self.refunds.items()
            if no == out_refund_no and app_id in (None, app)
        ]
        if len(found) != 1:
            raise GatewayError("REFUND_NOT_EXIST", f"{len(found)} refunds {out_refund_no}", 404)
        return found[0]

    def mark_abnormal(self, refund: SimRefund) -> None:
        """The buyer's account refused the money: it waits, out of the merchant's hands."""
        if refund.status is not RefundWireStatus.REFUND_PROCESSING or refund.abnormal:
            return
        refund.abnormal = True
        payment = self.payments[(refund.app_id, refund.out_trade_no)]
        self._on_event(GatewayEvent("refund.abnormal", payment, refund))

    def settle_refund(self, refund: SimRefund, *, succeed: bool) -> None:
        """End a processing (or abnormal) refund; anything already settled is left alone."""
        if refund.status is not RefundWireStatus.REFUND_PROCESSING:
            return
        refund.abnormal = False
        if succeed:
            refund.status = RefundWireStatus.REFUND_SUCCESS
            refund.refunded_at = self._clock.now()
        else:
            refund.status = RefundWireStatus.REFUND_FAILED
        payment = self.payments[(refund.app_id, refund.out_trade_no)]
        name = "refund.succeeded" if succeed else "refund.failed"
        self._on_event(GatewayEvent(name, payment, refund))

    def processing_refunds(self) -> list[SimRefund]:
        return [r for r in self.refunds.values() if r.status is RefundWireStatus.REFUND_PROCESSING]
