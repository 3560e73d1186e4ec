"""The App Store channel: verifies what the app and Apple send, with Apple's library.

Purchases are made in the iOS app, not through Tuition: the app's backend posts the
signed transaction (``POST /v1/channels/apple/transactions``) and Apple posts App Store
Server Notifications V2 (``POST /v1/notify/apple``). Both are JWS verified by
``appstoreserverlibrary.signed_data_verifier.SignedDataVerifier``: the ``x5c`` chain up
to a configured root (with Apple's certificate OIDs on the leaf and the intermediate),
the ES256 signature, the bundle id, the app's Apple id (Production) and the
environment. Refunds are made by Apple alone, so ``refund`` refuses; the rest of the
``Channel`` interface answers that there is nothing to ask the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from appstoreserverlibrary.models.Environment import Environment
from appstoreserverlibrary.models.JWSTransactionDecodedPayload import (
    JWSTransactionDecodedPayload,
)
from appstoreserverlibrary.signed_data_verifier import (
    SignedDataVerifier,
    VerificationException,
)

from tuition.channels.apple.config import AppleConfig, AppleProduct
from tuition.channels.base import (
    Ack,
    CloseOutcome,
    CreatedPayment,
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
from tuition.domain.errors import ChannelError, CurrencyError, InvalidRequest
from tuition.domain.money import get_currency

SLUG = "apple"
METHOD = "in_app"


class AppleDataInvalid(InvalidRequest):
    """A signed transaction that did not verify, or that Tuition cannot sell."""

    default_code = "apple_transaction_invalid"


@dataclass(frozen=True, slots=True)
class AppleTransaction:
    """A verified App Store transaction, in Tuition's terms."""

    transaction_id: str
    original_transaction_id: str
    product_id: str  # the App Store product id
    purchased_at: datetime
    amount: int | None  # what the buyer paid, minor units of ``currency``
    currency: str | None
    quantity: int
    family_shared: bool
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    auto_renewable: bool = False  # type "Auto-Renewable Subscription"
    # A refund's kind (REFUND_FULL, REFUND_PRORATED, FAMILY_REVOKE) and, when prorated,
    # the share refunded in thousandths of a percent (100000 = all of it).
    revocation_type: str | None = None
    revocation_percentage: int | None = None


@dataclass(frozen=True, slots=True)
class AppleNotification:
    """A verified App Store Server Notification V2."""

    uuid: str
    type: str
    subtype: str | None
    transaction: AppleTransaction | None


