"""The console's bank transfer action: finance records a transfer that arrived for an
order waiting for one (the same use case as the API and the CLI,
services/bank_transfers.py), audited as ``bank_transfer.received`` with the operator.
Every signed-in operator may record one, as for refunds."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response

from tuition.api.deps import get_container
from tuition.channels.bank_transfer.client import SLUG
from tuition.domain.errors import TuitionError, ValidationFailed
from tuition.domain.money import get_currency, parse_decimal_amount
from tuition.domain.payments import PaymentStatus
from tuition.services import bank_transfers as service
from tuition.web.admin_session import OperatorDep, audited, csrf_ok, refused
from tuition.web.pages import secure

router = APIRouter(tags=["admin console"], include_in_schema=False)
ObjectId = Annotated[str, Path(max_length=40)]


@router.post("/admin/orders/{order_id}/bank-transfers")
async def record(request: Request, operator: OperatorDep, order_id: ObjectId) -> Response:
    form = await request.form()
    token = form.get("csrf_token")
    if not csrf_ok(operator.csrf_token, token if isinstance(token, str) else None):
        return refused(request)
    container = get_container(request)
    async with container.uow() as uow:
        open_payments = await uow.payments.open_for_order(order_id)
    waiting = [p for p in open_payments if p.channel == SLUG and p.status is PaymentStatus.PENDING]
    outcome: str
    if not waiting or waiting[0].channel_trade_no is None:
        outcome = "no_transfer_waiting"
    else:
        payment = waiting[0]
        reference = payment.channel_trade_no
        assert reference is not None
        try:
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            received_on = fields.get("received_on", "").strip()
            try:
                day = date.fromisoformat(received_on)
            except ValueError:
                raise ValidationFailed(
                    "received_on must be a date, YYYY-MM-DD", param="received_on"
                ) from None
            amount = parse_decimal_amount(
                fields.get("amount", "").strip(), get_currency(payment.currency)
            )
            serial = fields.get("bank_serial", "").strip()
            result = await service.record_transfer(
                service.ReceivedTransfer(
                    reference=reference,
                    amount=amount,
                    currency=payment.currency,
                    received_on=day,
                    bank_serial=serial,
                    payer=fields.get("payer", "").strip(),
                    recorded_by=f"admin:{operator.user.email}",
                ),
                audited(
                    request,
                    operator,
                    "bank_transfer.received",
                    reference,
                    bank_serial=serial,
                    amount=amount,
                    currency=payment.currency,
                ),
                deps=container.payment_deps(),
            )
            outcome = result.verdict
        except TuitionError as exc:
            outcome = exc.code
    url = f"/admin/orders/{order_id}?transfer={outcome}#bank-transfer"
    return secure(RedirectResponse(url, status_code=303))
