"""``/v1/fx_rates``: record exchange rates, read the one in force and a pair's history.

Rates are decimal strings (``"0.1500"``), never JSON numbers: a binary float cannot
carry an exchange rate exactly. ``1 base = rate quote``; see docs/fx.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from tuition.api.deps import ActorDep, ContainerDep
from tuition.api.fields import IsoDatetime, NoNul
from tuition.api.listing import Page, page_of
from tuition.api.routing import v1_router
from tuition.api.schemas_catalog import RateText
from tuition.domain.fx import FxRate, parse_fx_rate
from tuition.domain.ids import Prefix
from tuition.services import fx as fx_service

router = v1_router(tags=["exchange rates"])

Code = Annotated[str, Path(min_length=3, max_length=3, description="ISO 4217, e.g. CNY")]


class FxRatePut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate: RateText = Field(description='What one `base` is worth in `quote`, e.g. "0.1500"')
    source: Annotated[str, Field(min_length=1, max_length=100), NoNul] = Field(
        description="Where the rate comes from, e.g. `ecb` or `manual`"
    )
    as_of: IsoDatetime | None = Field(
        default=None, description="When the rate takes effect; default now"
    )


class FxRateOut(BaseModel):
    id: str
    object: str = "fx_rate"
    base: str
    quote: str
    rate: str
    source: str
    as_of: datetime
    created_at: datetime

    @classmethod
    def of(cls, record: FxRate) -> FxRateOut:
        return cls(
            id=record.id,
            base=record.base,
            quote=record.quote,
            rate=str(record.rate),
            source=record.source,
            as_of=record.as_of,
            created_at=record.created_at,
        )


class FxRateList(BaseModel):
    data: list[FxRateOut]
    has_more: bool


@router.put(
    "/fx_rates/{base}/{quote}",
    summary="Record an exchange rate",
    description="Records `1 base = rate quote` in force from `as_of` (default now). Earlier "
    "rates are kept as history; orders already priced keep the rate they were priced at.",
)
async def put_fx_rate(
    base: Code, quote: Code, body: FxRatePut, container: ContainerDep, actor: ActorDep
) -> FxRateOut:
    command = fx_service.SetRate(
        base=base,
        quote=quote,
        rate=parse_fx_rate(body.rate),
        source=body.source,
        as_of=body.as_of,
    )
    record = await fx_service.put_rate(command, container.uow(), clock=container.clock, actor=actor)
    return FxRateOut.of(record)


@router.get(
    "/fx_rates",
    summary="List the latest rates",
    description="The newest rate of every pair, ordered by pair (one page).",
)
async def list_fx_rates(container: ContainerDep) -> FxRateList:
    items = await fx_service.latest_rates(container.uow())
    return FxRateList(data=[FxRateOut.of(r) for r in items], has_more=False)


@router.get(
    "/fx_rates/{base}/{quote}",
    summary="Get the rate in force",
    description="The `base/quote` rate in force now, as recorded (never inverted); 404 "
    "`fx_rate_not_found` if none.",
)
async def get_fx_rate(base: Code, quote: Code, container: ContainerDep) -> FxRateOut:
    record = await fx_service.current_rate(container.uow(), base, quote, clock=container.clock)
    return FxRateOut.of(record)


@router.get(
    "/fx_rates/{base}/{quote}/history",
    summary="A pair's rate history",
    description="Every recorded `base/quote` rate, newest `as_of` first.",
)
async def fx_rate_history(
    base: Code,
    quote: Code,
    container: ContainerDep,
    page: Annotated[Page, page_of(Prefix.FX_RATE)],
) -> FxRateList:
    items, has_more = await fx_service.rate_history(
        container.uow(), base, quote, limit=page.limit, starting_after=page.starting_after
    )
    return FxRateList(data=[FxRateOut.of(r) for r in items], has_more=has_more)


routers: list[APIRouter] = [router]
