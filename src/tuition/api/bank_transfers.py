"""Bank transfers over HTTP: finance records a transfer that arrived, or imports a bank
statement CSV (docs/channels.md)."""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from tuition.api.deps import ActorDep, ApiKeyDep, ContainerDep, audited
from tuition.api.fields import NoNul
from tuition.api.routing import v1_router
from tuition.domain.errors import ValidationFailed
from tuition.domain.money import MAX_AMOUNT
from tuition.services import bank_transfers as service

router = v1_router(tags=["bank transfers"])
MAX_STATEMENT_BYTES = 1024 * 1024


class TransferReceived(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: Annotated[str, NoNul] = Field(
        min_length=1, max_length=500, description="TU… or the memo holding it"
    )
    amount: StrictInt = Field(ge=1, le=MAX_AMOUNT, description="What arrived, minor units")
    currency: str = Field(min_length=3, max_length=3)
    received_on: date
    bank_serial: Annotated[str, NoNul] = Field(
        min_length=1, max_length=100, description="The bank's number for the transfer (流水号)"
    )
    payer: Annotated[str, NoNul] = Field(default="", max_length=200)


class TransferOutcomeOut(BaseModel):
    object: str = "bank_transfer_receipt"
    verdict: str = Field(description="paid, underpaid, overpaid, duplicate or unmatched")
    payment_id: str | None
    order_id: str | None
    expected: int | None
    received: int | None = Field(description="All that has arrived for the payment")


class StatementLineOut(BaseModel):
    line: int
    serial: str
    verdict: str | None
    payment_id: str | None
    error: str | None


class StatementOut(BaseModel):
    object: str = "bank_statement_import"
    lines: list[StatementLineOut]


def outcome_out(outcome: service.TransferOutcome) -> TransferOutcomeOut:
    return TransferOutcomeOut(
        verdict=outcome.verdict,
        payment_id=outcome.payment_id,
        order_id=outcome.order_id,
        expected=outcome.expected,
        received=outcome.received,
    )


@router.post(
    "/bank_transfers/receipts",
    response_model=TransferOutcomeOut,
    summary="Record a bank transfer that arrived",
    description="Matched to its payment by the reference; counted once per bank_serial. "
    "The payment succeeds when what arrived covers it; short of it, it stays open.",
)
async def post_receipt(
    body: TransferReceived, container: ContainerDep, key: ApiKeyDep, actor: ActorDep
) -> TransferOutcomeOut:
    outcome = await service.record_transfer(
        service.ReceivedTransfer(
            reference=body.reference,
            amount=body.amount,
            currency=body.currency,
            received_on=body.received_on,
            bank_serial=body.bank_serial,
            payer=body.payer,
            recorded_by=f"api_key:{key.id}",
        ),
        audited(
            container,
            actor,
            "bank_transfer.received",
            body.reference,
            bank_serial=body.bank_serial,
            amount=body.amount,
            currency=body.currency,
        ),
        deps=container.payment_deps(),
    )
    return outcome_out(outcome)


@router.post(
    "/bank_transfers/statements",
    response_model=StatementOut,
    summary="Import a bank statement CSV",
    description="Body: text/csv with the columns date, amount (major units), currency, "
    "reference, serial, payer. Importing the same statement again changes nothing.",
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def post_statement(
    request: Request, container: ContainerDep, key: ApiKeyDep, actor: ActorDep
) -> StatementOut:
    raw = await request.body()
    if len(raw) > MAX_STATEMENT_BYTES:
        raise ValidationFailed("a statement is at most 1 MiB", param="statement")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed("the statement must be UTF-8 CSV", param="statement") from None
    lines = await service.import_statement(
        text,
        audited(
            container,
            actor,
            "bank_transfer.statement_imported",
            hashlib.sha256(raw).hexdigest(),
            size=len(raw),
        ),
        recorded_by=f"api_key:{key.id}",
        deps=container.payment_deps(),
    )
    return StatementOut(
        lines=[
            StatementLineOut(
                line=line.line,
                serial=line.serial,
                verdict=line.outcome.verdict if line.outcome else None,
                payment_id=line.outcome.payment_id if line.outcome else None,
                error=line.error,
            )
            for line in lines
        ]
    )


routers: list[APIRouter] = [router]
