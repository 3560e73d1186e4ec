"""Exchange-rate use cases: record rates (one or a CSV file), read them, convert prices.

Other code asks :func:`rate_at` for the rate between two currencies at a moment (partner
settlement, reports); orders ask :func:`price_catalog_in` to sell a product in a currency
it has no price in (docs/fx.md).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from tuition.clock import Clock
from tuition.domain.catalog import Product
from tuition.domain.errors import InvalidRequest, NotFound, ValidationFailed
from tuition.domain.fx import (
    Conversion,
    FxRate,
    back_conversion,
    check_pair,
    check_source,
    conversion_entry,
    parse_fx_rate,
    rebased_entry,
    recorded_conversion,
)
from tuition.domain.ids import Prefix, new_id
from tuition.domain.ledger import AccountKind, AccountRef, JournalEntry
from tuition.domain.money import get_currency
from tuition.services import audit
from tuition.store.fx import FxRateRepository
from tuition.store.uow import UnitOfWork

CSV_COLUMNS = ("base", "quote", "rate", "source", "as_of")
MAX_CSV_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class SetRate:
    base: str
    quote: str
    rate: Decimal
    source: str
    as_of: datetime | None = None  # default: now


def fx_rates(uow: UnitOfWork) -> FxRateRepository:
    """The exchange-rate repository on ``uow``'s open connection."""
    return FxRateRepository(uow.conn)


def _record(cmd: SetRate, now: datetime) -> FxRate:
    base, quote = check_pair(cmd.base, cmd.quote)
    as_of = cmd.as_of or now
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValidationFailed("as_of must carry a UTC offset", param="as_of")
    return FxRate(
        id=new_id(Prefix.FX_RATE),
        base=base,
        quote=quote,
        rate=cmd.rate,
        source=check_source(cmd.source),
        as_of=as_of,
        created_at=now,
    )


def _audited(record: FxRate) -> dict[str, str]:
    return {
        "pair": f"{record.base}/{record.quote}",
        "rate": str(record.rate),
        "source": record.source,
        "as_of": record.as_of.isoformat(),
    }


async def put_rate(
    cmd: SetRate, uow: UnitOfWork, *, clock: Clock, actor: audit.Actor = audit.SYSTEM
) -> FxRate:
    """Record a rate of ``base/quote`` in force from ``as_of``; earlier ones stay on record."""
    record = _record(cmd, clock.now())
    async with uow:
        await fx_rates(uow).add_many([record])
        await audit.record(
            uow.conn, actor, "fx_rate.recorded", record.id, clock=clock, after=_audited(record)
        )
        await uow.commit()
    return record


async def import_rates_csv(
    text: str, uow: UnitOfWork, *, clock: Clock, actor: audit.Actor = audit.SYSTEM
) -> list[FxRate]:
    """Record every row of a CSV file with the header ``base,quote,rate,source,as_of``.

    All or nothing: the first bad row raises ValidationFailed naming its line, and no
    rate of the file is kept. ``as_of`` is ISO 8601 with an offset (empty: now). The
    audit trail gets one record for the file, naming every rate it recorded.
    """
    now = clock.now()
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
        raise ValidationFailed(
            "the CSV header must be exactly " + ",".join(CSV_COLUMNS),
            code="csv_header_invalid",
            param="header",
        )
    records: list[FxRate] = []
    for row in reader:
        line = reader.line_num
        if len(records) >= MAX_CSV_ROWS:
            raise ValidationFailed(f"at most {MAX_CSV_ROWS} rates per file", param="file")
        if None in row or any(v is None for v in row.values()):
            raise ValidationFailed(f"line {line}: expected 5 fields", param=f"line {line}")
        try:
            as_of = datetime.fromisoformat(row["as_of"]) if row["as_of"] else None
            cmd = SetRate(
                base=row["base"],
                quote=row["quote"],
                rate=parse_fx_rate(row["rate"]),
                source=row["source"],
                as_of=as_of,
            )
            records.append(_record(cmd, now))
        except ValueError as exc:
            raise ValidationFailed(
                f"line {line}: as_of is not ISO 8601 ({exc})", param=f"line {line}"
            ) from None
        except InvalidRequest as exc:
            raise ValidationFailed(
                f"line {line}: {exc.message}", code=exc.code, param=f"line {line}"
            ) from None
    if not records:
        raise ValidationFailed("the file has no rates", code="csv_empty", param="file")
    async with uow:
        await fx_rates(uow).add_many(records)
        await audit.record(
            uow.conn,
            actor,
            "fx_rates.imported",
            records[0].id,
            clock=clock,
            after={"count": len(records), "rates": [_audited(r) for r in records]},
        )
        await uow.commit()
    return records


