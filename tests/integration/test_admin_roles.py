"""Operators' roles enforced by the server on both engines: pages and actions refused
with a 403 that changes nothing, the support refund limit, the operators page and the
`tuition operators` command."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from typer.testing import CliRunner

from tests.integration.shop import order_body, post
from tuition import web
from tuition.cli import app as cli
from tuition.clock import FrozenClock
from tuition.config import Settings, get_settings, load_settings
from tuition.domain.errors import Conflict, NotFound, ValidationFailed
from tuition.domain.operators import Permission, Role, permits, refund_within_limit
from tuition.services import admin as admin_service
from tuition.services import operators as operator_service
from tuition.services.audit import SYSTEM
from tuition.simulator.app import Simulator
from tuition.store.tables import admin_sessions, refunds
from tuition.store.uow import UnitOfWork

PASSWORD = "a-long-enough-password"
PAYEE = "crt_" + "0" * 26


@pytest.fixture
def settings(db_url: str) -> Settings:
    return load_settings(database_url=db_url, support_refund_limit={"CNY": 10000})


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


async def _browser(
    app: FastAPI, uow: UnitOfWork, clock: FrozenClock, role: Role
) -> httpx.AsyncClient:
    email = f"{role.value}@example.com"
    await admin_service.create_admin_user(uow, email, PASSWORD, clock, role=role)
    browser = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://tuition.test",
        headers={"Accept-Language": "en"},
    )
    form = await browser.get("/admin/login")
    signed_in = await browser.post(
        "/admin/login", data={"email": email, "password": PASSWORD, "csrf_token": _token(form.text)}
    )
    assert signed_in.status_code == 303
    return browser


async def _paid(
    client: httpx.AsyncClient, gateway: Simulator, shop: dict[str, str], name: str
) -> str:
    order = await post(client, "/v1/orders", order_body(shop, name))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "qr"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    return str(order["id"])


async def _refund_count(uow: UnitOfWork) -> int:
    async with uow:
        return int((await uow.conn.execute(select(func.count()).select_from(refunds))).scalar_one())


def test_each_role_holds_what_the_issue_gives_it() -> None:
    assert all(permits(Role.OWNER, p) for p in Permission)
    for p in (Permission.PAYOUTS, Permission.RECONCILIATION, Permission.EXPORT):
        assert permits(Role.FINANCE, p)
        assert not permits(Role.SUPPORT, p)
    assert permits(Role.SUPPORT, Permission.WEBHOOKS)
    assert not permits(Role.FINANCE, Permission.OPERATORS)
    assert [p for p in Permission if permits(Role.VIEWER, p)] == [
        Permission.READ,
        Permission.LEDGER,
    ]
    assert not permits("root", Permission.READ)
    limits = {"CNY": 10000}
    assert refund_within_limit(Role.SUPPORT, 10000, "CNY", limits)
    assert not refund_within_limit(Role.SUPPORT, 10001, "CNY", limits)
    assert not refund_within_limit(Role.SUPPORT, 1, "USD", limits)
    assert refund_within_limit(Role.FINANCE, 10**12, "USD", limits)
    assert not refund_within_limit(Role.VIEWER, 1, "CNY", limits)


async def test_a_support_operator_cannot_see_operators_or_approve_payouts(
    app: FastAPI, uow: UnitOfWork, clock: FrozenClock
) -> None:
    support = await _browser(app, uow, clock, Role.SUPPORT)
    board = await support.get("/admin")
    assert board.status_code == 200
    assert 'href="/admin/operators"' not in board.text
    assert "Support" in board.text
    token = _token(board.text)
    page = await support.get("/admin/operators")
    assert page.status_code == 403
    assert "Not allowed for your role" in page.text
    for path in (
        f"/admin/payees/{PAYEE}/payouts/po_x/retry",
        "/admin/reconciliations/rcn_x/cases/rcc_x/resolve",
        "/admin/customers/u_1/adjustments",
        "/admin/operators",
        "/admin/operators/support@example.com/role",
    ):
        refused = await support.post(path, data={"csrf_token": token, "role": "owner"})
        assert refused.status_code == 403, path
    csv = await support.get("/admin/reconciliations/cases.csv")
    assert csv.status_code == 403
    users = {u.email: u.role for u in await operator_service.list_operators(uow)}
    assert users == {"support@example.com": "support"}  # the role change was refused


async def test_finance_may_do_what_support_may_not_and_a_viewer_changes_nothing(
    app: FastAPI, uow: UnitOfWork, clock: FrozenClock
) -> None:
    finance = await _browser(app, uow, clock, Role.FINANCE)
    token = _token((await finance.get("/admin")).text)
    payout = await finance.post(
        f"/admin/payees/{PAYEE}/payouts/po_x/retry", data={"csrf_token": token}
    )
    assert payout.status_code != 403
    assert (await finance.get("/admin/operators")).status_code == 403
    viewer = await _browser(app, uow, clock, Role.VIEWER)
    board = await viewer.get("/admin/ledger")
    assert board.status_code == 200
    verify = await viewer.post("/admin/ledger/verify", data={"csrf_token": _token(board.text)})
    assert verify.status_code == 200  # running the checks changes nothing
    refund = await viewer.post(
        "/admin/orders/ord_x/refunds", data={"csrf_token": _token(board.text)}
    )
    assert refund.status_code == 403
    out = await viewer.post("/admin/logout", data={"csrf_token": _token(board.text)})
    assert out.status_code == 303


async def test_support_refunds_up_to_the_limit_and_no_further(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    big = await _paid(client, gateway, shop, "c2")  # 199.00, over the 100.00 limit
    small = await _paid(client, gateway, shop, "c1")  # 99.00
    support = await _browser(app, uow, clock, Role.SUPPORT)
    token = _token((await support.get(f"/admin/orders/{big}")).text)
    form = {"csrf_token": token, "reason": "requested_by_customer", "mode": "all"}
    for path in (f"/admin/orders/{big}/refunds/confirm", f"/admin/orders/{big}/refunds"):
        refused = await support.post(path, data=form)
        assert refused.status_code == 403, path
        assert "refund_over_role_limit" in refused.text
        assert "more than your role may refund at once" in refused.text
    assert await _refund_count(uow) == 0
    part = await support.post(
        f"/admin/orders/{big}/refunds", data={**form, "mode": "amount", "amount": "100.00"}
    )
    assert part.status_code == 303
    whole = await support.post(f"/admin/orders/{small}/refunds", data=form)
    assert whole.status_code == 303
    assert await _refund_count(uow) == 2


async def test_the_owner_manages_operators_on_the_operators_page(
    app: FastAPI, uow: UnitOfWork, clock: FrozenClock
) -> None:
    owner = await _browser(app, uow, clock, Role.OWNER)
    page = await owner.get("/admin/operators")
    assert page.status_code == 200
    token = _token(page.text)
    made = await owner.post(
        "/admin/operators",
        data={
            "csrf_token": token,
            "email": "new@example.com",
            "role": "support",
            "password": PASSWORD,
        },
    )
    assert made.status_code == 303
    bad = await owner.post(
        "/admin/operators",
        data={
            "csrf_token": token,
            "email": "x@example.com",
            "role": "root",
            "password": PASSWORD,
        },
    )
    assert bad.status_code == 422
    assert "role_unknown" in bad.text
    changed = await owner.post(
        "/admin/operators/new@example.com/role", data={"csrf_token": token, "role": "finance"}
    )
    assert changed.status_code == 303
    last = await owner.post(
        "/admin/operators/owner@example.com/role", data={"csrf_token": token, "role": "viewer"}
    )
    assert last.status_code == 409
    assert "last_owner" in last.text
    no_csrf = await owner.post("/admin/operators/new@example.com/role", data={"role": "owner"})
    assert no_csrf.status_code == 403
    roles = {u.email: u.role for u in await operator_service.list_operators(uow)}
    assert roles == {"owner@example.com": "owner", "new@example.com": "finance"}


async def test_a_new_role_ends_the_operators_sessions(
    app: FastAPI, uow: UnitOfWork, clock: FrozenClock
) -> None:
    finance = await _browser(app, uow, clock, Role.FINANCE)
    await admin_service.create_admin_user(uow, "boss@example.com", PASSWORD, clock)
    assert (await finance.get("/admin")).status_code == 200
    await operator_service.set_role(uow, "finance@example.com", "viewer", clock=clock, actor=SYSTEM)
    assert (await finance.get("/admin")).status_code == 303  # signed in again, as viewer
    async with uow:
        open_ = await uow.conn.execute(
            select(func.count())
            .select_from(admin_sessions)
            .where(admin_sessions.c.revoked_at.is_(None))
        )
        assert open_.scalar_one() == 0
    with pytest.raises(ValidationFailed):
        await operator_service.set_role(
            uow, "finance@example.com", "root", clock=clock, actor=SYSTEM
        )
    with pytest.raises(Conflict):  # nobody would be left to manage operators
        await operator_service.set_role(
            uow, "boss@example.com", "finance", clock=clock, actor=SYSTEM
        )
    with pytest.raises(NotFound):
        await operator_service.set_role(
            uow, "nobody@example.com", "viewer", clock=clock, actor=SYSTEM
        )


async def test_unlock_lifts_a_lockout_from_every_ip(uow: UnitOfWork, clock: FrozenClock) -> None:
    await admin_service.create_admin_user(uow, "ops@example.com", PASSWORD, clock)
    ttl = timedelta(hours=1)
    for _ in range(admin_service.MAX_FAILURES):
        with pytest.raises(admin_service.LoginRefused):
            await admin_service.login(
                uow,
                "ops@example.com",
                "wrong-password!",
                clock=clock,
                ttl=ttl,
                client_ip="10.0.0.1",
            )
    with pytest.raises(admin_service.LoginRefused):  # locked, the right password included
        await admin_service.login(
            uow, "ops@example.com", PASSWORD, clock=clock, ttl=ttl, client_ip="10.0.0.1"
        )
    assert await operator_service.unlock(uow, "ops@example.com", clock=clock, actor=SYSTEM) > 0
    opened = await admin_service.login(
        uow, "ops@example.com", PASSWORD, clock=clock, ttl=ttl, client_ip="10.0.0.1"
    )
    assert opened.user.email == "ops@example.com"


def test_the_operators_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("TUITION_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}")
    get_settings.cache_clear()
    try:
        assert runner.invoke(cli, ["migrate"]).exit_code == 0
        made = runner.invoke(
            cli,
            [
                "operators",
                "create",
                "--email",
                "a@example.com",
                "--role",
                "owner",
                "--password",
                PASSWORD,
            ],
        )
        assert made.exit_code == 0, made.output
        assert "a@example.com (owner)" in made.output
        runner.invoke(
            cli, ["operators", "create", "--email", "b@example.com", "--password", PASSWORD]
        )
        listed = runner.invoke(cli, ["operators", "list"])
        assert listed.exit_code == 0
        assert re.search(r"a@example\.com\s+│\s+owner", listed.output)
        assert re.search(r"b@example\.com\s+│\s+viewer", listed.output)
        changed = runner.invoke(cli, ["operators", "set-role", "b@example.com", "finance"])
        assert changed.exit_code == 0
        assert "now finance" in changed.output
        bad = runner.invoke(cli, ["operators", "set-role", "b@example.com", "root"])
        assert bad.exit_code == 1
        assert "not a role" in bad.output
        last = runner.invoke(cli, ["operators", "set-role", "a@example.com", "viewer"])
        assert last.exit_code == 1
        assert "last owner" in last.output
        unlocked = runner.invoke(cli, ["operators", "unlock", "b@example.com"])
        assert unlocked.exit_code == 0, unlocked.output
        missing = runner.invoke(cli, ["operators", "unlock", "c@example.com"])
        assert missing.exit_code == 1
        assert "no operator" in missing.output
    finally:
        get_settings.cache_clear()
