"""A buyer's own records over REST: the history feed, and hiding an entry from it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from tuition.api.deps import ApiKeyDep, Container, ContainerDep
from tuition.api.fields import CustomerIdPath
from tuition.api.idempotency import replayed_by
from tuition.api.listing import DEFAULT_LIMIT, CreatedGte, CreatedLt, Limit
from tuition.api.routing import v1_router
from tuition.services import history as history_service
from tuition.services.history import HistoryEntry

router = v1_router(tags=["history"])

EntryIdPath = Annotated[
    str,
    Path(min_length=1, max_length=40, description="An entry's id: ord_…, pay_…, re_… or wtx_…"),
]


class HistoryLineOut(BaseModel):
    index: int
    product_id: str
    kind: str
    title: str
    quantity: int
    unit_price: int
    total: int
    tax: int
    amount_refunded: int


class HistoryEntryOut(BaseModel):
    id: str = Field(
        description="The underlying object's id (an order, payment, refund or "
        "wallet transaction): what hide and unhide take"
    )
    object: str = "history_entry"
    kind: str = Field(description="order, payment, refund or wallet_transaction")
    status: str = Field(description="The object's status; a wallet transaction is succeeded")
    amount: int = Field(description="Minor units, never negative; see direction")
    currency: str
    direction: str = Field(description="debit: money left the buyer; credit: it came back")
    description: str = Field(
        description="What it was for: the order's line titles, or the "
        "wallet transaction's description"
    )
    created_at: datetime
    hidden: bool = Field(
        description="Hidden from the buyer's view (shown only with include_hidden=true)"
    )
    order_id: str | None = None
    payment_id: str | None = None
    channel: str | None = Field(
        default=None, description="A payment's channel; a refund's destination"
    )
    lines: list[HistoryLineOut] = Field(
        default_factory=list, description="An order's lines (other kinds: empty)"
    )
    links: dict[str, str] = Field(description="API paths of the underlying objects")


class HistoryList(BaseModel):
    object: str = "list"
    data: list[HistoryEntryOut]
    has_more: bool
    next_cursor: str | None = Field(description="Pass as starting_after for the next page")


def entry_out(entry: HistoryEntry) -> HistoryEntryOut:
    row = entry.row
    return HistoryEntryOut(
        id=row.id,
        kind=row.kind,
        status=row.status,
        amount=entry.amount,
        currency=row.currency,
        direction=entry.direction,
        description=entry.description,
        created_at=row.created_at,
        hidden=row.hidden,
        order_id=row.order_id,
        payment_id=row.payment_id,
        channel=row.channel,
        lines=[
            HistoryLineOut(
                index=line.line_index,
                product_id=line.product_id,
                kind=line.kind,
                title=line.title,
                quantity=line.quantity,
                unit_price=line.unit_price,
                total=line.total,
                tax=line.tax,
                amount_refunded=line.amount_refunded,
            )
            for line in entry.lines
        ],
        links=entry.links,
    )


@router.get(
    "/customers/{customer_id}/history",
    response_model=HistoryList,
    summary="A buyer's history: orders, payments, refunds and wallet moves, newest first",
    description="One feed over every kind, ordered by time then id, newest first. Page "
    "with `starting_after` = the previous page's `next_cursor`: entries added meanwhile "
    "appear at the top and never shift a page. Hidden entries are left out unless "
    "`include_hidden=true`.",
)
async def list_history(
    customer_id: CustomerIdPath,
    container: ContainerDep,
    limit: Limit = DEFAULT_LIMIT,
    starting_after: Annotated[
        str | None, Query(max_length=200, description="The next_cursor of the previous page")
    ] = None,
    kind: Annotated[
        str | None, Query(description="order, payment, refund or wallet_transaction")
    ] = None,
    status: Annotated[str | None, Query(max_length=20, description="Only this status")] = None,
    created_gte: CreatedGte = None,
    created_lt: CreatedLt = None,
    include_hidden: bool = False,
) -> HistoryList:
    page = await history_service.history_of(
        container.uow(),
        history_service.HistoryFilter(
            customer_id=customer_id,
            limit=limit,
            starting_after=starting_after,
            kind=kind,
            status=status,
            created_gte=created_gte,
            created_lt=created_lt,
            include_hidden=include_hidden,
        ),
    )
    return HistoryList(
        data=[entry_out(e) for e in page.entries],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )


async def _entry_now(
    container: Container, request: Request, _outcome: str | None
) -> HistoryEntryOut:
    params = request.path_params
    entry = await history_service.entry_of(
        container.uow(), str(params["customer_id"]), str(params["entry_id"])
    )
    return entry_out(entry)


async def _set(
    customer_id: str, entry_id: str, hidden: bool, container: Container, key_id: str
) -> HistoryEntryOut:
    entry = await history_service.set_visibility(
        history_service.Visibility(
            customer_id=customer_id, entry_id=entry_id, hidden=hidden, by=f"api_key:{key_id}"
        ),
        container.uow(),
        clock=container.clock,
    )
    return entry_out(entry)


@router.post(
    "/customers/{customer_id}/history/{entry_id}/hide",
    response_model=HistoryEntryOut,
    summary="Hide an entry from the buyer's own history",
    description="Only the buyer's feed changes: the order, payment, refund, ledger and the "
    "admin console are as before. Hiding twice is a no-op. An order still awaiting payment "
    "is refused with 409 `order_pending_payment` (cancel it instead).",
)
@replayed_by(_entry_now)
async def hide_entry(
    customer_id: CustomerIdPath, entry_id: EntryIdPath, container: ContainerDep, key: ApiKeyDep
) -> HistoryEntryOut:
    return await _set(customer_id, entry_id, True, container, key.id)


@router.post(
    "/customers/{customer_id}/history/{entry_id}/unhide",
    response_model=HistoryEntryOut,
    summary="Show a hidden entry in the buyer's history again",
)
@replayed_by(_entry_now)
async def unhide_entry(
    customer_id: CustomerIdPath, entry_id: EntryIdPath, container: ContainerDep, key: ApiKeyDep
) -> HistoryEntryOut:
    return await _set(customer_id, entry_id, False, container, key.id)


routers: list[APIRouter] = [router]
