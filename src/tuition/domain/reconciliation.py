"""Reconciliation (对账): a gateway's bill for one business day against our own records.

Pure rules, no I/O. A channel turns its bill file into a :class:`Bill` (its rows as
:class:`BillEntry`, in minor units, fees as positive amounts); the service loads our
payments and refunds as :class:`OurPayment` / :class:`OurRefund` and :func:`classify`
says, row by row, what agrees and what does not:

=================  ===========================================================================
``matched``        same trade, same amount, same fee, same business day (not a case)
``gateway_only``   长款: the gateway took money for a trade we have not recorded as paid
``ours_only``      短款: we recorded money the gateway's bill does not show
``amount_mismatch``  the same trade with another amount
``fee_mismatch``   the same trade with another fee than the one we booked
``status_mismatch``  the bill says a refund succeeded (or a trade was reversed) and we do not
``timing``         the trade is on a neighbouring day's bill (paid near midnight): matched
                   across days, recorded as an accepted case, never an alarm
=================  ===========================================================================

Each finding becomes a case (``open → resolved | accepted``), keyed by
``kind:subject:reference`` so a rerun finds the same case rather than adding another.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from zoneinfo import ZoneInfo

from tuition.domain.errors import IllegalTransition, ValidationFailed


class BillMalformed(ValidationFailed):
    """A bill file could not be read; nothing was written. ``code`` says why."""

    default_code = "bill_malformed"


# Alipay's and WeChat Pay's bills are Beijing days, their times Beijing wall-clock times.
BEIJING = ZoneInfo("Asia/Shanghai")
_FEN = Decimal("0.01")


def parse_yuan(text: str, column: str, *, places: int = 2) -> int:
    """A bill's yuan amount (``"88.80"``, ``"-0.53"``, ``"0.53000"``) in fen.

    WeChat Pay writes fees with five decimals; they are rounded half up to the fen the
    gateway actually moves. Anything else with more than ``places`` decimals is refused.
    """
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise BillMalformed(
            f"{column}: {text!r} is not an amount", code="bill_bad_amount"
        ) from None
    exponent = value.as_tuple().exponent
    if not value.is_finite() or not isinstance(exponent, int) or -exponent > places:
        raise BillMalformed(f"{column}: {text!r} is not an amount", code="bill_bad_amount")
    return int((value / _FEN).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def parse_beijing_time(text: str, column: str) -> datetime:
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    except ValueError:
        raise BillMalformed(f"{column}: {text!r} is not a time", code="bill_bad_time") from None


class EntryKind(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"


class CaseKind(StrEnum):
    GATEWAY_ONLY = "gateway_only"
    OURS_ONLY = "ours_only"
    AMOUNT_MISMATCH = "amount_mismatch"
    FEE_MISMATCH = "fee_mismatch"
    STATUS_MISMATCH = "status_mismatch"
    TIMING = "timing"


class CaseState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    ACCEPTED = "accepted"


CASE_TRANSITIONS: Mapping[CaseState, frozenset[CaseState]] = {
    CaseState.OPEN: frozenset({CaseState.RESOLVED, CaseState.ACCEPTED}),
    CaseState.RESOLVED: frozenset(),
    CaseState.ACCEPTED: frozenset(),
}


def case_transition(current: CaseState, target: CaseState) -> CaseState:
    if target not in CASE_TRANSITIONS[current]:
        raise IllegalTransition(
            f"a {current.value} case cannot become {target.value}", code="case_not_open"
        )
    return target


@dataclass(frozen=True, slots=True)
class BillEntry:
    """One trade or refund row of a bill. ``fee`` is what the gateway took on a payment
    or gave back on a refund, always >= 0; ``amount`` is > 0."""

    kind: EntryKind
    payment_id: str  # our id, the gateway's out_trade_no
    channel_trade_no: str
    amount: int
    fee: int
    currency: str
    occurred_at: datetime
    succeeded: bool = True  # False: the bill shows the row in another state
    status: str = "SUCCESS"  # the gateway's own word for the row's state
    refund_id: str | None = None  # our id, out_refund_no / out_request_no
    channel_refund_no: str | None = None

    @property
    def is_refund(self) -> bool:
        return self.kind is EntryKind.REFUND


@dataclass(frozen=True, slots=True)
class FundFlow:
    """One movement of the merchant's account at the gateway (WeChat Pay's fund flow)."""

    occurred_at: datetime
    reference: str  # 微信支付业务单号
    flow_no: str
    business: str  # 业务类型: 交易, 退款, 扣除交易手续费, 提现, ...
    amount: int  # signed: 收入 positive, 支出 negative


@dataclass(frozen=True, slots=True)
class BillTotals:
    """What the bill's own summary says; a parser checks the rows add up to it."""

    payments: int
    payment_amount: int
    refunds: int
    refund_amount: int
    fees: int  # net: taken on payments minus given back on refunds


