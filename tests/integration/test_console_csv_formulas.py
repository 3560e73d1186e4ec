"""The console's CSV exports on both engines never hand a spreadsheet a formula: a cell
that would be read as one (a payee's name, an API key's name in the audit trail starting
``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is written with a leading ``'``,
while plain numbers, negative ones too, stay numbers."""

from __future__ import annotations

import csv
import io

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.admin_catalog_helpers import sign_in
from tests.integration.shop import post
from tuition import web
from tuition.clock import FrozenClock
from tuition.domain.operators import Role
from tuition.services import audit
from tuition.store.uow import UnitOfWork
from tuition.web.admin_filters import csv_cell

FORMULAS = ("=1+2", "+1+2", "-1+2", "@SUM(A1)", "\t=1", "\r=1", '=HYPERLINK("http://x")')


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


def _table(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200, response.text
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_a_formula_cell_is_neutralised_and_a_number_is_not() -> None:
    for text in FORMULAS:
        assert csv_cell(text) == "'" + text
    for text in ("-12.50", "-3", "12", "", "Wang Fang", "ord_01J", "2026-11-30"):
        assert csv_cell(text) == text


async def test_payee_names_in_the_payees_csv_are_not_formulas(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    stored = set()
    for n, name in enumerate(FORMULAS):
        made = await post(client, "/v1/promoters", {"name": name, "code": f"CODE{n}"})
        stored.add(made["name"])  # as the API kept it (surrounding blanks stripped)
    await sign_in(anon_client, uow, clock, Role.FINANCE)
    table = _table(await anon_client.get("/admin/payees.csv"))
    names = {row[table[0].index("name")] for row in table[1:]}
    assert names == {"'" + name for name in stored}


async def test_actor_names_in_the_audit_csv_are_not_formulas(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    async with uow:
        await audit.record(
            uow.conn,
            audit.Actor("api_key", "=cmd|' /C calc'!A0"),
            "coupon.created",
            "X",
            clock=clock,
        )
        await uow.commit()
    await sign_in(anon_client, uow, clock, Role.OWNER)
    table = _table(await anon_client.get("/admin/audit.csv"))
    actors = [row[2] for row in table[1:] if row[3] == "coupon.created"]
    assert actors == ["'=cmd|' /C calc'!A0"]


async def test_every_export_is_never_stored_by_a_cache(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    await sign_in(anon_client, uow, clock, Role.OWNER)
    for path in (
        "/admin/orders.csv",
        "/admin/payments.csv",
        "/admin/refunds.csv",
        "/admin/subscriptions.csv",
        "/admin/invoices.csv",
        "/admin/payees.csv",
        "/admin/audit.csv",
        "/admin/reconciliations/cases.csv",
    ):
        answer = await anon_client.get(path)
        assert answer.status_code == 200, path
        assert answer.headers.get("cache-control") == "no-store", path
        assert answer.headers.get("x-content-type-options") == "nosniff", path
