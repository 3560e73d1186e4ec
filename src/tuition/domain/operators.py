"""Who may do what in the admin console: operators' roles and what each permits.

- ``owner``: everything, and manages operators;
- ``finance``: reads everything; refunds (any amount), payouts, reconciliation,
  wallet adjustments, invoices, exports;
- ``support``: reads everything; refunds up to a limit (``TUITION_SUPPORT_REFUND_LIMIT``),
  resends webhooks, acts on subscriptions;
- ``viewer``: reads everything, changes nothing.

Pages and actions name the :class:`Permission` they need; a role is a set of them.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    FINANCE = "finance"
    SUPPORT = "support"
    VIEWER = "viewer"


class Permission(StrEnum):
    READ = "read"  # every list and detail page
    REFUND = "refund"  # up to the support limit unless REFUND_ANY_AMOUNT too
    REFUND_ANY_AMOUNT = "refund_any_amount"
    PAYOUTS = "payouts"  # approve and retry payouts
    RECONCILIATION = "reconciliation"  # resolve or accept reconciliation cases
    WALLET = "wallet"  # adjust a customer's wallet by hand
    INVOICES = "invoices"  # issue or reject invoice requests
    EXPORT = "export"  # CSV exports
    SUBSCRIPTIONS = "subscriptions"  # cancel, resume a subscription
    WEBHOOKS = "webhooks"  # resend an event's webhook
    LEDGER = "ledger"  # run the ledger checks
    CATALOG = "catalog"  # products, coupons, tax rates
    DEVELOPERS = "developers"  # API keys, webhook endpoints
    OPERATORS = "operators"  # operators, their roles and two-factor, console settings


_READ = frozenset({Permission.READ, Permission.LEDGER})

PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(Permission),
    Role.FINANCE: _READ
    | {
        Permission.REFUND,
        Permission.REFUND_ANY_AMOUNT,
        Permission.PAYOUTS,
        Permission.RECONCILIATION,
        Permission.WALLET,
        Permission.INVOICES,
        Permission.EXPORT,
        Permission.SUBSCRIPTIONS,
        Permission.WEBHOOKS,
    },
    Role.SUPPORT: _READ | {Permission.REFUND, Permission.WEBHOOKS, Permission.SUBSCRIPTIONS},
    Role.VIEWER: _READ,
}


def permits(role: Role | str, permission: Permission) -> bool:
    """Whether ``role`` may do what ``permission`` names (an unknown role: nothing)."""
    try:
        return permission in PERMISSIONS[Role(role)]
    except ValueError:
        return False


def refund_within_limit(
    role: Role | str, amount: int, currency: str, limits: dict[str, int]
) -> bool:
    """Whether ``role`` may refund ``amount`` (minor units) of ``currency``: any amount
    with REFUND_ANY_AMOUNT; with REFUND only up to ``limits[currency]`` (none for a
    currency without a limit)."""
    if permits(role, Permission.REFUND_ANY_AMOUNT):
        return True
    if not permits(role, Permission.REFUND):
        return False
    return amount <= limits.get(currency, 0)