class AppleChannel:
    slug = SLUG
    methods = frozenset({METHOD})
    # Apple does not keep its commission on a refunded sale.
    refund_fee_policy = RefundFeePolicy.PRO_RATA

    def __init__(self, config: AppleConfig) -> None:
        self.config = config
        self.app_id = config.bundle_id
        self.fee_rate = Decimal("0.30")  # the default; each product has its own
        self._verifier = SignedDataVerifier(
            list(config.root_certificates),
            config.online_checks,
            Environment(config.environment),
            config.bundle_id,
            config.app_apple_id,
        )

    def __repr__(self) -> str:
        return f"AppleChannel(bundle_id={self.config.bundle_id!r}, env={self.config.environment})"

    def product(self, app_store_product_id: str) -> AppleProduct:
        found = self.config.products.get(app_store_product_id)
        if found is None:
            raise AppleDataInvalid(
                f"App Store product {app_store_product_id!r} is not sold here "
                "(TUITION_APPLE_PRODUCTS)",
                code="apple_product_unknown",
                param="signed_transaction",
            )
        return found

    # -- what the app and Apple send ----------------------------------------------------

    def verify_transaction(self, signed_transaction: str) -> AppleTransaction:
        """Verify a signed transaction from the app; AppleDataInvalid naming the check."""
        try:
            decoded = self._verifier.verify_and_decode_signed_transaction(signed_transaction)
        except VerificationException as exc:
            raise AppleDataInvalid(
                f"the signed transaction did not verify ({exc.status.name})",
                param="signed_transaction",
            ) from None
        return _transaction(decoded)

    def verify_apple_notification(self, body: bytes) -> AppleNotification:
        """Verify a notification's ``signedPayload`` and the transaction inside it."""
        import json

        try:
            payload = json.loads(body)
            signed = payload["signedPayload"]
            if not isinstance(signed, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise NotificationRejected('the body is not {"signedPayload": …}') from None
        try:
            decoded = self._verifier.verify_and_decode_notification(signed)
        except VerificationException as exc:
            raise NotificationRejected(
                f"signedPayload did not verify ({exc.status.name})"
            ) from None
        transaction = None
        signed_info = decoded.data.signedTransactionInfo if decoded.data else None
        if signed_info is not None:
            try:
                transaction = _transaction(
                    self._verifier.verify_and_decode_signed_transaction(signed_info)
                )
            except (VerificationException, AppleDataInvalid) as exc:
                raise NotificationRejected(f"signedTransactionInfo did not verify: {exc}") from None
        if not decoded.notificationUUID or not decoded.rawNotificationType:
            raise NotificationRejected("the notification has no notificationUUID or type")
        return AppleNotification(
            uuid=decoded.notificationUUID,
            type=decoded.rawNotificationType,
            subtype=decoded.rawSubtype,
            transaction=transaction,
        )

    # -- the Channel interface ------------------------------------------------------------

    async def create_payment(self, request: PaymentRequest) -> CreatedPayment:
        raise InvalidRequest(
            "App Store purchases are made in the iOS app; its backend posts the signed "
            "transaction to POST /v1/channels/apple/transactions",
            code="method_unsupported",
            param="channel",
        )

    def verify_notification(self, headers: Mapping[str, str], body: bytes) -> VerifiedNotification:
        raise NotificationRejected("App Store notifications are handled by /v1/notify/apple")

    def ack(self, accepted: bool) -> Ack:
        # Apple retries a notification until it gets HTTP 200.
        return Ack(200 if accepted else 400, b"", "text/plain")

    async def query_payment(self, payment_id: str) -> PaymentState:
        raise PaymentNotFound(f"payment {payment_id} is settled from its signed transaction")

    async def close_payment(self, payment_id: str) -> CloseOutcome:
        return CloseOutcome.NOT_FOUND

    async def refund(self, request: RefundRequest) -> RefundState:
        raise ChannelError(
            "App Store purchases are refunded by Apple (the buyer asks Apple); Tuition books "
            "the refund when Apple's REFUND notification arrives",
            code="apple_refunds_by_apple",
        )

    async def query_refund(self, refund_id: str, payment_id: str) -> RefundState:
        raise RefundNotFound(f"refund {refund_id} was never sent to Apple")


def _transaction(decoded: JWSTransactionDecodedPayload) -> AppleTransaction:
    if not decoded.transactionId or not decoded.productId or decoded.purchaseDate is None:
        raise AppleDataInvalid(
            "the signed transaction has no transactionId, productId or purchaseDate",
            param="signed_transaction",
        )
    amount = None
    currency = decoded.currency
    if decoded.price is not None and currency is not None:
        amount = _minor_units(decoded.price, currency)
    return AppleTransaction(
        transaction_id=decoded.transactionId,
        original_transaction_id=decoded.originalTransactionId or decoded.transactionId,
        product_id=decoded.productId,
        purchased_at=_time(decoded.purchaseDate),
        amount=amount,
        currency=currency,
        quantity=decoded.quantity or 1,
        family_shared=decoded.rawInAppOwnershipType == "FAMILY_SHARED",
        expires_at=None if decoded.expiresDate is None else _time(decoded.expiresDate),
        revoked_at=None if decoded.revocationDate is None else _time(decoded.revocationDate),
        auto_renewable=decoded.rawType == "Auto-Renewable Subscription",
        revocation_type=decoded.rawRevocationType,
        revocation_percentage=_percentage(decoded.revocationPercentage),
    )


def _percentage(value: int | None) -> int | None:
    """Apple's ``revocationPercentage``: milliunits of a percent, 0 to 100000."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100_000:
        raise AppleDataInvalid(
            f"revocationPercentage {value!r} is not between 0 and 100000",
            param="signed_transaction",
        )
    return value


def _minor_units(milliunits: int, currency: str) -> int:
    """Apple's ``price`` is in milliunits of the currency (6.99 USD = 6990)."""
    try:
        exponent = get_currency(currency).exponent
    except CurrencyError:
        raise AppleDataInvalid(
            f"the transaction's currency {currency!r} is not known here",
            param="signed_transaction",
        ) from None
    scaled = Decimal(milliunits) * (Decimal(10) ** exponent) / Decimal(1000)
    if scaled != scaled.to_integral_value():
        raise AppleDataInvalid(
            f"price {milliunits} milliunits is not a whole amount of {currency}",
            param="signed_transaction",
        )
    return int(scaled)


def _time(milliseconds: int) -> datetime:
    return datetime.fromtimestamp(milliseconds / 1000, tz=UTC)
