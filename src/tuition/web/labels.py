"""Words the pages show for codes: channels, methods, kinds, statuses and refusals.

Marked with ``N_`` for extraction and translated where they are shown (``_(label)`` in a
template, or :func:`tuition.web.i18n.gettext_for`).
"""

from __future__ import annotations

from tuition.web.i18n import N_

CHANNELS = {
    "alipay": N_("Alipay"),
    "wechatpay": N_("WeChat Pay"),
    "unionpay": N_("UnionPay"),
    "sandbox": N_("Sandbox"),
    "wallet": N_("Balance"),
    "bank_transfer": N_("Bank transfer"),
    "apple": N_("App Store"),
}

# Methods a buyer can use from this page (which one per channel: web/checkout_methods.py);
# app and mini-program payments need the platform's own app around them.
METHODS = {
    "jsapi": N_("Pay in WeChat"),
    "page": N_("Continue on the payment site"),
    "wap": N_("Pay in the mobile browser"),
    "h5": N_("Pay in the mobile browser"),
    "qr": N_("Scan a QR code"),
    "native": N_("Scan a QR code"),
    "transfer": N_("Transfer from your bank account"),
}

KINDS = {
    "course": N_("Course"),
    "article": N_("Article"),
    "column": N_("Column"),
    "bundle": N_("Bundle"),
    "membership": N_("Membership"),
    "consultation": N_("Consultation"),
    "topup": N_("Top-up"),
}

ORDER_STATUSES = {
    "pending_payment": N_("Awaiting payment"),
    "paid": N_("Paid"),
    "partially_refunded": N_("Partially refunded"),
    "refunded": N_("Refunded"),
    "cancelled": N_("Cancelled"),
    "expired": N_("Expired"),
}

PAYMENT_STATUSES = {
    "created": N_("Created"),
    "pending": N_("Pending"),
    "succeeded": N_("Succeeded"),
    "failed": N_("Failed"),
    "closed": N_("Closed"),
}

REFUND_STATUSES = {
    "pending": N_("Pending"),
    "succeeded": N_("Succeeded"),
    "failed": N_("Failed"),
}

REFUND_REASONS = {
    "requested_by_customer": N_("Requested by the customer"),
    "duplicate": N_("Duplicate payment"),
    "fraudulent": N_("Fraudulent"),
    "content_issue": N_("Problem with the content"),
    "other": N_("Other"),
}

# Why the console did not refund, by the error's code; any other code shows its message.
REFUND_PROBLEMS = {
    "refund_window_closed": N_("The refund window of this purchase has closed."),
    "consumption_limit_exceeded": N_("The buyer has consumed more than the refund rules allow."),
    "refund_exceeds_refundable": N_("That is more than can be refunded now."),
    "order_not_refundable": N_("This order cannot be refunded."),
    "refund_not_retryable": N_("Only a failed refund can be retried."),
    "validation_failed": N_("Check the refund form."),
    "amount_invalid": N_("Enter an amount such as 12.50."),
    "refund_over_role_limit": N_("That is more than your role may refund at once; ask finance."),
}
GENERIC_REFUND_PROBLEM = N_("The refund was not made.")

LOT_KINDS = {
    "topup": N_("Top-up"),
    "bonus": N_("Bonus coins"),
    "refund": N_("Refund"),
    "adjustment": N_("Adjustment"),
}

WALLET_CAUSES = {
    "topup": N_("Top-up"),
    "order": N_("Order paid from balance"),
    "refund": N_("Refund to balance"),
    "adjustment": N_("Adjustment"),
    "release": N_("Held part released"),
}

# Why the console did not adjust a wallet, by the error's code.
ADJUSTMENT_PROBLEMS = {
    "insufficient_balance": N_("The balance does not cover that debit."),
    "amount_invalid": N_("Enter an amount such as 12.50 or -3.00."),
    "amount_too_large": N_("That amount is too large."),
    "currency_unknown": N_("Enter a currency code such as CNY."),
    "reason_missing": N_("Give a reason for the adjustment."),
    "reason_invalid": N_("The reason is too long."),
    "validation_failed": N_("Check the adjustment form."),
}
GENERIC_ADJUSTMENT_PROBLEM = N_("The adjustment was not made.")

