"""What the refund rules need to know about each line of an order, read from the store:
the line's parts as the payment posted them, its holds, the product's refund policy over
the platform default, the consumption the platform reported, a membership's access
period and a top-up's lot (see domain/refunds.py for the rules themselves).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from tuition.domain.catalog import Product, ProductKind
from tuition.domain.refunds import LineFacts, RefundPolicy, parse_policy
from tuition.services.balances import bonus_source, topup_source
from tuition.services.commissions import line_shares, per_line
from tuition.services.settlement import topup_credits
from tuition.store.orders import OrderRecord
from tuition.store.refunds import Consumption
from tuition.store.uow import UnitOfWork
from tuition.store.wallet import LotRecord


async def line_facts(
    uow: UnitOfWork, order: OrderRecord, default_policy: RefundPolicy
) -> list[LineFacts]:
    """Inside an open unit of work: what the refund rules need of each line of ``order``:
    its parts as posted, what refunds hold of it, its policy, the consumption reported,
    a membership's access period and a top-up's lot."""
    catalog = await uow.catalog.products_by_ids([line.product_id for line in order.lines])
    policies = await uow.catalog.refund_policies([line.product_id for line in order.lines])
    # What the payees hold of each line (the creator's share and a referred line's
    # commissions) exactly as the payment's entry posted it.
    held = per_line(await line_shares(uow, order))
    shares = [held.get(line.line_index, 0) for line in order.lines]
    wanted: set[str] = set()
    for line in order.lines:
        wanted.add(line.product_id)
        wanted.update(str(c["product_id"]) for c in line.components)
    progress = await uow.refunds.consumption_of(order.customer_id, sorted(wanted))
    grants = [
        g for g in await uow.orders.entitlements_of(order.customer_id) if g.order_id == order.id
    ]
    credits = dict(await topup_credits(uow, order))
    lots = {
        index: await uow.wallets.lot_by_source(topup_source(order.id, index)) for index in credits
    }
    bonus_lots = {
        index: await uow.wallets.lot_by_source(bonus_source(topup_source(order.id, index)))
        for index in credits
    }
    facts = []
    for line, share in zip(order.lines, shares, strict=True):
        product = catalog.get(line.product_id)
        kind = product.kind if product is not None else ProductKind(line.kind)
        line_grants = [g for g in grants if g.line_index == line.line_index]
        start = min((g.granted_at for g in line_grants), default=None)
        end = max((g.expires_at for g in line_grants if g.expires_at), default=None)
        facts.append(
            LineFacts(
                index=line.line_index,
                kind=kind,
                total=line.total,
                tax=line.tax,
                creator_id=line.creator_id,
                creator_share=share,
                reserved=line.refund_reserved,
                policy=_policy(policies.get(line.product_id), default_policy),
                progress=_line_progress(line.product_id, line.components, progress, product),
                access_start=start if kind is ProductKind.MEMBERSHIP else None,
                access_end=end if kind is ProductKind.MEMBERSHIP else None,
                wallet_credit=_credited(lots.get(line.line_index), credits.get(line.line_index, 0)),
                topup_unspent=_unspent(lots.get(line.line_index))
                and _unspent(bonus_lots.get(line.line_index), missing=True),
            )
        )
    return facts


def _credited(lot: LotRecord | None, priced: int) -> int:
    """What a top-up line credited to the wallet's liability: its lot's amount (a coin
    lot: its money value), as written when it was paid."""
    if lot is None:
        return priced
    return lot.amount if lot.value is None else lot.value


def _unspent(lot: LotRecord | None, *, missing: bool = False) -> bool:
    """Whether none of ``lot`` is spent; ``missing`` is the answer when there is no lot
    (a pack without bonus coins)."""
    return missing if lot is None else lot.remaining == lot.amount


def _policy(given: Mapping[str, Any] | None, default: RefundPolicy) -> RefundPolicy:
    return default if given is None else parse_policy(given, base=default)


def _line_progress(
    product_id: str,
    components: Sequence[Mapping[str, Any]],
    reported: Mapping[str, Consumption],
    product: Product | None,
) -> Decimal | None:
    """A line's consumption: the product's own, or for a bundle its components' progress
    weighted by the part of the line each component was priced at."""
    if product is None or product.kind is not ProductKind.BUNDLE or not components:
        own = reported.get(product_id)
        return None if own is None else own.progress
    weights = [int(c.get("amount", 0)) for c in components]
    parts = [reported.get(str(c["product_id"])) for c in components]
    if not any(parts) or not sum(weights):
        return None
    consumed = sum(
        (
            Decimal(w) * (p.progress if p else Decimal(0))
            for p, w in zip(parts, weights, strict=True)
        ),
        Decimal(0),
    )
    return consumed / Decimal(sum(weights))
