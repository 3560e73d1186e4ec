"""What the audit trail keeps of a catalog object or webhook endpoint before and after a
change: plain JSON (rates and times as strings), secrets never included."""

from __future__ import annotations

from typing import Any

from tuition.domain.catalog import Promotion
from tuition.store.catalog import CouponRecord, CreatorRecord, ProductRecord, TaxRateRecord
from tuition.store.work import Endpoint


def _promotion(promotion: Promotion | None) -> dict[str, Any] | None:
    if promotion is None:
        return None
    return {
        "starts_at": promotion.starts_at.isoformat(),
        "ends_at": promotion.ends_at.isoformat(),
        "percent_off": None if promotion.percent_off is None else str(promotion.percent_off),
        "amount_off": None if promotion.amount_off is None else dict(promotion.amount_off),
    }


def creator(record: CreatorRecord) -> dict[str, Any]:
    return {
        "name": record.creator.name,
        "default_revenue_share": str(record.creator.default_revenue_share),
        "external_id": record.external_id,
    }


def product(record: ProductRecord) -> dict[str, Any]:
    p = record.product
    return {
        "title": p.title,
        "kind": str(p.kind),
        "status": str(p.status),
        "creator_id": p.creator_id,
        "prices": dict(p.prices),
        "surface_prices": {s: dict(v) for s, v in p.surface_prices.items()},
        "revenue_share": str(p.revenue_share),
        "promotion": _promotion(p.promotion),
        "description": record.description,
        "metadata": dict(record.metadata),
        "refund_policy": None if record.refund_policy is None else dict(record.refund_policy),
    }


def coupon(record: CouponRecord) -> dict[str, Any]:
    c = record.coupon
    return {
        "code": c.code,
        "kind": str(c.kind),
        "percent_off": None if c.percent_off is None else str(c.percent_off),
        "amount_off": None if c.amount_off is None else dict(c.amount_off),
        "min_spend": None if c.min_spend is None else dict(c.min_spend),
        "applies_to_products": sorted(c.applies_to_products),
        "applies_to_kinds": sorted(str(k) for k in c.applies_to_kinds),
        "starts_at": None if c.starts_at is None else c.starts_at.isoformat(),
        "ends_at": None if c.ends_at is None else c.ends_at.isoformat(),
        "max_redemptions": c.max_redemptions,
        "max_per_customer": c.max_per_customer,
        "stacks_with_promotions": c.stacks_with_promotions,
        "active": c.active,
    }


def tax_rate(record: TaxRateRecord) -> dict[str, Any]:
    return {"rate": str(record.rule.rate), "inclusive": record.rule.inclusive}


def endpoint(found: Endpoint) -> dict[str, Any]:
    """The endpoint without its signing secret."""
    return {
        "url": found.url,
        "events": list(found.events),
        "description": found.description,
        "enabled": found.enabled,
    }