async def rate_history(
    uow: UnitOfWork, base: str, quote: str, *, limit: int, starting_after: str | None
) -> tuple[list[FxRate], bool]:
    check_pair(base, quote)
    async with uow:
        return await fx_rates(uow).history(base, quote, limit=limit, starting_after=starting_after)


async def latest_rates(uow: UnitOfWork) -> list[FxRate]:
    async with uow:
        return await fx_rates(uow).latest()


async def current_rate(uow: UnitOfWork, base: str, quote: str, *, clock: Clock) -> FxRate:
    """The ``base/quote`` rate in force now, as recorded (no inversion); 404 if none."""
    check_pair(base, quote)
    async with uow:
        found = await fx_rates(uow).at(base, quote, clock.now())
    if found is None:
        raise NotFound(f"no {base}/{quote} rate is in force", code="fx_rate_not_found")
    return found


async def rate_at(
    uow: UnitOfWork, base: str, quote: str, at: datetime, *, markup: Decimal = Decimal(0)
) -> Conversion | None:
    """Inside an open unit of work: how ``base`` converts into ``quote`` at ``at``.

    Uses the ``base/quote`` rate in force then, or the ``quote/base`` rate inverted,
    whichever was quoted later (the direct one on a tie); None when neither exists.
    ``conversion.factor()`` is the exact rate, ``conversion.convert(minor)`` the amount.
    """
    repo = fx_rates(uow)
    direct = await repo.at(base, quote, at)
    inverse = await repo.at(quote, base, at)
    chosen = direct
    if inverse is not None and (direct is None or inverse.as_of > direct.as_of):
        chosen = inverse
    if chosen is None:
        return None
    return Conversion(base, quote, chosen, markup)


async def price_catalog_in(
    uow: UnitOfWork,
    catalog: Mapping[str, Product],
    *,
    currency: str,
    surface: str,
    at: datetime,
    markup: Decimal,
) -> tuple[dict[str, Product], list[Conversion]]:
    """Inside an open unit of work: give every product with no price in ``currency`` one
    converted from its own, at the rate in force at ``at`` (plus ``markup``).

    Each converted unit price is rounded once, half-up, to ``currency``'s ISO 4217
    exponent; pricing then runs in ``currency`` as for any product. A product priced in
    several currencies converts from the first (by code) that has a rate; a price list of
    a surface converts from its own price in that currency. Products with
    no convertible price are left as they are (pricing refuses them as not priced in the
    currency). Coins are never converted.
    """
    if get_currency(currency).virtual:
        return dict(catalog), []
    converted: dict[str, Product] = {}
    used: dict[str, Conversion] = {}
    for product_id, product in catalog.items():
        if currency in product.prices:
            converted[product_id] = product
            continue
        conversion = None
        for code in sorted(product.prices):
            if code == currency or get_currency(code).virtual:
                continue
            conversion = used.get(code) or await rate_at(uow, code, currency, at, markup=markup)
            if conversion is not None:
                break
        if conversion is None:
            converted[product_id] = product
            continue
        used[conversion.from_currency] = conversion
        converted[product_id] = _convert_product(product, conversion)
    return converted, [used[code] for code in sorted(used)]


