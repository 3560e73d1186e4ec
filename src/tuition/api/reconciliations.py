"""Reconciliation runs and their cases over REST (docs/reconciliation.md)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from tuition.api.deps import ActorDep, ApiKeyDep, ContainerDep, audited
from tuition.api.fields import NoNul
from tuition.api.routing import v1_router
from tuition.domain.errors import NotFound
from tuition.domain.reconciliation import CaseState
from tuition.services import reconciliation as service
from tuition.store.reconciliation import CaseRecord, ReconciliationRepository, RunRecord

router = v1_router(tags=["reconciliations"])


class CaseOut(BaseModel):
    id: str
    object: str = "reconciliation_case"
    run_id: str
    business_day: str
    kind: str = Field(
        description="gateway_only, ours_only, amount_mismatch, fee_mismatch, "
        "status_mismatch or timing"
    )
    subject: str = Field(description="payment or refund")
    reference: str
    payment_id: str | None
    refund_id: str | None
    currency: str
    amount_ours: int | None
    amount_gateway: int | None
    fee_ours: int | None
    fee_gateway: int | None
    detail: str
    status: str = Field(description="open, resolved or accepted")
    resolution: str | None
    resolved_by: str | None
    note: str | None
    journal_source: str | None
    resolved_at: datetime | None
    created_at: datetime


class RunOut(BaseModel):
    id: str
    object: str = "reconciliation"
    channel: str
    account: str
    business_day: str
    attempt: int
    status: str = Field(description="clean or differences")
    report: dict[str, Any]
    created_at: datetime
    cases: list[CaseOut] | None = None


class RunList(BaseModel):
    data: list[RunOut]


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["resolved", "accepted"]
    note: Annotated[str, Field(min_length=1, max_length=500), NoNul]
    book_fee: bool = Field(
        default=True,
        description="A fee mismatch resolved as `resolved` books the gateway's fee",
    )


def case_out(case: CaseRecord) -> CaseOut:
    return CaseOut(
        id=case.id,
        run_id=case.run_id,
        business_day=case.business_day,
        kind=case.kind,
        subject=case.subject,
        reference=case.reference,
        payment_id=case.payment_id,
        refund_id=case.refund_id,
        currency=case.currency,
        amount_ours=case.amount_ours,
        amount_gateway=case.amount_gateway,
        fee_ours=case.fee_ours,
        fee_gateway=case.fee_gateway,
        detail=case.detail,
        status=case.status.value,
        resolution=case.resolution,
        resolved_by=case.resolved_by,
        note=case.note,
        journal_source=case.journal_source,
        resolved_at=case.resolved_at,
        created_at=case.created_at,
    )


def run_out(run: RunRecord, cases: list[CaseRecord] | None = None) -> RunOut:
    return RunOut(
        id=run.id,
        channel=run.channel,
        account=run.account,
        business_day=run.business_day,
        attempt=run.attempt,
        status=run.status,
        report=run.report,
        created_at=run.created_at,
        cases=None if cases is None else [case_out(c) for c in cases],
    )


@router.get(
    "/reconciliations",
    response_model=RunList,
    summary="Reconciliation runs, newest day first; filter by channel and business day",
)
async def list_runs(
    container: ContainerDep,
    channel: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z0-9_]+$")] = None,
    date: Annotated[date | None, Query(description="Business day, YYYY-MM-DD")] = None,
) -> RunList:
    async with container.uow() as uow:
        runs = await ReconciliationRepository(uow.conn).runs(channel=channel, day=date)
    return RunList(data=[run_out(run) for run in runs])


@router.get(
    "/reconciliations/{run_id}",
    response_model=RunOut,
    summary="One run with the cases of its day",
)
async def get_run(run_id: str, container: ContainerDep) -> RunOut:
    async with container.uow() as uow:
        repo = ReconciliationRepository(uow.conn)
        run = await repo.get_run(run_id)
        if run is None:
            raise NotFound(f"no reconciliation {run_id}", param="run_id")
        cases = await repo.cases_seen_by(run)
    return run_out(run, cases)


@router.post(
    "/reconciliations/{run_id}/cases/{case_id}/resolve",
    response_model=CaseOut,
    summary="Close an open case as resolved or accepted, with a note",
    description="A case moves `open → resolved | accepted` once (409 `case_not_open` "
    "after). Resolving a fee mismatch books the fee the gateway actually took.",
)
async def resolve(
    run_id: str,
    case_id: str,
    body: ResolveIn,
    container: ContainerDep,
    key: ApiKeyDep,
    actor: ActorDep,
) -> CaseOut:
    case = await service.resolve_case(
        service.ResolveCase(
            run_id=run_id,
            case_id=case_id,
            state=CaseState(body.state),
            resolved_by=f"api_key:{key.id}",
            note=body.note,
            book_fee=body.book_fee,
        ),
        audited(container, actor, "reconciliation.case_resolved", case_id, state=body.state),
        clock=container.clock,
    )
    return case_out(case)


routers: list[APIRouter] = [router]
