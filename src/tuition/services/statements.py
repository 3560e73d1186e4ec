"""A payee's monthly statement, read from its ledger accounts so that it reconciles by
construction: opening balance + every movement of the month = closing balance.

The balance a statement follows is what the platform owes the payee and has not paid
out: pending + available + in payout (the three accounts' credit balance). Each journal
entry touching them in the month is one line, traced to its order, refund or payout:

    payment:…           earning       (+ the shares of the order's lines)
    refund:…            clawback      (- the share taken back)
    payout:…:created    tax           (- the tax withheld; the net moves to in payout)
    payout:…:paid       payout        (- the net paid)
    payout:…:failed     tax           (+ the tax given back; the net is available again)
    payout:…:returned   payout        (+ the gross, back from the bank)
    partner_settlement:…  conversion  (a partner's released share leaving the sale's
                                       currency, + arriving in the partner's)
    partner_clawback:…    conversion  (a refund's take from a converted share: back into
                                       the sale's currency, - out of the partner's)

The release from pending to available moves nothing between owed and paid, so it shows
in the closing split (pending / available / in payout), not as a line.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import datetime
from html import escape

from tuition.domain.errors import ValidationFailed
from tuition.domain.ledger import AccountKind, AccountRef
from tuition.domain.money import format_amount, get_currency
from tuition.domain.tax import taxable_income
from tuition.services.earnings import payee_of
from tuition.services.payouts import TAX_ZONE
from tuition.store import statements as statement_store
from tuition.store.uow import UnitOfWork

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_KINDS = (AccountKind.CREATOR_PENDING, AccountKind.CREATOR_PAYABLE, AccountKind.CREATOR_IN_PAYOUT)


@dataclass(frozen=True, slots=True)
class StatementLine:
    kind: str  # earning, clawback, tax, payout
    source: str  # the journal entry's source
    occurred_at: datetime
    amount: int  # signed: + owed more, - owed less
    order_id: str | None = None
    payout_id: str | None = None


@dataclass(frozen=True, slots=True)
class Statement:
    payee_id: str
    payee_name: str
    period: str
    currency: str
    opening: int
    closing: int
    lines: list[StatementLine] = field(default_factory=list)

    def total(self, kind: str) -> int:
        return sum(line.amount for line in self.lines if line.kind == kind)


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """``2026-11`` -> the month's start and the next month's, in China's time."""
    match = _PERIOD.match(period)
    if match is None:
        raise ValidationFailed("period must be a month such as 2026-11", param="period")
    year, month = int(match[1]), int(match[2])
    start = datetime(year, month, 1, tzinfo=TAX_ZONE)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=TAX_ZONE)
    return start, end


def _kind(source: str) -> tuple[str, str | None]:
    """(line kind, payout id) for an entry's source; a release is ``""`` (not a line)."""
    head, _, rest = source.partition(":")
    match head:
        case "payment":
            return "earning", None
        case "refund":
            return "clawback", None
        case "payout":
            payout_id, _, step = rest.partition(":")
            return ("tax" if step in ("created", "failed") else "payout"), payout_id
        case "partner_settlement" | "partner_clawback":
            return "conversion", None
        case _:
            return "", None


def _traced_id(source: str) -> str:
    """The payment or refund id a line's source names (a conversion's first part)."""
    head, _, rest = source.partition(":")
    return rest.partition(":")[0] if head.startswith("partner_") else rest


def _by_payment(source: str) -> bool:
    return source.startswith(("payment:", "partner_settlement:"))


def _by_refund(source: str) -> bool:
    return source.startswith(("refund:", "partner_clawback:"))


async def statement_of(
    uow: UnitOfWork, payee_id: str, period: str, *, currency: str = "CNY"
) -> Statement:
    start, end = period_bounds(period)
    get_currency(currency)
    keys = [AccountRef(kind, currency, payee_id).key for kind in _KINDS]
    async with uow:
        payee = await payee_of(uow, payee_id)
        opening, moves = await statement_store.movements(uow.conn, keys, start=start, end=end)
        lines = []
        for source, occurred_at, amount in moves:
            kind, payout_id = _kind(source)
            if amount == 0 or not kind:
                continue
            lines.append(StatementLine(kind, source, occurred_at, -amount, payout_id=payout_id))
        ids = [_traced_id(line.source) for line in lines]
        orders = await statement_store.orders_of(
            uow.conn,
            [i for i, line in zip(ids, lines, strict=True) if _by_payment(line.source)],
            [i for i, line in zip(ids, lines, strict=True) if _by_refund(line.source)],
        )
    traced = [
        StatementLine(
            line.kind,
            line.source,
            line.occurred_at,
            line.amount,
            order_id=orders.get(_traced_id(line.source)),
            payout_id=line.payout_id,
        )
        for line in lines
    ]
    closing = -opening + sum(line.amount for line in traced)
    return Statement(payee.id, payee.name, period, currency, -opening, closing, traced)


