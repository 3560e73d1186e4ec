"""A buyer's history: one feed of what they paid, got back and spent, and hiding an
entry from it.

Hiding changes the buyer's view only: the order, payment, refund, wallet transaction and
ledger stay as they are, and the admin console shows everything. Who hid or unhid an
entry and when is kept on its ``history_hidden`` row, and each change emits
``history.entry_hidden`` or ``history.entry_unhidden``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tuition.clock import Clock
from tuition.domain.errors import Conflict, NotFound, ValidationFailed
from tuition.domain.orders import OrderStatus
from tuition.domain.payments import PaymentStatus, RefundStatus
from tuition.store.history import (
    KINDS,
    WALLET_STATUS,
    FeedQuery,
    HistoryRepository,
    HistoryRow,
    kind_of,
)
from tuition.store.orders import LineRecord
from tuition.store.uow import UnitOfWork

STATUSES = frozenset(
    {s.value for s in OrderStatus}
    | {s.value for s in PaymentStatus}
    | {s.value for s in RefundStatus}
    | {WALLET_STATUS}
)
_CURSOR_VERSION = 1


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    row: HistoryRow
    description: str
    direction: str  # "debit": money left the buyer; "credit": it came to them
    links: dict[str, str]
    lines: list[LineRecord] = field(default_factory=list)

    @property
    def amount(self) -> int:
        return abs(self.row.amount)


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: list[HistoryEntry]
    has_more: bool
    next_cursor: str | None


# --- the cursor -------------------------------------------------------------------------


def encode_cursor(at: datetime, entry_id: str) -> str:
    """An opaque cursor for "after this entry": its time and id, so that it keeps its
    place whichever kinds are filtered and whatever is added meanwhile."""
    raw = json.dumps(
        [_CURSOR_VERSION, at.astimezone(UTC).isoformat(), entry_id], separators=(",", ":")
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    invalid = ValidationFailed(
        "starting_after must be the next_cursor of a previous page",
        code="cursor_invalid",
        param="starting_after",
    )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, at_text, entry_id = json.loads(raw)
        at = datetime.fromisoformat(at_text)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise invalid from None
    if (
        version != _CURSOR_VERSION
        or not isinstance(entry_id, str)
        or kind_of(entry_id) is None
        or at.tzinfo is None
    ):
        raise invalid
    return at, entry_id


# --- reading ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    customer_id: str
    limit: int = 20
    starting_after: str | None = None
    kind: str | None = None
    status: str | None = None
    created_gte: datetime | None = None
    created_lt: datetime | None = None
    include_hidden: bool = False


def check_filter(filt: HistoryFilter) -> tuple[datetime, str] | None:
    """The decoded cursor; raises ValidationFailed naming a bad kind, status or cursor."""
    if filt.kind is not None and filt.kind not in KINDS:
        raise ValidationFailed(f"kind must be one of {', '.join(KINDS)}", param="kind")
    if filt.status is not None and filt.status not in STATUSES:
        raise ValidationFailed(
            f"status must be one of {', '.join(sorted(STATUSES))}", param="status"
        )
    return None if filt.starting_after is None else decode_cursor(filt.starting_after)


async def history_of(uow: UnitOfWork, filt: HistoryFilter) -> HistoryPage:
    after = check_filter(filt)
    async with uow:
        repo = HistoryRepository(uow.conn)
        rows, has_more = await repo.feed(
            FeedQuery(
                customer_id=filt.customer_id,
                limit=filt.limit,
                after=after,
                kind=filt.kind,
                status=filt.status,
                created_gte=filt.created_gte,
                created_lt=filt.created_lt,
                include_hidden=filt.include_hidden,
            )
        )
        entries = await _entries(repo, filt.customer_id, rows)
    last = rows[-1] if rows and has_more else None
    return HistoryPage(
        entries, has_more, None if last is None else encode_cursor(last.created_at, last.id)
    )


async def entry_of(uow: UnitOfWork, customer_id: str, entry_id: str) -> HistoryEntry:
    async with uow:
        repo = HistoryRepository(uow.conn)
        row = await repo.entry(customer_id, entry_id)
        if row is None:
            raise _missing(customer_id, entry_id)
        return (await _entries(repo, customer_id, [row]))[0]


async def _entries(
    repo: HistoryRepository, customer_id: str, rows: list[HistoryRow]
) -> list[HistoryEntry]:
    lines = await repo.lines_of([r.order_id for r in rows if r.order_id is not None])
    return [_entry(customer_id, row, lines.get(row.order_id or "", [])) for row in rows]


def _entry(customer_id: str, row: HistoryRow, lines: list[LineRecord]) -> HistoryEntry:
    titles = ", ".join(line.title for line in lines)
    links: dict[str, str] = {}
    if row.order_id is not None:
        links["order"] = f"/v1/orders/{row.order_id}"
    match row.kind:
        case "order":
            description = titles
            direction = "debit"
            if row.status in (
                OrderStatus.PAID,
                OrderStatus.PARTIALLY_REFUNDED,
                OrderStatus.REFUNDED,
            ):
                links["receipt"] = f"/v1/orders/{row.id}/receipt"
        case "payment":
            description = titles
            direction = "debit"
            links["payment"] = f"/v1/payments/{row.id}"
        case "refund":
            description = titles
            direction = "credit"
            links["refund"] = f"/v1/refunds/{row.id}"
            if row.payment_id is not None:
                links["payment"] = f"/v1/payments/{row.payment_id}"
        case "wallet_transaction":
            description = row.note or ""
            direction = "credit" if row.amount > 0 else "debit"
            links["wallet_transactions"] = f"/v1/customers/{customer_id}/wallet/transactions"
            cause = (row.cause_id or "").split(":")[0]
            for name, path in (("order", "orders"), ("payment", "payments"), ("refund", "refunds")):
                if kind_of(cause) == name:
                    links[name] = f"/v1/{path}/{cause}"
        case _:  # pragma: no cover - the store returns only KINDS
            raise AssertionError(row.kind)
    return HistoryEntry(
        row=row,
        description=description,
        direction=direction,
        links=links,
        lines=lines if row.kind == "order" else [],
    )


# --- hiding -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Visibility:
    customer_id: str
    entry_id: str
    hidden: bool
    by: str  # "api_key:key_…" or "admin:<email>"


async def set_visibility(cmd: Visibility, uow: UnitOfWork, *, clock: Clock) -> HistoryEntry:
    """Hide or show one entry of a buyer's own history; repeating it changes nothing.

    Refused (409 ``order_pending_payment``) for an order still awaiting payment: the
    buyer should cancel it, not hide something that may still take their money.
    """
    now = clock.now()
    async with uow:
        repo = HistoryRepository(uow.conn)
        row = await repo.entry(cmd.customer_id, cmd.entry_id)
        if row is None:
            raise _missing(cmd.customer_id, cmd.entry_id)
        if cmd.hidden and row.kind == "order" and row.status == OrderStatus.PENDING_PAYMENT:
            raise Conflict(
                "this order is still awaiting payment; cancel it instead of hiding it",
                code="order_pending_payment",
                param="entry_id",
            )
        if cmd.hidden:
            changed = await repo.hide(cmd.customer_id, row.id, row.kind, by=cmd.by, at=now)
        else:
            changed = await repo.unhide(cmd.customer_id, row.id, by=cmd.by, at=now)
        hidden_row = HistoryRow(**{**_fields(row), "hidden": cmd.hidden})
        entry = (await _entries(repo, cmd.customer_id, [hidden_row]))[0]
        if changed:
            await uow.events.emit(
                "history.entry_hidden" if cmd.hidden else "history.entry_unhidden",
                row.id,
                {
                    "customer_id": cmd.customer_id,
                    "entry_id": row.id,
                    "kind": row.kind,
                    "by": cmd.by,
                    "at": now.isoformat(),
                },
                at=now,
            )
            uow.outcome(row.id)
            await uow.commit()
        return entry


def _fields(row: HistoryRow) -> dict[str, Any]:
    return {f: getattr(row, f) for f in HistoryRow.__dataclass_fields__}


def _missing(customer_id: str, entry_id: str) -> NotFound:
    return NotFound(
        f"customer {customer_id} has no history entry {entry_id}",
        code="resource_missing",
        param="entry_id",
    )
