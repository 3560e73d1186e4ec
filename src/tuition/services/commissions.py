"""Promoters (分销) and their commissions: register a promoter, set a product's rates,
fix a referred order's split when it is placed, and read each line's payees' shares as
the payment's entry posts them (domain/commissions.py has the arithmetic).

A promoter is a payee (kind ``promoter``): its commissions are earnings like a creator's
share, in its own pending and available accounts, held and released with the order's
other earnings and taken back by refunds pro rata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from tuition.clock import FrozenClock
from tuition.domain.catalog import ProductKind
from tuition.domain.commissions import (
    CommissionBearer,
    CommissionRates,
    Referral,
    split_line,
)
from tuition.domain.earnings import EarningRole, PayeeKind, TaxProfile
from tuition.domain.errors import Conflict, NotFound, ValidationFailed
from tuition.domain.ids import Prefix, new_id
from tuition.domain.ledger import creator_shares
from tuition.services import audit
from tuition.services.audit import Actor
from tuition.store.commissions import LineCommission, ProductCommission, PromoterRecord
from tuition.store.earnings import PayeeRecord
from tuition.store.orders import LineRecord, OrderRecord
from tuition.store.uow import UnitOfWork

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class NewPromoter:
    name: str
    code: str
    recruited_by: str | None = None
    customer_id: str | None = None
    tax_profile: TaxProfile = TaxProfile.INDIVIDUAL


async def create_promoter(
    uow: UnitOfWork, cmd: NewPromoter, *, at: datetime, actor: Actor = audit.SYSTEM
) -> tuple[PayeeRecord, PromoterRecord]:
    """A payee of kind promoter with its referral code (UNIQUE: 409
    ``referral_code_taken``) and, optionally, the promoter who recruited it."""
    name = cmd.name.strip()
    if not name:
        raise ValidationFailed("a promoter needs a name", param="name")
    payee = PayeeRecord(
        id=new_id(Prefix.PAYEE),
        kind=PayeeKind.PROMOTER.value,
        name=name,
        tax_profile=cmd.tax_profile.value,
        payout_method=None,
        payout_account=None,
        created_at=at,
        updated_at=at,
    )
    promoter = PromoterRecord(payee.id, cmd.code, cmd.recruited_by, cmd.customer_id, at)
    async with uow:
        if (
            cmd.recruited_by is not None
            and await uow.commissions.promoter(cmd.recruited_by) is None
        ):
            raise ValidationFailed(
                f"no promoter {cmd.recruited_by!r} to have recruited this one",
                code="promoter_not_found",
                param="recruited_by",
            )
        await uow.earnings.add_payee(payee)
        if not await uow.commissions.add_promoter(promoter):
            raise Conflict(
                f"the referral code {cmd.code!r} is taken",
                code="referral_code_taken",
                param="code",
            )
        await audit.record(
            uow.conn,
            actor,
            "promoter.created",
            payee.id,
            clock=FrozenClock(at),
            after={"name": name, "code": cmd.code, "recruited_by": cmd.recruited_by},
        )
        uow.outcome(payee.id)
        await uow.commit()
    return payee, promoter


async def promoter_of(uow: UnitOfWork, payee_id: str) -> tuple[PayeeRecord, PromoterRecord]:
    async with uow:
        promoter = await uow.commissions.promoter(payee_id)
        payee = await uow.earnings.payee(payee_id)
    if promoter is None or payee is None:
        raise NotFound(f"no promoter {payee_id}", code="promoter_not_found", param="promoter_id")
    return payee, promoter


async def list_promoters(
    uow: UnitOfWork, *, limit: int, starting_after: str | None
) -> tuple[list[tuple[PayeeRecord, PromoterRecord]], bool]:
    async with uow:
        page, more = await uow.commissions.list_promoters(
            limit=limit, starting_after=starting_after
        )
        payees = {p.id: p for p in await uow.earnings.list_payees()}
    return [(payees[p.payee_id], p) for p in page if p.payee_id in payees], more


# --- product settings -----------------------------------------------------------------


async def set_product_commission(
    uow: UnitOfWork,
    product_id: str,
    *,
    rates: CommissionRates,
    bearer: CommissionBearer,
    at: datetime,
    actor: Actor = audit.SYSTEM,
) -> ProductCommission:
    """Set a product's promoter commissions; refused (422 ``commission_exceeds_share``)
    when the bearer's share at the product's revenue share cannot pay them."""
    async with uow:
        product = await uow.catalog.get_product(product_id, for_update=True)
        if product is None:
            raise NotFound(f"no product {product_id!r}", param="product_id")
        if product.product.kind is ProductKind.TOPUP:
            raise ValidationFailed(
                "a top-up is the buyer's own money: it pays no commission",
                code="commission_not_applicable",
                param="product_id",
            )
        # The split of one unit shows whether the bearer can pay both levels.
        split_line(
            0,
            product.product.revenue_share,
            rates=rates,
            bearer=bearer,
            referral=Referral("l1", "l2"),
        )
        setting = ProductCommission(product_id, rates, bearer, at)
        before = (await uow.commissions.of_products([product_id])).get(product_id)
        await uow.commissions.set_product(setting)
        await audit.record(
            uow.conn,
            actor,
            "product.commission_set",
            product_id,
            clock=FrozenClock(at),
            before=None if before is None else _commission_facts(before),
            after=_commission_facts(setting),
        )
        await uow.commit()
    return setting


def _commission_facts(setting: ProductCommission) -> dict[str, str]:
    return {
        "level1": str(setting.rates.level1),
        "level2": str(setting.rates.level2),
        "bearer": setting.bearer.value,
    }


async def product_commission(uow: UnitOfWork, product_id: str) -> ProductCommission | None:
    async with uow:
        if await uow.catalog.get_product(product_id) is None:
            raise NotFound(f"no product {product_id!r}", param="product_id")
        return (await uow.commissions.of_products([product_id])).get(product_id)


# --- referred orders ------------------------------------------------------------------


async def referral_lines(
    uow: UnitOfWork,
    *,
    order_id: str,
    code: str,
    customer_id: str,
    lines: Sequence[LineRecord],
    at: datetime,
) -> list[LineCommission]:
    """Inside the unit of work placing an order: the split of each line whose product
    pays commissions, for the promoter of ``code`` (level 1) and its recruiter (level 2).
    An unknown code is 422 ``referral_code_unknown``; a buyer who is the code's promoter
    or its recruiter (level 2) is 422 ``referral_self``."""
    level1 = await uow.commissions.promoter_by_code(code)
    if level1 is None:
        raise ValidationFailed(
            f"no promoter has the referral code {code!r}",
            code="referral_code_unknown",
            param="referral_code",
        )
    if level1.customer_id is not None and level1.customer_id == customer_id:
        raise ValidationFailed(
            f"customer {customer_id} is the promoter of the referral code {code!r}: "
            "a buyer cannot refer their own order",
            code="referral_self",
            param="referral_code",
        )
    recruiter = None
    if level1.recruited_by is not None:
        recruiter = await uow.commissions.promoter(level1.recruited_by)
    if recruiter is not None and recruiter.customer_id == customer_id:
        raise ValidationFailed(
            f"customer {customer_id} recruited the promoter of the referral code "
            f"{code!r} (its level 2): a buyer cannot earn a commission on their own order",
            code="referral_self",
            param="referral_code",
        )
    referral = Referral(level1.payee_id, recruiter.payee_id if recruiter else None)
    if referral.level2 == referral.level1:
        referral = Referral(referral.level1, None)
    settings = await uow.commissions.of_products([line.product_id for line in lines])
    out = []
    for line in lines:
        setting = settings.get(line.product_id)
        if setting is None or line.kind == ProductKind.TOPUP.value:
            continue
        net = line.total - line.tax - line.surcharge
        split = split_line(
            net, line.revenue_share, rates=setting.rates, bearer=setting.bearer, referral=referral
        )
        out.append(
            LineCommission(
                order_id=order_id,
                line_index=line.line_index,
                referral_code=code,
                bearer=setting.bearer,
                creator_amount=split.creator,
                level1_id=referral.level1,
                level1_rate=setting.rates.level1,
                level1_amount=split.level1,
                level2_id=referral.level2,
                level2_rate=setting.rates.level2 if referral.level2 else _ZERO,
                level2_amount=split.level2,
                created_at=at,
            )
        )
    return out


async def refix_referral_lines(
    uow: UnitOfWork, order_id: str, lines: Sequence[LineRecord]
) -> list[LineCommission]:
    """Inside the unit of work re-pricing an unpaid order (a coupon changed at checkout):
    each referred line's split fixed anew for the line's new amount, at the rates, bearer
    and promoters fixed when it was placed, and stored in place of the old one."""
    fixed = await uow.commissions.of_order(order_id)
    by_index = {line.line_index: line for line in lines}
    out = []
    for index, old in sorted(fixed.items()):
        line = by_index[index]
        split = split_line(
            line.total - line.tax - line.surcharge,
            line.revenue_share,
            rates=CommissionRates(old.level1_rate, old.level2_rate),
            bearer=old.bearer,
            referral=Referral(old.level1_id, old.level2_id),
        )
        out.append(
            replace(
                old,
                creator_amount=split.creator,
                level1_amount=split.level1,
                level2_amount=split.level2,
            )
        )
    await uow.commissions.set_line_amounts(out)
    return out


@dataclass(frozen=True, slots=True)
class LineShare:
    """One payee's share of one order line, as the payment's entry posts it."""

    line_index: int
    payee_id: str
    role: EarningRole
    rate: Decimal
    amount: int


async def line_shares(uow: UnitOfWork, order: OrderRecord) -> list[LineShare]:
    """Every payee's share of each line: the creator's (one per line, in line order,
    zero for a top-up), then each referred line's promoters', then a partner-sold
    order's partner's. A line's creator share is its rate of the line (net of tax)
    unless the order was referred, when it is the split fixed with the order; the
    partner's share, fixed with the order too, comes out of the platform's part."""
    referred = {} if order.referral_code is None else await uow.commissions.of_order(order.id)
    nets = [
        0 if line.kind == ProductKind.TOPUP.value else line.total - line.tax - line.surcharge
        for line in order.lines
    ]
    plain = creator_shares(nets, [line.revenue_share for line in order.lines])
    creators, promoters = [], []
    for line, share in zip(order.lines, plain, strict=True):
        split = referred.get(line.line_index)
        if split is None:
            creators.append(
                LineShare(
                    line.line_index, line.creator_id, EarningRole.CREATOR, line.revenue_share, share
                )
            )
            continue
        creator_rate = line.revenue_share
        if split.bearer is CommissionBearer.CREATOR:
            creator_rate = line.revenue_share - split.level1_rate - split.level2_rate
        creators.append(
            LineShare(
                line.line_index,
                line.creator_id,
                EarningRole.CREATOR,
                creator_rate,
                split.creator_amount,
            )
        )
        promoters.append(
            LineShare(
                line.line_index,
                split.level1_id,
                EarningRole.PROMOTER_L1,
                split.level1_rate,
                split.level1_amount,
            )
        )
        if split.level2_id is not None:
            promoters.append(
                LineShare(
                    line.line_index,
                    split.level2_id,
                    EarningRole.PROMOTER_L2,
                    split.level2_rate,
                    split.level2_amount,
                )
            )
    partners = []
    if order.partner_id is not None:
        from tuition.store.partner_settlements import PartnerSettlementRepository

        fixed = await PartnerSettlementRepository(uow.conn, uow.staged).shares_of_order(order.id)
        partners = [
            LineShare(s.line_index, s.partner_id, EarningRole.PARTNER, s.rate, s.amount)
            for _, s in sorted(fixed.items())
        ]
    return creators + promoters + partners


def per_line(shares: Sequence[LineShare]) -> dict[int, int]:
    """What the payees hold of each line in all (the refund rules' creator part)."""
    totals: dict[int, int] = {}
    for share in shares:
        totals[share.line_index] = totals.get(share.line_index, 0) + share.amount
    return totals