@dataclass(frozen=True, slots=True)
class Bill:
    channel: str
    account: str
    day: date
    currency: str
    entries: tuple[BillEntry, ...]
    totals: BillTotals
    digest: str  # SHA-256 of the files as downloaded: a rerun tells a changed bill
    # What the gateway settled into the merchant's account for the day, and the fees it
    # actually took, when the bill says so (WeChat Pay's fund flow; Alipay's trade bill).
    settled: int | None = None
    fees_taken: int | None = None
    flows: tuple[FundFlow, ...] = ()


def totals_of(entries: Iterable[BillEntry]) -> BillTotals:
    pays = [e for e in entries if not e.is_refund and e.succeeded]
    refunds = [e for e in entries if e.is_refund and e.succeeded]
    return BillTotals(
        payments=len(pays),
        payment_amount=sum(e.amount for e in pays),
        refunds=len(refunds),
        refund_amount=sum(e.amount for e in refunds),
        fees=sum(e.fee for e in pays) - sum(e.fee for e in refunds),
    )


@dataclass(frozen=True, slots=True)
class OurPayment:
    id: str
    status: str  # PaymentStatus value
    amount: int
    fee: int | None
    currency: str
    channel_trade_no: str | None
    business_day: date | None  # of succeeded_at, in the platform's time zone
    succeeded_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OurRefund:
    id: str
    payment_id: str
    status: str  # RefundStatus value
    amount: int
    currency: str
    fee_returned: int | None
    business_day: date | None
    succeeded_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    kind: CaseKind
    subject: EntryKind
    reference: str  # our payment or refund id, else the gateway's number
    currency: str
    payment_id: str | None = None
    refund_id: str | None = None
    amount_ours: int | None = None
    amount_gateway: int | None = None
    fee_ours: int | None = None
    fee_gateway: int | None = None
    detail: str = ""
    awaiting: bool = False  # a timing case still waiting for the next day's bill

    @property
    def key(self) -> str:
        return f"{self.kind.value}:{self.subject.value}:{self.reference}"


@dataclass(slots=True)
class Classification:
    matched: int = 0
    findings: list[Finding] = field(default_factory=list)


def business_day(at: datetime, zone: tzinfo) -> date:
    return at.astimezone(zone).date()


def day_bounds(day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) of ``day`` in ``zone``, as aware datetimes."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    return start, datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)


def classify(
    day: date,
    bill: Iterable[BillEntry],
    *,
    payments: Mapping[str, OurPayment],
    refunds: Mapping[str, OurRefund],
    ours_of_day: Iterable[tuple[EntryKind, str]],
    on_neighbour_bills: frozenset[tuple[EntryKind, str]] = frozenset(),
    awaiting_next_bill: frozenset[tuple[EntryKind, str]] = frozenset(),
) -> Classification:
    """Every bill row against our records, then every record of ``day`` against the bill.

    ``payments`` / ``refunds`` hold our records of every trade the bill names plus those
    of the day; ``ours_of_day`` are the succeeded payments and refunds of ``day`` (our
    business day); ``on_neighbour_bills`` are the rows of the days before and after;
    ``awaiting_next_bill`` are records of the last minutes of the day when the next
    day's bill is not out yet: a timing case that stays open until that bill shows them.
    """
    result = Classification()
    seen: set[tuple[EntryKind, str]] = set()
    for entry in bill:
        if entry.is_refund:
            seen.add((EntryKind.REFUND, entry.refund_id or ""))
            _refund_row(day, entry, refunds.get(entry.refund_id or ""), result)
        else:
            seen.add((EntryKind.PAYMENT, entry.payment_id))
            _payment_row(day, entry, payments.get(entry.payment_id), result)
    for kind, ref in ours_of_day:
        if (kind, ref) in seen:
            continue
        finding = _ours_missing(
            kind, ref, payments, refunds, on_neighbour_bills, (kind, ref) in awaiting_next_bill
        )
        if finding is not None:
            result.findings.append(finding)
    return result


def _payment_row(
    day: date, entry: BillEntry, ours: OurPayment | None, result: Classification
) -> None:
    base = {
        "subject": EntryKind.PAYMENT,
        "reference": entry.payment_id,
        "currency": entry.currency,
        "payment_id": entry.payment_id,
        "amount_gateway": entry.amount,
        "fee_gateway": entry.fee,
    }
    if not entry.succeeded:
        if ours is not None and ours.status == "succeeded":
            result.findings.append(
                Finding(
                    CaseKind.STATUS_MISMATCH,
                    amount_ours=ours.amount,
                    fee_ours=ours.fee,
                    detail=f"the bill shows the trade as {entry.status}; we have it paid",
                    **base,  # type: ignore[arg-type]
                )
            )
        else:
            result.matched += 1
        return
    if ours is None or ours.status != "succeeded":
        state = "no record of it" if ours is None else f"it is {ours.status} here"
        result.findings.append(
            Finding(
                CaseKind.GATEWAY_ONLY,
                amount_ours=None if ours is None else ours.amount,
                detail=f"the gateway took the money; {state}",
                **base,  # type: ignore[arg-type]
            )
        )
        return
    found = _compare(day, entry, ours.amount, ours.fee, ours.business_day, base)
    result.findings.extend(found)
    if not found:
        result.matched += 1


