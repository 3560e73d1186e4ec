"""The simulated gateway's records and wire statuses (its own vocabulary, not Tuition's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class PaymentWireStatus(StrEnum):
    WAIT_PAY = "WAIT_PAY"
    PAID = "PAID"
    CLOSED = "CLOSED"
    FAILED = "FAILED"


class RefundWireStatus(StrEnum):
    REFUND_PROCESSING = "REFUND_PROCESSING"
    REFUND_SUCCESS = "REFUND_SUCCESS"
    REFUND_FAILED = "REFUND_FAILED"


class GatewayError(Exception):
    """A business refusal, answered as ``{"code", "message"}`` with ``status``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def wire_time(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class SimPayment:
    app_id: str
    out_trade_no: str
    trade_no: str
    amount: int
    currency: str
    subject: str
    method: str
    notify_url: str
    return_url: str | None
    expires_at: datetime
    created_at: datetime
    pay_url: str
    status: PaymentWireStatus = PaymentWireStatus.WAIT_PAY
    paid_at: datetime | None = None
    closed_at: datetime | None = None
    # Which wire protocol the trade was opened through (sandbox, alipay, wechatpay) and
    # what that protocol needs to answer about it later (e.g. WeChat's appid, openid).
    protocol: str = "sandbox"
    details: dict[str, str] = field(default_factory=dict)

    def to_wire(self, refunded_amount: int = 0) -> dict[str, object]:
        return {
            "out_trade_no": self.out_trade_no,
            "trade_no": self.trade_no,
            "status": str(self.status),
            "amount": self.amount,
            "currency": self.currency,
            "subject": self.subject,
            "method": self.method,
            "pay_url": self.pay_url,
            "qr_code": self.pay_url,  # scanning the code opens the buyer page
            "paid_at": wire_time(self.paid_at),
            "expires_at": wire_time(self.expires_at),
            "refunded_amount": refunded_amount,
        }


@dataclass(slots=True)
class SimRefund:
    app_id: str
    out_refund_no: str
    refund_no: str
    out_trade_no: str
    trade_no: str
    amount: int
    currency: str
    reason: str
    notify_url: str
    created_at: datetime
    status: RefundWireStatus = RefundWireStatus.REFUND_PROCESSING
    refunded_at: datetime | None = None
    # Still processing, but the buyer's account refused the money (WeChat Pay's ABNORMAL):
    # it is out of the merchant's hands until re-routed. Other protocols see processing.
    abnormal: bool = False

    def to_wire(self) -> dict[str, object]:
        return {
            "out_refund_no": self.out_refund_no,
            "refund_no": self.refund_no,
            "out_trade_no": self.out_trade_no,
            "trade_no": self.trade_no,
            "status": str(self.status),
            "amount": self.amount,
            "currency": self.currency,
            "refunded_at": wire_time(self.refunded_at),
        }
