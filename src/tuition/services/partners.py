"""Partner platforms: a partner's share of a sale, settled in the partner's currency at a
recorded exchange rate (domain/commissions.py has the arithmetic).

The rate comes from a :class:`RateSource`; the FX service's ``rate_at(uow, base, quote,
at)`` is one, and tests use :class:`FixedRates`. Every settlement keeps the rate, where
it came from and the time it was taken for, so the amount can be recomputed and audited
later whatever the rates do since.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from tuition.clock import FrozenClock
from tuition.domain.catalog import ProductKind
from tuition.domain.commissions import (
    convert,
    partner_share,
    payable_conversion_entry,
    settled_take,
)
from tuition.domain.earnings import EarningRole, PayeeKind, TaxProfile
from tuition.domain.errors import NotFound, ValidationFailed
from tuition.domain.ids import Prefix, new_id
from tuition.domain.ledger import JournalEntry, creator_shares
from tuition.domain.money import get_currency
from tuition.logs import get_logger
from tuition.services import audit
from tuition.services.audit import Actor
from tuition.store.commissions import LineCommission, PartnerRecord
from tuition.store.earnings import EarningRecord, PayeeRecord
from tuition.store.orders import LineRecord
from tuition.store.partner_settlements import (
    PartnerLineShare,
    PartnerSettlementRepository,
    SettlementRecord,
)
from tuition.store.uow import UnitOfWork

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RecordedRate:
    rate: Decimal  # units of quote per unit of base
    source: str  # e.g. "pboc:central_parity", "fixed"
    at: datetime  # the time the rate is for


class RateSource(Protocol):
    async def rate_at(self, uow: UnitOfWork, base: str, quote: str, at: datetime) -> RecordedRate:
        """The rate in force at ``at``; NotFound (``fx_rate_missing``) if there is none."""
        ...


@dataclass(frozen=True, slots=True)
class FixedRates:
    """A rate source of fixed rates (tests, or a contract's agreed rate)."""

    rates: Mapping[tuple[str, str], Decimal]
    source: str = "fixed"

    async def rate_at(self, uow: UnitOfWork, base: str, quote: str, at: datetime) -> RecordedRate:
        if base == quote:
            return RecordedRate(Decimal(1), "same_currency", at)
        rate = self.rates.get((base, quote))
        if rate is None:
            raise NotFound(f"no {base}/{quote} rate", code="fx_rate_missing", param="currency")
        return RecordedRate(rate, self.source, at)


@dataclass(frozen=True, slots=True)
class StoredRates:
    """The exchange rates recorded through ``PUT /v1/fx_rates`` (services/fx.py), in
    force at the sale's time, a direct quote or the reverse one inverted."""

    async def rate_at(self, uow: UnitOfWork, base: str, quote: str, at: datetime) -> RecordedRate:
        from tuition.services.fx import rate_at

        if base == quote:
            return RecordedRate(Decimal(1), "same_currency", at)
        conversion = await rate_at(uow, base, quote, at)
        if conversion is None:
            raise NotFound(f"no {base}/{quote} rate", code="fx_rate_missing", param="currency")
        factor = conversion.factor()
        recorded = conversion.rate
        pair = f"{recorded.base}/{recorded.quote}" + (" inverted" if conversion.inverted else "")
        return RecordedRate(
            Decimal(factor.numerator) / Decimal(factor.denominator),
            f"fx_rates {pair}: {recorded.source}",
            recorded.as_of,
        )


@dataclass(frozen=True, slots=True)
class FirstOf:
    """The first of ``sources`` that knows the pair (a contract's fixed rate, say, before
    the recorded market rates)."""

    sources: tuple[RateSource, ...]

    async def rate_at(self, uow: UnitOfWork, base: str, quote: str, at: datetime) -> RecordedRate:
        missing: NotFound | None = None
        for source in self.sources:
            try:
                return await source.rate_at(uow, base, quote, at)
            except NotFound as exc:
                missing = exc
        assert missing is not None
        raise missing


@dataclass(frozen=True, slots=True)
class PartnerSettlement:
    """A partner's share of one sale: in the sale's currency, then in the partner's."""

    base_currency: str
    base_amount: int  # the sale's amount the share is of, minor units
    share_rate: Decimal
    share: int  # in the sale's currency
    quote_currency: str
    amount: int  # the share in the partner's currency: what it is owed
    fx: RecordedRate


async def settle_share(
    uow: UnitOfWork,
    *,
    amount: int,
    currency: str,
    share_rate: Decimal,
    partner_currency: str,
    at: datetime,
    rates: RateSource,
) -> PartnerSettlement:
    """The partner's share of ``amount`` at its agreement's rate, converted at the rate
    the source gives for ``at`` (the sale's time), rate and source recorded with it."""
    get_currency(currency)
    get_currency(partner_currency, param="partner_currency")
    share = partner_share(amount, share_rate)
    fx = await rates.rate_at(uow, currency, partner_currency, at)
    return PartnerSettlement(
        base_currency=currency,
        base_amount=amount,
        share_rate=share_rate,
        share=share,
        quote_currency=partner_currency,
        amount=convert(share, currency, partner_currency, fx.rate),
        fx=fx,
    )


# --- partner agreements ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewPartner:
    name: str
    share: Decimal  # of a sale's amount, net of tax
    currency: str  # the partner is settled in it
    tax_profile: TaxProfile = TaxProfile.COMPANY


async def create_partner(
    uow: UnitOfWork, cmd: NewPartner, *, at: datetime, actor: Actor = audit.SYSTEM
) -> tuple[PayeeRecord, PartnerRecord]:
    """A payee of kind partner with its agreement."""
    name = cmd.name.strip()
    if not name:
        raise ValidationFailed("a partner needs a name", param="name")
    partner_share(0, cmd.share)  # in [0, 1], or ValidationFailed naming the share
    if get_currency(cmd.currency, param="currency").virtual:
        raise ValidationFailed(
            f"{cmd.currency} is the platform's coin unit; a partner is settled in money",
            code="currency_not_convertible",
            param="currency",
        )
    payee = PayeeRecord(
        id=new_id(Prefix.PAYEE),
        kind=PayeeKind.PARTNER.value,
        name=name,
        tax_profile=cmd.tax_profile.value,
        payout_method=None,
        payout_account=None,
        created_at=at,
        updated_at=at,
    )
    partner = PartnerRecord(payee.id, cmd.share, cmd.currency, at)
    async with uow:
        await uow.earnings.add_payee(payee)
        await uow.commissions.add_partner(partner)
        await audit.record(
            uow.conn,
            actor,
            "partner.created",
            payee.id,
            clock=FrozenClock(at),
            after={"name": name, "share": str(cmd.share), "currency": cmd.currency},
        )
        uow.outcome(payee.id)
        await uow.commit()
    return payee, partner


async def partner_of(uow: UnitOfWork, payee_id: str) -> tuple[PayeeRecord, PartnerRecord]:
    async with uow:
        partner = await uow.commissions.partner(payee_id)
        payee = await uow.earnings.payee(payee_id)
    if partner is None or payee is None:
        raise NotFound(f"no partner {payee_id}", code="partner_not_found", param="partner_id")
    return payee, partner


async def quote_share(
    uow: UnitOfWork,
    partner_id: str,
    *,
    amount: int,
    currency: str,
    at: datetime,
    rates: RateSource,
) -> PartnerSettlement:
    """What the partner would be owed of a sale of ``amount`` now, in its currency, at
    the rate ``rates`` gives (nothing is recorded)."""
    _payee, partner = await partner_of(uow, partner_id)
    async with uow:
        return await settle_share(
            uow,
            amount=amount,
            currency=currency,
            share_rate=partner.share,
            partner_currency=partner.currency,
            at=at,
            rates=rates,
        )


# --- partner-sold orders --------------------------------------------------------------


def settlements(uow: UnitOfWork) -> PartnerSettlementRepository:
    """The partner shares and settlements repository on ``uow``'s open connection."""
    return PartnerSettlementRepository(uow.conn, uow.staged)


async def partner_lines(
    uow: UnitOfWork,
    *,
    order_id: str,
    partner_id: str,
    currency: str,
    lines: Sequence[LineRecord],
    referred: Sequence[LineCommission],
    at: datetime,
    rates: RateSource,
) -> list[PartnerLineShare]:
    """Inside the unit of work placing an order a partner platform sold: the partner's
    share of each line at its agreement's rate (of the line net of tax), out of the
    platform's part. 422 ``partner_not_found`` for an unknown partner,
    ``partner_share_exceeds_platform`` when the platform's part of a line (after the
    creator and any promoters) cannot pay it, ``fx_rate_missing`` when no rate converts
    the order's currency into the partner's (it is settled in it when the hold ends)."""
    partner = await uow.commissions.partner(partner_id)
    if partner is None:
        raise ValidationFailed(
            f"no partner platform {partner_id!r}", code="partner_not_found", param="partner_id"
        )
    if partner.currency != currency:
        try:
            await rates.rate_at(uow, currency, partner.currency, at)
        except NotFound as exc:
            raise ValidationFailed(
                f"no {currency}/{partner.currency} exchange rate to settle partner "
                f"{partner_id} in its currency; record one (PUT /v1/fx_rates) first",
                code="fx_rate_missing",
                param="partner_id",
            ) from exc
    split = {c.line_index: c for c in referred}
    out = []
    for line in lines:
        if line.kind == ProductKind.TOPUP.value:
            continue
        net = line.total - line.tax - line.surcharge
        commission = split.get(line.line_index)
        if commission is None:
            payees = creator_shares([net], [line.revenue_share])[0]
        else:
            payees = commission.creator_amount + commission.level1_amount + commission.level2_amount
        share = partner_share(net, partner.share)
        if share > net - payees:
            raise ValidationFailed(
                f"partner {partner_id}'s share {partner.share} of line {line.line_index} "
                f"({share}) is more than the platform keeps of it ({net - payees})",
                code="partner_share_exceeds_platform",
                param="partner_id",
            )
        out.append(
            PartnerLineShare(order_id, line.line_index, partner_id, partner.share, share, at)
        )
    return out


async def refix_partner_lines(
    uow: UnitOfWork,
    order_id: str,
    lines: Sequence[LineRecord],
    referred: Sequence[LineCommission],
) -> list[PartnerLineShare]:
    """Inside the unit of work re-pricing an unpaid order (a coupon changed at checkout):
    the partner's share of each line anew for the line's new amount, at the rate fixed
    when the order was placed, stored in place of the old; 422
    ``partner_share_exceeds_platform`` as at placement."""
    fixed = await settlements(uow).shares_of_order(order_id)
    by_index = {line.line_index: line for line in lines}
    split = {c.line_index: c for c in referred}
    out = []
    for index, old in sorted(fixed.items()):
        line = by_index[index]
        net = line.total - line.tax - line.surcharge
        commission = split.get(index)
        if commission is None:
            payees = creator_shares([net], [line.revenue_share])[0]
        else:
            payees = commission.creator_amount + commission.level1_amount + commission.level2_amount
        share = partner_share(net, old.rate)
        if share > net - payees:
            raise ValidationFailed(
                f"partner {old.partner_id}'s share {old.rate} of line {index} ({share}) is "
                f"more than the platform keeps of it ({net - payees})",
                code="partner_share_exceeds_platform",
                param="coupon_code",
            )
        out.append(replace(old, amount=share))
    await settlements(uow).set_share_amounts(out)
    return out


@dataclass(frozen=True, slots=True)
class ReleasePlan:
    """What releasing a payment's hold does beyond its release entry: each payee's gain
    of available per currency, the partners' conversion entries and their settlements.
    The caller applies it in the usual lock order: balances first, then the journal."""

    gains: dict[str, dict[str, int]]
    entries: list[JournalEntry]
    records: list[SettlementRecord]


async def settle_released(
    uow: UnitOfWork,
    *,
    payment_id: str,
    currency: str,
    released: Sequence[tuple[EarningRecord, int]],
    at: datetime,
    rates: RateSource,
) -> ReleasePlan:
    """Inside the unit of work releasing a payment's hold: each partner earning's
    released amount converted into the partner's currency at the rate ``rates`` gives
    for now, through the FX accounts, with the rate, its source and its time for the
    earning; what each payee's available balance gains, per payee and currency (the
    sale's currency for everyone else). Nothing is written here."""
    gains: dict[str, dict[str, int]] = {}
    entries: list[JournalEntry] = []
    records: list[SettlementRecord] = []
    for earning, amount in released:
        into = gains.setdefault(earning.payee_id, {})
        partner = None
        if earning.role == EarningRole.PARTNER.value:
            partner = await uow.commissions.partner(earning.payee_id)
        if partner is None or partner.currency == currency or amount <= 0:
            into[currency] = into.get(currency, 0) + amount
            continue
        try:
            fx = await rates.rate_at(uow, currency, partner.currency, at)
        except NotFound:
            # Never hold everyone's earnings back for one missing rate (a setting's fixed
            # rate removed since the sale, a coin payment): the share stays available in
            # the sale's currency, and the operators are told.
            log.warning(
                "partner_settlement_rate_missing",
                payment_id=payment_id,
                partner_id=earning.payee_id,
                pair=f"{currency}/{partner.currency}",
            )
            into[currency] = into.get(currency, 0) + amount
            continue
        converted = convert(amount, currency, partner.currency, fx.rate)
        entries.append(
            payable_conversion_entry(
                f"partner_settlement:{payment_id}:{earning.id}",
                earning.payee_id,
                from_currency=currency,
                from_amount=amount,
                to_currency=partner.currency,
                to_amount=converted,
                occurred_at=at,
            )
        )
        records.append(
            SettlementRecord(
                earning_id=earning.id,
                payment_id=payment_id,
                payee_id=earning.payee_id,
                from_currency=currency,
                from_amount=amount,
                currency=partner.currency,
                amount=converted,
                clawed_from=0,
                clawed=0,
                rate=fx.rate,
                rate_source=fx.source[:200],
                rate_at=fx.at,
                created_at=at,
            )
        )
        into[partner.currency] = into.get(partner.currency, 0) + converted
    return ReleasePlan(gains, entries, records)


async def claw_back_settled(
    uow: UnitOfWork,
    earning: EarningRecord,
    take: int,
    *,
    source: str,
    at: datetime,
) -> tuple[str, int, JournalEntry] | None:
    """Inside the unit of work settling a refund, after the hold: a partner earning that
    was converted gives ``take`` (in the sale's currency) back out of its own currency,
    pro rata to what it still holds there, at the rate it was settled at. The currency
    and amount its available balance loses, and the conversion entry for the caller to
    post after changing the balance (the usual lock order); None for an earning never
    converted."""
    settled = (await settlements(uow).of_earnings([earning.id])).get(earning.id)
    if settled is None:
        return None
    taken = settled_take(
        take, settled.from_amount - settled.clawed_from, settled.amount - settled.clawed
    )
    if not await settlements(uow).claw_back(earning.id, taken_from=take, taken=taken):
        raise AssertionError(f"refund takes back more of {earning.id} than was settled")
    entry = payable_conversion_entry(
        source,
        earning.payee_id,
        from_currency=settled.currency,
        from_amount=taken,
        to_currency=settled.from_currency,
        to_amount=take,
        occurred_at=at,
    )
    return settled.currency, taken, entry
