"""What a restricted API key may do, like Stripe's restricted keys.

A key has no scopes (a full key: everything, as every key made before scopes) or some
of:

- ``read``: every ``GET``;
- ``orders_payments``: place and cancel orders and start their payments, and read
  orders and payments;
- ``refunds``: create and retry refunds, and read refunds and what is refundable.

Any other write (catalog, payouts, webhooks, wallets, …) needs a full key. The check is
central (:func:`tuition.api.deps.current_api_key`), by the matched route's method and
path template, so a new route is refused to restricted keys until it is listed here.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from tuition.domain.errors import ValidationFailed


class Scope(StrEnum):
    READ = "read"
    ORDERS_PAYMENTS = "orders_payments"
    REFUNDS = "refunds"


# (method, path template) each write scope covers; its paths' GETs come with it.
COVERS: dict[Scope, frozenset[tuple[str, str]]] = {
    Scope.ORDERS_PAYMENTS: frozenset(
        {
            ("POST", "/v1/orders"),
            ("GET", "/v1/orders"),
            ("GET", "/v1/orders/{order_id}"),
            ("POST", "/v1/orders/{order_id}/cancel"),
            ("POST", "/v1/orders/{order_id}/payments"),
            ("GET", "/v1/orders/{order_id}/payments"),
            ("GET", "/v1/payments"),
            ("GET", "/v1/payments/{payment_id}"),
        }
    ),
    Scope.REFUNDS: frozenset(
        {
            ("POST", "/v1/refunds"),
            ("GET", "/v1/refunds"),
            ("GET", "/v1/refunds/{refund_id}"),
            ("POST", "/v1/refunds/{refund_id}/retry"),
            ("GET", "/v1/orders/{order_id}/refundable"),
        }
    ),
}


def parse_scopes(values: Iterable[str]) -> tuple[Scope, ...] | None:
    """Scopes as given (``read``, ``orders_payments``, ``refunds``; ``all`` or none for a
    full key), sorted and without repeats."""
    chosen: set[Scope] = set()
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if not name:
                continue
            if name == "all":
                return None
            try:
                chosen.add(Scope(name))
            except ValueError:
                known = ", ".join(s.value for s in Scope)
                raise ValidationFailed(
                    f"{name!r} is not a scope; one of {known}, or all",
                    code="scope_unknown",
                    param="scopes",
                ) from None
    return tuple(sorted(chosen)) if chosen else None


def allows(scopes: Iterable[str] | None, method: str, path: str) -> bool:
    """Whether a key with ``scopes`` (None: a full key) may call ``method path``."""
    if scopes is None:
        return True
    held = set(scopes)
    method = "GET" if method == "HEAD" else method
    if method == "GET" and Scope.READ in held:
        return True
    return any((method, path) in COVERS.get(Scope(s), frozenset()) for s in held if s in set(Scope))


def needed_for(method: str, path: str) -> str:
    """The scope that would allow ``method path``, for the refusal's message."""
    method = "GET" if method == "HEAD" else method
    for scope, covered in COVERS.items():
        if (method, path) in covered:
            return scope.value
    return Scope.READ.value if method == "GET" else "a full key"
