"""Partner platforms: a partner's share of a sale, settled in the partner's currency at a
recorded exchange rate (domain/commissions.py has the arithmetic).

The rate comes from a :class:`RateSource`; the FX service's ``rate_at(uow, base, quote,
at)`` is one, and tests use :class:`FixedRates`. Every settlement keeps the rate, where
it came from and the time it was taken for, so the amount can be recomputed and audited
later whatever the rates do since.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from tuition.domain.commissions import convert, partner_share
from tuition.domain.earnings import PayeeKind, TaxProfile
from tuition.domain.errors import NotFound, ValidationFailed
from tuition.domain.ids import Prefix, new_id
from tuition.domain.money import get_currency
from tuition.store.commissions import PartnerRecord
from tuition.store.earnings import PayeeRecord
from tuition.store.uow import UnitOfWork


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
    uow: UnitOfWork, cmd: NewPartner, *, at: datetime
) -> tuple[PayeeRecord, PartnerRecord]:
    """A payee of kind partner with its agreement."""
    name = cmd.name.strip()
    if not name:
        raise ValidationFailed("a partner needs a name", param="name")
    partner_share(0, cmd.share)  # in [0, 1], or ValidationFailed naming the share
    get_currency(cmd.currency, param="currency")
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
