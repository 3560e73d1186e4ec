"""The channel interface: what core code may ask of a payment channel.

Core code never imports a specific channel; it asks the registry by slug. Amounts are
integer minor units here; a channel converts to its wire format (``"88.80"``) only in
its own ``transformers.py``. Each channel maps its wire statuses to ``PaymentStatus`` /
``RefundStatus`` in one exhaustive ``match`` and raises on an unknown status.

Failure semantics every channel keeps:

- ``ChannelTimeout``: the request may or may not have reached the gateway (network
  timeout, 5xx). The caller leaves the payment as it was for the recovery job to query;
  it never marks it failed on a guess.
- ``ChannelError``: the gateway answered and refused (a business error code).
- ``RefundNotFound`` (a ``ChannelError``): ``query_refund`` asked about a refund the
  gateway has no record of. After a lost answer this means the request never arrived:
  submitting it again with the same refund id is safe (gateways de-duplicate by it).
- ``PaymentNotFound`` (a ``ChannelError``): ``query_payment`` asked about a trade the
  gateway has no record of (Alipay ``ACQ.TRADE_NOT_EXIST``, WeChat Pay a signed
  ``ORDER_NOT_EXIST``, the sandbox ``TRADE_NOT_EXIST``): the attempt never reached it
  (an API killed while creating it) or the buyer never opened it. ``code`` is the
  gateway's own code.
- ``NotificationRejected``: a notification failed verification (signature, app id,
  malformed body); it changes nothing and is answered with the failure ACK.

Refunds: ``refund()`` returns the state the gateway reports at once (``SUCCEEDED``,
``PENDING`` while it processes, ``FAILED``) or raises ``ChannelError`` when the gateway
refuses it outright (over-refund, balance too low: nothing was applied). A ``PENDING``
refund is settled later by a notification or by ``query_refund``. What the gateway does
with its fee is ``Channel.refund_fee_policy``; the fee it says it gave back for one
refund, when it says so, is ``RefundState.fee_returned``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Protocol, runtime_checkable

from tuition.domain.agreements import AgreementStatus
from tuition.domain.errors import ChannelError
from tuition.domain.payments import PaymentStatus, RefundStatus
from tuition.domain.reconciliation import Bill


class ChannelTimeout(ChannelError):
    """The outcome is unknown: the request may have been applied by the gateway."""

    default_code = "channel_timeout"


class RefundNotFound(ChannelError):
    """The gateway has no refund by that id (never received, or dropped as failed)."""

    default_code = "refund_not_found"


class PaymentNotFound(ChannelError):
    """The gateway has no trade by that id: the attempt never reached it."""

    default_code = "payment_not_found"


class NotificationRejected(Exception):
    """A notification that must change nothing; ``reason`` is stored for audit."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NextActionType(StrEnum):
    REDIRECT = "redirect"  # send the buyer's browser to ``url``
    QR_CODE = "qr_code"  # render ``qr_payload`` as a QR code for the buyer to scan
    APP_PARAMS = "app_params"  # hand ``params`` to the app / JSAPI bridge
    BANK_TRANSFER = "bank_transfer"  # show ``params``: the account and the reference
    FORM_POST = "form_post"  # the buyer's browser POSTs ``params`` as a form to ``url``


@dataclass(frozen=True, slots=True)
class NextAction:
    type: NextActionType
    url: str | None = None
    qr_payload: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    payment_id: str  # our id, sent as the channel's out_trade_no
    order_id: str
    amount: int
    currency: str
    subject: str
    method: str
    notify_url: str
    return_url: str | None
    expires_at: datetime
    client_ip: str | None = None
    payer_id: str | None = None  # e.g. WeChat openid for JSAPI


@dataclass(frozen=True, slots=True)
class CreatedPayment:
    next_action: NextAction
    channel_trade_no: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentState:
    """What the gateway says about one payment (query result or notification)."""

    payment_id: str
    status: PaymentStatus
    amount: int
    currency: str
    channel_trade_no: str | None = None
    paid_at: datetime | None = None
    raw_status: str = ""


