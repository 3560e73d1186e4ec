"""The numbers behind the console's dashboard, per currency and per business day: days of
the platform's time zone (``TUITION_TIME_ZONE``), cut at local midnight.

- GMV: what buyers paid for orders paid that day (order totals);
- success rate per channel: succeeded ÷ finished (succeeded, failed, closed) payments
  created in the window; an attempt still open is neither;
- channel fees: the fees of those payments;
- net revenue: what the platform keeps, from the ledger: platform revenue less refunds
  and channel fees (creator shares and tax were never the platform's).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal

from tuition.clock import Clock
from tuition.domain.calendar import last_days
from tuition.domain.ledger import AccountKind
from tuition.store.admin import AdminRepository
from tuition.store.uow import UnitOfWork

_NET_KINDS = [AccountKind.PLATFORM_REVENUE, AccountKind.REFUNDS, AccountKind.CHANNEL_FEES]


@dataclass(frozen=True, slots=True)
class DayPoint:
    day: date
    value: int


@dataclass(frozen=True, slots=True)
class ChannelStats:
    channel: str
    attempted: int
    succeeded: int
    fees: int

    @property
    def success_rate(self) -> Decimal | None:
        if self.attempted == 0:
            return None
        return Decimal(self.succeeded) / Decimal(self.attempted)


@dataclass(frozen=True, slots=True)
class CurrencyFigures:
    currency: str
    gmv: list[DayPoint]
    orders_paid: int
    net_revenue: list[DayPoint]
    channels: list[ChannelStats]

    @property
    def gmv_total(self) -> int:
        return sum(p.value for p in self.gmv)

    @property
    def net_total(self) -> int:
        return sum(p.value for p in self.net_revenue)

    @property
    def fees_total(self) -> int:
        return sum(c.fees for c in self.channels)

    @property
    def success_rate(self) -> Decimal | None:
        attempted = sum(c.attempted for c in self.channels)
        if attempted == 0:
            return None
        return Decimal(sum(c.succeeded for c in self.channels)) / Decimal(attempted)


@dataclass(frozen=True, slots=True)
class Dashboard:
    days: list[date]
    since: datetime  # the instant the first day began
    zone: tzinfo
    currencies: list[CurrencyFigures]


async def dashboard(uow: UnitOfWork, *, clock: Clock, zone: tzinfo, days: int = 14) -> Dashboard:
    """The last ``days`` days of ``zone``, today included; days without sales show as
    zero."""
    business = last_days(clock.now(), days, zone)
    async with uow:
        repo = AdminRepository(uow.conn)
        paid = await repo.paid_orders_per_day(business)
        channels = await repo.payments_per_channel(business.since)
        postings = await repo.postings_per_day(business, [str(k) for k in _NET_KINDS])
    window = list(business.days)
    gmv: dict[str, dict[date, int]] = defaultdict(dict)
    count: dict[str, int] = defaultdict(int)
    for day, currency, n, gross in paid:
        gmv[currency][date.fromisoformat(day)] = gross
        count[currency] += n
    net: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for day, currency, _kind, total in postings:
        net[currency][date.fromisoformat(day)] -= total  # credits are negative
    per_channel: dict[str, list[ChannelStats]] = defaultdict(list)
    for channel, currency, attempted, succeeded, fees in channels:
        per_channel[currency].append(ChannelStats(channel, attempted, succeeded, fees))
    currencies = sorted(set(gmv) | set(net) | set(per_channel))
    return Dashboard(
        days=window,
        since=business.since,
        zone=zone,
        currencies=[
            CurrencyFigures(
                currency=c,
                gmv=[DayPoint(d, gmv[c].get(d, 0)) for d in window],
                orders_paid=count[c],
                net_revenue=[DayPoint(d, net[c].get(d, 0)) for d in window],
                channels=per_channel[c],
            )
            for c in currencies
        ],
    )
