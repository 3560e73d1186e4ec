"""The audit trail on both engines: a record for each kind of change, in the change's
transaction (a refused change leaves none), the hash chain verified and broken by an
edit or a removal, and the audit page's filters, paging and CSV export."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from tests.integration.shop import order_body, post
from tuition import web
from tuition.cli import app as cli
from tuition.clock import FrozenClock
from tuition.config import get_settings
from tuition.domain.errors import Conflict
from tuition.services import admin as admin_service
from tuition.services import audit
from tuition.services import operators as operator_service
from tuition.services.api_keys import create_key, revoke_key
from tuition.services.audit import SYSTEM, Actor
from tuition.simulator.app import Simulator
from tuition.store.tables import audit_events
from tuition.store.uow import UnitOfWork

PASSWORD = "a-long-enough-password"
OWNER = "boss@example.com"


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


async def _owner(anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock) -> str:
    await admin_service.create_admin_user(uow, OWNER, PASSWORD, clock)
    anon_client.headers["Accept-Language"] = "en"
    form = await anon_client.get("/admin/login")
    signed = await anon_client.post(
        "/admin/login", data={"email": OWNER, "password": PASSWORD, "csrf_token": _token(form.text)}
    )
    assert signed.status_code == 303
    return _token((await anon_client.get("/admin/operators")).text)


async def _rows(uow: UnitOfWork) -> list[dict[str, object]]:
    async with uow:
        rows = await uow.conn.execute(select(audit_events).order_by(audit_events.c.seq))
        return [dict(r._mapping) for r in rows]


async def test_every_kind_of_change_is_recorded_with_who_what_and_from_where(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    token = await _owner(anon_client, uow, clock)
    ops = "/admin/operators"
    await anon_client.post(
        ops,
        data={
            "csrf_token": token,
            "email": "s@example.com",
            "role": "support",
            "password": PASSWORD,
        },
    )
    await anon_client.post(
        f"{ops}/s@example.com/role", data={"csrf_token": token, "role": "finance"}
    )
    await anon_client.post(f"{ops}/s@example.com/sign-out", data={"csrf_token": token})
    await anon_client.post(
        "/admin/settings/two-factor-required", data={"csrf_token": token, "required": "true"}
    )
    await anon_client.post(f"{ops}/s@example.com/reset-2fa", data={"csrf_token": token})
    await operator_service.unlock(uow, "s@example.com", clock=clock, actor=Actor.cli())
    key = await create_key(
        uow, name="shop", mode="test", clock=clock, scopes=["read"], actor=Actor.cli()
    )
    await revoke_key(uow, key.record.id, clock=clock, actor=Actor.api_key("key_admin", "10.0.0.9"))
    rows = await _rows(uow)
    actions = [r["action"] for r in rows]
    assert actions == [
        "operator.created",  # the owner, by the system
        "operator.created",
        "operator.role_changed",
        "operator.signed_out_everywhere",
        "setting.changed",
        "operator.two_factor_reset",
        "operator.unlocked",
        "api_key.created",
        "api_key.revoked",
    ]
    by_console = rows[1:6]
    assert {(r["actor_kind"], r["actor"]) for r in by_console} == {("operator", OWNER)}
    assert all(
        r["ip"] == "127.0.0.1" and str(r["request_id"]).startswith("req_") for r in by_console
    )
    role = rows[2]
    assert (role["subject"], json.loads(str(role["before"])), json.loads(str(role["after"]))) == (
        "s@example.com",
        {"role": "support"},
        {"role": "finance"},
    )
    setting = rows[4]
    assert json.loads(str(setting["before"])) == {"two_factor_required": False}
    assert json.loads(str(setting["after"])) == {"two_factor_required": True}
    assert rows[6]["actor_kind"] == "cli"
    assert (rows[8]["actor_kind"], rows[8]["actor"], rows[8]["ip"]) == (
        "api_key",
        "key_admin",
        "10.0.0.9",
    )
    assert all(r["hash"] is not None for r in rows)  # sealed after each change
    report = await audit.verify(uow)
    assert report.ok
    assert report.records == len(rows)


async def test_a_refused_change_leaves_no_record(uow: UnitOfWork, clock: FrozenClock) -> None:
    await admin_service.create_admin_user(uow, OWNER, PASSWORD, clock)
    with pytest.raises(Conflict):
        await operator_service.set_role(uow, OWNER, "viewer", clock=clock, actor=SYSTEM)
    with pytest.raises(Conflict):
        await admin_service.create_admin_user(uow, OWNER, PASSWORD, clock)
    assert [r["action"] for r in await _rows(uow)] == ["operator.created"]


async def test_an_edit_or_a_removal_in_the_database_breaks_the_chain(
    uow: UnitOfWork, clock: FrozenClock
) -> None:
    await admin_service.create_admin_user(uow, OWNER, PASSWORD, clock)
    for role in ("finance", "viewer"):
        await admin_service.create_admin_user(
            uow, f"{role}@example.com", PASSWORD, clock, role=role
        )
    assert (await audit.verify(uow)).ok
    rows = await _rows(uow)
    async with uow:
        await uow.conn.execute(
            update(audit_events)
            .where(audit_events.c.seq == rows[1]["seq"])
            .values(after='{"role":"owner"}')
        )
        await uow.commit()
    edited = await audit.verify(uow)
    assert not edited.ok
    assert any("changed after sealing" in p for p in edited.problems)
    async with uow:
        await uow.conn.execute(
            update(audit_events)
            .where(audit_events.c.seq == rows[1]["seq"])
            .values(after=rows[1]["after"])
        )
        await uow.commit()
    assert (await audit.verify(uow)).ok
    async with uow:
        await uow.conn.execute(delete(audit_events).where(audit_events.c.seq == rows[2]["seq"]))
        await uow.commit()
    assert not (await audit.verify(uow)).ok


async def test_the_audit_page_filters_pages_both_ways_and_exports_what_it_shows(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    token = await _owner(anon_client, uow, clock)
    for n in range(3):
        await admin_service.create_admin_user(
            uow, f"u{n}@example.com", PASSWORD, clock, role="viewer"
        )
    for _ in range(52):
        await anon_client.post(
            "/admin/operators/u0@example.com/sign-out", data={"csrf_token": token}
        )
    first = await anon_client.get(
        "/admin/audit", params={"action": "operator.signed_out_everywhere"}
    )
    assert first.status_code == 200
    assert "1\u201350 of 52" in first.text
    assert 'rel="prev"' not in first.text
    assert 'rel="next"' in first.text
    second = await anon_client.get(
        "/admin/audit", params={"action": "operator.signed_out_everywhere", "offset": 50}
    )
    assert "51\u201352 of 52" in second.text
    assert 'rel="prev"' in second.text
    created = await anon_client.get("/admin/audit", params={"action": "operator."})
    assert "1\u201350 of 56" in created.text  # the prefix matches every operator action
    bad = await anon_client.get("/admin/audit", params={"from": "2026-13-01"})
    assert bad.status_code == 422
    assert "Enter a date as 2026-11-30." in bad.text
    today = clock.now().astimezone(get_settings().zone).date().isoformat()
    assert "of 0" in (await anon_client.get("/admin/audit", params={"to": "2020-01-01"})).text
    exported = await anon_client.get(
        "/admin/audit.csv", params={"action": "operator.created", "from": today, "to": today}
    )
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert table[0][:5] == ["time", "actor_kind", "actor", "action", "subject"]
    expected = [r for r in reversed(await _rows(uow)) if r["action"] == "operator.created"]
    assert [row[9] for row in table[1:]] == [r["id"] for r in expected]
    for row, stored in zip(table[1:], expected, strict=True):
        assert row[2:5] == [stored["actor"], "operator.created", stored["subject"]]
        assert row[0].endswith("+08:00")  # in Asia/Shanghai
    refused = await anon_client.get("/admin/audit.csv", params={"to": "nonsense"})
    assert refused.status_code == 422


def test_tuition_audit_verify_fails_after_an_edit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    runner = CliRunner()
    db = tmp_path / "audit.db"
    monkeypatch.setenv("TUITION_DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    get_settings.cache_clear()
    try:
        assert runner.invoke(cli, ["migrate"]).exit_code == 0
        for email, role in (("a@example.com", "owner"), ("b@example.com", "viewer")):
            made = runner.invoke(
                cli,
                ["operators", "create", "--email", email, "--role", role, "--password", PASSWORD],
            )
            assert made.exit_code == 0, made.output
        assert (
            runner.invoke(cli, ["operators", "set-role", "b@example.com", "support"]).exit_code == 0
        )
        ok = runner.invoke(cli, ["audit", "verify"])
        assert ok.exit_code == 0, ok.output
        assert "3 record(s), chain intact" in ok.output
        with sqlite3.connect(db) as conn:
            conn.execute(
                "UPDATE audit_events SET actor = 'someone-else'"
                " WHERE action = 'operator.role_changed'"
            )
        broken = runner.invoke(cli, ["audit", "verify"])
        assert broken.exit_code == 1
        assert "changed after sealing" in broken.output
    finally:
        get_settings.cache_clear()


async def test_console_refunds_and_wallet_adjustments_are_audited_in_their_transaction(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "qr"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    await _owner(anon_client, uow, clock)
    token = _token((await anon_client.get(f"/admin/orders/{order['id']}")).text)
    form = {"csrf_token": token, "reason": "requested_by_customer"}
    too_much = await anon_client.post(
        f"/admin/orders/{order['id']}/refunds", data={**form, "mode": "amount", "amount": "500.00"}
    )
    assert too_much.status_code != 303  # refused by the rules: nothing written
    made = await anon_client.post(
        f"/admin/orders/{order['id']}/refunds", data={**form, "mode": "amount", "amount": "10.00"}
    )
    assert made.status_code == 303
    refund_id = made.headers["location"].split("refund=")[1].split("#")[0]
    page = f"/admin/customers/{order['customer_id']}"
    token = _token((await anon_client.get(page)).text)
    debit = await anon_client.post(
        f"{page}/adjustments",
        data={"csrf_token": token, "currency": "CNY", "amount": "-5.00", "reason": "test"},
    )
    assert debit.status_code == 409  # nothing to debit: refused, nothing written
    credit = await anon_client.post(
        f"{page}/adjustments",
        data={"csrf_token": token, "currency": "CNY", "amount": "5.00", "reason": "goodwill"},
    )
    assert credit.status_code == 303
    rows = [r for r in await _rows(uow) if r["action"] in ("refund.created", "wallet.adjusted")]
    assert [(r["action"], r["subject"], r["actor"]) for r in rows] == [
        ("refund.created", refund_id, OWNER),
        ("wallet.adjusted", order["customer_id"], OWNER),
    ]
    assert json.loads(str(rows[1]["after"])) == {
        "of": order["customer_id"],
        "currency": "CNY",
        "amount": 500,
        "reason": "goodwill",
    }
    assert (await audit.verify(uow)).ok