def _refund_row(
    day: date, entry: BillEntry, ours: OurRefund | None, result: Classification
) -> None:
    reference = entry.refund_id or entry.channel_refund_no or entry.channel_trade_no
    base = {
        "subject": EntryKind.REFUND,
        "reference": reference,
        "currency": entry.currency,
        "payment_id": entry.payment_id,
        "refund_id": entry.refund_id,
        "amount_gateway": entry.amount,
        "fee_gateway": entry.fee,
    }
    if ours is None:
        result.findings.append(
            Finding(
                CaseKind.GATEWAY_ONLY,
                detail="the gateway refunded money we have no refund for",
                **base,  # type: ignore[arg-type]
            )
        )
        return
    if entry.succeeded != (ours.status == "succeeded"):
        result.findings.append(
            Finding(
                CaseKind.STATUS_MISMATCH,
                amount_ours=ours.amount,
                detail=f"the bill says {entry.status}; the refund is {ours.status} here",
                **base,  # type: ignore[arg-type]
            )
        )
        return
    if not entry.succeeded:
        result.matched += 1
        return
    # A refund's fee is compared only when we know what the gateway gave back.
    fee = ours.fee_returned if ours.fee_returned is not None else entry.fee
    found = _compare(day, entry, ours.amount, fee, ours.business_day, base)
    result.findings.extend(found)
    if not found:
        result.matched += 1


def _compare(
    day: date,
    entry: BillEntry,
    amount: int,
    fee: int | None,
    ours_day: date | None,
    base: Mapping[str, object],
) -> list[Finding]:
    if amount != entry.amount:
        return [
            Finding(
                CaseKind.AMOUNT_MISMATCH,
                amount_ours=amount,
                fee_ours=fee,
                detail=f"the bill says {entry.amount}, we recorded {amount}",
                **base,  # type: ignore[arg-type]
            )
        ]
    if fee is not None and fee != entry.fee:
        return [
            Finding(
                CaseKind.FEE_MISMATCH,
                amount_ours=amount,
                fee_ours=fee,
                detail=f"the gateway's fee is {entry.fee}, we booked {fee}",
                **base,  # type: ignore[arg-type]
            )
        ]
    if ours_day is not None and ours_day != day:
        return [
            Finding(
                CaseKind.TIMING,
                amount_ours=amount,
                fee_ours=fee,
                detail=f"booked on {ours_day.isoformat()}, on the bill of {day.isoformat()}",
                **base,  # type: ignore[arg-type]
            )
        ]
    return []


def _ours_missing(
    kind: EntryKind,
    ref: str,
    payments: Mapping[str, OurPayment],
    refunds: Mapping[str, OurRefund],
    neighbours: frozenset[tuple[EntryKind, str]],
    awaiting: bool,
) -> Finding | None:
    if kind is EntryKind.PAYMENT:
        payment = payments[ref]
        amount, fee, currency, payment_id, refund_id = (
            payment.amount,
            payment.fee,
            payment.currency,
            payment.id,
            None,
        )
    else:
        refund = refunds[ref]
        amount, fee, currency, payment_id, refund_id = (
            refund.amount,
            refund.fee_returned,
            refund.currency,
            refund.payment_id,
            refund.id,
        )
    if (kind, ref) in neighbours:
        # Found on the neighbouring day's bill: the run of that day records the timing
        # case (it sees the row); here it is simply not missing.
        return None
    if awaiting:
        return Finding(
            CaseKind.TIMING,
            subject=kind,
            reference=ref,
            currency=currency,
            payment_id=payment_id,
            refund_id=refund_id,
            amount_ours=amount,
            fee_ours=fee,
            detail="booked just before midnight; waiting for the next day's bill",
            awaiting=True,
        )
    return Finding(
        CaseKind.OURS_ONLY,
        subject=kind,
        reference=ref,
        currency=currency,
        payment_id=payment_id,
        refund_id=refund_id,
        amount_ours=amount,
        fee_ours=fee,
        detail="we recorded it; the gateway's bill does not show it",
    )


# A record this close to midnight may be on the next day's bill.
TIMING_WINDOW = timedelta(minutes=10)
