"""A partner's share settled in its currency at a recorded rate, from a fixed rate
source, on both engines (the source is handed the unit of work, as the FX service's
``rate_at`` is)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tuition.domain.errors import NotFound
from tuition.services.partners import FixedRates, RecordedRate, settle_share
from tuition.store.uow import UnitOfWork

AT = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
RATES = FixedRates({("CNY", "USD"): Decimal("0.1389")}, source="agreement:2026")


async def test_the_share_is_converted_at_the_recorded_rate_with_its_source_and_time(
    uow: UnitOfWork,
) -> None:
    got = await settle_share(
        uow,
        amount=19900,
        currency="CNY",
        share_rate=Decimal("0.3"),
        partner_currency="USD",
        at=AT,
        rates=RATES,
    )
    # 30 % of 199.00 = 59.70 CNY; x 0.1389 = 8.29233 USD -> 8.29.
    assert (got.share, got.amount, got.quote_currency) == (5970, 829, "USD")
    assert got.fx == RecordedRate(Decimal("0.1389"), "agreement:2026", AT)


async def test_a_partner_in_the_sales_currency_needs_no_rate_and_a_missing_one_is_refused(
    uow: UnitOfWork,
) -> None:
    same = await settle_share(
        uow,
        amount=19900,
        currency="CNY",
        share_rate=Decimal("0.3"),
        partner_currency="CNY",
        at=AT,
        rates=RATES,
    )
    assert (same.amount, same.fx.rate, same.fx.source) == (5970, Decimal(1), "same_currency")
    with pytest.raises(NotFound) as missing:
        await settle_share(
            uow,
            amount=19900,
            currency="CNY",
            share_rate=Decimal("0.3"),
            partner_currency="EUR",
            at=AT,
            rates=RATES,
        )
    assert missing.value.code == "fx_rate_missing"
