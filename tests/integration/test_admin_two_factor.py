"""Two-factor sign-in on both engines: enrolment with a QR code, the code after the
password, replay and throttling, recovery codes once, required for everyone, reset,
session expiry and signing out everywhere."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tuition import web
from tuition.clock import FrozenClock
from tuition.config import Settings
from tuition.domain.operators import Role
from tuition.services import admin as admin_service
from tuition.services import operators as operator_service
from tuition.services import two_factor
from tuition.store.tables import admin_recovery_codes, admin_users
from tuition.store.uow import UnitOfWork

PASSWORD = "a-long-enough-password"
EMAIL = "ops@example.com"


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


_OPEN: list[httpx.AsyncClient] = []


@pytest.fixture(autouse=True)
async def _close_browsers() -> AsyncIterator[None]:
    yield
    while _OPEN:
        await _OPEN.pop().aclose()


def _browser(app: FastAPI) -> httpx.AsyncClient:
    browser = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://tuition.test",
        headers={"Accept-Language": "en"},
    )
    _OPEN.append(browser)
    return browser


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


async def _password(browser: httpx.AsyncClient, email: str = EMAIL) -> httpx.Response:
    form = await browser.get("/admin/login")
    return await browser.post(
        "/admin/login",
        data={
            "email": email,
            "password": PASSWORD,
            "csrf_token": _token(form.text),
            "next": "/admin/orders",
        },
    )


async def _enrol(browser: httpx.AsyncClient, clock: FrozenClock) -> tuple[str, list[str]]:
    page = await browser.get("/admin/two-factor")
    assert page.status_code == 200
    assert 'src="data:image/svg+xml' in page.text  # the QR code, inline (the CSP allows data:)
    secret = re.search(r'data-testid="totp-secret">([A-Z2-7]+)<', page.text)
    assert secret is not None
    again = await browser.get("/admin/two-factor")
    assert secret.group(1) in again.text  # a reload shows the same secret
    wrong = await browser.post(
        "/admin/two-factor", data={"csrf_token": _token(page.text), "code": "000000"}
    )
    assert wrong.status_code == 422
    assert "totp_invalid" in wrong.text
    code = pyotp.TOTP(secret.group(1)).at(clock.now())
    done = await browser.post(
        "/admin/two-factor", data={"csrf_token": _token(page.text), "code": code}
    )
    assert done.status_code == 200
    codes = re.findall(r"<li>([0-9a-f]{5}-[0-9a-f]{5})</li>", done.text)
    assert len(codes) == two_factor.RECOVERY_CODES
    return secret.group(1), codes


async def _code(browser: httpx.AsyncClient, code: str) -> httpx.Response:
    page = await browser.get("/admin/login/two-factor", params={"next": "/admin/orders"})
    assert page.status_code == 200
    return await browser.post(
        "/admin/login/two-factor",
        data={"csrf_token": _token(page.text), "code": code, "next": "/admin/orders"},
    )


async def test_enrolment_then_every_sign_in_asks_for_a_code_used_once(
    app: FastAPI, uow: UnitOfWork, clock: FrozenClock
) -> None:
    await admin_service.create_admin_user(uow, EMAIL, PASSWORD, clock)
    browser = _browser(app)
    assert (await _password(browser)).headers["location"] == "/admin/orders"
    secret, codes = await _enrol(browser, clock)
    async with uow:
        row = (await uow.conn.execute(select(admin_users))).one()
        hashes = (await uow.conn.execute(select(admin_recovery_codes.c.code_hash))).scalars().all()
    assert row.totp_enabled_at is not None
    assert secret not in row.totp_secret  # sealed, never in clear
    assert not set(codes) & set(hashes)
    # A new sign-in: the password opens only the second step.
    other = _browser(app)
    signed = await _password(other)
    assert signed.headers["location"] == "/admin/login/two-factor?next=%2Fadmin%2Forders"
    blocked = await other.get("/admin/orders")
    assert blocked.status_code == 303
    assert blocked.headers["location"].startswith("/admin/login/two-factor")
    token = _token((await other.get("/admin/login/two-factor")).text)
    assert (await other.post("/admin/ledger/verify", data={"csrf_token": token})).status_code == 303
    wrong = await _code(other, "123456")
    assert wrong.status_code == 401
    assert "wrong or was already used" in wrong.text
    used = await _code(other, pyotp.TOTP(secret).at(clock.now()))  # the enrolment's code
    assert used.status_code == 401  # never accepted twice
    clock.advance(timedelta(seconds=30))
    ok = await _code(other, pyotp.TOTP(secret).at(clock.now()))
    assert ok.status_code == 303
    assert ok.headers["location"] == "/admin/orders"
    assert (await other.get("/admin/orders")).status_code == 200
    # A recovery code signs in once.
    third = _browser(app)
    await _password(third)
    assert (await _code(third, codes[0].upper())).status_code == 303
    fourth = _browser(app)
    await _password(fourth)
    assert (await _code(fourth, codes[0])).status_code == 401
    (user,) = await operator_service.list_operators(uow)
    assert user.totp_enabled_at is not None


async def test_wrong_codes_are_throttled(app: FastAPI, uow: UnitOfWork, clock: FrozenClock) -> None:
    await admin_service.create_admin_user(uow, EMAIL, PASSWORD, clock)
    browser = _browser(app)
    await _password(browser)
    secret, _codes = await _enrol(browser, clock)
    clock.advance(timedelta(minutes=1))
    other = _browser(app)
    await _password(other)
    for _ in range(5):
        assert (await _code(other, "000000")).status_code == 401
    assert (await _code(other, pyotp.TOTP(secret).at(clock.now()))).status_code == 401
    clock.advance(timedelta(minutes=16))
    assert (await _code(other, pyotp.TOTP(secret).at(clock.now()))).status_code == 303


async def test_an_owner_requires_two_factor_of_everyone_and_resets_a_lost_phone(
    app: FastAPI, uow: UnitOfWork, clock: FrozenClock
) -> None:
    await admin_service.create_admin_user(uow, "boss@example.com", PASSWORD, clock)
    await admin_service.create_admin_user(uow, EMAIL, PASSWORD, clock, role=Role.SUPPORT)
    boss = _browser(app)
    await _password(boss, "boss@example.com")
    page = await boss.get("/admin/operators")
    made = await boss.post(
        "/admin/settings/two-factor-required",
        data={"csrf_token": _token(page.text), "required": "true"},
    )
    assert made.status_code == 303
    assert (
        "Every operator must sign in with two-factor." in (await boss.get("/admin/operators")).text
    )
    support = _browser(app)
    await _password(support)
    step = await support.get("/admin/login/two-factor", params={"next": "/admin/orders"})
    assert step.status_code == 303
    assert step.headers["location"].startswith("/admin/two-factor")
    assert (await support.get("/admin/orders")).status_code == 303
    enrol = await support.get("/admin/two-factor")
    assert "An owner requires two-factor sign-in" in enrol.text
    await _enrol(support, clock)
    assert (await support.get("/admin/orders")).status_code == 200  # this session is complete
    # The phone is lost: an owner resets it, and every session of that operator ends.
    page = await boss.get("/admin/operators")
    reset = await boss.post(
        f"/admin/operators/{EMAIL}/reset-2fa", data={"csrf_token": _token(page.text)}
    )
    assert reset.status_code == 303
    assert (await support.get("/admin/orders")).status_code == 303
    async with uow:
        row = (
            await uow.conn.execute(select(admin_users).where(admin_users.c.email == EMAIL))
        ).one()
        codes = (await uow.conn.execute(select(admin_recovery_codes))).all()
    assert row.totp_secret is None
    assert row.totp_enabled_at is None
    assert codes == []
    # Support cannot change the setting themselves.
    again = _browser(app)
    await _password(again)
    token = _token((await again.get("/admin/two-factor")).text)
    assert (
        await again.post(
            "/admin/settings/two-factor-required", data={"csrf_token": token, "required": "false"}
        )
    ).status_code == 303  # still pending enrolment: sent back to it, nothing changed
    assert await two_factor.required_for_everyone(uow)


async def test_sessions_expire_and_sign_out_everywhere_ends_them_all(
    app: FastAPI, uow: UnitOfWork, clock: FrozenClock
) -> None:
    await admin_service.create_admin_user(uow, EMAIL, PASSWORD, clock)
    first, second = _browser(app), _browser(app)
    await _password(first)
    await _password(second)
    page = await first.get("/admin")
    assert page.status_code == 200
    assert "Sign out everywhere" in page.text
    ended = await first.post("/admin/sessions/end-all", data={"csrf_token": _token(page.text)})
    assert ended.status_code == 303
    assert ended.headers["location"] == "/admin/login"
    assert (await first.get("/admin")).status_code == 303
    assert (await second.get("/admin")).status_code == 303
    third = _browser(app)
    await _password(third)
    assert (await third.get("/admin")).status_code == 200
    clock.advance(timedelta(hours=13))  # TUITION_ADMIN_SESSION_HOURS is 12
    assert (await third.get("/admin")).status_code == 303


def test_a_sealed_secret_opens_only_with_its_key() -> None:
    sealed = two_factor.seal("JBSWY3DPEHPK3PXP", b"k" * 32)
    assert "JBSWY3DPEHPK3PXP" not in sealed
    assert two_factor.unseal(sealed, b"k" * 32) == "JBSWY3DPEHPK3PXP"
    with pytest.raises(ValueError, match="does not open"):
        two_factor.unseal(sealed, b"x" * 32)


@pytest.mark.postgres_only
async def test_one_code_given_to_ten_sessions_at_once_completes_one(
    engine: AsyncEngine, uow: UnitOfWork, clock: FrozenClock, settings: Settings
) -> None:
    user = await admin_service.create_admin_user(uow, EMAIL, PASSWORD, clock)
    key = settings.signing_key
    enrolment = await two_factor.start_enrolment(uow, user, signing_key=key)
    totp = pyotp.TOTP(enrolment.secret)
    codes = await two_factor.confirm_enrolment(
        uow, user.id, totp.at(clock.now()), signing_key=key, clock=clock
    )
    clock.advance(timedelta(seconds=30))
    sessions = [
        await admin_service.login(uow, EMAIL, PASSWORD, clock=clock, ttl=timedelta(hours=1))
        for _ in range(10)
    ]
    (enabled,) = await operator_service.list_operators(uow)

    async def attempt(token: str, code: str) -> bool:
        try:
            await two_factor.verify(
                UnitOfWork(engine), token, enabled, code, signing_key=key, clock=clock
            )
        except two_factor.SecondFactorRefused:
            return False
        return True

    code = totp.at(clock.now())
    results = await asyncio.gather(*(attempt(s.token, code) for s in sessions[:5]))
    assert sorted(results) == [False] * 4 + [True]
    recovered = await asyncio.gather(*(attempt(s.token, codes[0]) for s in sessions[5:]))
    assert sorted(recovered) == [False] * 4 + [True]