# Errors the checkout page explains; any other code shows the generic message.
CHECKOUT_ERRORS = {
    "coupon_unknown": N_("There is no coupon with that code."),
    "coupon_inactive": N_("This coupon is no longer active."),
    "coupon_not_started": N_("This coupon cannot be used yet."),
    "coupon_expired": N_("This coupon has expired."),
    "coupon_exhausted": N_("This coupon has been fully redeemed."),
    "coupon_customer_limit_reached": N_("You have already used this coupon."),
    "coupon_not_applicable": N_("This coupon does not apply to this order."),
    "coupon_below_minimum_spend": N_("This order does not reach the coupon's minimum spend."),
    "coupon_code_missing": N_("Enter a coupon code."),
    "payment_in_progress": N_(
        "A payment is under way, so the coupon can no longer be changed. "
        "Wait for it to finish or expire."
    ),
    "order_changed": N_("The order changed meanwhile; please try again."),
    "order_not_payable": N_("This order can no longer be paid."),
    "option_unknown": N_("Choose a payment method."),
    "channel_timeout": N_("The payment service did not answer. Please try again."),
    "channel_error": N_("The payment service refused the payment. Try another method."),
    "payment_failed": N_("The payment did not go through. Try again or choose another method."),
    "insufficient_balance": N_("Your balance does not cover this order. Choose another method."),
    "wallet_cannot_pay_topup": N_("A top-up cannot be paid from your balance."),
    "order_not_free": N_("This order is no longer free. Choose how to pay."),
    "order_is_free": N_("This order is free: there is nothing to pay."),
    "topup_not_free": N_("A top-up cannot be free."),
    "payer_id_required": N_(
        "WeChat Pay cannot be used here yet. Pay on another device with the QR code."
    ),
    "split_needs_openid": N_("Pay the whole order with WeChat Pay, or use a QR code."),
    "wechat_oauth_failed": N_("WeChat could not confirm who is paying. Please try again."),
}
GENERIC_ERROR = N_("Something went wrong. Please try again.")

# Why a payment attempt failed, in words, by the gateway's status or refusal code.
DECLINE_REASONS = {
    "FAILED": N_("The payment was declined."),  # sandbox
    "PAYERROR": N_("WeChat Pay declined the payment (for example, the card was refused)."),
    "CLOSED": N_("The payment was closed before it was completed."),
    "TRADE_CLOSED": N_("The payment was closed before it was completed."),
    "REVOKED": N_("The payment was cancelled in WeChat."),
    "NOTENOUGH": N_("The account did not have enough money."),
    "ACQ.TRADE_HAS_CLOSE": N_("The payment was closed before it was completed."),
    "ACQ.BUYER_BALANCE_NOT_ENOUGH": N_("The account did not have enough money."),
    "channel_timeout": N_("The payment service did not answer in time."),
}
DECLINE_GENERIC = N_("The payment service refused the payment.")


def decline_reason(code: str | None) -> str:
    return DECLINE_REASONS.get(code or "", DECLINE_GENERIC)


NOTICES = {
    "coupon_applied": N_("Coupon applied."),
    "coupon_removed": N_("Coupon removed."),
}

SUBSCRIPTION_STATUSES = {
    "trialing": N_("Trialing"),
    "active": N_("Active"),
    "past_due": N_("Past due"),
    "canceled": N_("Canceled"),
    "expired": N_("Expired"),
}

SUBSCRIPTION_ORDER_KINDS = {
    "first": N_("First period"),
    "renewal": N_("Renewal"),
    "change": N_("Plan change"),
}

SUBSCRIPTION_ORDER_STATUSES = {
    "pending": N_("Awaiting payment"),
    "paid": N_("Paid"),
    "failed": N_("Unpaid, retrying"),
    "void": N_("Void"),
}


# What recording a bank transfer in the console came to (services/bank_transfers.py).
TRANSFER_OUTCOMES = {
    "paid": N_("The transfer was recorded and the order is paid."),
    "underpaid": N_(
        "The transfer was recorded; it does not cover the order, which keeps waiting for the rest."
    ),
    "overpaid": N_(
        "The transfer was recorded and the order is paid, but more arrived than asked: "
        "send the excess back."
    ),
    "duplicate": N_("This bank serial number was recorded before; nothing changed."),
    "no_transfer_waiting": N_("This order is not waiting for a bank transfer."),
}
GENERIC_TRANSFER_PROBLEM = N_("The transfer was not recorded.")
AGREEMENT_STATUSES = {
    "pending": N_("Not signed yet"),
    "active": N_("Signed"),
    "ended": N_("Ended"),
}
ROLES = {
    "owner": N_("Owner"),
    "finance": N_("Finance"),
    "support": N_("Support"),
    "viewer": N_("Viewer"),
}