def _convert_product(product: Product, conversion: Conversion) -> Product:
    source, target = conversion.from_currency, conversion.to_currency
    prices = dict(product.prices)
    prices.setdefault(target, conversion.convert(product.prices[source]))
    surface_prices = {
        surface: (
            {**own, target: conversion.convert(own[source])}
            if source in own and target not in own
            else dict(own)
        )
        for surface, own in product.surface_prices.items()
    }
    return replace(product, prices=prices, surface_prices=surface_prices)


def fx_record(conversions: list[Conversion]) -> list[dict[str, object]]:
    """What an order keeps of its conversions: per source currency, the rate row used
    (its pair, value, source and ``as_of``), whether it was inverted, and the markup."""
    return [c.to_dict() for c in conversions]


async def post_conversion(
    uow: UnitOfWork,
    *,
    source: str,
    credit: AccountRef,
    debit: AccountRef,
    amount: int,
    at: datetime,
    markup: Decimal = Decimal(0),
) -> JournalEntry | None:
    """Inside an open unit of work: convert ``amount`` minor units out of ``credit`` into
    ``debit``'s currency at the rate in force at ``at``, through the FX accounts.

    ``source`` names the conversion (UNIQUE in the journal): posting it again returns
    None and writes nothing. Raises InvalidRequest ``fx_rate_missing`` without a rate.
    The caller commits.
    """
    conversion = await rate_at(uow, credit.currency, debit.currency, at, markup=markup)
    if conversion is None:
        raise InvalidRequest(
            f"no {credit.currency}/{debit.currency} exchange rate is in force at {at.isoformat()}",
            code="fx_rate_missing",
            param="currency",
        )
    entry = conversion_entry(
        source=source,
        conversion=conversion,
        debit=debit,
        credit=credit,
        from_amount=amount,
        occurred_at=at,
    )
    return entry if await uow.ledger.post(entry, at=at) else None


# What a sale books in the product's own currency: the platform's part. The payees'
# shares, tax and wallet credits stay in the currency the buyer paid, which is the one
# they are settled in (docs/fx.md#ledger).
SALE_KINDS = frozenset({AccountKind.PLATFORM_REVENUE, AccountKind.REFUNDS})


# In an order's pricing beside ``fx``: some of its products had a price in the order's
# currency of their own (services/orders.py).
NATIVE_LINES = "fx_native_lines"


def order_back_conversion(pricing: Mapping[str, object], currency: str) -> Conversion | None:
    """How an amount of an order paid in ``currency`` goes back into the product's own
    currency: the one conversion the order was priced with, reversed at its recorded rate
    (no markup, no later rate). None when the order was not converted, or was converted
    from several currencies, or sold products priced in ``currency`` beside the converted
    one (its revenue then stays in ``currency``)."""
    records = pricing.get("fx")
    if not isinstance(records, list) or len(records) != 1 or not isinstance(records[0], dict):
        return None
    if pricing.get(NATIVE_LINES):
        return None
    conversion = recorded_conversion(records[0])
    if conversion.to_currency != currency:
        return None
    return back_conversion(conversion)


def in_product_currency(
    entry: JournalEntry, pricing: Mapping[str, object], currency: str, *, moved_before: int = 0
) -> JournalEntry:
    """A paid order's (or its refund's) entry in ``currency`` with the platform's part
    moved into the product's currency at the order's recorded rate, through the
    ``fx_conversion`` accounts; the entry as it is for an order sold in its own currency.

    A refund is rebased at the same recorded rate as the sale, counted on from what the
    payment's earlier refunds moved (``moved_before``, in ``currency``), so its refunds,
    however many, reverse the sale exactly and no FX gain or loss is posted."""
    conversion = order_back_conversion(pricing, currency)
    if conversion is None:
        return entry
    return rebased_entry(entry, conversion, SALE_KINDS, moved_before=moved_before)
