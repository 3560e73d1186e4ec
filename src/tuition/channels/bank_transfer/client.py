"""The bank transfer channel: no gateway, only the platform's account and a reference.

Starting a payment answers the account to pay to and a transfer reference unique to the
attempt: ``TU`` + the payment id's ULID (``TU01JD…``, 28 characters, upper-case Crockford
base32), so a reference found in a bank statement's memo names exactly one payment, with
no table to look it up in. The money is confirmed by finance (services/bank_transfers.py);
asking the "gateway" about a payment answers that it is still waiting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from tuition.channels.base import (
    Ack,
    CloseOutcome,
    CreatedPayment,
    NextAction,
    NextActionType,
    NotificationRejected,
    PaymentNotFound,
    PaymentRequest,
    PaymentState,
    RefundFeePolicy,
    RefundNotFound,
    RefundRequest,
    RefundState,
    VerifiedNotification,
)
from tuition.domain.errors import ChannelError
from tuition.domain.money import format_amount, get_currency

SLUG = "bank_transfer"
METHOD = "transfer"
_PREFIX = "TU"
_PAYMENT_PREFIX = "pay_"
# A reference anywhere in a memo, however the bank spaced or cased it.
REFERENCE_RE = re.compile(r"TU[0-9A-HJKMNP-TV-Z]{26}")


def reference_of(payment_id: str) -> str:
    return _PREFIX + payment_id.removeprefix(_PAYMENT_PREFIX)


def payment_of(reference: str) -> str | None:
    """The payment a reference (or a memo holding one) names; None if none is in it."""
    found = REFERENCE_RE.search(re.sub(r"[\s\-_]", "", reference).upper())
    return None if found is None else _PAYMENT_PREFIX + found.group(0)[len(_PREFIX) :]


@dataclass(frozen=True, slots=True)
class BankTransferConfig:
    account_name: str  # 收款户名
    bank_name: str  # 开户行
    account_number: str = field(repr=False)  # 账号
    expiry: timedelta = timedelta(days=3)  # how long an order waits for the transfer


class BankTransferChannel:
    slug = SLUG
    app_id = "bank_transfer"
    methods = frozenset({METHOD})
    fee_rate = Decimal(0)  # the bank's charges, if any, are the payer's
    refund_fee_policy = RefundFeePolicy.KEPT

    def __init__(self, config: BankTransferConfig) -> None:
        self.config = config
        self.attempt_ttl = config.expiry

    def __repr__(self) -> str:
        return f"BankTransferChannel(bank={self.config.bank_name!r})"

    async def create_payment(self, request: PaymentRequest) -> CreatedPayment:
        reference = reference_of(request.payment_id)
        return CreatedPayment(
            next_action=NextAction(
                type=NextActionType.BANK_TRANSFER,
                params={
                    "account_name": self.config.account_name,
                    "bank_name": self.config.bank_name,
                    "account_number": self.config.account_number,
                    "reference": reference,
                    "amount": format_amount(request.amount, get_currency(request.currency)),
                    "currency": request.currency,
                },
            ),
            channel_trade_no=reference,
        )

    def verify_notification(self, headers: Mapping[str, str], body: bytes) -> VerifiedNotification:
        raise NotificationRejected("bank transfers are recorded by finance, not notified")

    def ack(self, accepted: bool) -> Ack:
        return Ack(200 if accepted else 400, b"", "text/plain")

    async def query_payment(self, payment_id: str) -> PaymentState:
        # Nothing to ask: the attempt stays open while its order waits, and is closed
        # once the order no longer does (services/payments.reconcile_payment).
        raise PaymentNotFound(
            f"payment {payment_id} waits for finance to record its transfer",
            code="bank_transfer_waiting",
        )

    async def close_payment(self, payment_id: str) -> CloseOutcome:
        return CloseOutcome.CLOSED

    async def refund(self, request: RefundRequest) -> RefundState:
        raise ChannelError(
            "a bank transfer is refunded by a transfer back from the platform's bank; "
            "record it there",
            code="bank_transfer_manual_refund",
        )

    async def query_refund(self, refund_id: str, payment_id: str) -> RefundState:
        raise RefundNotFound(f"refund {refund_id} was never sent")