class RefundFeePolicy(StrEnum):
    """What a channel does with its service fee when a payment is refunded.

    ``PRO_RATA``: the gateway gives back the fee in proportion to the amount refunded
    (the merchant's fee on the payment shrinks to the fee on what was kept).
    ``KEPT``: the gateway keeps the whole fee it took on the payment.
    See docs/channels.md for each channel's default and the sources.
    """

    PRO_RATA = "pro_rata"
    KEPT = "kept"


@dataclass(frozen=True, slots=True)
class RefundRequest:
    refund_id: str  # our id, sent as out_refund_no / out_request_no
    payment_id: str
    channel_trade_no: str | None
    amount: int
    payment_amount: int
    currency: str
    reason: str
    notify_url: str


@dataclass(frozen=True, slots=True)
class RefundState:
    refund_id: str
    payment_id: str
    status: RefundStatus
    amount: int
    currency: str
    channel_refund_no: str | None = None
    raw_status: str = ""
    # Some gateways (Alipay's trade notification) report the payment's total refunded so
    # far instead of this refund's amount; the service then checks against that total.
    amount_is_cumulative: bool = False
    # The service fee the gateway says it gave back for this refund, in minor units;
    # None when the gateway did not say (the ledger then applies ``refund_fee_policy``).
    fee_returned: int | None = None


