"""Invoice requests over HTTP and their workflow, on both engines."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.integration.shop import order_body, post
from tuition.domain.errors import IllegalTransition, ValidationFailed
from tuition.services import invoices as invoice_service
from tuition.simulator.app import Simulator
from tuition.store.tables import invoice_requests, outbox_events
from tuition.store.uow import UnitOfWork

CODE = "91350100M000100Y43"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


async def _paid(client: httpx.AsyncClient, gateway: Simulator, shop: dict[str, str]) -> str:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    return str(order["id"])


def _company(**extra: Any) -> dict[str, Any]:
    return {
        "type": "company",
        "title": "ACME 有限公司",
        "tax_id": CODE,
        "email": "f@acme.cn",
        **extra,
    }


async def _count(uow: UnitOfWork) -> int:
    async with uow:
        return int(
            (
                await uow.conn.execute(select(func.count()).select_from(invoice_requests))
            ).scalar_one()
        )


async def _types(uow: UnitOfWork) -> list[str]:
    async with uow:
        return sorted(r[0] for r in await uow.conn.execute(select(outbox_events.c.type)))


async def test_bad_input_is_a_4xx_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order_id = await _paid(client, gateway, shop)
    pending = await post(client, "/v1/orders", order_body(shop, "c2"))
    for path, body, status, param, code in (
        (order_id, _company(tax_id="91350100M000100Y44"), 422, "tax_id", "tax_id_invalid"),
        (order_id, _company(tax_id="91350100M000100Y4"), 422, "tax_id", "tax_id_invalid"),
        (order_id, _company(tax_id=None), 422, "tax_id", "tax_id_missing"),
        (order_id, _company(email="nope"), 422, "email", None),
        (order_id, _company(type="state"), 422, "type", None),
        (order_id, _company(title="  "), 422, "title", None),
        (pending["id"], _company(), 409, "order_id", "order_not_invoiceable"),
        ("ord_01J9Z3K4QW8YV6T2N5B7C0D1EF", _company(), 404, "order_id", None),
    ):
        got = await client.post(f"/v1/orders/{path}/invoice_requests", json=body)
        assert got.status_code == status, (body, got.text)
        error = got.json()["error"]
        assert error["param"] == param, got.text
        if code:
            assert error["code"] == code
    assert await _count(uow) == 0


async def test_the_workflow_issues_once_and_flags_reversal_after_a_refund(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    app: FastAPI,
) -> None:
    order_id = await _paid(client, gateway, shop)
    made = await client.post(f"/v1/orders/{order_id}/invoice_requests", json=_company())
    assert made.status_code == 201, made.text
    request = made.json()
    assert (request["status"], request["amount"], request["tax_id"]) == ("requested", 9900, CODE)
    second = await client.post(f"/v1/orders/{order_id}/invoice_requests", json=_company())
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "invoice_already_requested"
    clock = app.state.modes.live.clock
    with pytest.raises(ValidationFailed) as bad_pdf:
        await invoice_service.issue_invoice(
            invoice_service.IssueInvoice(
                request["id"], "0001", date(2026, 11, 1), b"nope", "admin:f"
            ),
            UnitOfWork(app.state.modes.live.engine),
            clock=clock,
        )
    assert bad_pdf.value.param == "pdf"
    issued = await invoice_service.issue_invoice(
        invoice_service.IssueInvoice(request["id"], "04400001", date(2026, 11, 1), PDF, "admin:f"),
        UnitOfWork(app.state.modes.live.engine),
        clock=clock,
    )
    assert issued.status.value == "issued"
    assert not issued.reversal_required
    with pytest.raises(IllegalTransition) as twice:
        await invoice_service.reject_invoice(
            invoice_service.RejectInvoice(request["id"], "late", "admin:f"),
            UnitOfWork(app.state.modes.live.engine),
            clock=clock,
        )
    assert twice.value.status == 409
    refund = await client.post("/v1/refunds", json={"order_id": order_id, "amount": 5000})
    assert refund.status_code == 201, refund.text
    await gateway.drain()
    now = (await client.get(f"/v1/invoice_requests/{request['id']}")).json()
    assert now["status"] == "issued"
    assert now["reversal_required"] is True
    assert now["issued_amount"] == 9900
    assert now["has_pdf"] is True
    assert [r.id for r in await invoice_service.needing_reversal(uow)] == [request["id"]]
    assert await invoice_service.pdf_of(uow, request["id"]) == PDF
    types = await _types(uow)
    assert types.count("invoice.requested") == 1
    assert types.count("invoice.issued") == 1


async def test_a_rejected_request_frees_the_order_for_a_new_one(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    app: FastAPI,
    uow: UnitOfWork,
) -> None:
    order_id = await _paid(client, gateway, shop)
    first = await post(
        client,
        f"/v1/orders/{order_id}/invoice_requests",
        {"type": "personal", "title": "Li Lei", "email": "li@x.cn"},
    )
    rejected = await invoice_service.reject_invoice(
        invoice_service.RejectInvoice(first["id"], "wrong title", "admin:f"),
        UnitOfWork(app.state.modes.live.engine),
        clock=app.state.modes.live.clock,
    )
    assert rejected.reject_reason == "wrong title"
    again = await client.post(f"/v1/orders/{order_id}/invoice_requests", json=_company())
    assert again.status_code == 201, again.text
    listed = (await client.get(f"/v1/orders/{order_id}/invoice_requests")).json()["data"]
    assert [r["status"] for r in listed] == ["rejected", "requested"]
    assert "invoice.rejected" in await _types(uow)


@pytest.mark.postgres_only
async def test_racing_requests_for_one_order_make_one_live_request(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order_id = await _paid(client, gateway, shop)
    answers = await asyncio.gather(
        *(client.post(f"/v1/orders/{order_id}/invoice_requests", json=_company()) for _ in range(8))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] + [409] * 7, [a.text for a in answers]
    assert await _count(uow) == 1
    assert (await _types(uow)).count("invoice.requested") == 1
