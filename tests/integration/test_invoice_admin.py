"""Finance issues or rejects invoice requests in the console, on both engines: the
number, date and PDF are recorded, refusals write nothing, CSRF is checked, and an
issued invoice refunded afterwards is listed for reversal (红冲)."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import select

from tests.integration.shop import order_body, post
from tuition.clock import FrozenClock
from tuition.services import admin as admin_service
from tuition.simulator.app import Simulator
from tuition.store.tables import invoice_requests
from tuition.store.uow import UnitOfWork

EMAIL, PASSWORD = "finance@example.com", "a-long-enough-password"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
async def console(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> httpx.AsyncClient:
    await admin_service.create_admin_user(uow, EMAIL, PASSWORD, clock)
    anon_client.headers["Accept-Language"] = "en"
    form = await anon_client.get("/admin/login")
    signed_in = await anon_client.post(
        "/admin/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": _token(form.text)}
    )
    assert signed_in.status_code == 303
    return anon_client


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


async def _requested(
    client: httpx.AsyncClient, gateway: Simulator, shop: dict[str, str]
) -> dict[str, str]:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    return await post(
        client,
        f"/v1/orders/{order['id']}/invoice_requests",
        {"type": "personal", "title": "Li Lei", "email": "li@example.com"},
    )


async def _row(uow: UnitOfWork, request_id: str) -> dict[str, object]:
    async with uow:
        row = (
            await uow.conn.execute(
                select(invoice_requests).where(invoice_requests.c.id == request_id)
            )
        ).one()
    return dict(row._mapping)


async def test_finance_issues_with_number_date_and_pdf_and_a_refund_flags_reversal(
    client: httpx.AsyncClient,
    console: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
) -> None:
    request = await _requested(client, gateway, shop)
    listing = await console.get("/admin/invoices")
    assert listing.status_code == 200
    assert request["id"] in listing.text
    page = await console.get(f"/admin/invoices/{request['id']}")
    token = _token(page.text)
    files = {"pdf": ("invoice.pdf", PDF, "application/pdf")}
    no_csrf = await console.post(
        f"/admin/invoices/{request['id']}/issue",
        data={"csrf_token": "forged", "invoice_number": "0440001", "issued_on": "2026-11-01"},
        files=files,
    )
    assert no_csrf.status_code == 403
    not_pdf = await console.post(
        f"/admin/invoices/{request['id']}/issue",
        data={"csrf_token": token, "invoice_number": "0440001", "issued_on": "2026-11-01"},
        files={"pdf": ("invoice.pdf", b"hello", "application/pdf")},
    )
    assert not_pdf.status_code == 422
    assert "pdf" in not_pdf.text
    no_date = await console.post(
        f"/admin/invoices/{request['id']}/issue",
        data={"csrf_token": token, "invoice_number": "0440001", "issued_on": "soon"},
        files=files,
    )
    assert no_date.status_code == 422
    assert "issued_on" in no_date.text
    assert (await _row(uow, request["id"]))["status"] == "requested"
    issued = await console.post(
        f"/admin/invoices/{request['id']}/issue",
        data={"csrf_token": token, "invoice_number": "0440001", "issued_on": "2026-11-01"},
        files=files,
    )
    assert issued.status_code == 303, issued.text
    row = await _row(uow, request["id"])
    assert (row["status"], row["invoice_number"], row["issued_on"]) == (
        "issued",
        "0440001",
        "2026-11-01",
    )
    assert row["decided_by"] == f"admin:{EMAIL}"
    download = await console.get(f"/admin/invoices/{request['id']}/pdf")
    assert download.status_code == 200
    assert download.content == PDF
    assert download.headers["content-type"] == "application/pdf"
    refused = await console.post(
        f"/admin/invoices/{request['id']}/reject", data={"csrf_token": token, "reason": "late"}
    )
    assert refused.status_code == 409
    assert (await _row(uow, request["id"]))["status"] == "issued"
    refund = await client.post("/v1/refunds", json={"order_id": request["order_id"]})
    assert refund.status_code == 201, refund.text
    await gateway.drain()
    listing = await console.get("/admin/invoices")
    assert 'data-testid="reversals"' in listing.text
    assert "0440001" in listing.text
    detail = await console.get(f"/admin/invoices/{request['id']}")
    assert 'data-testid="reversal"' in detail.text


async def test_finance_rejects_with_a_reason_and_a_blank_reason_writes_nothing(
    client: httpx.AsyncClient,
    console: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
) -> None:
    request = await _requested(client, gateway, shop)
    token = _token((await console.get(f"/admin/invoices/{request['id']}")).text)
    blank = await console.post(
        f"/admin/invoices/{request['id']}/reject", data={"csrf_token": token, "reason": "  "}
    )
    assert blank.status_code == 422
    assert (await _row(uow, request["id"]))["status"] == "requested"
    done = await console.post(
        f"/admin/invoices/{request['id']}/reject",
        data={"csrf_token": token, "reason": "title does not match the payer"},
    )
    assert done.status_code == 303
    row = await _row(uow, request["id"])
    assert (row["status"], row["reject_reason"], row["open_order_id"]) == (
        "rejected",
        "title does not match the payer",
        None,
    )
    zh = await console.get("/admin/invoices?lang=zh-CN")
    assert "发票" in zh.text
