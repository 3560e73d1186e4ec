"""API changes to payees, promoters, partners, commissions and payouts are audited on
both engines: the caller's key as the actor, in the change's transaction, a payout
account masked; the hash chain verifies."""

from __future__ import annotations

import json

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from tests.integration.shop import post
from tests.integration.test_payouts import ACCOUNT, _sell, seller  # noqa: F401
from tuition.clock import FrozenClock
from tuition.services import audit as audit_service
from tuition.simulator.app import Simulator
from tuition.store.tables import audit_events
from tuition.store.uow import UnitOfWork


async def _trail(uow: UnitOfWork) -> list[dict[str, object]]:
    async with uow:
        rows = await uow.conn.execute(select(audit_events).order_by(audit_events.c.seq))
        return [dict(r._mapping) for r in rows]


async def test_payee_promoter_partner_and_payout_changes_name_the_api_key(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    await _sell(app, client, gateway, clock, seller, "u_1")
    setup = len(await _trail(uow))  # the fixture's catalog changes, audited too
    payee = seller["creator"]
    changed = await client.post(
        f"/v1/payees/{payee}", json={"payout_method": "bank", "payout_account": ACCOUNT}
    )
    assert changed.status_code == 200, changed.text
    wang = await post(client, "/v1/promoters", {"name": "Wang", "code": "WANG"})
    globex = await post(
        client, "/v1/partners", {"name": "Globex", "share": "0.1", "currency": "USD"}
    )
    put = await client.put(
        f"/v1/products/{seller['course']}/commission",
        json={"level1": "0.1", "level2": "0", "bearer": "platform"},
    )
    assert put.status_code == 200, put.text
    payout = await post(client, "/v1/payouts", {"payee_id": payee, "currency": "CNY"})
    batch = await client.post("/v1/payouts/bank_batch")
    assert batch.status_code == 201, batch.text
    paid = await client.post(f"/v1/payouts/{payout['id']}/mark_paid", json={"reference": "BK-1"})
    assert paid.status_code == 200, paid.text

    rows = [r for r in (await _trail(uow))[setup:] if r["action"] != "api_key.created"]
    got = [(r["action"], r["subject"], r["actor_kind"]) for r in rows]
    assert got == [
        ("payee.updated", payee, "api_key"),
        ("promoter.created", wang["id"], "api_key"),
        ("partner.created", globex["id"], "api_key"),
        ("product.commission_set", seller["course"], "api_key"),
        ("payout.created", payout["id"], "api_key"),
        ("payout.bank_batch_exported", payout["id"], "api_key"),
        ("payout.marked_paid", payout["id"], "api_key"),
    ]
    assert len({r["actor"] for r in rows}) == 1  # the one key of this test
    assert str(rows[0]["actor"]).startswith("key_")
    text = json.dumps([r["before"] for r in rows] + [r["after"] for r in rows], default=str)
    assert ACCOUNT not in text  # a payout account is masked in the trail too
    assert "************1234" in text
    report = await audit_service.verify(uow)
    assert report.ok, report