def statement_csv(statement: Statement) -> str:
    unit = get_currency(statement.currency)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["date", "kind", "order_id", "payout_id", "source", "amount"])
    writer.writerow(["", "opening", "", "", "", format_amount(statement.opening, unit)])
    for line in statement.lines:
        writer.writerow(
            [
                line.occurred_at.astimezone(TAX_ZONE).date().isoformat(),
                line.kind,
                line.order_id or "",
                line.payout_id or "",
                line.source,
                format_amount(line.amount, unit),
            ]
        )
    writer.writerow(["", "closing", "", "", "", format_amount(statement.closing, unit)])
    return out.getvalue()


async def withholding_report(uow: UnitOfWork, period: str) -> str:
    """The month's withholding report for filing (CSV): each individual payee's income
    paid in the month, its taxable income and the tax withheld."""
    period_bounds(period)  # validates the month
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["period", "payee_id", "name", "tax_profile", "currency", "income", "taxable", "withheld"]
    )
    async with uow:
        rows = await uow.payouts.month_report(period)
        for payee_id, currency, income, withheld in rows:
            payee = await payee_of(uow, payee_id)
            unit = get_currency(currency)
            writer.writerow(
                [
                    period,
                    payee_id,
                    payee.name,
                    payee.tax_profile,
                    currency,
                    format_amount(income, unit),
                    format_amount(taxable_income(income), unit) if withheld else "",
                    format_amount(withheld, unit),
                ]
            )
    return out.getvalue()


def statement_html(statement: Statement) -> str:
    """A printable page of the statement (plain HTML, print styles inline)."""
    unit = get_currency(statement.currency)

    def money(amount: int) -> str:
        return f"{format_amount(amount, unit)} {statement.currency}"

    rows = "".join(
        "<tr>"
        f"<td>{line.occurred_at.astimezone(TAX_ZONE).date().isoformat()}</td>"
        f"<td>{escape(line.kind)}</td>"
        f"<td>{escape(line.order_id or line.payout_id or '')}</td>"
        f'<td class="n">{money(line.amount)}</td>'
        "</tr>"
        for line in statement.lines
    )
    totals = "".join(
        f'<tr><th colspan="3">{label}</th><td class="n">{money(statement.total(kind))}</td></tr>'
        for label, kind in (
            ("Earnings", "earning"),
            ("Clawbacks", "clawback"),
            ("Payouts", "payout"),
            ("Tax withheld", "tax"),
            ("Currency conversions", "conversion"),
        )
        if kind != "conversion"
        or statement.total(kind)
        or any(line.kind == kind for line in statement.lines)
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Statement {escape(statement.period)} — {escape(statement.payee_name)}</title>"
        "<style>body{font-family:sans-serif;max-width:48rem;margin:2rem auto}"
        "table{width:100%;border-collapse:collapse}"
        "td,th{padding:.3rem;border-bottom:1px solid #ccc;text-align:left}"
        ".n{text-align:right;font-variant-numeric:tabular-nums}"
        "@media print{body{margin:0}}</style></head><body>"
        f"<h1>Statement {escape(statement.period)}</h1>"
        f"<p>{escape(statement.payee_name)} ({escape(statement.payee_id)})</p>"
        f'<table><tr><th colspan="3">Opening balance</th>'
        f'<td class="n">{money(statement.opening)}</td></tr>{totals}'
        f'<tr><th colspan="3">Closing balance</th>'
        f'<td class="n">{money(statement.closing)}</td></tr>'
        "</table><h2>Movements</h2><table><tr><th>Date</th><th>Kind</th><th>Order / payout</th>"
        f'<th class="n">Amount</th></tr>{rows}</table></body></html>'
    )