class NotificationKind(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"
    TRANSFER = "transfer"  # a payout's transfer reached its end (WeChat Pay transfer bills)


@dataclass(frozen=True, slots=True)
class VerifiedNotification:
    """A notification whose signature verified; amounts still to be matched by the caller."""

    kind: NotificationKind
    app_id: str
    event: str  # the channel's event / status name, part of the de-duplication key
    trade_no: str  # the id the channel de-duplicates by (its trade or refund number)
    payment: PaymentState | None = None
    refund: RefundState | None = None
    transfer: TransferState | None = None
    transfer_amount: int | None = None  # what the gateway says it transferred, minor units


@dataclass(frozen=True, slots=True)
class Ack:
    """What to answer the gateway, in its own format."""

    status_code: int
    body: bytes
    media_type: str


class CloseOutcome(StrEnum):
    CLOSED = "closed"
    ALREADY_PAID = "already_paid"  # take the paid path instead
    NOT_FOUND = "not_found"  # the gateway never saw it: nothing to close


class Channel(Protocol):
    slug: str
    app_id: str
    fee_rate: Decimal
    refund_fee_policy: RefundFeePolicy
    methods: frozenset[str]

    async def create_payment(self, request: PaymentRequest) -> CreatedPayment: ...

    def verify_notification(
        self, headers: Mapping[str, str], body: bytes
    ) -> VerifiedNotification: ...

    def ack(self, accepted: bool) -> Ack: ...

    async def query_payment(self, payment_id: str) -> PaymentState: ...

    async def close_payment(self, payment_id: str) -> CloseOutcome: ...

    async def refund(self, request: RefundRequest) -> RefundState: ...

    async def query_refund(self, refund_id: str, payment_id: str) -> RefundState: ...


@runtime_checkable
class SupportsLongerExpiry(Protocol):
    """A channel whose payments take longer than the order's time to live (a bank
    transfer): starting an attempt extends the order's expiry to this long from now."""

    attempt_ttl: timedelta


@runtime_checkable
class SupportsPartialRefund(Protocol):
    supports_partial_refund: bool


@runtime_checkable
class SupportsStatements(Protocol):
    async def download_statement(self, day: date) -> bytes: ...


@runtime_checkable
class SupportsBills(Protocol):
    """Downloads and parses the gateway's bill of one business day (docs/reconciliation.md);
    a file that cannot be read raises ``BillMalformed``."""

    async def fetch_bill(self, day: date) -> Bill: ...


class TransferStatus(StrEnum):
    """What a gateway says of a transfer to a payee (a payout)."""

    SUCCEEDED = "succeeded"
    PROCESSING = "processing"  # accepted, not settled: ask again
    FAILED = "failed"  # nothing was paid
    RETURNED = "returned"  # paid, then sent back by the payee's side


@dataclass(frozen=True, slots=True)
class TransferRequest:
    payout_id: str  # out_biz_no / out_bill_no at the gateway: one transfer per payout
    amount: int  # minor units, net of tax
    currency: str
    account: str  # the payee's account at the gateway (an Alipay login, an openid)
    name: str  # the payee's real name, which the gateway checks
    title: str
    notify_url: str | None = None  # where a gateway that notifies transfers sends it


@dataclass(frozen=True, slots=True)
class TransferState:
    payout_id: str
    status: TransferStatus
    channel_transfer_no: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    # What the payee's client needs to confirm receipt while the gateway waits for it
    # (WeChat Pay's ``package_info`` in state WAIT_USER_CONFIRM); None otherwise.
    confirm_package: str | None = None
    raw_status: str = ""


@runtime_checkable
class SupportsTransfers(Protocol):
    """Pays a payee out of the merchant's balance. ``transfer`` repeated with the same
    ``payout_id`` is one transfer at the gateway; after a lost answer (ChannelTimeout)
    ``query_transfer`` decides, and ``None`` from it means the request never arrived, so
    sending it again is safe."""

    async def transfer(self, request: TransferRequest) -> TransferState: ...

    async def query_transfer(self, payout_id: str) -> TransferState | None: ...


# -- agreements: debiting a buyer by a signed agreement (周期扣款 / 委托代扣) ------------


@dataclass(frozen=True, slots=True)
class AgreementSignRequest:
    agreement_id: str  # our id: external_agreement_no (Alipay) / out_contract_code (WeChat)
    customer_id: str
    display_name: str  # shown to the buyer on the sign page
    period: str  # month | quarter | year
    single_amount: int  # the most one charge may take, minor units
    currency: str
    first_charge_on: date  # the first day a charge is made (Alipay's execute_time)
    notify_url: str  # where the sign and unsign notifications go
    return_url: str | None


@dataclass(frozen=True, slots=True)
class AgreementState:
    agreement_id: str
    status: AgreementStatus
    agreement_no: str | None = None  # the gateway's: agreement_no / contract_id
    signed_at: datetime | None = None
    ended_at: datetime | None = None
    raw_status: str = ""


@dataclass(frozen=True, slots=True)
class AgreementCharge:
    """One debit of a signed agreement; ``payment_id`` is the gateway's out_trade_no, so a
    repeat after a lost answer is the same trade."""

    payment_id: str
    agreement_no: str
    amount: int
    currency: str
    subject: str
    notify_url: str


@dataclass(frozen=True, slots=True)
class VerifiedAgreementNotification:
    app_id: str
    event: str
    agreement: AgreementState


@runtime_checkable
class SupportsAgreements(Protocol):
    """A channel that can debit a buyer by agreement (docs/channels.md "Agreements").

    ``sign_agreement`` answers the buyer's next action (the gateway's sign page);
    ``charge_agreement`` answers the trade as the gateway reports it at once (``PENDING``
    while it deducts asynchronously), raises ``ChannelError`` when refused (no money
    moved) and ``ChannelTimeout`` when the outcome is unknown, which ``query_payment``
    then decides. ``query_agreement`` returns None for an agreement the gateway has no
    record of (never signed). ``agreements_enabled`` is False for a channel that could but
    is not configured to (WeChat Pay without a 委托代扣 plan).
    """

    @property
    def agreements_enabled(self) -> bool: ...

    async def sign_agreement(self, request: AgreementSignRequest) -> NextAction: ...

    async def query_agreement(self, agreement_id: str) -> AgreementState | None: ...

    async def charge_agreement(self, charge: AgreementCharge) -> PaymentState: ...

    async def end_agreement(self, agreement_id: str, agreement_no: str) -> None: ...

    def verify_agreement_notification(
        self, headers: Mapping[str, str], body: bytes
    ) -> VerifiedAgreementNotification: ...
